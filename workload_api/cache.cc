// Snapshot queries (entry matching, bundle selection) and the listener plumbing.
#include "workload_api/cache.h"

#include <algorithm>
#include <set>

#include "attestors/workload/workload_attestor.h"

namespace trellis::workload_api {

std::vector<const CachedEntry*> CacheSnapshot::EntriesFor(
    const std::vector<std::string>& selectors) const {
  std::vector<const CachedEntry*> out;
  // Sorted once here rather than once per entry: this runs for every stream's first message
  // over every cached entry. Same rule as attestors::SelectorsSubset.
  std::vector<std::string> have(selectors);
  std::sort(have.begin(), have.end());
  for (const auto& [id, entry] : entries) {
    // An entry without selectors identifies nobody.
    if (!entry || entry->selectors.empty()) continue;
    bool all = std::all_of(
        entry->selectors.begin(), entry->selectors.end(),
        [&](const std::string& s) { return std::binary_search(have.begin(), have.end(), s); });
    if (all) out.push_back(entry.get());
  }
  std::sort(out.begin(), out.end(), [](const CachedEntry* a, const CachedEntry* b) {
    if (a->created_at != b->created_at) return a->created_at < b->created_at;
    return a->id < b->id;
  });
  return out;
}

std::vector<Identity> CacheSnapshot::IdentitiesFor(
    const std::vector<std::string>& selectors) const {
  std::vector<Identity> out;
  for (const CachedEntry* entry : EntriesFor(selectors)) {
    auto it = svids.find(entry->id);
    if (it != svids.end() && it->second) out.push_back(Identity{entry, it->second.get()});
  }
  return out;
}

std::shared_ptr<const common::Bundle> CacheSnapshot::BundleOf(const common::TrustDomain& td) const {
  if (bundle && bundle->trust_domain() == td) return bundle;
  auto it = federated.find(td.name());
  return it == federated.end() ? nullptr : it->second;
}

std::map<std::string, std::shared_ptr<const common::Bundle>> CacheSnapshot::BundlesFor(
    const std::vector<Identity>& ids, bool include_own) const {
  std::map<std::string, std::shared_ptr<const common::Bundle>> out;
  if (include_own && bundle) out[bundle->trust_domain().IdString()] = bundle;
  for (const Identity& id : ids) {
    for (const std::string& td : id.entry->federates_with) {
      auto it = federated.find(td);
      if (it != federated.end()) out[it->second->trust_domain().IdString()] = it->second;
    }
  }
  return out;
}

Cache::Cache() : snapshot_(std::make_shared<CacheSnapshot>()) {}

std::shared_ptr<const CacheSnapshot> Cache::Snapshot() const {
  std::lock_guard<std::mutex> lock(mu_);
  return snapshot_;
}

void Cache::Publish(CacheSnapshot next) {
  std::lock_guard<std::mutex> order(publish_mu_);
  std::vector<std::shared_ptr<Listener>> listeners;
  std::shared_ptr<const CacheSnapshot> snap;
  {
    std::lock_guard<std::mutex> lock(mu_);
    next.version = next_version_++;
    snap = std::make_shared<const CacheSnapshot>(std::move(next));
    snapshot_ = snap;
    for (const auto& [id, l] : listeners_) listeners.push_back(l);
  }
  for (const auto& l : listeners) (*l)(snap);
}

uint64_t Cache::AddListener(Listener listener) {
  std::lock_guard<std::mutex> lock(mu_);
  uint64_t id = next_listener_id_++;
  listeners_[id] = std::make_shared<Listener>(std::move(listener));
  return id;
}

void Cache::RemoveListener(uint64_t id) {
  std::lock_guard<std::mutex> lock(mu_);
  listeners_.erase(id);
}

size_t Cache::ListenerCount() const {
  std::lock_guard<std::mutex> lock(mu_);
  return listeners_.size();
}

}  // namespace trellis::workload_api
