// EntryIndex: entries and nodes in memory, updated from the datastore change log, with
// per-parent maps so authorisation walks only the entries it returns.
#include "server/entry_index.h"

#include <algorithm>
#include <deque>
#include <map>
#include <set>
#include <unordered_map>
#include <unordered_set>

#include "common/status.h"

namespace trellis::server {

struct EntryIndex::Data {
  uint64_t version = 0;
  using Entry = datastore::RegistrationEntry;
  // Entries by id. Nodes of an unordered_map never move, so the indexes below hold pointers
  // to them rather than copies of ids (a third of the memory an entry costs otherwise).
  std::unordered_map<std::string, Entry> entries;
  // parent_id -> entries with that parent; spiffe_id -> entries with that ID.
  std::unordered_map<std::string, std::vector<const Entry*>> by_parent;
  std::unordered_map<std::string, std::vector<const Entry*>> by_spiffe_id;
  std::unordered_map<std::string, datastore::AttestedNode> nodes;  // by SPIFFE ID

  void RemoveEntry(const std::string& id) {
    auto it = entries.find(id);
    if (it == entries.end()) return;
    const Entry* gone = &it->second;
    auto drop = [&](auto& map, const std::string& key) {
      auto m = map.find(key);
      if (m == map.end()) return;
      auto& v = m->second;
      v.erase(std::remove(v.begin(), v.end(), gone), v.end());
      if (v.empty()) map.erase(m);
    };
    drop(by_parent, gone->parent_id);
    drop(by_spiffe_id, gone->spiffe_id);
    entries.erase(it);
  }
  void PutEntry(Entry e) {
    RemoveEntry(e.id);
    std::sort(e.selectors.begin(), e.selectors.end());
    std::string id = e.id;
    const Entry* stored = &entries.emplace(std::move(id), std::move(e)).first->second;
    by_parent[stored->parent_id].push_back(stored);
    by_spiffe_id[stored->spiffe_id].push_back(stored);
  }
  // Adds to `out` every agent ID whose authorised entries include entry `id`: walk up the
  // parent chain (through entries whose spiffe_id is a parent) to agent IDs, and for node
  // aliases to the nodes whose selectors cover the alias's. Parents that are not agents are
  // added too; they simply match no watcher.
  void AgentsAbove(const std::string& id, std::set<std::string>* out) const {
    std::unordered_set<std::string> seen{id};
    std::deque<const datastore::RegistrationEntry*> todo;
    if (auto it = entries.find(id); it != entries.end()) todo.push_back(&it->second);
    while (!todo.empty()) {
      const datastore::RegistrationEntry& e = *todo.front();
      todo.pop_front();
      if (common::SpiffeId::IsServerIdText(e.parent_id)) {
        for (const auto& [node_id, node] : nodes) {
          if (std::includes(node.selectors.begin(), node.selectors.end(), e.selectors.begin(),
                            e.selectors.end())) {
            out->insert(node_id);
          }
        }
        continue;
      }
      out->insert(e.parent_id);
      auto above = by_spiffe_id.find(e.parent_id);
      if (above == by_spiffe_id.end()) continue;
      for (const Entry* parent_entry : above->second) {
        if (seen.insert(parent_entry->id).second) todo.push_back(parent_entry);
      }
    }
  }

  void PutNode(datastore::AttestedNode n) {
    std::sort(n.selectors.begin(), n.selectors.end());
    std::string id = n.spiffe_id;
    nodes.insert_or_assign(std::move(id), std::move(n));
  }
};

EntryIndex::EntryIndex(datastore::DataStore* ds, const common::Clock& clock)
    : ds_(ds), clock_(clock), data_(std::make_unique<Data>()) {}

EntryIndex::~EntryIndex() = default;

absl::StatusOr<std::unique_ptr<EntryIndex>> EntryIndex::Create(datastore::DataStore* ds,
                                                               const common::Clock& clock) {
  if (ds == nullptr) return absl::InvalidArgumentError("EntryIndex needs a datastore");
  std::unique_ptr<EntryIndex> index(new EntryIndex(ds, clock));
  TRELLIS_RETURN_IF_ERROR(index->LoadAll());
  return index;
}

absl::Status EntryIndex::LoadAll() {
  absl::MutexLock poll(&poll_mu_);
  // Read the log position first: rows written meanwhile are re-read by the next Poll().
  TRELLIS_ASSIGN_OR_RETURN(int64_t max_event, ds_->MaxEventId());
  auto data = std::make_unique<Data>();
  datastore::ListEntriesRequest req;
  req.page_size = 1000;
  do {
    TRELLIS_ASSIGN_OR_RETURN(auto page, ds_->ListEntries(req));
    for (auto& e : page.entries) data->PutEntry(std::move(e));
    req.page_token = page.next_page_token;
  } while (!req.page_token.empty());
  datastore::ListNodesRequest nreq;
  nreq.fetch_selectors = true;
  nreq.page_size = 1000;
  do {
    TRELLIS_ASSIGN_OR_RETURN(auto page, ds_->ListNodes(nreq));
    for (auto& n : page.nodes) data->PutNode(std::move(n));
    nreq.page_token = page.next_page_token;
  } while (!nreq.page_token.empty());
  data->version = 1;
  last_event_id_ = max_event;
  absl::MutexLock lock(&mu_);
  data_ = std::move(data);
  return absl::OkStatus();
}

absl::Status EntryIndex::Poll() {
  absl::MutexLock poll(&poll_mu_);
  uint64_t applied = 0;
  Change change;
  std::set<std::string>& affected = change.agents;
  constexpr int32_t kBatch = 1000;
  while (true) {
    TRELLIS_ASSIGN_OR_RETURN(auto events, ds_->ListEvents(last_event_id_, kBatch));
    if (events.empty()) break;
    // Re-read each changed row once per batch; the row's current state covers every event.
    std::set<std::string> entry_ids, node_ids;
    for (const auto& ev : events) {
      switch (ev.kind) {
        case datastore::EventKind::kEntryCreated:
        case datastore::EventKind::kEntryUpdated:
        case datastore::EventKind::kEntryDeleted:
          entry_ids.insert(ev.entry_id);
          break;
        case datastore::EventKind::kNodeCreated:
        case datastore::EventKind::kNodeUpdated:
        case datastore::EventKind::kNodeDeleted:
          node_ids.insert(ev.node_spiffe_id);
          break;
        case datastore::EventKind::kBundleUpdated:
          change.bundles.insert(ev.trust_domain);
          break;
      }
    }
    std::vector<std::pair<std::string, std::optional<datastore::RegistrationEntry>>> entries;
    if (!entry_ids.empty()) {
      // One read for the batch; an id the store no longer has was deleted.
      absl::StatusOr<std::vector<datastore::RegistrationEntry>> found =
          ds_->GetEntries(std::vector<std::string>(entry_ids.begin(), entry_ids.end()));
      if (!found.ok()) return Annotate(found.status(), "re-reading changed entries");
      std::map<std::string, datastore::RegistrationEntry> by_id;
      for (auto& e : *found) {
        std::string id = e.id;
        by_id.emplace(std::move(id), std::move(e));
      }
      for (const auto& id : entry_ids) {
        auto it = by_id.find(id);
        if (it == by_id.end()) {
          entries.emplace_back(id, std::nullopt);
        } else {
          entries.emplace_back(id, std::move(it->second));
        }
      }
    }
    std::vector<std::pair<std::string, std::optional<datastore::AttestedNode>>> nodes;
    for (const auto& id : node_ids) {
      auto n = ds_->GetNode(id, /*fetch_selectors=*/true);
      if (n.ok()) {
        nodes.emplace_back(id, std::move(*n));
      } else if (absl::IsNotFound(n.status())) {
        nodes.emplace_back(id, std::nullopt);
      } else {
        return Annotate(n.status(), "re-reading node " + id);
      }
    }
    {
      absl::MutexLock lock(&mu_);
      // The agents that saw each entry before the change, then (below) those that see it now.
      for (const auto& [id, e] : entries) data_->AgentsAbove(id, &affected);
      affected.insert(node_ids.begin(), node_ids.end());
      for (auto& [id, e] : entries) {
        if (e) {
          data_->PutEntry(std::move(*e));
        } else {
          data_->RemoveEntry(id);
        }
      }
      for (auto& [id, n] : nodes) {
        if (n) {
          data_->PutNode(std::move(*n));
        } else {
          data_->nodes.erase(id);
        }
      }
      data_->version += events.size();
      for (const auto& [id, e] : entries) data_->AgentsAbove(id, &affected);
    }
    applied += events.size();
    last_event_id_ = events.back().id;
    if (static_cast<int32_t>(events.size()) < kBatch) break;
  }
  if (applied == 0) return absl::OkStatus();
  ChangeListener listener;
  uint64_t version;
  {
    absl::ReaderMutexLock lock(&mu_);
    listener = listener_;
    version = data_->version;
  }
  if (listener) listener(version, change);
  return absl::OkStatus();
}

uint64_t EntryIndex::Version() const {
  absl::ReaderMutexLock lock(&mu_);
  return data_->version;
}

namespace {

// Both sorted: is every element of `sub` in `super`?
bool SortedSubset(const std::vector<datastore::Selector>& sub,
                  const std::vector<datastore::Selector>& super) {
  return std::includes(super.begin(), super.end(), sub.begin(), sub.end());
}

}  // namespace

std::vector<datastore::RegistrationEntry> EntryIndex::AuthorizedEntries(
    const common::SpiffeId& agent_id) const {
  const absl::Time now = clock_.Now();
  const std::string agent = agent_id.String();
  const std::string server = agent_id.trust_domain().IdString() + "/spire/server";
  std::vector<datastore::RegistrationEntry> out;
  std::unordered_set<const datastore::RegistrationEntry*> seen_entries;
  std::unordered_set<std::string> expanded_parents;
  std::deque<std::string> parents;  // SPIFFE IDs whose children are authorised

  absl::ReaderMutexLock lock(&mu_);
  auto take = [&](const datastore::RegistrationEntry* entry) {
    if (!seen_entries.insert(entry).second) return;
    const auto& e = *entry;
    // An expired entry is withdrawn, and with it whatever it parented.
    if (e.expires_at <= now) return;
    out.push_back(e);
    if (expanded_parents.insert(e.spiffe_id).second) parents.push_back(e.spiffe_id);
  };

  expanded_parents.insert(agent);
  parents.push_back(agent);
  // Node aliases: entries parented by the server whose selectors the node carries.
  if (auto node = data_->nodes.find(agent); node != data_->nodes.end()) {
    if (auto aliases = data_->by_parent.find(server); aliases != data_->by_parent.end()) {
      for (const auto* alias : aliases->second) {
        if (SortedSubset(alias->selectors, node->second.selectors)) take(alias);
      }
    }
  }
  while (!parents.empty()) {
    std::string parent = std::move(parents.front());
    parents.pop_front();
    auto children = data_->by_parent.find(parent);
    if (children == data_->by_parent.end()) continue;
    for (const auto* child : children->second) take(child);
  }
  return out;
}

std::optional<datastore::RegistrationEntry> EntryIndex::AuthorizedEntry(
    const common::SpiffeId& agent_id, const std::string& entry_id) const {
  const absl::Time now = clock_.Now();
  const std::string agent = agent_id.String();
  const std::string server = agent_id.trust_domain().IdString() + "/spire/server";
  absl::ReaderMutexLock lock(&mu_);
  auto found = data_->entries.find(entry_id);
  if (found == data_->entries.end()) return std::nullopt;
  const datastore::AttestedNode* node = nullptr;
  if (auto n = data_->nodes.find(agent); n != data_->nodes.end()) node = &n->second;
  // Depth-first up the parent chain; each entry is looked at once, so a cycle ends the walk.
  std::unordered_set<const datastore::RegistrationEntry*> seen;
  std::vector<const datastore::RegistrationEntry*> stack{&found->second};
  seen.insert(&found->second);
  while (!stack.empty()) {
    const datastore::RegistrationEntry& e = *stack.back();
    stack.pop_back();
    // An expired entry is withdrawn, and with it whatever it parented.
    if (e.expires_at <= now) continue;
    if (e.parent_id == agent) return found->second;
    if (e.parent_id == server && node != nullptr && SortedSubset(e.selectors, node->selectors)) {
      return found->second;
    }
    auto above = data_->by_spiffe_id.find(e.parent_id);
    if (above == data_->by_spiffe_id.end()) continue;
    for (const auto* parent : above->second) {
      if (seen.insert(parent).second) stack.push_back(parent);
    }
  }
  return std::nullopt;
}

std::optional<datastore::AttestedNode> EntryIndex::Node(const std::string& agent_spiffe_id) const {
  absl::ReaderMutexLock lock(&mu_);
  auto it = data_->nodes.find(agent_spiffe_id);
  if (it == data_->nodes.end()) return std::nullopt;
  return it->second;
}

std::optional<datastore::RegistrationEntry> EntryIndex::Entry(const std::string& entry_id) const {
  absl::ReaderMutexLock lock(&mu_);
  auto it = data_->entries.find(entry_id);
  if (it == data_->entries.end()) return std::nullopt;
  return it->second;
}

std::vector<datastore::RegistrationEntry> EntryIndex::EntriesBySpiffeId(
    const std::string& spiffe_id) const {
  const absl::Time now = clock_.Now();
  std::vector<datastore::RegistrationEntry> out;
  absl::ReaderMutexLock lock(&mu_);
  auto it = data_->by_spiffe_id.find(spiffe_id);
  if (it == data_->by_spiffe_id.end()) return out;
  for (const auto* e : it->second) {
    if (e->expires_at > now) out.push_back(*e);
  }
  return out;
}

size_t EntryIndex::EntryCount() const {
  absl::ReaderMutexLock lock(&mu_);
  return data_->entries.size();
}

size_t EntryIndex::NodeCount() const {
  absl::ReaderMutexLock lock(&mu_);
  return data_->nodes.size();
}

void EntryIndex::SetChangeListener(ChangeListener listener) {
  absl::MutexLock lock(&mu_);
  listener_ = std::move(listener);
}

}  // namespace trellis::server
