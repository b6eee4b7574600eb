// The agent's health report from the sync loop's timestamps and the published snapshot.
#include "runtime/agent_health.h"

#include <algorithm>
#include <string>

#include "absl/strings/str_cat.h"

namespace trellis::runtime {
namespace {

std::string Ago(absl::Duration d) {
  if (d < absl::Seconds(1)) return "0s ago";  // FormatDuration writes zero as "0"
  return absl::StrCat(absl::FormatDuration(absl::Trunc(d, absl::Seconds(1))), " ago");
}

}  // namespace

absl::Duration StaleSyncAfter(absl::Duration sync_interval) {
  return std::max(6 * sync_interval, absl::Seconds(30));
}

common::HealthReport AgentHealthReport(const AgentHealthInputs& in) {
  common::HealthReport r;
  // Liveness: the loop keeps attempting. Before it starts (attestation still retrying) there
  // is nothing to judge.
  if (in.sync_started == absl::InfinitePast()) {
    r.subsystems["sync_loop"] = {true, "not started"};
  } else {
    const absl::Time last = std::max(in.sync_started, in.last_attempt);
    const bool turning = in.now - last < kSyncLoopStalledAfter;
    r.subsystems["sync_loop"] = {turning,
                                 turning ? "ok" : "no sync attempted since " + Ago(in.now - last)};
  }

  const absl::Duration stale = StaleSyncAfter(in.sync_interval);
  if (in.last_success == absl::InfinitePast()) {
    r.subsystems["server_sync"] = {false, "not synced with a server yet"};
  } else if (in.now - in.last_success >= stale) {
    r.subsystems["server_sync"] = {
        false, absl::StrCat("last successful sync ", Ago(in.now - in.last_success),
                            " (not ready after ", absl::FormatDuration(stale), ")")};
  } else {
    r.subsystems["server_sync"] = {true, "last sync " + Ago(in.now - in.last_success)};
  }

  r.subsystems["agent_svid"] = {in.agent_svid_valid,
                                in.agent_svid_valid ? "ok" : "agent SVID missing or expired"};

  const workload_api::IdentitySnapshot* snap = in.snapshot;
  const bool serving = snap != nullptr && snap->ready;
  r.subsystems["workload_api"] = {serving, serving ? "ok" : "no identities published yet"};
  size_t expired = 0, total = 0;
  if (snap != nullptr) {
    for (const auto& svid : snap->svids) {
      ++total;
      if (absl::Time(svid->not_after) <= in.now) ++expired;
    }
  }
  r.subsystems["workload_svids"] = {
      expired == 0, expired == 0 ? absl::StrCat(total, " valid")
                                 : absl::StrCat(expired, " of ", total, " SVIDs expired")};

  // Only a stuck loop calls for a restart; a server outage or expiry does not.
  r.live_excludes = {"server_sync", "agent_svid", "workload_api", "workload_svids"};
  return r;
}

}  // namespace trellis::runtime
