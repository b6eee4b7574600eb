// The Upstream gRPC service: what a server offers the downstream servers of the tier below.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "common/spiffe_id.h"
#include "server/ca_manager.h"
#include "trellis/server/v1/upstream.grpc.pb.h"

namespace trellis::upstream {

// Every method first authenticates the caller's X509-SVID and requires a registration entry
// with the caller's SPIFFE ID and downstream = true (PERMISSION_DENIED otherwise), checked at
// each call so deleting the entry cuts the downstream off.
class UpstreamService final : public server::v1::Upstream::Service {
 public:
  struct Options {
    // The caller's verified SPIFFE ID (UNAUTHENTICATED when its chain does not verify).
    std::function<absl::StatusOr<common::SpiffeId>(const grpc::ServerContext&)> authenticate;
    // Whether a registration entry with this SPIFFE ID has downstream = true.
    std::function<bool(const common::SpiffeId&)> is_downstream;
  };
  UpstreamService(Options options, server::CaManager* ca);
  ~UpstreamService() override;

  grpc::Status MintX509CA(grpc::ServerContext* ctx, const server::v1::MintX509CARequest* req,
                          server::v1::MintX509CAResponse* resp) override;
  grpc::Status PublishJWTAuthority(grpc::ServerContext* ctx,
                                   const server::v1::PublishJWTAuthorityRequest* req,
                                   server::v1::PublishJWTAuthorityResponse* resp) override;
  grpc::Status WatchBundle(grpc::ServerContext* ctx, const server::v1::WatchBundleRequest* req,
                           grpc::ServerWriter<server::v1::Bundle>* writer) override;

  // Called after every bundle change: open WatchBundle streams send it at once.
  void NotifyBundleChanged();
  // Ends every WatchBundle stream (before the gRPC server shuts down).
  void Shutdown();
  int64_t OpenWatches() const { return open_watches_.load(); }

 private:
  absl::StatusOr<common::SpiffeId> Authorize(const grpc::ServerContext& ctx) const;

  Options options_;
  server::CaManager* ca_;
  // WatchBundle streams wait on mu_ for generation_ or shutdown_ to change.
  absl::Mutex mu_;
  uint64_t generation_ ABSL_GUARDED_BY(mu_) = 0;
  bool shutdown_ ABSL_GUARDED_BY(mu_) = false;
  std::atomic<int64_t> open_watches_{0};
};

}  // namespace trellis::upstream
