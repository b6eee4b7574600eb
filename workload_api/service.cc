// RPC handlers: request checks, stream creation, and the two JWT-SVID calls.
#include "workload_api/service.h"

#include <google/protobuf/util/json_util.h>

#include <nlohmann/json.hpp>

#include "absl/strings/str_cat.h"
#include "common/jwt.h"
#include "common/status.h"
#include "transport/grpc_status.h"
#include "transport/spiffe_tls.h"

namespace trellis::workload_api {
namespace {

constexpr char kHeader[] = "workload.spiffe.io";

// INVALID_ARGUMENT unless the call carries exactly one workload.spiffe.io: true.
absl::Status CheckHeader(const grpc::CallbackServerContext* ctx) {
  auto range = ctx->client_metadata().equal_range(kHeader);
  int count = 0;
  bool is_true = false;
  for (auto it = range.first; it != range.second; ++it) {
    ++count;
    is_true = std::string_view(it->second.data(), it->second.size()) == "true";
  }
  if (count != 1 || !is_true) {
    return absl::InvalidArgumentError("security header missing from request");
  }
  return absl::OkStatus();
}

}  // namespace

WorkloadApiService::WorkloadApiService(StreamDeps deps, PeerListener* peers, JwtMinter minter,
                                       const common::Clock& clock)
    : deps_(deps), peers_(peers), minter_(std::move(minter)), clock_(clock) {}

absl::StatusOr<PeerRecord> WorkloadApiService::Caller(const grpc::CallbackServerContext* ctx) {
  TRELLIS_RETURN_IF_ERROR(CheckHeader(ctx));
  return peers_->Lookup(ctx->peer());
}

grpc::ServerWriteReactor<X509SVIDResponse>* WorkloadApiService::FetchX509SVID(
    grpc::CallbackServerContext* ctx, const X509SVIDRequest*) {
  return new IdentityStream<X509SVIDResponse>(deps_, Caller(ctx), &RenderX509Svids, true);
}

grpc::ServerWriteReactor<X509BundlesResponse>* WorkloadApiService::FetchX509Bundles(
    grpc::CallbackServerContext* ctx, const X509BundlesRequest*) {
  return new IdentityStream<X509BundlesResponse>(deps_, Caller(ctx), &RenderX509Bundles, true);
}

grpc::ServerWriteReactor<JWTBundlesResponse>* WorkloadApiService::FetchJWTBundles(
    grpc::CallbackServerContext* ctx, const JWTBundlesRequest*) {
  return new IdentityStream<JWTBundlesResponse>(deps_, Caller(ctx), &RenderJwtBundles, true);
}

grpc::ServerUnaryReactor* WorkloadApiService::FetchJWTSVID(grpc::CallbackServerContext* ctx,
                                                           const JWTSVIDRequest* req,
                                                           JWTSVIDResponse* resp) {
  grpc::ServerUnaryReactor* reactor = ctx->DefaultReactor();
  if (absl::Status h = CheckHeader(ctx); !h.ok()) {
    reactor->Finish(transport::ToGrpcStatus(h));
    return reactor;
  }
  if (req->audience().empty()) {
    reactor->Finish(grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "audience must be specified"));
    return reactor;
  }
  for (const std::string& aud : req->audience()) {
    if (aud.empty()) {
      reactor->Finish(grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "audience is empty"));
      return reactor;
    }
  }
  if (!req->spiffe_id().empty()) {
    if (auto id = common::SpiffeId::Parse(req->spiffe_id()); !id.ok()) {
      reactor->Finish(
          grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                       "invalid requested SPIFFE ID: " + std::string(id.status().message())));
      return reactor;
    }
  }
  auto peer = peers_->Lookup(ctx->peer());
  if (!peer.ok()) {
    reactor->Finish(transport::ToGrpcStatus(peer.status()));
    return reactor;
  }
  deps_.work->Post([this, reactor, req, resp, record = *peer] {
    reactor->Finish(transport::ToGrpcStatus(FetchJwt(record, *req, resp)));
  });
  return reactor;
}

grpc::ServerUnaryReactor* WorkloadApiService::ValidateJWTSVID(grpc::CallbackServerContext* ctx,
                                                              const ValidateJWTSVIDRequest* req,
                                                              ValidateJWTSVIDResponse* resp) {
  grpc::ServerUnaryReactor* reactor = ctx->DefaultReactor();
  if (absl::Status h = CheckHeader(ctx); !h.ok()) {
    reactor->Finish(transport::ToGrpcStatus(h));
    return reactor;
  }
  reactor->Finish(transport::ToGrpcStatus(Validate(*req, resp)));
  return reactor;
}

absl::Status WorkloadApiService::FetchJwt(const PeerRecord& record, const JWTSVIDRequest& req,
                                          JWTSVIDResponse* resp) {
  TRELLIS_ASSIGN_OR_RETURN(auto selectors, deps_.attestation->Attest(record));
  std::shared_ptr<const IdentitySnapshot> snap = deps_.source->Snapshot();
  if (!snap->ready) return absl::UnavailableError("agent is not ready: no identities synced yet");
  std::vector<std::string> audience(req.audience().begin(), req.audience().end());
  std::vector<const CachedEntry*> entries = snap->EntriesFor(selectors);
  bool any = false;
  for (const CachedEntry* entry : entries) {
    if (!req.spiffe_id().empty() && entry->spiffe_id.String() != req.spiffe_id()) continue;
    any = true;
    auto token = minter_ ? minter_(*entry, audience)
                         : absl::StatusOr<std::string>(absl::UnavailableError("no JWT minter"));
    if (!token.ok()) {
      return absl::Status(token.status().code(),
                          absl::StrCat("could not fetch JWT-SVID for ", entry->spiffe_id.String(),
                                       ": ", token.status().message()));
    }
    JWTSVID* svid = resp->add_svids();
    svid->set_spiffe_id(entry->spiffe_id.String());
    svid->set_svid(*std::move(token));
    svid->set_hint(entry->hint);
  }
  if (!any) return absl::PermissionDeniedError("no identity issued");
  return absl::OkStatus();
}

absl::Status WorkloadApiService::Validate(const ValidateJWTSVIDRequest& req,
                                          ValidateJWTSVIDResponse* resp) {
  if (req.audience().empty()) return absl::InvalidArgumentError("audience must be specified");
  if (req.svid().empty()) return absl::InvalidArgumentError("svid must be specified");
  // The token names its trust domain in `sub`; its keys come from that domain's bundle.
  TRELLIS_ASSIGN_OR_RETURN(common::UnverifiedJwt token, common::PeekJwt(req.svid()));
  const nlohmann::json& claims = token.claims;
  if (!claims.is_object() || !claims.contains("sub") || !claims["sub"].is_string()) {
    return absl::InvalidArgumentError("token has no sub claim");
  }
  auto sub = common::SpiffeId::Parse(claims["sub"].get<std::string>());
  if (!sub.ok()) {
    return absl::InvalidArgumentError("token sub is not a SPIFFE ID: " +
                                      std::string(sub.status().message()));
  }
  std::shared_ptr<const IdentitySnapshot> snap = deps_.source->Snapshot();
  const RenderedBundle* bundle = snap->BundleOf(sub->trust_domain());
  if (!bundle) {
    return absl::InvalidArgumentError("no keys found for trust domain " +
                                      sub->trust_domain().name());
  }
  auto svid = common::VerifyJwtSvid(req.svid(), bundle->bundle().jwt_authorities(),
                                    req.audience(), clock_.Now());
  if (!svid.ok()) return absl::InvalidArgumentError(std::string(svid.status().message()));
  resp->set_spiffe_id(svid->subject.String());
  auto parsed =
      google::protobuf::util::JsonStringToMessage(svid->claims.dump(), resp->mutable_claims());
  if (!parsed.ok()) return absl::InternalError("cannot convert claims");
  return absl::OkStatus();
}

}  // namespace trellis::workload_api
