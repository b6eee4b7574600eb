// Workload X509-SVIDs: which entries need one (none yet, due for renewal, entry changed, or
// chained to a tainted authority), minted in batches with one fresh key each.
#pragma once

#include <atomic>
#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "agent/identity_state.h"
#include "agent/server_connection.h"
#include "common/clock.h"

namespace trellis::agent {

class SvidMinter {
 public:
  // At most `max_per_round` SVIDs are minted per MintDue: an agent given thousands of new
  // entries at once mints them over several rounds rather than in one burst at the server.
  SvidMinter(ServerConnection* conn, const common::Clock& clock, size_t max_per_round = 1000)
      : conn_(conn), clock_(clock), max_per_round_(max_per_round) {}

  // Mints up to max_per_round due SVIDs into `state`, entries without one first; the first
  // failed call ends it with its status.
  absl::Status MintDue(IdentityState& state);
  // How many were left due by the last MintDue (the agent runs another round soon).
  size_t LeftDue() const { return left_due_; }
  // SVIDs minted since this minter was created (metrics).
  uint64_t MintedTotal() const { return minted_total_.load(std::memory_order_relaxed); }
  // The time until the earliest renewal in `snap`, at least `floor`, at most `cap`.
  absl::Duration UntilNextRenewal(const workload_api::IdentitySnapshot& snap,
                                  absl::Duration floor, absl::Duration cap) const;

 private:
  ServerConnection* const conn_;
  const common::Clock& clock_;
  const size_t max_per_round_;
  std::atomic<size_t> left_due_{0};
  std::atomic<uint64_t> minted_total_{0};
};

}  // namespace trellis::agent
