// Agent runtime: bootstrap, attestation, the sync loop and the change watch.
#include "agent/agent.h"

#include <grpcpp/grpcpp.h>
#include <malloc.h>

#include <algorithm>
#include <iostream>
#include <set>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "absl/time/clock.h"
#include "agent/bundle_url.h"
#include "agent/rotation.h"
#include "agent/state_store.h"
#include "attestors/node/node_attestor_factory.h"
#include "attestors/workload/workload_attestor_factory.h"
#include "common/csr.h"
#include "common/file_util.h"
#include "common/health.h"
#include "common/jwt.h"
#include "common/status.h"
#include "transport/spiffe_tls.h"
#include "trellis/server/v1/agent.grpc.pb.h"
#include "workload_api/server.h"

namespace trellis::agent {

namespace v1 = ::trellis::server::v1;

namespace {

constexpr absl::Duration kCallTimeout = absl::Seconds(15);
// Items per BatchNewX509SVID call, to keep one message well under gRPC's size limit.
constexpr size_t kMaxBatch = 500;

std::mutex log_mu;
std::atomic<int> min_log_level{1};  // 0 debug, 1 info, 2 warning, 3 error

int LevelRank(const std::string& level) {
  if (level == "debug") return 0;
  if (level == "info") return 1;
  if (level == "warning") return 2;
  return 3;
}

void Log(const std::string& level, const std::string& msg) {
  if (LevelRank(level) < min_log_level.load()) return;
  std::lock_guard<std::mutex> lock(log_mu);
  std::cerr << "time=\""
            << absl::FormatTime("%Y-%m-%dT%H:%M:%E3SZ", absl::Now(), absl::UTCTimeZone())
            << "\" level=" << level << " msg=\"" << msg << "\"" << std::endl;
}

absl::Status FromGrpc(const grpc::Status& s) {
  return absl::Status(static_cast<absl::StatusCode>(s.error_code()), s.error_message());
}

void SetDeadline(grpc::ClientContext* ctx, absl::Duration d) {
  ctx->set_deadline(absl::ToChronoTime(absl::Now() + d));
}

bool IsTransient(const absl::Status& s) {
  return s.code() == absl::StatusCode::kUnavailable ||
         s.code() == absl::StatusCode::kDeadlineExceeded ||
         s.code() == absl::StatusCode::kResourceExhausted ||
         s.code() == absl::StatusCode::kAborted || s.code() == absl::StatusCode::kInternal ||
         s.code() == absl::StatusCode::kUnknown || s.code() == absl::StatusCode::kCancelled;
}

absl::StatusOr<common::Bundle> BundleFromProto(const v1::Bundle& proto) {
  TRELLIS_ASSIGN_OR_RETURN(common::TrustDomain td,
                           common::TrustDomain::Parse(proto.trust_domain()));
  common::Bundle bundle(td);
  for (const auto& a : proto.x509_authorities()) {
    TRELLIS_ASSIGN_OR_RETURN(common::Certificate cert, common::Certificate::FromDer(a.asn1()));
    TRELLIS_RETURN_IF_ERROR(bundle.AddX509Authority(cert));
  }
  for (const auto& a : proto.jwt_authorities()) {
    TRELLIS_ASSIGN_OR_RETURN(common::PublicKey key, common::PublicKey::FromSpkiDer(a.public_key()));
    TRELLIS_RETURN_IF_ERROR(bundle.AddJwtAuthority(a.key_id(), key));
  }
  bundle.set_sequence(proto.sequence_number());
  if (proto.refresh_hint() > 0) bundle.set_refresh_hint_seconds(proto.refresh_hint());
  return bundle;
}

absl::StatusOr<std::vector<common::Certificate>> ChainFromProto(const v1::X509SVID& svid) {
  std::vector<common::Certificate> chain;
  for (const std::string& der : svid.cert_chain()) {
    TRELLIS_ASSIGN_OR_RETURN(common::Certificate cert, common::Certificate::FromDer(der));
    chain.push_back(std::move(cert));
  }
  if (chain.empty()) return absl::InvalidArgumentError("server returned an empty SVID chain");
  return chain;
}

absl::StatusOr<workload_api::CachedEntry> EntryFromProto(const v1::Entry& e) {
  TRELLIS_ASSIGN_OR_RETURN(common::SpiffeId id, common::SpiffeId::Parse(e.spiffe_id()));
  workload_api::CachedEntry entry{
      e.id(), id, {}, {}, e.hint(), e.revision_number(), e.created_at(), e.jwt_svid_ttl()};
  for (const auto& s : e.selectors()) entry.selectors.push_back(s.type() + ":" + s.value());
  for (const auto& td : e.federates_with()) {
    auto parsed = common::TrustDomain::Parse(td);
    entry.federates_with.push_back(parsed.ok() ? parsed->name() : td);
  }
  return entry;
}

}  // namespace

absl::StatusOr<std::vector<std::string>> ServerTargets(const std::string& server_address,
                                                       uint16_t server_port) {
  std::vector<std::string> out;
  for (absl::string_view item : absl::StrSplit(server_address, ',', absl::SkipWhitespace())) {
    std::string host(absl::StripAsciiWhitespace(item));
    if (host.empty()) continue;
    bool has_port = false;
    if (host.front() == '[') {
      has_port = host.find("]:") != std::string::npos;
    } else {
      has_port = std::count(host.begin(), host.end(), ':') == 1;
    }
    out.push_back(has_port ? host : absl::StrCat(host, ":", server_port));
  }
  if (out.empty()) return absl::InvalidArgumentError("agent.server_address is empty");
  return out;
}

// Channels to the configured servers. One is current; a failure moves on to the next. The
// client identity is fixed per channel, so a new agent SVID means new channels.
class ServerConnection {
 public:
  ServerConnection(std::vector<std::string> targets, common::TrustDomain td,
                   transport::BundleSource bundle)
      : targets_(std::move(targets)), td_(std::move(td)), bundle_(std::move(bundle)) {}

  const std::vector<std::string>& targets() const { return targets_; }

  void SetIdentity(std::optional<transport::TlsIdentity> identity) {
    std::lock_guard<std::mutex> lock(mu_);
    identity_ = std::move(identity);
    stub_.reset();
  }

  std::shared_ptr<v1::Agent::Stub> Stub() {
    std::lock_guard<std::mutex> lock(mu_);
    if (!stub_) stub_ = MakeStub(targets_[current_], identity_, false);
    return stub_;
  }

  // A stub without client identity for attestation against one target.
  std::shared_ptr<v1::Agent::Stub> AnonymousStub(const std::string& target, bool insecure) {
    return MakeStub(target, std::nullopt, insecure);
  }

  void Failover() {
    std::lock_guard<std::mutex> lock(mu_);
    current_ = (current_ + 1) % targets_.size();
    stub_.reset();
  }

  std::string CurrentTarget() {
    std::lock_guard<std::mutex> lock(mu_);
    return targets_[current_];
  }

 private:
  std::shared_ptr<v1::Agent::Stub> MakeStub(const std::string& target,
                                            std::optional<transport::TlsIdentity> identity,
                                            bool insecure) {
    grpc::ChannelArguments args;
    args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, 5000);
    args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, 500);
    args.SetInt(GRPC_ARG_KEEPALIVE_TIME_MS, 30000);
    // Each channel gets its own subchannel, so an old identity's connection is never reused.
    args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
    auto creds = transport::SpiffeClientCredentials(std::move(identity), bundle_,
                                                    common::ServerId(td_), insecure);
    return std::shared_ptr<v1::Agent::Stub>(
        v1::Agent::NewStub(grpc::CreateCustomChannel("dns:///" + target, creds, args)));
  }

  const std::vector<std::string> targets_;
  const common::TrustDomain td_;
  const transport::BundleSource bundle_;
  std::mutex mu_;
  std::optional<transport::TlsIdentity> identity_;  // guarded by mu_
  std::shared_ptr<v1::Agent::Stub> stub_;           // guarded by mu_
  size_t current_ = 0;                              // guarded by mu_
};

Agent::Agent(common::config::AgentConfig config, Options options, const common::Clock& clock)
    : config_(std::move(config)), options_(std::move(options)), clock_(clock) {}

absl::StatusOr<std::unique_ptr<Agent>> Agent::Create(common::config::AgentConfig config,
                                                     Options options, const common::Clock& clock) {
  TRELLIS_ASSIGN_OR_RETURN(std::vector<std::string> targets,
                           ServerTargets(config.server_address, config.server_port));
  int bootstrap_methods = (config.trust_bundle_path.empty() ? 0 : 1) +
                          (config.trust_bundle_url.empty() ? 0 : 1) +
                          (config.insecure_bootstrap ? 1 : 0);
  if (bootstrap_methods > 1) {
    return absl::InvalidArgumentError(
        "only one of trust_bundle_path, trust_bundle_url and insecure_bootstrap may be set");
  }
  switch (config.log_level) {
    case common::config::LogLevel::kDebug:
      min_log_level = 0;
      break;
    case common::config::LogLevel::kInfo:
      min_log_level = 1;
      break;
    case common::config::LogLevel::kWarn:
      min_log_level = 2;
      break;
    case common::config::LogLevel::kError:
      min_log_level = 3;
      break;
  }
  std::unique_ptr<Agent> agent(new Agent(std::move(config), std::move(options), clock));
  Agent* raw = agent.get();
  agent->conn_ = std::make_unique<ServerConnection>(std::move(targets), agent->config_.trust_domain,
                                                    [raw] { return raw->CurrentBundle(); });
  TRELLIS_ASSIGN_OR_RETURN(agent->workload_attestors_,
                           attestors::CreateWorkloadAttestors(agent->config_.workload_attestors));
  return agent;
}

Agent::~Agent() { Stop(); }

std::shared_ptr<const common::Bundle> Agent::CurrentBundle() const {
  std::lock_guard<std::mutex> lock(mu_);
  return bundle_;
}

std::optional<common::SpiffeId> Agent::agent_id() const {
  std::lock_guard<std::mutex> lock(mu_);
  if (agent_chain_.empty()) return std::nullopt;
  auto id = agent_chain_.front().GetSpiffeId();
  if (!id.ok()) return std::nullopt;
  return *id;
}

absl::Status Agent::LoadBootstrap() {
  const common::TrustDomain& td = config_.trust_domain;
  auto persisted = LoadAgentState(config_.data_dir, td);
  if (!persisted.ok()) {
    Log("warning",
        "ignoring unusable persisted agent state: " + std::string(persisted.status().message()));
  } else if (persisted->has_value()) {
    AgentState& state = **persisted;
    std::lock_guard<std::mutex> lock(mu_);
    bundle_ = std::make_shared<const common::Bundle>(state.bundle);
    reattestable_ = state.reattestable;
    if (clock_.Now() < state.chain.front().not_after()) {
      agent_chain_ = state.chain;
      agent_key_ = std::move(state.key);
      agent_renew_at_ = RenewalTime(agent_chain_.front().not_before(),
                                    agent_chain_.front().not_after(), RandomUnitJitter());
      Log("info", "loaded the persisted agent SVID from " + config_.data_dir);
    } else {
      Log("info", "the persisted agent SVID has expired; attesting again");
    }
    return absl::OkStatus();
  }
  if (!config_.trust_bundle_path.empty()) {
    TRELLIS_ASSIGN_OR_RETURN(std::string text, common::ReadFile(config_.trust_bundle_path));
    absl::StatusOr<common::Bundle> bundle =
        config_.trust_bundle_format == common::config::TrustBundleFormat::kSpiffe
            ? common::ParseSpiffeBundle(td, text)
            : common::BundleFromPem(td, text);
    if (!bundle.ok())
      return Annotate(bundle.status(), "trust_bundle_path " + config_.trust_bundle_path);
    if (bundle->x509_authorities().empty()) {
      return absl::InvalidArgumentError("trust_bundle_path " + config_.trust_bundle_path +
                                        " holds no X.509 authority");
    }
    std::lock_guard<std::mutex> lock(mu_);
    bundle_ = std::make_shared<const common::Bundle>(std::move(*bundle));
    return absl::OkStatus();
  }
  if (config_.insecure_bootstrap) {
    std::lock_guard<std::mutex> lock(mu_);
    insecure_bootstrap_pending_ = true;
    return absl::OkStatus();
  }
  if (!config_.trust_bundle_url.empty()) {
    auto text = HttpsGet(config_.trust_bundle_url);
    if (!text.ok()) return Annotate(text.status(), "trust_bundle_url");
    absl::StatusOr<common::Bundle> bundle =
        config_.trust_bundle_format == common::config::TrustBundleFormat::kSpiffe
            ? common::ParseSpiffeBundle(td, *text)
            : common::BundleFromPem(td, *text);
    if (!bundle.ok())
      return Annotate(bundle.status(), "trust_bundle_url " + config_.trust_bundle_url);
    if (bundle->x509_authorities().empty()) {
      return absl::InvalidArgumentError("trust_bundle_url " + config_.trust_bundle_url +
                                        " holds no X.509 authority");
    }
    std::lock_guard<std::mutex> lock(mu_);
    bundle_ = std::make_shared<const common::Bundle>(std::move(*bundle));
    return absl::OkStatus();
  }
  return absl::InvalidArgumentError(
      "no bootstrap trust: set trust_bundle_path or insecure_bootstrap = true");
}

absl::Status Agent::AdoptAgentSvid(std::vector<common::Certificate> chain, common::PrivateKey key) {
  TRELLIS_RETURN_IF_ERROR(common::CheckKeyMatchesCertificate(key, chain.front()));
  TRELLIS_ASSIGN_OR_RETURN(common::SpiffeId id, chain.front().GetSpiffeId());
  if (!id.MemberOf(config_.trust_domain) || !id.IsAgentId()) {
    return absl::PermissionDeniedError("server issued " + id.String() +
                                       ", which is not an agent ID of " +
                                       config_.trust_domain.name());
  }
  TRELLIS_ASSIGN_OR_RETURN(common::SecretBytes key_pem, key.ToPem());
  transport::TlsIdentity identity{common::Certificate::ChainToPem(chain),
                                  std::string(key_pem.view())};
  AgentState state{chain, key, common::Bundle(config_.trust_domain), false};
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (bundle_) state.bundle = *bundle_;
    state.reattestable = reattestable_;
    agent_chain_ = chain;
    agent_key_ = key;
    // NotBefore is backdated for clock skew; the lifetime we got starts now.
    agent_renew_at_ = RenewalTime(std::max(chain.front().not_before(), clock_.Now()),
                                  chain.front().not_after(), RandomUnitJitter());
  }
  if (absl::Status s = SaveAgentState(config_.data_dir, state); !s.ok()) {
    Log("error", "cannot persist the agent SVID: " + std::string(s.message()));
  }
  conn_->SetIdentity(std::move(identity));
  {
    // The watch stream still runs on the old identity's channel: restart it.
    std::lock_guard<std::mutex> lock(wake_mu_);
    if (watch_ctx_) watch_ctx_->TryCancel();
  }
  Log("info",
      "agent SVID " + id.String() + " valid until " + absl::FormatTime(chain.front().not_after()));
  return absl::OkStatus();
}

absl::Status Agent::AttestOnce(const std::string& target) {
  if (!attestor_) {
    TRELLIS_ASSIGN_OR_RETURN(attestor_, attestors::CreateAgentNodeAttestor(config_, options_.join_token));
  }
  bool insecure;
  {
    std::lock_guard<std::mutex> lock(mu_);
    insecure = insecure_bootstrap_pending_ || bundle_ == nullptr;
  }
  TRELLIS_ASSIGN_OR_RETURN(common::PrivateKey key, common::PrivateKey::Generate());
  TRELLIS_ASSIGN_OR_RETURN(std::string csr, common::BuildCsr(key));
  TRELLIS_ASSIGN_OR_RETURN(std::string payload, attestor_->Payload());

  auto stub = conn_->AnonymousStub(target, insecure);
  grpc::ClientContext ctx;
  SetDeadline(&ctx, absl::Seconds(30));
  auto stream = stub->AttestAgent(&ctx);
  v1::AttestAgentRequest req;
  req.mutable_params()->mutable_data()->set_type(attestor_->Name());
  req.mutable_params()->mutable_data()->set_payload(payload);
  req.mutable_params()->set_csr(csr);
  if (attestor_->Name() == "join_token") token_used_ = true;
  std::optional<v1::AttestAgentResponse::Result> result;
  if (stream->Write(req)) {
    v1::AttestAgentResponse resp;
    while (stream->Read(&resp)) {
      if (resp.has_challenge()) {
        auto answer = attestor_->Answer(resp.challenge());
        if (!answer.ok()) {
          ctx.TryCancel();
          return answer.status();
        }
        v1::AttestAgentRequest step;
        step.set_challenge_response(*answer);
        if (!stream->Write(step)) break;
      } else if (resp.has_result()) {
        result = resp.result();
      }
    }
  }
  stream->WritesDone();
  grpc::Status status = stream->Finish();
  if (!status.ok()) return FromGrpc(status);
  if (!result) return absl::UnavailableError("server ended attestation without a result");

  TRELLIS_ASSIGN_OR_RETURN(common::Bundle bundle, BundleFromProto(result->bundle()));
  if (bundle.trust_domain() != config_.trust_domain) {
    return absl::PermissionDeniedError("server returned a bundle for " +
                                       bundle.trust_domain().name());
  }
  TRELLIS_ASSIGN_OR_RETURN(auto chain, ChainFromProto(result->svid()));
  // The issued SVID must verify against the bundle we will trust from now on.
  auto verified = common::VerifyX509Svid(chain, bundle, clock_.Now());
  if (!verified.ok()) return Annotate(verified.status(), "agent SVID from the server");
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (!bundle_ || bundle.sequence() >= bundle_->sequence() || insecure) {
      bundle_ = std::make_shared<const common::Bundle>(bundle);
    }
    insecure_bootstrap_pending_ = false;
    reattestable_ = result->reattestable();
  }
  return AdoptAgentSvid(std::move(chain), std::move(key));
}

absl::Status Agent::AttestWithRetry() {
  int attempt = 0;
  const auto& targets = conn_->targets();
  while (true) {
    absl::Status last;
    for (const std::string& target : targets) {
      last = AttestOnce(target);
      if (last.ok()) {
        Log("info", "node attestation succeeded against " + target);
        return absl::OkStatus();
      }
      if (!IsTransient(last)) return Annotate(last, "node attestation failed");
      Log("warning", "node attestation against " + target + ": " + std::string(last.message()));
    }
    if (!WaitFor(Backoff(attempt++))) return absl::CancelledError("agent is stopping");
  }
}

absl::Status Agent::StartMetrics() {
  if (metrics_) return absl::OkStatus();  // a repeated Start() keeps them
  TRELLIS_ASSIGN_OR_RETURN(metrics_, telemetry::Metrics::Create(config_.telemetry));
  const std::string sync_help = "Syncs with the server, by result";
  sync_ok_ = metrics_->AddCounter("trellis_agent_sync_total", sync_help, {{"result", "ok"}});
  sync_error_ = metrics_->AddCounter("trellis_agent_sync_total", sync_help, {{"result", "error"}});
  metrics_->AddGaugeCallback(
      "trellis_agent_cached_svids", "X.509-SVIDs cached for workloads",
      [this] { return static_cast<double>(cache_.Snapshot()->svids.size()); });
  if (metrics_->port() != 0) {
    Log("info", "Serving Prometheus metrics on " + config_.telemetry.prometheus->host + ":" +
                    std::to_string(metrics_->port()));
  }
  return absl::OkStatus();
}

absl::Status Agent::Start() {
  TRELLIS_RETURN_IF_ERROR(StartMetrics());
  TRELLIS_RETURN_IF_ERROR(LoadBootstrap());
  bool have_svid;
  {
    std::lock_guard<std::mutex> lock(mu_);
    have_svid = !agent_chain_.empty();
  }
  if (have_svid) {
    TRELLIS_ASSIGN_OR_RETURN(common::SecretBytes key_pem, agent_key_->ToPem());
    conn_->SetIdentity(transport::TlsIdentity{common::Certificate::ChainToPem(agent_chain_),
                                              std::string(key_pem.view())});
  } else {
    TRELLIS_RETURN_IF_ERROR(AttestWithRetry());
  }
  std::vector<attestors::WorkloadAttestor*> attestors;
  for (auto& a : workload_attestors_) attestors.push_back(a.get());
  workload_api::WorkloadApiServer::Options wopts{config_.socket_path,
                                                 options_.workload_api_threads};
  wopts.configure_builder = [this](grpc::ServerBuilder& b) { metrics_->Instrument(b); };
  TRELLIS_ASSIGN_OR_RETURN(workload_api_, workload_api::WorkloadApiServer::Start(
                                              wopts, &cache_, attestors,
                                              [this](const workload_api::CachedEntry& entry,
                                                     const std::vector<std::string>& aud) {
                                                return MintJwt(entry, aud);
                                              },
                                              clock_));
  Log("info", "Workload API listening on " + config_.socket_path);
  if (config_.health_checks.listener_enabled) {
    TRELLIS_ASSIGN_OR_RETURN(
        health_, common::HealthListener::Start(config_.health_checks, [this] {
          common::HealthReport report;
          auto snap = cache_.Snapshot();
          report.subsystems["workload_api"] = {snap->ready,
                                               snap->ready ? "" : "not synced with a server yet"};
          std::lock_guard<std::mutex> lock(mu_);
          bool valid = !agent_chain_.empty() && clock_.Now() < agent_chain_.front().not_after();
          report.subsystems["agent_svid"] = {valid, valid ? "" : "agent SVID expired"};
          // Not ready while unsynced, but a restart would not help.
          report.live_excludes.insert("workload_api");
          return report;
        }));
  }
  sync_thread_ = std::thread([this] { SyncLoop(); });
  watch_thread_ = std::thread([this] { WatchLoop(); });
  return absl::OkStatus();
}

void Agent::Interrupt() {
  {
    std::lock_guard<std::mutex> lock(wake_mu_);
    stop_ = true;
    if (watch_ctx_) watch_ctx_->TryCancel();
  }
  wake_cv_.notify_all();
}

void Agent::Stop() {
  Interrupt();
  if (health_) {
    health_->Stop();
    health_.reset();
  }
  if (sync_thread_.joinable()) sync_thread_.join();
  if (watch_thread_.joinable()) watch_thread_.join();
  if (workload_api_) {
    workload_api_->Stop();
    workload_api_.reset();
    Log("info", "Workload API stopped");
  }
  // After the Workload API: its calls record into these metrics.
  sync_ok_ = sync_error_ = telemetry::Counter();
  metrics_.reset();
}

bool Agent::WaitFor(absl::Duration d) {
  std::unique_lock<std::mutex> lock(wake_mu_);
  wake_cv_.wait_for(lock, absl::ToChronoNanoseconds(d), [&] { return stop_; });
  return !stop_;
}

void Agent::RequestSync() {
  {
    std::lock_guard<std::mutex> lock(wake_mu_);
    sync_requested_ = true;
  }
  wake_cv_.notify_all();
}

absl::Status Agent::HandleRefusal(const absl::Status& status) {
  bool can_attest;
  {
    std::lock_guard<std::mutex> lock(mu_);
    can_attest = reattestable_;
  }
  // A join token not yet spent by this process (a new -joinToken after eviction) also works.
  bool fresh_token =
      !token_used_ &&
      std::holds_alternative<common::config::JoinTokenAgentAttestorConfig>(config_.node_attestor) &&
      !(options_.join_token.empty() && config_.join_token.empty());
  if (!can_attest && !fresh_token) {
    return Annotate(status, "the server refused the agent SVID and this agent cannot attest again");
  }
  Log("warning",
      "the server refused the agent SVID (" + std::string(status.message()) + "); attesting again");
  absl::Status last;
  for (const std::string& target : conn_->targets()) {
    last = AttestOnce(target);
    if (last.ok()) return absl::OkStatus();
    if (!IsTransient(last)) break;
  }
  return last;
}

absl::Status Agent::MaybeRenewAgentSvid() {
  absl::Time renew_at, not_after;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (agent_chain_.empty()) return absl::UnauthenticatedError("no agent SVID");
    renew_at = agent_renew_at_;
    not_after = agent_chain_.front().not_after();
    workload_api::CachedSvid own;
    for (const auto& c : agent_chain_) own.chain_der.push_back(c.der());
    if (IssuedByTainted(own)) renew_at = absl::InfinitePast();
  }
  absl::Time now = clock_.Now();
  if (now >= not_after) return HandleRefusal(absl::UnauthenticatedError("agent SVID expired"));
  if (now < renew_at) return absl::OkStatus();
  TRELLIS_ASSIGN_OR_RETURN(common::PrivateKey key, common::PrivateKey::Generate());
  TRELLIS_ASSIGN_OR_RETURN(std::string csr, common::BuildCsr(key));
  v1::RenewAgentRequest req;
  req.set_csr(csr);
  v1::RenewAgentResponse resp;
  grpc::ClientContext ctx;
  SetDeadline(&ctx, kCallTimeout);
  grpc::Status s = conn_->Stub()->RenewAgent(&ctx, req, &resp);
  if (!s.ok()) return FromGrpc(s);
  TRELLIS_ASSIGN_OR_RETURN(auto chain, ChainFromProto(resp.svid()));
  Log("info", "renewed the agent SVID");
  return AdoptAgentSvid(std::move(chain), std::move(key));
}

absl::Status Agent::SyncEntries() {
  v1::SyncAuthorizedEntriesRequest req;
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (const auto& [id, e] : entries_) (*req.mutable_known_revisions())[id] = e->revision;
    req.set_bundle_sequence(bundle_ ? bundle_->sequence() : 0);
    for (const auto& [td, b] : federated_)
      (*req.mutable_federated_bundle_sequences())[td] = b->sequence();
  }
  v1::SyncAuthorizedEntriesResponse resp;
  grpc::ClientContext ctx;
  SetDeadline(&ctx, kCallTimeout);
  grpc::Status s = conn_->Stub()->SyncAuthorizedEntries(&ctx, req, &resp);
  if (!s.ok()) return FromGrpc(s);

  std::optional<common::Bundle> new_bundle;
  if (resp.has_bundle()) {
    auto b = BundleFromProto(resp.bundle());
    if (!b.ok()) return Annotate(b.status(), "bundle from the server");
    if (b->trust_domain() != config_.trust_domain) {
      return absl::InternalError("server sent a bundle of another trust domain");
    }
    new_bundle = std::move(*b);
    std::set<std::string> tainted;
    for (const auto& a : resp.bundle().x509_authorities()) {
      if (!a.tainted()) continue;
      auto cert = common::Certificate::FromDer(a.asn1());
      if (cert.ok()) tainted.insert(cert->SubjectKeyId());
    }
    std::set<std::string> tainted_kids;
    for (const auto& a : resp.bundle().jwt_authorities()) {
      if (a.tainted()) tainted_kids.insert(a.key_id());
    }
    {
      std::lock_guard<std::mutex> lock(mu_);
      tainted_key_ids_ = std::move(tainted);
    }
    // JWT-SVIDs signed by a tainted key are fetched again on the next request.
    std::lock_guard<std::mutex> lock(jwt_mu_);
    for (auto it = jwt_cache_.begin(); it != jwt_cache_.end();) {
      it = tainted_kids.count(it->second.kid) ? jwt_cache_.erase(it) : std::next(it);
    }
  }
  std::map<std::string, std::shared_ptr<const common::Bundle>> fed_updates;
  for (const auto& fb : resp.federated_bundles()) {
    auto b = BundleFromProto(fb);
    if (!b.ok()) {
      Log("warning", "ignoring a federated bundle: " + std::string(b.status().message()));
      continue;
    }
    fed_updates[b->trust_domain().name()] = std::make_shared<const common::Bundle>(std::move(*b));
  }
  std::vector<std::string> dropped_jwt_entries;
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (const std::string& id : resp.removed_ids()) {
      entries_.erase(id);
      svids_.erase(id);
      renew_at_.erase(id);
      dropped_jwt_entries.push_back(id);
    }
    for (const auto& e : resp.changed()) {
      auto entry = EntryFromProto(e);
      if (!entry.ok()) {
        Log("warning", "ignoring entry " + e.id() + ": " + std::string(entry.status().message()));
        continue;
      }
      auto it = entries_.find(entry->id);
      if (it != entries_.end() && it->second->revision != entry->revision) {
        dropped_jwt_entries.push_back(entry->id);
      }
      std::string key = entry->id;
      entries_.insert_or_assign(
          key, std::make_shared<const workload_api::CachedEntry>(std::move(*entry)));
    }
    if (new_bundle) bundle_ = std::make_shared<const common::Bundle>(*new_bundle);
    for (auto& [td, b] : fed_updates) federated_[td] = std::move(b);
    for (const std::string& td : resp.removed_federated_bundles()) {
      auto parsed = common::TrustDomain::Parse(td);
      federated_.erase(parsed.ok() ? parsed->name() : td);
    }
    synced_once_ = true;
  }
  if (new_bundle) {
    if (absl::Status st = SaveBundle(config_.data_dir, *new_bundle); !st.ok()) {
      Log("error", "cannot persist the trust bundle: " + std::string(st.message()));
    }
  }
  if (!dropped_jwt_entries.empty()) {
    std::lock_guard<std::mutex> lock(jwt_mu_);
    for (auto it = jwt_cache_.begin(); it != jwt_cache_.end();) {
      std::string entry_id = it->first.substr(0, it->first.find('\n'));
      if (std::find(dropped_jwt_entries.begin(), dropped_jwt_entries.end(), entry_id) !=
          dropped_jwt_entries.end()) {
        it = jwt_cache_.erase(it);
      } else {
        ++it;
      }
    }
  }
  return absl::OkStatus();
}

absl::Status Agent::MintSvids() {
  struct Pending {
    std::string entry_id;
    int64_t revision;
    common::PrivateKey key;
  };
  std::vector<std::string> due;
  std::map<std::string, int64_t> revisions;
  absl::Time now = clock_.Now();
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (const auto& [id, entry] : entries_) {
      auto it = svids_.find(id);
      if (it == svids_.end() ||
          NeedsRenewal(now, renew_at_[id], it->second->not_after, it->second->entry_revision,
                       entry->revision) ||
          IssuedByTainted(*it->second)) {
        due.push_back(id);
        revisions[id] = entry->revision;
      }
    }
  }
  for (size_t start = 0; start < due.size(); start += kMaxBatch) {
    v1::BatchNewX509SVIDRequest req;
    std::map<std::string, Pending> pending;
    for (size_t i = start; i < std::min(due.size(), start + kMaxBatch); ++i) {
      TRELLIS_ASSIGN_OR_RETURN(common::PrivateKey key, common::PrivateKey::Generate());
      TRELLIS_ASSIGN_OR_RETURN(std::string csr, common::BuildCsr(key));
      auto* p = req.add_params();
      p->set_entry_id(due[i]);
      p->set_csr(csr);
      pending.emplace(due[i], Pending{due[i], revisions[due[i]], std::move(key)});
    }
    v1::BatchNewX509SVIDResponse resp;
    grpc::ClientContext ctx;
    SetDeadline(&ctx, kCallTimeout);
    grpc::Status s = conn_->Stub()->BatchNewX509SVID(&ctx, req, &resp);
    if (!s.ok()) return FromGrpc(s);
    int minted = 0;
    for (const auto& r : resp.results()) {
      auto it = pending.find(r.entry_id());
      if (it == pending.end()) continue;
      if (r.code() != 0) {
        Log("warning", "server refused an SVID for entry " + r.entry_id() + ": " + r.message());
        continue;
      }
      auto chain = ChainFromProto(r.svid());
      if (!chain.ok() || !common::CheckKeyMatchesCertificate(it->second.key, chain->front()).ok()) {
        Log("warning", "server returned an unusable SVID for entry " + r.entry_id());
        continue;
      }
      auto pkcs8 = it->second.key.ToPkcs8Der();
      if (!pkcs8.ok()) continue;
      workload_api::CachedSvid svid;
      for (const auto& c : *chain) svid.chain_der.push_back(c.der());
      svid.key_pkcs8_der = std::string(pkcs8->view());
      svid.not_before = chain->front().not_before();
      svid.not_after = chain->front().not_after();
      svid.entry_revision = it->second.revision;
      std::lock_guard<std::mutex> lock(mu_);
      if (!entries_.count(r.entry_id())) continue;  // removed meanwhile
      renew_at_[r.entry_id()] =
          RenewalTime(std::max(svid.not_before, clock_.Now()), svid.not_after, RandomUnitJitter());
      svids_[r.entry_id()] = std::make_shared<const workload_api::CachedSvid>(std::move(svid));
      ++minted;
    }
    if (minted > 0) Log("info", absl::StrCat("minted ", minted, " workload SVID(s)"));
  }
  return absl::OkStatus();
}

std::string Agent::TokenKid(const std::string& token) {
  auto header = common::Base64UrlDecode(token.substr(0, token.find('.')));
  if (!header.ok()) return "";
  // The server signed it; a header we cannot read just never matches a tainted kid.
  nlohmann::json j = nlohmann::json::parse(*header, nullptr, /*allow_exceptions=*/false);
  if (!j.is_object() || !j.contains("kid") || !j["kid"].is_string()) return "";
  return j["kid"].get<std::string>();
}

bool Agent::IssuedByTainted(const workload_api::CachedSvid& svid) const {
  if (tainted_key_ids_.empty()) return false;
  // Any certificate of the chain signed by (or being) a tainted authority taints the SVID.
  for (const std::string& der : svid.chain_der) {
    auto cert = common::Certificate::FromDer(der);
    if (!cert.ok()) continue;
    if (tainted_key_ids_.count(cert->AuthorityKeyId()) ||
        tainted_key_ids_.count(cert->SubjectKeyId())) {
      return true;
    }
  }
  return false;
}

bool Agent::PruneExpired() {
  absl::Time now = clock_.Now();
  bool changed = false;
  std::lock_guard<std::mutex> lock(mu_);
  for (auto it = svids_.begin(); it != svids_.end();) {
    if (now >= it->second->not_after) {
      it = svids_.erase(it);
      changed = true;
    } else {
      ++it;
    }
  }
  return changed;
}

bool Agent::Publish() {
  workload_api::CacheSnapshot snap;
  {
    std::lock_guard<std::mutex> lock(mu_);
    snap.ready = synced_once_;
    snap.bundle = bundle_;
    snap.federated = federated_;
    snap.entries = entries_;
    snap.svids = svids_;
  }
  // Skip publishing when nothing a workload can see changed.
  auto current = cache_.Snapshot();
  bool same = current->ready == snap.ready && current->bundle == snap.bundle &&
              current->federated == snap.federated &&
              current->entries.size() == snap.entries.size() &&
              current->svids.size() == snap.svids.size();
  if (same) {
    for (const auto& [id, e] : snap.entries) {
      auto it = current->entries.find(id);
      if (it == current->entries.end() || it->second->revision != e->revision) {
        same = false;
        break;
      }
    }
  }
  if (same) {
    for (const auto& [id, s] : snap.svids) {
      auto it = current->svids.find(id);
      if (it == current->svids.end() ||
          (it->second != s && it->second->chain_der != s->chain_der)) {
        same = false;
        break;
      }
    }
  }
  if (same) return false;
  cache_.Publish(std::move(snap));
  return true;
}

absl::Status Agent::Sync() {
  absl::Status s = MaybeRenewAgentSvid();
  if (s.code() == absl::StatusCode::kPermissionDenied ||
      s.code() == absl::StatusCode::kUnauthenticated) {
    s = HandleRefusal(s);
  }
  TRELLIS_RETURN_IF_ERROR(s);
  s = SyncEntries();
  if (s.code() == absl::StatusCode::kPermissionDenied ||
      s.code() == absl::StatusCode::kUnauthenticated) {
    TRELLIS_RETURN_IF_ERROR(HandleRefusal(s));
    s = SyncEntries();
  }
  TRELLIS_RETURN_IF_ERROR(s);
  // A taint learned in this sync replaces the agent's own SVID now, not one sync later.
  if (absl::Status renew = MaybeRenewAgentSvid(); !renew.ok()) {
    Log("warning", "renewing the agent SVID failed: " + std::string(renew.message()));
  }
  absl::Status mint = MintSvids();
  if (Publish()) {
    // A sync that changed the cache freed its transient protobufs, CSRs and keys in between
    // the long-lived SVIDs; hand those free pages back instead of keeping them resident.
    malloc_trim(0);
  }
  return mint;
}

void Agent::SyncLoop() {
  int failures = 0;
  while (true) {
    {
      std::lock_guard<std::mutex> lock(wake_mu_);
      if (stop_) return;
      sync_requested_ = false;
    }
    absl::Status s = Sync();
    (s.ok() ? sync_ok_ : sync_error_).Increment();
    if (s.ok()) Log("debug", "synced with " + conn_->CurrentTarget());
    absl::Duration wait = options_.sync_interval;
    if (!s.ok()) {
      if (PruneExpired()) Publish();
      Log("warning",
          "sync with " + conn_->CurrentTarget() + " failed: " + std::string(s.message()));
      if (IsTransient(s)) conn_->Failover();
      wait = std::min(wait, Backoff(failures++));
    } else {
      failures = 0;
      // Wake for the earliest renewal too, so a short-lived SVID is not renewed late.
      std::lock_guard<std::mutex> lock(mu_);
      absl::Time now = clock_.Now();
      for (const auto& [id, t] : renew_at_)
        wait = std::min(wait, std::max(absl::Milliseconds(100), t - now));
    }
    std::unique_lock<std::mutex> lock(wake_mu_);
    wake_cv_.wait_for(lock, absl::ToChronoNanoseconds(wait),
                      [&] { return stop_ || (sync_requested_ && s.ok()); });
  }
}

void Agent::WatchLoop() {
  int attempt = 0;
  while (true) {
    grpc::ClientContext ctx;
    {
      std::lock_guard<std::mutex> lock(wake_mu_);
      if (stop_) return;
      watch_ctx_ = &ctx;
    }
    auto stub = conn_->Stub();
    auto reader = stub->WatchChanges(&ctx, v1::WatchChangesRequest());
    v1::ChangeNotice notice;
    while (reader->Read(&notice)) {
      attempt = 0;
      RequestSync();
    }
    grpc::Status status = reader->Finish();
    {
      std::lock_guard<std::mutex> lock(wake_mu_);
      watch_ctx_ = nullptr;
      if (stop_) return;
    }
    if (status.error_code() != grpc::StatusCode::CANCELLED) {
      if (!WaitFor(Backoff(attempt++, absl::Milliseconds(500)))) return;
    }
  }
}

absl::StatusOr<std::string> Agent::MintJwt(const workload_api::CachedEntry& entry,
                                           const std::vector<std::string>& audience) {
  std::vector<std::string> sorted(audience);
  std::sort(sorted.begin(), sorted.end());
  sorted.erase(std::unique(sorted.begin(), sorted.end()), sorted.end());
  const std::string key = entry.id + "\n" + absl::StrJoin(sorted, "\n");
  absl::Time now = clock_.Now();
  std::optional<JwtCacheItem> cached;
  {
    std::lock_guard<std::mutex> lock(jwt_mu_);
    auto it = jwt_cache_.find(key);
    if (it != jwt_cache_.end()) {
      if (now < it->second.renew_at) return it->second.token;
      cached = it->second;
    }
  }
  v1::NewJWTSVIDRequest req;
  req.set_entry_id(entry.id);
  for (const auto& a : sorted) req.add_audience(a);
  v1::NewJWTSVIDResponse resp;
  grpc::ClientContext ctx;
  // Waits out a reconnect in progress instead of failing at once while the channel backs off.
  ctx.set_wait_for_ready(true);
  SetDeadline(&ctx, cached ? absl::Seconds(2) : absl::Seconds(8));
  grpc::Status s = conn_->Stub()->NewJWTSVID(&ctx, req, &resp);
  if (!s.ok()) {
    // Still valid: better than nothing while the server is away.
    if (cached && now < cached->expires_at) return cached->token;
    absl::Status st = FromGrpc(s);
    return IsTransient(st) ? absl::UnavailableError(std::string(st.message())) : st;
  }
  JwtCacheItem item;
  item.token = resp.svid().token();
  item.kid = TokenKid(item.token);
  absl::Time issued =
      resp.svid().issued_at() > 0 ? absl::FromUnixSeconds(resp.svid().issued_at()) : now;
  item.expires_at = absl::FromUnixSeconds(resp.svid().expires_at());
  item.renew_at = issued + (item.expires_at - issued) / 2;
  std::lock_guard<std::mutex> lock(jwt_mu_);
  for (auto it = jwt_cache_.begin(); it != jwt_cache_.end();) {
    it = now >= it->second.expires_at ? jwt_cache_.erase(it) : std::next(it);
  }
  jwt_cache_[key] = item;
  return item.token;
}

}  // namespace trellis::agent
