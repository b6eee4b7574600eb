// The agent's order of work: bootstrap and attestation, then the sync loop (agent SVID
// renewal, entry sync, minting, publication) woken by the server's change watch.
#include "agent/agent.h"

#include <grpcpp/grpcpp.h>
#include <malloc.h>

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "agent/attestation_call.h"
#include "agent/bootstrap.h"
#include "agent/entry_sync.h"
#include "agent/rotation.h"
#include "agent/state_store.h"
#include "attestors/node/node_attestor_factory.h"
#include "common/log.h"
#include "common/status.h"

namespace trellis::agent {

namespace v1 = ::trellis::server::v1;

Agent::Agent(common::config::AgentConfig config, Options options, const common::Clock& clock,
             std::vector<std::string> targets)
    : config_(std::move(config)),
      options_(std::move(options)),
      clock_(clock),
      conn_(std::move(targets), config_.trust_domain, [this] { return state_.Bundle(); },
            ConnectionPolicy{config_.server_connection_max_age}),
      agent_svid_(config_.data_dir, config_.trust_domain, clock),
      minter_(&conn_, clock),
      jwt_svids_(&conn_, clock) {
  // The watch stream lives on the old server's channel: move it with the connection.
  conn_.SetSwitchListener([this] { CancelWatch(); });
}

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
  return std::unique_ptr<Agent>(
      new Agent(std::move(config), std::move(options), clock, std::move(targets)));
}

Agent::~Agent() { Stop(); }

absl::Status Agent::Bootstrap() {
  TRELLIS_ASSIGN_OR_RETURN(BootstrapTrust trust, LoadBootstrap(config_, clock_));
  if (trust.bundle) state_.SetBundle(std::move(trust.bundle));
  if (trust.insecure) insecure_bootstrap_pending_ = true;
  if (trust.reattestable) agent_svid_.set_reattestable(*trust.reattestable);
  if (trust.persisted) agent_svid_.Restore(*std::move(trust.persisted));
  return absl::OkStatus();
}

absl::Status Agent::AdoptAgentSvid(std::vector<common::Certificate> chain, common::PrivateKey key) {
  std::shared_ptr<const common::Bundle> bundle = state_.Bundle();
  TRELLIS_ASSIGN_OR_RETURN(transport::TlsIdentity identity,
                           agent_svid_.Adopt(std::move(chain), std::move(key), bundle.get()));
  conn_.SetIdentity(std::move(identity));
  // The watch stream still runs on the old identity's channel: restart it.
  CancelWatch();
  return absl::OkStatus();
}

absl::Status Agent::AttestOnce(const std::string& target) {
  if (!attestor_) {
    TRELLIS_ASSIGN_OR_RETURN(attestor_,
                             attestors::CreateAgentNodeAttestor(config_, options_.join_token));
  }
  std::shared_ptr<const common::Bundle> current = state_.Bundle();
  bool insecure = insecure_bootstrap_pending_ || current == nullptr;
  if (attestor_->Name() == "join_token") token_used_ = true;
  TRELLIS_ASSIGN_OR_RETURN(
      AttestationResult result,
      agent::AttestOnce(conn_, *attestor_, target, insecure, config_.trust_domain, clock_));
  if (!current || result.bundle.sequence() >= current->sequence() || insecure) {
    state_.SetBundle(std::make_shared<const common::Bundle>(std::move(result.bundle)));
  }
  insecure_bootstrap_pending_ = false;
  agent_svid_.set_reattestable(result.reattestable);
  return AdoptAgentSvid(std::move(result.chain), std::move(result.key));
}

absl::Status Agent::AttestWithRetry() {
  int attempt = 0;
  while (true) {
    absl::Status last;
    for (const std::string& target : conn_.TargetsFromCurrent()) {
      last = AttestOnce(target);
      if (last.ok()) {
        conn_.Prefer(target);
        common::LogInfo("node attestation succeeded against " + target);
        return absl::OkStatus();
      }
      if (!IsTransient(last)) return Annotate(last, "node attestation failed");
      common::LogWarn("node attestation against " + target + ": " + std::string(last.message()));
    }
    if (!WaitFor(Backoff(attempt++))) return absl::CancelledError("agent is stopping");
  }
}

absl::Status Agent::ObtainIdentity() {
  TRELLIS_RETURN_IF_ERROR(Bootstrap());
  if (agent_svid_.present()) {
    TRELLIS_ASSIGN_OR_RETURN(std::optional<transport::TlsIdentity> identity,
                             agent_svid_.Identity());
    conn_.SetIdentity(std::move(identity));
    return absl::OkStatus();
  }
  return AttestWithRetry();
}

void Agent::StartSyncing(SyncObserver observer) {
  sync_observer_ = std::move(observer);
  sync_thread_ = std::thread([this] { SyncLoop(); });
  watch_thread_ = std::thread([this] { WatchLoop(); });
}

void Agent::Interrupt() {
  absl::MutexLock lock(&wake_mu_);
  stop_ = true;
  if (watch_ctx_) watch_ctx_->TryCancel();
}

void Agent::Stop() {
  Interrupt();
  if (sync_thread_.joinable()) sync_thread_.join();
  if (watch_thread_.joinable()) watch_thread_.join();
  sync_observer_ = nullptr;
}

bool Agent::WaitFor(absl::Duration d) {
  absl::MutexLock lock(&wake_mu_);
  wake_mu_.AwaitWithTimeout(absl::Condition(&stop_), d);
  return !stop_;
}

void Agent::RequestSync() {
  absl::MutexLock lock(&wake_mu_);
  sync_requested_ = true;
}

void Agent::CancelWatch() {
  absl::MutexLock lock(&wake_mu_);
  if (watch_ctx_) watch_ctx_->TryCancel();
}

absl::Status Agent::HandleRefusal(const absl::Status& status) {
  bool can_attest = agent_svid_.reattestable();
  // A join token not yet spent by this process (a new -joinToken after eviction) also works.
  bool fresh_token =
      !token_used_ &&
      std::holds_alternative<common::config::JoinTokenAgentAttestorConfig>(config_.node_attestor) &&
      !(options_.join_token.empty() && config_.join_token.empty());
  if (!can_attest && !fresh_token) {
    return Annotate(status, "the server refused the agent SVID and this agent cannot attest again");
  }
  common::LogWarn("the server refused the agent SVID (" + std::string(status.message()) +
                  "); attesting again");
  absl::Status last;
  for (const std::string& target : conn_.TargetsFromCurrent()) {
    last = AttestOnce(target);
    if (last.ok()) {
      conn_.Prefer(target);
      return absl::OkStatus();
    }
    if (!IsTransient(last)) break;
  }
  return last;
}

absl::Status Agent::MaybeRenewAgentSvid() {
  TRELLIS_ASSIGN_OR_RETURN(auto times, agent_svid_.RenewAtAndExpiry());
  auto [renew_at, not_after] = times;
  if (state_.IssuedByTainted(agent_svid_.ChainDer())) {
    renew_at = absl::InfinitePast();
  }
  absl::Time now = clock_.Now();
  if (now >= not_after) return HandleRefusal(absl::UnauthenticatedError("agent SVID expired"));
  if (now < renew_at) return absl::OkStatus();
  TRELLIS_ASSIGN_OR_RETURN(auto renewed, AgentSvid::Renew(conn_));
  common::LogInfo("renewed the agent SVID");
  return AdoptAgentSvid(std::move(renewed.first), std::move(renewed.second));
}

absl::Status Agent::SyncEntries() {
  TRELLIS_ASSIGN_OR_RETURN(SyncUpdate update,
                           agent::SyncEntries(conn_, *state_.Current(), config_.trust_domain));
  if (update.pages > 1) {
    common::LogDebug(absl::StrCat("synced ", update.changed.size(), " changed entries in ",
                                  update.pages, " pages"));
  }
  std::shared_ptr<const common::Bundle> new_bundle = update.bundle;
  // JWT-SVIDs signed by a tainted key are fetched again on the next request.
  if (update.bundle_sent) jwt_svids_.DropSignedBy(update.tainted_jwt_kids);
  std::vector<std::string> dropped = state_.ApplySync(std::move(update));
  if (new_bundle) {
    if (absl::Status st = SaveBundle(config_.data_dir, *new_bundle); !st.ok()) {
      common::LogError("cannot persist the trust bundle: " + std::string(st.message()));
    }
  }
  jwt_svids_.DropEntries(dropped);
  return absl::OkStatus();
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
    common::LogWarn("renewing the agent SVID failed: " + std::string(renew.message()));
  }
  absl::Status mint = minter_.MintDue(state_);
  if (state_.PublishTo(&cache_)) {
    // A sync that changed the cache freed its transient protobufs, CSRs and keys in between
    // the long-lived SVIDs; hand those free pages back instead of keeping them resident.
    malloc_trim(0);
  }
  return mint;
}

namespace {
constexpr absl::Duration kMintRoundPause = absl::Milliseconds(250);
}  // namespace

void Agent::SyncLoop() {
  int failures = 0;
  while (true) {
    {
      absl::MutexLock lock(&wake_mu_);
      if (stop_) return;
      sync_requested_ = false;
    }
    const absl::Time started = absl::Now();
    absl::Status s = Sync();
    if (sync_observer_) sync_observer_(s.ok(), absl::Now() - started);
    if (s.ok()) common::LogDebug("synced with " + conn_.CurrentTarget());
    absl::Duration wait = options_.sync_interval;
    if (!s.ok()) {
      if (state_.PruneExpired(clock_.Now())) state_.PublishTo(&cache_);
      common::LogWarn("sync with " + conn_.CurrentTarget() +
                      " failed: " + std::string(s.message()));
      if (IsTransient(s)) conn_.Failover();
      wait = std::min(wait, Backoff(failures++));
    } else {
      failures = 0;
      // Wake for the earliest renewal too, so a short-lived SVID is not renewed late.
      wait = minter_.UntilNextRenewal(*state_.Current(), absl::Milliseconds(100), wait);
      // SVIDs left due by a bounded round: the next round after a pause, so thousands of new
      // entries reach the server at a few thousand CSRs a second, not all at once.
      if (minter_.LeftDue() > 0) wait = std::min(wait, kMintRoundPause);
    }
    struct Wake {
      Agent* agent;
      bool synced;
    } wake{this, s.ok()};
    absl::MutexLock lock(&wake_mu_);
    wake_mu_.AwaitWithTimeout(absl::Condition(
                                  +[](Wake* w) ABSL_NO_THREAD_SAFETY_ANALYSIS {
                                    return w->agent->stop_ ||
                                           (w->agent->sync_requested_ && w->synced);
                                  },
                                  &wake),
                              wait);
  }
}

void Agent::WatchLoop() {
  int attempt = 0;
  while (true) {
    grpc::ClientContext ctx;
    {
      absl::MutexLock lock(&wake_mu_);
      if (stop_) return;
      watch_ctx_ = &ctx;
    }
    auto stub = conn_.Stub();
    auto reader = stub->WatchChanges(&ctx, v1::WatchChangesRequest());
    v1::ChangeNotice notice;
    while (reader->Read(&notice)) {
      attempt = 0;
      RequestSync();
    }
    grpc::Status status = reader->Finish();
    {
      absl::MutexLock lock(&wake_mu_);
      watch_ctx_ = nullptr;
      if (stop_) return;
    }
    if (status.error_code() == grpc::StatusCode::PERMISSION_DENIED ||
        status.error_code() == grpc::StatusCode::UNAUTHENTICATED) {
      // The server ended the stream because it refuses this agent now (banned, evicted):
      // sync at once, so the refusal is handled (re-attestation where allowed) without
      // waiting for the next periodic sync.
      RequestSync();
    }
    if (status.error_code() != grpc::StatusCode::CANCELLED) {
      if (!WaitFor(Backoff(attempt++, absl::Milliseconds(500)))) return;
    }
  }
}

}  // namespace trellis::agent
