// The Trellis agent: node attestation, the agent SVID (persisted, renewed), entry sync with
// the server, batched workload SVID minting and renewal, and the Workload API it feeds.
#pragma once

#include <atomic>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "agent/agent_svid.h"
#include "agent/identity_state.h"
#include "agent/jwt_svid_cache.h"
#include "attestors/node/node_attestor.h"
#include "agent/server_connection.h"
#include "agent/svid_cache.h"
#include "agent/svid_minter.h"
#include "common/clock.h"
#include "common/config/agent_config.h"
#include "telemetry/metrics.h"

namespace grpc {
class ClientContext;
}

namespace trellis::attestors {
class WorkloadAttestor;
}

namespace trellis::workload_api {
class WorkloadApiServer;
}

namespace trellis::common {
class HealthListener;
}

namespace trellis::agent {

class Agent {
 public:
  struct Options {
    std::string join_token;  // overrides agent.join_token when non-empty
    absl::Duration sync_interval = absl::Seconds(5);
    int workload_api_threads = 4;
  };

  static absl::StatusOr<std::unique_ptr<Agent>> Create(common::config::AgentConfig config,
                                                       Options options, const common::Clock& clock);
  ~Agent();

  // Loads the persisted identity or attests (retrying while no server is reachable, until
  // Stop()), then serves the Workload API and syncs in the background. Fails when the
  // configuration is unusable or the server refuses attestation.
  absl::Status Start();
  // Asks Start() and the background loops to stop; safe from any thread.
  void Interrupt();
  // Interrupt(), then joins the background threads and stops the Workload API. Call from the
  // thread that called Start().
  void Stop();
  const std::string& socket_path() const { return config_.socket_path; }
  // The port /metrics is served on once Start() began; 0 without telemetry configured.
  int metrics_port() const { return metrics_ ? metrics_->port() : 0; }

  SvidCache* cache() { return &cache_; }
  std::optional<common::SpiffeId> agent_id() const { return agent_svid_.id(); }

 private:
  Agent(common::config::AgentConfig config, Options options, const common::Clock& clock,
        std::vector<std::string> targets);

  absl::Status StartMetrics();
  absl::Status Bootstrap();
  absl::Status AttestWithRetry();
  absl::Status AttestOnce(const std::string& target);
  absl::Status AdoptAgentSvid(std::vector<common::Certificate> chain, common::PrivateKey key);
  absl::Status Sync();
  absl::Status MaybeRenewAgentSvid();
  absl::Status SyncEntries();
  void SyncLoop();
  void WatchLoop();
  void RequestSync();
  // Sleeps up to `d` or until Stop(); false when stopping.
  bool WaitFor(absl::Duration d);
  absl::Status HandleRefusal(const absl::Status& status);
  void CancelWatch();

  const common::config::AgentConfig config_;
  const Options options_;
  const common::Clock& clock_;
  // Declared in call order: each part only calls those above it.
  SvidCache cache_;
  IdentityState state_;
  ServerConnection conn_;
  AgentSvid agent_svid_;
  SvidMinter minter_;
  JwtSvidCache jwt_svids_;
  std::unique_ptr<attestors::AgentNodeAttestor> attestor_;  // created on first need
  std::atomic<bool> insecure_bootstrap_pending_{false};
  bool token_used_ = false;
  std::vector<std::unique_ptr<attestors::WorkloadAttestor>> workload_attestors_;
  // Declared before workload_api_: the server it instruments must go first.
  std::unique_ptr<telemetry::Metrics> metrics_;
  telemetry::Counter sync_ok_;
  telemetry::Counter sync_error_;
  std::unique_ptr<workload_api::WorkloadApiServer> workload_api_;
  std::unique_ptr<common::HealthListener> health_;

  absl::Mutex wake_mu_;
  bool stop_ ABSL_GUARDED_BY(wake_mu_) = false;
  bool sync_requested_ ABSL_GUARDED_BY(wake_mu_) = false;
  grpc::ClientContext* watch_ctx_ ABSL_GUARDED_BY(wake_mu_) = nullptr;
  std::thread sync_thread_;
  std::thread watch_thread_;
};

}  // namespace trellis::agent
