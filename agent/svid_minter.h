// Workload X509-SVIDs: which entries need one (none yet, due for renewal, entry changed, or
// chained to a tainted authority), minted in batches with one fresh key each.
#pragma once

#include <map>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "agent/identity_state.h"
#include "agent/server_connection.h"
#include "common/clock.h"

namespace trellis::agent {

class SvidMinter {
 public:
  SvidMinter(ServerConnection* conn, const common::Clock& clock) : conn_(conn), clock_(clock) {}

  // Mints every due SVID into `state`; the first failed call ends it with its status.
  absl::Status MintDue(IdentityState& state);
  // Forgets renewal times of removed entries.
  void Forget(const std::vector<std::string>& entry_ids);
  // The time until the earliest renewal, at least `floor`, at most `cap`.
  absl::Duration UntilNextRenewal(absl::Duration floor, absl::Duration cap) const;

 private:
  ServerConnection* const conn_;
  const common::Clock& clock_;
  mutable absl::Mutex mu_;
  std::map<std::string, absl::Time> renew_at_ ABSL_GUARDED_BY(mu_);  // by entry id
};

}  // namespace trellis::agent
