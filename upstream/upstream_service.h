// The Upstream gRPC service: what a server offers the downstream servers of the tier below.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "common/spiffe_id.h"
#include "server/ca_manager.h"
#include "server/push_streams.h"
#include "trellis/server/v1/upstream.grpc.pb.h"

namespace trellis::upstream {

// Every method first authenticates the caller's X509-SVID and requires a registration entry
// with the caller's SPIFFE ID and downstream = true (PERMISSION_DENIED otherwise), checked at
// each call so deleting the entry cuts the downstream off.
// WatchBundle runs on gRPC's callback API, so an open stream holds no thread.
class UpstreamService final
    : public server::v1::Upstream::WithCallbackMethod_WatchBundle<
          server::v1::Upstream::WithCallbackMethod_WatchFederatedBundles<
              server::v1::Upstream::Service>> {
 public:
  struct Options {
    // The caller's verified SPIFFE ID (UNAUTHENTICATED when its chain does not verify).
    std::function<absl::StatusOr<common::SpiffeId>(const grpc::ServerContextBase&)>
        authenticate;
    // Whether a registration entry with this SPIFFE ID has downstream = true.
    std::function<bool(const common::SpiffeId&)> is_downstream;
    // The federated bundles to hand down, and a number that moves whenever they change;
    // without them WatchFederatedBundles sends an empty set.
    std::function<uint64_t()> federated_generation;
    std::function<std::vector<std::shared_ptr<const server::v1::Bundle>>()> federated_bundles;
  };
  UpstreamService(Options options, server::CaManager* ca);
  ~UpstreamService() override;

  grpc::Status MintX509CA(grpc::ServerContext* ctx, const server::v1::MintX509CARequest* req,
                          server::v1::MintX509CAResponse* resp) override;
  grpc::Status PublishJWTAuthority(grpc::ServerContext* ctx,
                                   const server::v1::PublishJWTAuthorityRequest* req,
                                   server::v1::PublishJWTAuthorityResponse* resp) override;
  grpc::ServerWriteReactor<server::v1::Bundle>* WatchBundle(
      grpc::CallbackServerContext* ctx, const server::v1::WatchBundleRequest* req) override;

  grpc::ServerWriteReactor<server::v1::FederatedBundles>* WatchFederatedBundles(
      grpc::CallbackServerContext* ctx, const server::v1::WatchBundleRequest* req) override;

  // Called after every change to the bundle or a federated bundle: open streams send what
  // moved at once.
  void NotifyBundleChanged();
  // Called after registration entries changed: each stream re-checks that its caller is
  // still registered as a downstream server, and ends if not.
  void NotifyEntriesChanged();
  // Ends every WatchBundle stream (before the gRPC server shuts down).
  void Shutdown();
  int64_t OpenWatches() const { return watches_.OpenCount(); }

 private:
  absl::StatusOr<common::SpiffeId> Authorize(const grpc::ServerContextBase& ctx) const;

  Options options_;
  server::CaManager* ca_;
  // Open WatchBundle streams by caller SPIFFE ID; the state is the bundle's sequence number.
  // Last member: its notifier reads the members above, so it stops first.
  server::PushStreams<server::v1::Bundle, int64_t> watches_;
  // Open WatchFederatedBundles streams; the state is the federated generation.
  server::PushStreams<server::v1::FederatedBundles, uint64_t> federated_watches_;
};

}  // namespace trellis::upstream
