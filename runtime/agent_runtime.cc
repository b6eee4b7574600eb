// Agent process wiring: metrics, the Workload API and health around the pipeline, and the
// signal handling of `trellis-agent run`.
#include "runtime/agent_runtime.h"

#include <grpcpp/grpcpp.h>
#include <pthread.h>
#include <signal.h>

#include <atomic>
#include <chrono>
#include <thread>

#include "attestors/workload/workload_attestor.h"
#include "attestors/workload/workload_attestor_factory.h"
#include "common/health.h"
#include "common/log.h"
#include "common/status.h"
#include "runtime/agent_health.h"
#include "runtime/stop_signals.h"
#include "transport/grpc_log.h"
#include "workload_api/server.h"

namespace trellis::runtime {

Agent::Agent(std::unique_ptr<agent::Agent> pipeline, Options options, const common::Clock& clock,
             std::vector<std::unique_ptr<attestors::WorkloadAttestor>> workload_attestors)
    : options_(std::move(options)),
      clock_(clock),
      pipeline_(std::move(pipeline)),
      workload_attestors_(std::move(workload_attestors)) {}

absl::StatusOr<std::unique_ptr<Agent>> Agent::Create(common::config::AgentConfig config,
                                                     Options options, const common::Clock& clock) {
  TRELLIS_ASSIGN_OR_RETURN(std::unique_ptr<agent::Agent> pipeline,
                           agent::Agent::Create(std::move(config), options.pipeline, clock));
  common::SetLogLevel(pipeline->config().log_level);
  common::SetLogFormat(pipeline->config().log_format);
  if (!pipeline->config().log_file.empty()) {
    TRELLIS_RETURN_IF_ERROR(common::SetLogFile(pipeline->config().log_file));
  }
  transport::RouteGrpcLogs();
  TRELLIS_ASSIGN_OR_RETURN(
      std::vector<std::unique_ptr<attestors::WorkloadAttestor>> workload_attestors,
      attestors::CreateWorkloadAttestors(pipeline->config().workload_attestors));
  return std::unique_ptr<Agent>(
      new Agent(std::move(pipeline), std::move(options), clock, std::move(workload_attestors)));
}

Agent::~Agent() { Stop(); }

int Agent::metrics_port() const { return metrics_ ? metrics_->port() : 0; }

int Agent::health_port() const { return health_ ? health_->port() : 0; }

absl::Status Agent::StartMetrics() {
  if (metrics_) return absl::OkStatus();  // a repeated Start() keeps them
  const common::config::AgentConfig& config = pipeline_->config();
  TRELLIS_ASSIGN_OR_RETURN(metrics_, telemetry::Metrics::Create(config.telemetry, "trellis_agent"));
  const std::string sync_help = "Syncs with the server, by result";
  sync_ok_ = metrics_->AddCounter("trellis_agent_sync_total", sync_help, {{"result", "ok"}});
  sync_error_ = metrics_->AddCounter("trellis_agent_sync_total", sync_help, {{"result", "error"}});
  sync_duration_ = metrics_->AddHistogram(
      "trellis_agent_sync_duration_seconds",
      "Sync latency in seconds: agent SVID renewal, entry sync and SVID minting");
  // The gauges read the pipeline and this object; Stop() destroys them before either goes.
  agent::SvidCache* cache = pipeline_->cache();
  metrics_->AddGaugeCallback(
      "trellis_agent_cached_svids", "X.509-SVIDs cached for workloads",
      [cache] { return static_cast<double>(cache->Snapshot()->svids.size()); });
  metrics_->AddGaugeCallback(
      "trellis_agent_cached_entries", "Registration entries synced for this agent's workloads",
      [cache] { return static_cast<double>(cache->Snapshot()->entries.size()); });
  const agent::Agent* pipeline = pipeline_.get();
  metrics_->AddGaugeCallback(
      "trellis_agent_cached_jwt_svids", "JWT-SVIDs cached for workloads",
      [pipeline] { return static_cast<double>(pipeline->CachedJwtSvids()); });
  metrics_->AddCounterCallback("trellis_agent_svids_minted_total",
                               "Workload X509-SVIDs minted since start", {},
                               [pipeline] { return static_cast<double>(pipeline->SvidsMinted()); });
  const common::Clock* clock = &clock_;
  metrics_->AddGaugeCallback("trellis_agent_svid_remaining_lifetime_seconds",
                             "Seconds until the agent's own SVID expires", {},
                             [pipeline, clock]() -> std::optional<double> {
                               std::optional<absl::Time> expiry = pipeline->AgentSvidExpiry();
                               if (!expiry) return std::nullopt;
                               return absl::ToDoubleSeconds(*expiry - clock->Now());
                             });
  metrics_->AddGaugeCallback("trellis_agent_last_sync_age_seconds",
                             "Seconds since the last successful sync", {},
                             [this, clock]() -> std::optional<double> {
                               const int64_t ns = last_sync_ok_ns_.load();
                               if (ns == 0) return std::nullopt;
                               return absl::ToDoubleSeconds(clock->Now() - absl::FromUnixNanos(ns));
                             });
  metrics_->AddGaugeCallback("trellis_agent_ready", "1 when /ready would answer 200, else 0",
                             [this] {
                               for (const auto& [name, sub] : Health().subsystems) {
                                 if (!sub.healthy) return 0.0;
                               }
                               return 1.0;
                             });
  if (metrics_->port() != 0) {
    common::LogInfo("Serving Prometheus metrics on " + config.telemetry.prometheus->host + ":" +
                    std::to_string(metrics_->port()));
  }
  return absl::OkStatus();
}

absl::Status Agent::StartWorkloadApi() {
  std::vector<attestors::WorkloadAttestor*> attestors;
  for (auto& a : workload_attestors_) attestors.push_back(a.get());
  workload_api::WorkloadApiServer::Options wopts{socket_path(), options_.workload_api_threads};
  telemetry::Metrics* metrics = metrics_.get();
  wopts.configure_builder = [metrics](grpc::ServerBuilder& b) { metrics->Instrument(b); };
  agent::Agent* pipeline = pipeline_.get();
  TRELLIS_ASSIGN_OR_RETURN(workload_api_, workload_api::WorkloadApiServer::Start(
                                              wopts, pipeline->cache(), attestors,
                                              [pipeline](const workload_api::CachedEntry& entry,
                                                         const std::vector<std::string>& aud) {
                                                return pipeline->FetchJwtSvid(entry, aud);
                                              },
                                              clock_));
  common::LogInfo("Workload API listening on " + socket_path());
  return absl::OkStatus();
}

absl::Status Agent::StartHealth() {
  const common::config::AgentConfig& config = pipeline_->config();
  if (!config.health_checks.listener_enabled) return absl::OkStatus();
  TRELLIS_ASSIGN_OR_RETURN(
      health_, common::HealthListener::Start(config.health_checks, [this] { return Health(); }));
  return absl::OkStatus();
}

common::HealthReport Agent::Health() const {
  auto at = [](const std::atomic<int64_t>& ns) {
    int64_t v = ns.load();
    return v == 0 ? absl::InfinitePast() : absl::FromUnixNanos(v);
  };
  auto snap = pipeline_->cache()->Snapshot();
  AgentHealthInputs in;
  in.now = clock_.Now();
  in.sync_interval = options_.pipeline.sync_interval;
  in.sync_started = at(sync_started_ns_);
  in.last_attempt = at(last_sync_attempt_ns_);
  in.last_success = at(last_sync_ok_ns_);
  in.agent_svid_valid = pipeline_->AgentSvidValid();
  in.snapshot = snap.get();
  return AgentHealthReport(in);
}

absl::Status Agent::Start() {
  TRELLIS_RETURN_IF_ERROR(StartMetrics());
  TRELLIS_RETURN_IF_ERROR(pipeline_->ObtainIdentity());
  TRELLIS_RETURN_IF_ERROR(StartWorkloadApi());
  TRELLIS_RETURN_IF_ERROR(StartHealth());
  telemetry::Counter ok = sync_ok_, error = sync_error_;
  telemetry::Histogram duration = sync_duration_;
  sync_started_ns_ = absl::ToUnixNanos(clock_.Now());
  pipeline_->StartSyncing([this, ok, error, duration](bool synced, absl::Duration took) mutable {
    (synced ? ok : error).Increment();
    duration.Observe(absl::ToDoubleSeconds(took));
    const int64_t now = absl::ToUnixNanos(clock_.Now());
    last_sync_attempt_ns_ = now;
    if (synced) last_sync_ok_ns_ = now;
  });
  return absl::OkStatus();
}

void Agent::Interrupt() { pipeline_->Interrupt(); }

void Agent::Stop() {
  pipeline_->Interrupt();
  if (health_) {
    health_->Stop();
    health_.reset();
  }
  pipeline_->Stop();
  if (workload_api_) {
    workload_api_->Stop();
    workload_api_.reset();
    common::LogInfo("Workload API stopped");
  }
  // After the Workload API and the sync loop: both record into these metrics.
  sync_ok_ = sync_error_ = telemetry::Counter();
  sync_duration_ = telemetry::Histogram();
  metrics_.reset();
}

absl::Status RunAgentUntilSignal(common::config::AgentConfig config, Agent::Options options,
                                 const std::function<void(const Agent&)>& on_started) {
  // Signals are taken synchronously by one thread, so every other thread runs unaffected.
  sigset_t set = ProcessSignals();
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
  TRELLIS_ASSIGN_OR_RETURN(
      std::unique_ptr<Agent> agent,
      Agent::Create(std::move(config), std::move(options), common::SystemClock::Get()));
  Agent* raw = agent.get();
  std::atomic<bool> signalled{false};
  std::thread waiter([&] {
    WaitForStopSignal();
    signalled = true;
    raw->Interrupt();
  });
  absl::Status started = raw->Start();
  if (started.ok()) {
    on_started(*raw);
    // Serve until a stop signal.
    while (!signalled.load()) std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  // Wakes the waiter when start-up failed on its own.
  if (!signalled.load()) pthread_kill(waiter.native_handle(), SIGTERM);
  waiter.join();
  raw->Stop();
  agent.reset();
  // A stop signal during start-up is a clean stop.
  if (!started.ok() && started.code() != absl::StatusCode::kCancelled) return started;
  return absl::OkStatus();
}

}  // namespace trellis::runtime
