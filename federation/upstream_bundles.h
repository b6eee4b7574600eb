// A nested server's copy of the federated bundles of the tier above: each set the upstream
// sends is written to this server's datastore, so its agents deliver them like the bundles
// of relationships of its own.
#pragma once

#include <functional>
#include <set>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "common/spiffe_id.h"
#include "datastore/datastore.h"

namespace trellis::federation {

class UpstreamBundles {
 public:
  UpstreamBundles(common::TrustDomain own, datastore::DataStore* ds,
                  std::function<void()> after_write)
      : own_(std::move(own)), ds_(ds), after_write_(std::move(after_write)) {}

  // Stores each bundle whose authorities differ from the stored one, and deletes the bundles
  // this server received from the upstream before that the upstream no longer holds (unless
  // entries still federate with them: that is logged and the bundle kept). Trust domains
  // with a federation relationship of this server's own are left to that relationship.
  absl::Status Apply(const std::vector<datastore::Bundle>& bundles) ABSL_LOCKS_EXCLUDED(mu_);

 private:
  const common::TrustDomain own_;
  datastore::DataStore* const ds_;
  const std::function<void()> after_write_;
  absl::Mutex mu_;
  // Trust domains whose bundle came from the upstream since this process started.
  std::set<std::string> received_ ABSL_GUARDED_BY(mu_);
};

}  // namespace trellis::federation
