// The agent's published identities: one immutable snapshot swapped whole on every change,
// and the listeners (Workload API streams) told of each new one.
#pragma once

#include <cstdint>
#include <map>
#include <memory>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "workload_api/identity_source.h"

namespace trellis::agent {

class SvidCache final : public workload_api::IdentitySource {
 public:
  SvidCache();

  std::shared_ptr<const workload_api::IdentitySnapshot> Snapshot() const override;
  uint64_t Subscribe(Listener listener) override;
  void Unsubscribe(uint64_t id) override;

  // Makes `next` current and notifies every listener, in the calling thread, outside the
  // cache's lock. Its version must exceed the current one's.
  void Publish(std::shared_ptr<const workload_api::IdentitySnapshot> next);
  // Stamps `next` with the version after the current one, then publishes it.
  void Publish(workload_api::IdentitySnapshot next);
  size_t ListenerCount() const;

 private:
  uint64_t NextVersion() const;

  mutable absl::Mutex mu_;
  std::shared_ptr<const workload_api::IdentitySnapshot> snapshot_ ABSL_GUARDED_BY(mu_);
  std::map<uint64_t, std::shared_ptr<Listener>> listeners_ ABSL_GUARDED_BY(mu_);
  uint64_t next_listener_id_ ABSL_GUARDED_BY(mu_) = 1;
  // Keeps notifications in publication order.
  absl::Mutex publish_mu_ ABSL_ACQUIRED_BEFORE(mu_);
};

}  // namespace trellis::agent
