// The SpiffeWorkloadAPI RPC handlers: the three streams, JWT-SVID fetch (minted through the
// agent) and JWT-SVID validation against the snapshot's bundles.
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

class WorkloadApiService final : public SpiffeWorkloadAPI::CallbackService {
 public:
  // Everything passed in outlives the service.
  WorkloadApiService(StreamDeps deps, PeerListener* peers, JwtMinter minter,
                     const common::Clock& clock);

  grpc::ServerWriteReactor<X509SVIDResponse>* FetchX509SVID(grpc::CallbackServerContext* ctx,
                                                            const X509SVIDRequest*) override;
  grpc::ServerWriteReactor<X509BundlesResponse>* FetchX509Bundles(
      grpc::CallbackServerContext* ctx, const X509BundlesRequest*) override;
  grpc::ServerWriteReactor<JWTBundlesResponse>* FetchJWTBundles(
      grpc::CallbackServerContext* ctx, const JWTBundlesRequest*) override;
  grpc::ServerUnaryReactor* FetchJWTSVID(grpc::CallbackServerContext* ctx,
                                         const JWTSVIDRequest* req,
                                         JWTSVIDResponse* resp) override;
  grpc::ServerUnaryReactor* ValidateJWTSVID(grpc::CallbackServerContext* ctx,
                                            const ValidateJWTSVIDRequest* req,
                                            ValidateJWTSVIDResponse* resp) override;

 private:
  // The caller's record, or INVALID_ARGUMENT without the security header, or UNAVAILABLE
  // for a connection the listener does not know.
  absl::StatusOr<PeerRecord> Caller(const grpc::CallbackServerContext* ctx);
  absl::Status FetchJwt(const PeerRecord& record, const JWTSVIDRequest& req,
                        JWTSVIDResponse* resp);
  absl::Status Validate(const ValidateJWTSVIDRequest& req, ValidateJWTSVIDResponse* resp);

  const StreamDeps deps_;
  PeerListener* const peers_;
  const JwtMinter minter_;
  const common::Clock& clock_;
};

}  // namespace trellis::workload_api
