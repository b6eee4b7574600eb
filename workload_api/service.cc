// Request checks, the streams' methods, and the two JWT-SVID calls.
#include "workload_api/service.h"

#include <google/protobuf/util/json_util.h>

#include <nlohmann/json.hpp>

#include "absl/strings/str_cat.h"
#include "common/jwt.h"
#include "common/log.h"
#include "common/status.h"
#include "transport/grpc_status.h"

namespace trellis::workload_api {
namespace {


// A unary call: waits for its request, hands it to `handle`, which answers through Reply
// (from any thread); deletes itself when the answer has gone.
template <typename Req, typename Resp>
class UnaryCall final : public AsyncCall {
 public:
  // The generated Request<Method> member of the service.
  using Request = void (SpiffeWorkloadAPI::AsyncService::*)(
      grpc::ServerContext*, Req*, grpc::ServerAsyncResponseWriter<Resp>*, grpc::CompletionQueue*,
      grpc::ServerCompletionQueue*, void*);
  using Handle = void (*)(WorkloadApiService*, UnaryCall*);

  static void Await(WorkloadApiService* service, Request request, Handle handle) {
    auto* call = new UnaryCall(service, request, handle);
    bool armed = service->deps().calls->Arm([call](grpc::ServerCompletionQueue* cq) {
      (call->service_->deps().service->*call->request_fn_)(&call->ctx_, &call->request_,
                                                           &call->responder_, cq, cq,
                                                           &call->request_tag_);
    });
    if (!armed) delete call;  // the queue is stopping: no tag of the call's will come
  }

  void Proceed(Op op, bool ok) override {
    if (op == Op::kRequest) {
      if (!ok) {  // the server is shutting down and no call came
        delete this;
        return;
      }
      // Read before handle_: the call may be answered, and deleted, from another thread.
      WorkloadApiService* service = service_;
      Request request = request_fn_;
      Handle handle = handle_;
      handle(service, this);
      Await(service, request, handle);
      return;
    }
    delete this;  // kFinish: the answer has gone (or the call was cancelled)
  }

  const grpc::ServerContext& context() const { return ctx_; }
  const Req& request() const { return request_; }
  Resp* response() { return &response_; }
  void Reply(const absl::Status& status) {
    if (status.ok()) {
      responder_.Finish(response_, grpc::Status::OK, &finish_tag_);
    } else {
      responder_.FinishWithError(transport::ToGrpcStatus(status), &finish_tag_);
    }
  }

 private:
  UnaryCall(WorkloadApiService* service, Request request, Handle handle)
      : service_(service), request_fn_(request), handle_(handle), responder_(&ctx_) {}

  WorkloadApiService* const service_;
  const Request request_fn_;
  const Handle handle_;
  grpc::ServerContext ctx_;
  Req request_;
  Resp response_;
  grpc::ServerAsyncResponseWriter<Resp> responder_;
  Tag request_tag_{this, Op::kRequest};
  Tag finish_tag_{this, Op::kFinish};
};

using FetchJwtCall = UnaryCall<JWTSVIDRequest, JWTSVIDResponse>;
using ValidateCall = UnaryCall<ValidateJWTSVIDRequest, ValidateJWTSVIDResponse>;

// Logs the outcome of a FetchJWTSVID call before answering it.
void ReplyFetchJwt(FetchJwtCall* call, const PeerRecord* caller, const absl::Status& st) {
  static const std::string kMethod = WorkloadApiMethod("FetchJWTSVID");
  if (!st.ok()) {
    LogCallRefused(kMethod, caller, st);
  } else if (caller != nullptr && common::LogEnabled(common::config::LogLevel::kDebug)) {
    std::vector<std::string> ids;
    for (const JWTSVID& svid : call->response()->svids()) ids.push_back(svid.spiffe_id());
    LogIdentitiesServed(kMethod, *caller, ids);
  }
  call->Reply(st);
}

void HandleFetchJwt(WorkloadApiService* service, FetchJwtCall* call) {
  const JWTSVIDRequest& req = call->request();
  if (absl::Status h = CheckHeader(call->context()); !h.ok()) {
    return ReplyFetchJwt(call, nullptr, h);
  }
  // Looked up first so refusals of a bad request name the caller too.
  auto peer = service->deps().peers->Lookup(call->context().peer());
  const PeerRecord* caller = peer.ok() ? &*peer : nullptr;
  if (req.audience().empty()) {
    return ReplyFetchJwt(call, caller, absl::InvalidArgumentError("audience must be specified"));
  }
  for (const std::string& aud : req.audience()) {
    if (aud.empty()) {
      return ReplyFetchJwt(call, caller, absl::InvalidArgumentError("audience is empty"));
    }
  }
  if (!req.spiffe_id().empty()) {
    if (auto id = common::SpiffeId::Parse(req.spiffe_id()); !id.ok()) {
      return ReplyFetchJwt(call, caller,
                           absl::InvalidArgumentError("invalid requested SPIFFE ID: " +
                                                      std::string(id.status().message())));
    }
  }
  if (!peer.ok()) return ReplyFetchJwt(call, nullptr, peer.status());
  // Minting may wait on the server: never on the queue's threads.
  bool queued = service->deps().work->Post([service, call, record = *peer] {
    ReplyFetchJwt(call, &record, service->FetchJwt(record, call->request(), call->response()));
  });
  // Answered even while the server stops, or the call would never be deleted.
  if (!queued) call->Reply(absl::UnavailableError("the Workload API is shutting down"));
}

void HandleValidate(WorkloadApiService* service, ValidateCall* call) {
  if (absl::Status h = CheckHeader(call->context()); !h.ok()) return call->Reply(h);
  call->Reply(service->Validate(call->request(), call->response()));
}

}  // namespace


WorkloadApiService::WorkloadApiService(CallDeps deps, JwtMinter minter,
                                       const common::Clock& clock)
    : deps_(deps), minter_(std::move(minter)), clock_(clock) {}

void WorkloadApiService::AwaitCalls() {
  using X509Stream = IdentityStream<X509SVIDRequest, X509SVIDResponse>;
  using X509BundleStream = IdentityStream<X509BundlesRequest, X509BundlesResponse>;
  using JwtBundleStream = IdentityStream<JWTBundlesRequest, JWTBundlesResponse>;
  using Service = SpiffeWorkloadAPI::AsyncService;
  X509Stream::Await(deps_, {&Service::RequestFetchX509SVID, &RenderX509Svids, "FetchX509SVID"});
  X509BundleStream::Await(
      deps_, {&Service::RequestFetchX509Bundles, &RenderX509Bundles, "FetchX509Bundles"});
  JwtBundleStream::Await(deps_,
                         {&Service::RequestFetchJWTBundles, &RenderJwtBundles, "FetchJWTBundles"});
  FetchJwtCall::Await(this, &Service::RequestFetchJWTSVID, &HandleFetchJwt);
  ValidateCall::Await(this, &Service::RequestValidateJWTSVID, &HandleValidate);
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
    if (!req.spiffe_id().empty() && entry->spiffe_id() != req.spiffe_id()) continue;
    any = true;
    auto token = minter_ ? minter_(*entry, audience)
                         : absl::StatusOr<std::string>(absl::UnavailableError("no JWT minter"));
    if (!token.ok()) {
      return absl::Status(token.status().code(), absl::StrCat("could not fetch JWT-SVID for ",
                                                              std::string(entry->spiffe_id()), ": ",
                                                              token.status().message()));
    }
    JWTSVID* svid = resp->add_svids();
    svid->set_spiffe_id(std::string(entry->spiffe_id()));
    svid->set_svid(*std::move(token));
    svid->set_hint(std::string(entry->hint()));
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
