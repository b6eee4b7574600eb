// Copy-on-write edits of the agent's snapshot and the pointer comparison that decides
// whether there is anything to publish.
#include "agent/identity_state.h"

#include "common/x509.h"

namespace trellis::agent {

using workload_api::CachedEntry;
using workload_api::CachedSvid;
using workload_api::IdentitySnapshot;
using workload_api::RenderedBundle;

IdentityState::IdentityState() : current_(std::make_shared<const IdentitySnapshot>()) {}

template <typename Edit>
void IdentityState::EditLocked(Edit edit) {
  auto next = std::make_shared<IdentitySnapshot>(*current_);
  edit(*next);
  // The copy was sized to the old tables; inserts grow them by half or double. A snapshot
  // outlives its edit unchanged, so it keeps only the slots it uses.
  next->entries.ShrinkToFit();
  next->svids.ShrinkToFit();
  next->version = current_->version + 1;
  current_ = std::move(next);
}

std::shared_ptr<const IdentitySnapshot> IdentityState::Current() const {
  absl::MutexLock lock(&mu_);
  return current_;
}

std::shared_ptr<const common::Bundle> IdentityState::Bundle() const {
  absl::MutexLock lock(&mu_);
  return current_->bundle ? current_->bundle->shared_bundle() : nullptr;
}

void IdentityState::SetBundle(std::shared_ptr<const common::Bundle> bundle) {
  auto rendered = RenderedBundle::Of(std::move(bundle));
  absl::MutexLock lock(&mu_);
  EditLocked([&](IdentitySnapshot& s) { s.bundle = std::move(rendered); });
}

std::vector<std::string> IdentityState::ApplySync(SyncUpdate update) {
  // Encoded outside the lock: readers of the current snapshot never wait for DER.
  std::shared_ptr<const RenderedBundle> bundle;
  if (update.bundle) bundle = RenderedBundle::Of(std::move(update.bundle));
  std::vector<std::pair<std::string, std::shared_ptr<const RenderedBundle>>> federated;
  for (auto& [td, b] : update.federated) federated.emplace_back(td, RenderedBundle::Of(b));
  std::vector<std::string> dropped;
  absl::MutexLock lock(&mu_);
  if (update.bundle_sent) tainted_key_ids_ = std::move(update.tainted_key_ids);
  bool unchanged = current_->ready && !bundle && federated.empty() &&
                   update.removed_ids.empty() && update.changed.empty() &&
                   update.removed_federated.empty();
  if (unchanged) return dropped;
  EditLocked([&](IdentitySnapshot& s) {
    for (const std::string& id : update.removed_ids) {
      s.entries.erase(id);
      s.svids.erase(id);
      dropped.push_back(id);
    }
    for (std::shared_ptr<const CachedEntry>& entry : update.changed) {
      auto it = s.entries.find(entry->id());
      if (it != s.entries.end() && (*it)->revision() != entry->revision()) {
        dropped.emplace_back(entry->id());
      }
      s.entries.Put(std::move(entry));
    }
    if (bundle) s.bundle = std::move(bundle);
    for (auto& [td, b] : federated) s.federated[td] = std::move(b);
    for (const std::string& td : update.removed_federated) s.federated.erase(td);
    s.ready = true;
  });
  return dropped;
}

std::vector<std::string> IdentityState::AddSvids(
    std::vector<std::shared_ptr<const CachedSvid>> svids) {
  std::vector<std::string> kept;
  absl::MutexLock lock(&mu_);
  for (const auto& svid : svids) {
    if (current_->entries.count(svid->entry_id())) kept.emplace_back(svid->entry_id());
  }
  if (kept.empty()) return kept;
  EditLocked([&](IdentitySnapshot& s) {
    for (auto& svid : svids) {
      if (s.entries.count(svid->entry_id())) s.svids.Put(std::move(svid));
    }
  });
  return kept;
}

bool IdentityState::PruneExpired(absl::Time now) {
  absl::MutexLock lock(&mu_);
  bool any = false;
  for (const auto& svid : current_->svids) {
    if (now >= svid->not_after) {
      any = true;
      break;
    }
  }
  if (!any) return false;
  EditLocked([&](IdentitySnapshot& s) {
    s.svids.Filter([&](const CachedSvid& svid) { return now < svid.not_after; });
  });
  return true;
}

bool IdentityState::IssuedByTainted(std::string_view chain_der) const {
  absl::MutexLock lock(&mu_);
  if (tainted_key_ids_.empty()) return false;
  auto chain = common::Certificate::ChainFromDer(chain_der);
  if (!chain.ok()) return false;
  // Any certificate of the chain signed by (or being) a tainted authority taints the SVID.
  for (const common::Certificate& cert : *chain) {
    if (tainted_key_ids_.count(cert.AuthorityKeyId()) ||
        tainted_key_ids_.count(cert.SubjectKeyId())) {
      return true;
    }
  }
  return false;
}

bool IdentityState::PublishTo(SvidCache* cache) const {
  std::shared_ptr<const IdentitySnapshot> current = Current();
  if (current == cache->Snapshot()) return false;
  cache->Publish(std::move(current));
  return true;
}

}  // namespace trellis::agent
