// JWT-SVIDs the agent fetched for workloads, by entry and audience: reused until half their
// lifetime, served while still valid when the server is away, and dropped when their entry
// changes or their signing key is tainted.
#pragma once

#include <map>
#include <set>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "agent/server_connection.h"
#include "common/clock.h"
#include "workload_api/identity_snapshot.h"

namespace trellis::agent {

class JwtSvidCache {
 public:
  JwtSvidCache(ServerConnection* conn, const common::Clock& clock) : conn_(conn), clock_(clock) {}

  // A cached token or a new one from the server. Transient server errors are UNAVAILABLE.
  absl::StatusOr<std::string> Fetch(const workload_api::CachedEntry& entry,
                                    const std::vector<std::string>& audience);
  // Drops tokens signed by any of `kids`.
  void DropSignedBy(const std::set<std::string>& kids);
  // Drops tokens of the given entries.
  void DropEntries(const std::vector<std::string>& entry_ids);
  // Tokens held right now (metrics).
  size_t Size() const;

 private:
  struct Item {
    std::string token;
    std::string kid;  // signing key, so a taint of that key drops the token
    absl::Time renew_at;
    absl::Time expires_at;
  };

  ServerConnection* const conn_;
  const common::Clock& clock_;
  mutable absl::Mutex mu_;
  // "<entry id>\n<sorted audience joined by \n>" -> token.
  std::map<std::string, Item> items_ ABSL_GUARDED_BY(mu_);
};

}  // namespace trellis::agent
