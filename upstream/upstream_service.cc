// Upstream service: minting downstream CAs, accepting published JWT keys, bundle streams.
#include "upstream/upstream_service.h"

#include <grpcpp/grpcpp.h>

#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "common/status.h"
#include "server/api_convert.h"
#include "common/log.h"
#include "transport/grpc_status.h"
#include "transport/spiffe_tls.h"

namespace trellis::upstream {

namespace v1 = server::v1;
using common::LogInfo;
using common::LogWarn;
using common::RpcLogScope;

namespace {

// Names the call on every line logged while serving it; Authorize adds the caller.
RpcLogScope Rpc(std::string_view method) {
  return RpcLogScope(common::GrpcMethodName(v1::Upstream::service_full_name(), method));
}

}  // namespace

UpstreamService::UpstreamService(Options options, server::CaManager* ca)
    : options_(std::move(options)),
      ca_(ca),
      watches_({[this](const std::string& caller) -> absl::StatusOr<std::optional<int64_t>> {
                  // The entry may have been deleted or lost downstream = true since the stream
                  // opened.
                  absl::StatusOr<common::SpiffeId> id = common::SpiffeId::Parse(caller);
                  if (!id.ok()) return id.status();
                  if (!options_.is_downstream(*id)) {
                    return absl::PermissionDeniedError(
                        "caller " + caller +
                        " is no longer registered as a downstream server");
                  }
                  // The published bundle carries the stored one's sequence; the stored bundle
                  // (with taint marks) is copied only when a stream has something to send.
                  std::shared_ptr<const common::Bundle> bundle = ca_->Bundle();
                  if (!bundle) return std::nullopt;  // not loaded yet: nothing to send
                  return static_cast<int64_t>(bundle->sequence());
                },
                [this](const std::string&, const int64_t&) {
                  absl::StatusOr<datastore::Bundle> bundle = ca_->StoredBundle();
                  return bundle.ok() ? server::BundleToProto(*bundle) : v1::Bundle();
                },
                grpc::Status(grpc::StatusCode::UNAVAILABLE, "server shutting down")}),
      federated_watches_(
          {[this](const std::string& caller) -> absl::StatusOr<std::optional<uint64_t>> {
             absl::StatusOr<common::SpiffeId> id = common::SpiffeId::Parse(caller);
             if (!id.ok()) return id.status();
             if (!options_.is_downstream(*id)) {
               return absl::PermissionDeniedError(
                   "caller " + caller + " is no longer registered as a downstream server");
             }
             return options_.federated_generation ? options_.federated_generation() : 0;
           },
           [this](const std::string&, const uint64_t&) {
             v1::FederatedBundles out;
             if (options_.federated_bundles) {
               for (const auto& b : options_.federated_bundles()) *out.add_bundles() = *b;
             }
             return out;
           },
           grpc::Status(grpc::StatusCode::UNAVAILABLE, "server shutting down")}) {}

UpstreamService::~UpstreamService() { Shutdown(); }

absl::StatusOr<common::SpiffeId> UpstreamService::Authorize(
    const grpc::ServerContextBase& ctx) const {
  TRELLIS_ASSIGN_OR_RETURN(common::SpiffeId caller, options_.authenticate(ctx));
  common::SetRpcLogCaller({{"caller_id", caller.String()}});
  if (!options_.is_downstream(caller)) {
    return absl::PermissionDeniedError(
        "caller " + caller.String() +
        " is not a downstream server: no registration entry with this SPIFFE ID has "
        "downstream = true");
  }
  return caller;
}

grpc::Status UpstreamService::MintX509CA(grpc::ServerContext* ctx,
                                         const v1::MintX509CARequest* req,
                                         v1::MintX509CAResponse* resp) {
  RpcLogScope rpc = Rpc("MintX509CA");
  absl::StatusOr<common::SpiffeId> caller = Authorize(*ctx);
  if (!caller.ok()) return transport::ToGrpcStatus(caller.status());
  if (req->preferred_ttl() < 0) {
    return transport::ToGrpcStatus(
        absl::InvalidArgumentError("preferred_ttl must not be negative"));
  }
  auto minted = ca_->MintDownstreamCa(req->csr(), absl::Seconds(req->preferred_ttl()), *caller);
  if (!minted.ok()) {
    LogWarn("Refused to mint a downstream CA",
            {{"caller", caller->String()}, {"error", std::string(minted.status().message())}});
    return transport::ToGrpcStatus(minted.status());
  }
  for (const auto& c : minted->ca_chain) resp->add_ca_chain(c.der());
  for (const auto& r : minted->roots) resp->add_x509_authorities(r.der());
  LogInfo("Minted a downstream CA",
          {{"caller", caller->String()},
           {"not_after", absl::FormatTime(absl::RFC3339_sec, minted->ca_chain.front().not_after(),
                                          absl::UTCTimeZone())}});
  return grpc::Status::OK;
}

grpc::Status UpstreamService::PublishJWTAuthority(grpc::ServerContext* ctx,
                                                  const v1::PublishJWTAuthorityRequest* req,
                                                  v1::PublishJWTAuthorityResponse* resp) {
  RpcLogScope rpc = Rpc("PublishJWTAuthority");
  absl::StatusOr<common::SpiffeId> caller = Authorize(*ctx);
  if (!caller.ok()) return transport::ToGrpcStatus(caller.status());
  if (!req->has_authority()) {
    return transport::ToGrpcStatus(absl::InvalidArgumentError("missing authority"));
  }
  const v1::JWTAuthority& a = req->authority();
  if (a.expires_at() <= 0) {
    return transport::ToGrpcStatus(
        absl::InvalidArgumentError("JWT authority " + a.key_id() + " has no expiry"));
  }
  datastore::JwtAuthority authority{a.key_id(), a.public_key(),
                                    absl::FromUnixSeconds(a.expires_at()), false};
  auto stored = ca_->AcceptPublishedJwtAuthority(authority);
  if (!stored.ok()) return transport::ToGrpcStatus(stored.status());
  *resp->mutable_bundle() = server::BundleToProto(*stored);
  LogInfo("Accepted a JWT key from a downstream server",
          {{"caller", caller->String()}, {"kid", a.key_id()}});
  return grpc::Status::OK;
}

grpc::ServerWriteReactor<v1::Bundle>* UpstreamService::WatchBundle(
    grpc::CallbackServerContext* ctx, const v1::WatchBundleRequest*) {
  RpcLogScope rpc = Rpc("WatchBundle");
  absl::StatusOr<common::SpiffeId> caller = Authorize(*ctx);
  if (!caller.ok()) return watches_.Refuse(transport::ToGrpcStatus(caller.status()));
  return watches_.Open(caller->String());
}

grpc::ServerWriteReactor<v1::FederatedBundles>* UpstreamService::WatchFederatedBundles(
    grpc::CallbackServerContext* ctx, const v1::WatchBundleRequest*) {
  RpcLogScope rpc = Rpc("WatchFederatedBundles");
  absl::StatusOr<common::SpiffeId> caller = Authorize(*ctx);
  if (!caller.ok()) return federated_watches_.Refuse(transport::ToGrpcStatus(caller.status()));
  return federated_watches_.Open(caller->String());
}

void UpstreamService::NotifyBundleChanged() {
  watches_.NotifyAll();
  federated_watches_.NotifyAll();
}

void UpstreamService::NotifyEntriesChanged() {
  watches_.NotifyAll();
  federated_watches_.NotifyAll();
}

void UpstreamService::Shutdown() {
  watches_.Shutdown();
  federated_watches_.Shutdown();
}

}  // namespace trellis::upstream
