// The trellis-agent process: wires the agent's identity pipeline to the Workload API socket,
// the /metrics endpoint and the health listener from an AgentConfig, and stops them in order.
#pragma once

#include <atomic>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "agent/agent.h"
#include "common/clock.h"
#include "common/config/agent_config.h"
#include "telemetry/metrics.h"

namespace trellis::attestors {
class WorkloadAttestor;
}

namespace trellis::common {
class HealthListener;
struct HealthReport;
}

namespace trellis::workload_api {
class WorkloadApiServer;
}

namespace trellis::runtime {

class Agent {
 public:
  struct Options {
    agent::Agent::Options pipeline;
    // Threads for Workload API attestation and JWT minting.
    int workload_api_threads = 4;
  };

  // Applies log_level and log_format, checks the configuration and creates the pipeline and
  // the workload attestors. Nothing listens and no server is contacted yet.
  static absl::StatusOr<std::unique_ptr<Agent>> Create(common::config::AgentConfig config,
                                                       Options options, const common::Clock& clock);
  ~Agent();

  // Serves /metrics (when configured), loads the persisted identity or attests (retrying while
  // no server is reachable, until Interrupt()), then serves the Workload API and the health
  // listener and starts syncing. Fails when the configuration is unusable or the server
  // refuses attestation.
  absl::Status Start();
  // Asks Start() and the background loops to stop; safe from any thread.
  void Interrupt();
  // Interrupt(), then stops the health listener, the pipeline's loops, the Workload API and
  // /metrics, in that order. Call from the thread that called Start().
  void Stop();

  const std::string& socket_path() const { return pipeline_->config().socket_path; }
  // The port /metrics is served on once Start() began; 0 without telemetry configured.
  int metrics_port() const;
  // The port the health listener answers on once Start() succeeded; 0 without one.
  int health_port() const;
  agent::Agent& pipeline() { return *pipeline_; }

 private:
  Agent(std::unique_ptr<agent::Agent> pipeline, Options options, const common::Clock& clock,
        std::vector<std::unique_ptr<attestors::WorkloadAttestor>> workload_attestors);

  absl::Status StartMetrics();
  absl::Status StartWorkloadApi();
  absl::Status StartHealth();
  // What the health listener's /ready and /live report; also the `ready` gauge.
  common::HealthReport Health() const;

  const Options options_;
  const common::Clock& clock_;
  // Declared in wiring order: each part is destroyed before what it reads.
  std::unique_ptr<agent::Agent> pipeline_;
  std::vector<std::unique_ptr<attestors::WorkloadAttestor>> workload_attestors_;
  std::unique_ptr<telemetry::Metrics> metrics_;
  telemetry::Counter sync_ok_;
  telemetry::Counter sync_error_;
  telemetry::Histogram sync_duration_;
  // Unix nanoseconds of the sync loop's start, its last attempt and its last success (0:
  // none), written by the sync thread, read by health probes.
  std::atomic<int64_t> sync_started_ns_{0};
  std::atomic<int64_t> last_sync_attempt_ns_{0};
  std::atomic<int64_t> last_sync_ok_ns_{0};
  std::unique_ptr<workload_api::WorkloadApiServer> workload_api_;
  std::unique_ptr<common::HealthListener> health_;
};

// `trellis-agent run`: blocks SIGTERM and SIGINT, Create, Start, calls `on_started` once the
// agent serves, then waits for a stop signal and stops. A signal during start-up stops it too.
// OK after a clean stop (including one during start-up); otherwise why it could not run.
absl::Status RunAgentUntilSignal(common::config::AgentConfig config, Agent::Options options,
                                 const std::function<void(const Agent&)>& on_started);

}  // namespace trellis::runtime
