// Pointer swap of the published snapshot and the listener plumbing.
#include "agent/svid_cache.h"

#include <vector>

namespace trellis::agent {

using workload_api::IdentitySnapshot;

SvidCache::SvidCache() : snapshot_(std::make_shared<const IdentitySnapshot>()) {}

std::shared_ptr<const IdentitySnapshot> SvidCache::Snapshot() const {
  absl::MutexLock lock(&mu_);
  return snapshot_;
}

uint64_t SvidCache::NextVersion() const {
  absl::MutexLock lock(&mu_);
  return snapshot_->version + 1;
}

void SvidCache::Publish(IdentitySnapshot next) {
  absl::MutexLock order(&publish_mu_);
  next.version = NextVersion();
  auto snap = std::make_shared<const IdentitySnapshot>(std::move(next));
  std::vector<std::shared_ptr<Listener>> listeners;
  {
    absl::MutexLock lock(&mu_);
    snapshot_ = snap;
    for (const auto& [id, l] : listeners_) listeners.push_back(l);
  }
  for (const auto& l : listeners) (*l)(snap);
}

void SvidCache::Publish(std::shared_ptr<const IdentitySnapshot> next) {
  absl::MutexLock order(&publish_mu_);
  std::vector<std::shared_ptr<Listener>> listeners;
  {
    absl::MutexLock lock(&mu_);
    snapshot_ = next;
    for (const auto& [id, l] : listeners_) listeners.push_back(l);
  }
  for (const auto& l : listeners) (*l)(next);
}

uint64_t SvidCache::Subscribe(Listener listener) {
  absl::MutexLock lock(&mu_);
  uint64_t id = next_listener_id_++;
  listeners_[id] = std::make_shared<Listener>(std::move(listener));
  return id;
}

void SvidCache::Unsubscribe(uint64_t id) {
  absl::MutexLock lock(&mu_);
  listeners_.erase(id);
}

size_t SvidCache::ListenerCount() const {
  absl::MutexLock lock(&mu_);
  return listeners_.size();
}

}  // namespace trellis::agent
