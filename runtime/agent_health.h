// What the agent's /live and /ready report: the sync loop turning (live), and a recent sync,
// a valid agent SVID and unexpired workload SVIDs (ready).
#pragma once

#include "absl/time/time.h"
#include "common/health.h"
#include "workload_api/identity_snapshot.h"

namespace trellis::runtime {

struct AgentHealthInputs {
  absl::Time now;
  absl::Duration sync_interval;
  // When syncing started; the last sync attempt and the last successful one (InfinitePast:
  // none yet).
  absl::Time sync_started = absl::InfinitePast();
  absl::Time last_attempt = absl::InfinitePast();
  absl::Time last_success = absl::InfinitePast();
  bool agent_svid_valid = false;
  const workload_api::IdentitySnapshot* snapshot = nullptr;
};

// A sync older than this makes the agent not ready: six sync intervals, at least 30 s.
absl::Duration StaleSyncAfter(absl::Duration sync_interval);
// A sync loop that has not attempted a sync for this long is stuck: the agent is not live.
inline constexpr absl::Duration kSyncLoopStalledAfter = absl::Minutes(5);

// Subsystems: "sync_loop" (liveness), "server_sync", "agent_svid", "workload_svids",
// "workload_api" (readiness only).
common::HealthReport AgentHealthReport(const AgentHealthInputs& in);

}  // namespace trellis::runtime
