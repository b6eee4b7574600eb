// The Trellis agent: node attestation, the agent SVID (persisted, renewed), entry sync with
// the server, batched workload SVID minting and renewal, and the Workload API it feeds.
#pragma once

#include <atomic>
#include <condition_variable>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/statusor.h"
#include "attestors/node/node_attestor.h"
#include "common/bundle.h"
#include "common/clock.h"
#include "common/config/agent_config.h"
#include "common/keys.h"
#include "common/x509.h"
#include "telemetry/metrics.h"
#include "workload_api/cache.h"

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

class ServerConnection;

// "host:port" targets from server_address (comma-separated; an item without a port gets
// server_port). INVALID_ARGUMENT when empty.
absl::StatusOr<std::vector<std::string>> ServerTargets(const std::string& server_address,
                                                       uint16_t server_port);

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

  workload_api::Cache* cache() { return &cache_; }
  std::optional<common::SpiffeId> agent_id() const;

 private:
  struct JwtCacheItem {
    std::string token;
    std::string kid;  // signing key, so a taint of that key drops the token
    absl::Time renew_at;
    absl::Time expires_at;
  };

  Agent(common::config::AgentConfig config, Options options, const common::Clock& clock);

  absl::Status StartMetrics();
  absl::Status LoadBootstrap();
  absl::Status AttestWithRetry();
  absl::Status AttestOnce(const std::string& target);
  absl::Status AdoptAgentSvid(std::vector<common::Certificate> chain, common::PrivateKey key);
  absl::Status Sync();
  absl::Status MaybeRenewAgentSvid();
  absl::Status SyncEntries();
  absl::Status MintSvids();
  bool PruneExpired();
  // True when the SVID chains to an authority the server marked tainted (requires mu_).
  bool IssuedByTainted(const workload_api::CachedSvid& svid) const;
  // The "kid" of a compact JWS header ("" when absent).
  static std::string TokenKid(const std::string& token);
  // False when nothing a workload can see changed (nothing was published).
  bool Publish();
  void SyncLoop();
  void WatchLoop();
  void RequestSync();
  // Sleeps up to `d` or until Stop(); false when stopping.
  bool WaitFor(absl::Duration d);
  absl::Status HandleRefusal(const absl::Status& status);
  absl::StatusOr<std::string> MintJwt(const workload_api::CachedEntry& entry,
                                      const std::vector<std::string>& audience);
  std::shared_ptr<const common::Bundle> CurrentBundle() const;

  common::config::AgentConfig config_;
  Options options_;
  const common::Clock& clock_;
  workload_api::Cache cache_;
  std::unique_ptr<ServerConnection> conn_;
  std::unique_ptr<attestors::AgentNodeAttestor> attestor_;  // created on first need
  std::vector<std::unique_ptr<attestors::WorkloadAttestor>> workload_attestors_;
  // Declared before workload_api_: the server it instruments must go first.
  std::unique_ptr<telemetry::Metrics> metrics_;
  telemetry::Counter sync_ok_;
  telemetry::Counter sync_error_;
  std::unique_ptr<workload_api::WorkloadApiServer> workload_api_;
  std::unique_ptr<common::HealthListener> health_;

  mutable std::mutex mu_;
  // Guarded by mu_:
  std::shared_ptr<const common::Bundle> bundle_;
  std::map<std::string, std::shared_ptr<const common::Bundle>> federated_;
  std::vector<common::Certificate> agent_chain_;
  std::optional<common::PrivateKey> agent_key_;
  absl::Time agent_renew_at_;
  bool reattestable_ = false;
  bool insecure_bootstrap_pending_ = false;
  std::map<std::string, std::shared_ptr<const workload_api::CachedEntry>> entries_;
  std::map<std::string, std::shared_ptr<const workload_api::CachedSvid>> svids_;
  std::map<std::string, absl::Time> renew_at_;
  std::set<std::string> tainted_key_ids_;  // subject key ids of tainted X.509 authorities
  bool synced_once_ = false;

  std::mutex jwt_mu_;
  std::map<std::string, JwtCacheItem> jwt_cache_;  // guarded by jwt_mu_

  std::mutex wake_mu_;
  std::condition_variable wake_cv_;
  bool stop_ = false;                         // guarded by wake_mu_
  bool sync_requested_ = false;               // guarded by wake_mu_
  grpc::ClientContext* watch_ctx_ = nullptr;  // guarded by wake_mu_
  bool token_used_ = false;
  std::thread sync_thread_;
  std::thread watch_thread_;
};

}  // namespace trellis::agent
