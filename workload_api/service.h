// The SpiffeWorkloadAPI handlers on the completion-queue API: the three streams, JWT-SVID
// fetch (minted through the agent) and JWT-SVID validation against the snapshot's bundles.
#pragma once

#include <functional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "common/clock.h"
#include "workload.grpc.pb.h"
#include "workload_api/identity_stream.h"

namespace trellis::workload_api {

// Mints a JWT-SVID for `entry` and `audience` (the agent caches and calls the server).
using JwtMinter = std::function<absl::StatusOr<std::string>(
    const CachedEntry& entry, const std::vector<std::string>& audience)>;

class WorkloadApiService {
 public:
  // Everything in `deps` outlives the service; `deps.service` is registered with the server.
  WorkloadApiService(CallDeps deps, JwtMinter minter, const common::Clock& clock);

  // Puts one waiting call of every method on the queue; each call, once it comes, puts the
  // next. Called once, after the server has started.
  void AwaitCalls();

  absl::Status FetchJwt(const PeerRecord& record, const JWTSVIDRequest& req,
                        JWTSVIDResponse* resp);
  absl::Status Validate(const ValidateJWTSVIDRequest& req, ValidateJWTSVIDResponse* resp);
  const CallDeps& deps() const { return deps_; }

 private:
  const CallDeps deps_;
  const JwtMinter minter_;
  const common::Clock& clock_;
};

}  // namespace trellis::workload_api
