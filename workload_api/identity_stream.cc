// The registry of open streams that shutdown walks.
#include "workload_api/identity_stream.h"

namespace trellis::workload_api {

void StreamRegistry::Add(const void* key, std::function<void()> closer) {
  absl::MutexLock lock(&mu_);
  open_[key] = std::move(closer);
}

void StreamRegistry::Remove(const void* key) {
  absl::MutexLock lock(&mu_);
  open_.erase(key);
}

void StreamRegistry::CloseAll() {
  std::vector<std::function<void()>> closers;
  {
    absl::MutexLock lock(&mu_);
    for (auto& [key, fn] : open_) closers.push_back(fn);
  }
  for (auto& fn : closers) fn();
}

}  // namespace trellis::workload_api
