// SDS: secrets rendered from the snapshot the Workload API serves, pushed on change.
#include "workload_api/sds_service.h"

#include <openssl/crypto.h>

#include <memory>
#include <set>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "common/bundle.h"
#include "common/keys.h"
#include "common/log.h"
#include "common/openssl_util.h"
#include "common/x509.h"
#include "envoy/extensions/transport_sockets/tls/v3/tls_spiffe_validator_config.pb.h"
#include "transport/grpc_status.h"
#include "workload_api/caller_attestation.h"
#include "workload_api/identity_stream.h"
#include "workload_api/peer_listener.h"
#include "workload_api/work_queue.h"

namespace trellis::workload_api {
namespace {

namespace tls = envoy::extensions::transport_sockets::tls::v3;
namespace discovery = envoy::service::discovery::v3;
using common::LogDebug;
using common::LogWarn;

constexpr char kDefaultSvid[] = "default";
constexpr char kRootCa[] = "ROOTCA";
constexpr char kAll[] = "ALL";

absl::Status TlsCertificateFor(const Identity& id, const std::string& name, tls::Secret* out) {
  absl::StatusOr<std::vector<common::Certificate>> chain =
      common::Certificate::ChainFromDer(id.svid->chain());
  if (!chain.ok()) return chain.status();
  std::string key_der;
  id.svid->KeyPkcs8Der(&key_der);
  absl::StatusOr<common::PrivateKey> key = common::PrivateKey::FromPkcs8Der(key_der);
  OPENSSL_cleanse(key_der.data(), key_der.size());
  if (!key.ok()) return key.status();
  absl::StatusOr<common::SecretBytes> pem = key->ToPem();
  if (!pem.ok()) return pem.status();
  out->set_name(name);
  tls::TlsCertificate* cert = out->mutable_tls_certificate();
  cert->mutable_certificate_chain()->set_inline_bytes(common::Certificate::ChainToPem(*chain));
  cert->mutable_private_key()->set_inline_bytes(std::string(pem->view()));
  return absl::OkStatus();
}

void ValidationContextFor(const RenderedBundle& bundle, const std::string& name, tls::Secret* out) {
  out->set_name(name);
  out->mutable_validation_context()->mutable_trusted_ca()->set_inline_bytes(
      common::BundleToPem(bundle.bundle()));
}

void SpiffeValidatorFor(const std::map<std::string, const RenderedBundle*>& bundles,
                        const std::string& name, tls::Secret* out) {
  tls::SPIFFECertValidatorConfig config;
  for (const auto& [td_id, bundle] : bundles) {
    tls::SPIFFECertValidatorConfig::TrustDomain* td = config.add_trust_domains();
    td->set_name(bundle->bundle().trust_domain().name());
    td->mutable_trust_bundle()->set_inline_bytes(common::BundleToPem(bundle->bundle()));
  }
  out->set_name(name);
  auto* validator = out->mutable_validation_context()->mutable_custom_validator_config();
  validator->set_name(kSpiffeValidatorName);
  validator->mutable_typed_config()->PackFrom(config);
}

// The response for `secrets`: version from their content, so an unchanged set keeps it.
discovery::DiscoveryResponse ResponseOf(std::vector<tls::Secret> secrets) {
  discovery::DiscoveryResponse resp;
  resp.set_type_url(kSecretTypeUrl);
  for (tls::Secret& s : secrets) resp.add_resources()->PackFrom(s);
  for (tls::Secret& s : secrets) {
    if (s.has_tls_certificate()) {
      std::string* key = s.mutable_tls_certificate()->mutable_private_key()->mutable_inline_bytes();
      OPENSSL_cleanse(key->data(), key->size());
    }
  }
  resp.set_version_info(common::HexEncode(DigestOf(resp)).substr(0, 16));
  return resp;
}

// Attests the caller of `ctx`: inline when attestation cannot block, else on a worker.
// `done` runs exactly once with the selectors or why there are none.
void AttestCaller(const SdsService::Deps& deps, const grpc::CallbackServerContext& ctx,
                  std::function<void(absl::StatusOr<std::vector<std::string>>)> done) {
  absl::StatusOr<PeerRecord> peer = deps.peers->Lookup(ctx.peer());
  if (!peer.ok()) return done(peer.status());
  if (deps.attestation->inline_ok()) return done(deps.attestation->Attest(*peer));
  auto shared_done = std::make_shared<decltype(done)>(std::move(done));
  bool queued = deps.work->Post([attestation = deps.attestation, record = *peer, shared_done] {
    (*shared_done)(attestation->Attest(record));
  });
  if (!queued) (*shared_done)(absl::UnavailableError("the agent is shutting down"));
}

// The log fields naming an SDS caller (its pid and uid when the connection is known).
std::vector<common::LogField> SdsCallerFields(const SdsService::Deps& deps,
                                              const grpc::CallbackServerContext& ctx) {
  absl::StatusOr<PeerRecord> peer = deps.peers->Lookup(ctx.peer());
  return CallerLogFields(peer.ok() ? &*peer : nullptr);
}

const std::string& SdsMethod() {
  static const std::string kMethod = common::GrpcMethodName(
      envoy::service::secret::v3::SecretDiscoveryService::service_full_name(), "StreamSecrets");
  return kMethod;
}

// One StreamSecrets call. All state is behind the shared State's mutex; the reactor is
// deleted in OnDone, after which `stream` is null for anyone still holding the State.
class SdsStream final
    : public grpc::ServerBidiReactor<discovery::DiscoveryRequest, discovery::DiscoveryResponse> {
 public:
  SdsStream(grpc::CallbackServerContext* ctx, const SdsService::Deps& deps)
      : deps_(deps), state_(std::make_shared<State>()), caller_log_(SdsCallerFields(deps, *ctx)) {
    {
      absl::MutexLock lock(&state_->mu);
      state_->stream = this;
      StartRead(&in_);
    }
    std::weak_ptr<State> weak = state_;
    deps_.registry->Add(state_.get(), [weak] {
      if (auto s = weak.lock()) {
        absl::MutexLock lock(&s->mu);
        if (s->stream) {
          s->stream->state_->mu.AssertHeld();  // the same mutex: the stream's state is `s`
          s->stream->FinishLocked(
              grpc::Status(grpc::StatusCode::UNAVAILABLE, "agent is shutting down"));
        }
      }
    });
    AttestCaller(deps_, *ctx, [weak](absl::StatusOr<std::vector<std::string>> selectors) {
      auto s = weak.lock();
      if (!s) return;
      absl::MutexLock lock(&s->mu);
      SdsStream* self = s->stream;
      if (self == nullptr) return;
      self->state_->mu.AssertHeld();  // the same mutex: the stream's state is `s`
      self->OnAttestedLocked(std::move(selectors));
    });
  }

  void OnReadDone(bool ok) override {
    absl::MutexLock lock(&state_->mu);
    if (!ok) {  // the client closed its side, or the call is over
      FinishLocked(grpc::Status::OK);
      return;
    }
    const discovery::DiscoveryRequest& req = in_;
    if (!req.type_url().empty() && req.type_url() != kSecretTypeUrl) {
      FinishLocked(grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                                "only " + std::string(kSecretTypeUrl) + " is served here"));
      return;
    }
    bool answer = false;
    if (req.response_nonce().empty()) {
      answer = true;  // a new subscription
    } else if (req.response_nonce() != last_nonce_) {
      // Stale: answers a response that a later one replaced. Ignored, as xDS requires.
      StartRead(&in_);
      return;
    } else if (req.has_error_detail()) {
      common::RpcLogScope rpc(SdsMethod(), caller_log_);
      LogWarn("Envoy rejected the secrets sent over SDS",
              {{"version", last_version_}, {"error", req.error_detail().message()}});
    }
    std::vector<std::string> names(req.resource_names().begin(), req.resource_names().end());
    if (!subscribed_ || names != names_) answer = true;
    names_ = std::move(names);
    subscribed_ = true;
    if (answer) SendLocked(*deps_.source->Snapshot(), /*force=*/true);
    StartRead(&in_);
  }

  void OnWriteDone(bool ok) override {
    absl::MutexLock lock(&state_->mu);
    write_in_flight_ = false;
    WipeSecrets(&out_);
    if (!ok) return;  // the call is ending; OnDone follows
    if (pending_) {
      pending_ = false;
      bool force = pending_force_;
      pending_force_ = false;
      SendLocked(*deps_.source->Snapshot(), force);
    }
  }

  void OnDone() override {
    {
      absl::MutexLock lock(&state_->mu);
      state_->stream = nullptr;
    }
    if (listener_id_ != 0) deps_.source->Unsubscribe(listener_id_);
    deps_.registry->Remove(state_.get());
    delete this;
  }

 private:
  struct State {
    absl::Mutex mu;
    SdsStream* stream ABSL_GUARDED_BY(mu) = nullptr;
  };

  void OnAttestedLocked(absl::StatusOr<std::vector<std::string>> selectors)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(state_->mu) {
    if (finished_) return;
    if (!selectors.ok()) {
      common::RpcLogScope rpc(SdsMethod(), caller_log_);
      LogWarn("Workload API call refused",
              {{"code", absl::StatusCodeToString(selectors.status().code())},
               {"error", std::string(selectors.status().message())}});
      FinishLocked(transport::ToGrpcStatus(selectors.status()));
      return;
    }
    selectors_ = *std::move(selectors);
    attested_ = true;
    std::weak_ptr<State> weak = state_;
    listener_id_ = deps_.source->Subscribe([weak](std::shared_ptr<const IdentitySnapshot> snap) {
      auto s = weak.lock();
      if (!s) return;
      absl::MutexLock lock(&s->mu);
      if (s->stream == nullptr) return;
      s->stream->state_->mu.AssertHeld();  // the same mutex: the stream's state is `s`
      s->stream->SendLocked(*snap, /*force=*/false);
    });
    if (subscribed_) SendLocked(*deps_.source->Snapshot(), /*force=*/true);
  }

  // Sends the secrets for the current names when they differ from the last sent (or when
  // `force`: a subscription must be answered). One write at a time; a change during a write
  // is sent when it completes, so rotations never queue up behind a slow reader.
  void SendLocked(const IdentitySnapshot& snap, bool force)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(state_->mu) {
    if (!attested_ || !subscribed_ || finished_) return;
    if (write_in_flight_) {
      pending_ = true;
      pending_force_ = pending_force_ || force;
      return;
    }
    absl::StatusOr<std::vector<tls::Secret>> secrets = RenderSecrets(snap, selectors_, names_);
    if (!secrets.ok()) {
      FinishLocked(transport::ToGrpcStatus(secrets.status()));
      return;
    }
    discovery::DiscoveryResponse resp = ResponseOf(*std::move(secrets));
    if (!force && resp.version_info() == last_version_) {
      WipeSecrets(&resp);
      return;
    }
    last_version_ = resp.version_info();
    last_nonce_ = std::to_string(++nonces_);
    resp.set_nonce(last_nonce_);
    out_ = std::move(resp);
    write_in_flight_ = true;
    common::RpcLogScope rpc(SdsMethod(), caller_log_);
    LogDebug("SDS secrets sent",
             {{"version", last_version_}, {"resources", std::to_string(out_.resources_size())}});
    StartWrite(&out_);
  }

  void FinishLocked(const grpc::Status& status) ABSL_EXCLUSIVE_LOCKS_REQUIRED(state_->mu) {
    if (finished_) return;
    finished_ = true;
    Finish(status);
  }

  const SdsService::Deps deps_;
  const std::shared_ptr<State> state_;
  const std::vector<common::LogField> caller_log_;
  discovery::DiscoveryRequest in_;
  discovery::DiscoveryResponse out_ ABSL_GUARDED_BY(state_->mu);
  std::vector<std::string> selectors_ ABSL_GUARDED_BY(state_->mu);
  std::vector<std::string> names_ ABSL_GUARDED_BY(state_->mu);
  bool attested_ ABSL_GUARDED_BY(state_->mu) = false;
  bool subscribed_ ABSL_GUARDED_BY(state_->mu) = false;
  bool finished_ ABSL_GUARDED_BY(state_->mu) = false;
  bool write_in_flight_ ABSL_GUARDED_BY(state_->mu) = false;
  bool pending_ ABSL_GUARDED_BY(state_->mu) = false;
  bool pending_force_ ABSL_GUARDED_BY(state_->mu) = false;
  std::string last_version_ ABSL_GUARDED_BY(state_->mu);
  std::string last_nonce_ ABSL_GUARDED_BY(state_->mu);
  uint64_t nonces_ ABSL_GUARDED_BY(state_->mu) = 0;
  // Set once, before any other thread reads it (OnDone runs after every other reaction).
  uint64_t listener_id_ = 0;
};

class UnimplementedDelta final : public grpc::ServerBidiReactor<discovery::DeltaDiscoveryRequest,
                                                                discovery::DeltaDiscoveryResponse> {
 public:
  UnimplementedDelta() {
    Finish(grpc::Status(grpc::StatusCode::UNIMPLEMENTED,
                        "incremental SDS is not served: configure Envoy's sds_config with "
                        "api_type GRPC (StreamSecrets)"));
  }
  void OnDone() override { delete this; }
};

}  // namespace

absl::StatusOr<std::vector<tls::Secret>> RenderSecrets(const IdentitySnapshot& snap,
                                                       const std::vector<std::string>& selectors,
                                                       const std::vector<std::string>& names) {
  if (!snap.ready) return absl::UnavailableError("agent is not ready: no identities synced yet");
  std::vector<Identity> ids = snap.IdentitiesFor(selectors);
  if (ids.empty()) return absl::PermissionDeniedError("no identity issued");
  std::map<std::string, const RenderedBundle*> bundles = snap.BundlesFor(ids, true);
  std::vector<tls::Secret> out;
  if (names.empty()) {
    for (const Identity& id : ids) {
      TRELLIS_RETURN_IF_ERROR(
          TlsCertificateFor(id, std::string(id.entry->spiffe_id()), &out.emplace_back()));
    }
    for (const auto& [td_id, bundle] : bundles)
      ValidationContextFor(*bundle, td_id, &out.emplace_back());
    return out;
  }
  std::set<std::string> seen;
  for (const std::string& name : names) {
    if (!seen.insert(name).second) continue;
    if (name == kDefaultSvid) {
      TRELLIS_RETURN_IF_ERROR(TlsCertificateFor(ids.front(), name, &out.emplace_back()));
    } else if (name == kRootCa) {
      if (snap.bundle) ValidationContextFor(*snap.bundle, name, &out.emplace_back());
    } else if (name == kAll) {
      SpiffeValidatorFor(bundles, name, &out.emplace_back());
    } else if (auto b = bundles.find(name); b != bundles.end()) {
      ValidationContextFor(*b->second, name, &out.emplace_back());
    } else {
      for (const Identity& id : ids) {
        if (id.entry->spiffe_id() != name) continue;
        TRELLIS_RETURN_IF_ERROR(TlsCertificateFor(id, name, &out.emplace_back()));
        break;
      }
    }
  }
  return out;
}

void WipeSecrets(discovery::DiscoveryResponse* resp) {
  for (google::protobuf::Any& any : *resp->mutable_resources()) {
    std::string* bytes = any.mutable_value();
    if (!bytes->empty()) OPENSSL_cleanse(bytes->data(), bytes->size());
  }
  resp->clear_resources();
}

grpc::ServerBidiReactor<discovery::DiscoveryRequest, discovery::DiscoveryResponse>*
SdsService::StreamSecrets(grpc::CallbackServerContext* ctx) {
  return new SdsStream(ctx, deps_);
}

grpc::ServerBidiReactor<discovery::DeltaDiscoveryRequest, discovery::DeltaDiscoveryResponse>*
SdsService::DeltaSecrets(grpc::CallbackServerContext*) {
  return new UnimplementedDelta();
}

grpc::ServerUnaryReactor* SdsService::FetchSecrets(grpc::CallbackServerContext* ctx,
                                                   const discovery::DiscoveryRequest* req,
                                                   discovery::DiscoveryResponse* resp) {
  grpc::ServerUnaryReactor* reactor = ctx->DefaultReactor();
  if (!req->type_url().empty() && req->type_url() != kSecretTypeUrl) {
    reactor->Finish(grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                                 "only " + std::string(kSecretTypeUrl) + " is served here"));
    return reactor;
  }
  std::vector<std::string> names(req->resource_names().begin(), req->resource_names().end());
  IdentitySource* source = deps_.source;
  AttestCaller(deps_, *ctx,
               [reactor, resp, source, names](absl::StatusOr<std::vector<std::string>> selectors) {
                 if (!selectors.ok()) {
                   reactor->Finish(transport::ToGrpcStatus(selectors.status()));
                   return;
                 }
                 absl::StatusOr<std::vector<tls::Secret>> secrets =
                     RenderSecrets(*source->Snapshot(), *selectors, names);
                 if (!secrets.ok()) {
                   reactor->Finish(transport::ToGrpcStatus(secrets.status()));
                   return;
                 }
                 *resp = ResponseOf(*std::move(secrets));
                 reactor->Finish(grpc::Status::OK);
               });
  return reactor;
}

}  // namespace trellis::workload_api
