// The Trellis agent's identity pipeline: node attestation, the agent SVID (persisted, renewed),
// entry sync with the server, batched workload SVID minting and renewal, and the published
// snapshot the Workload API reads. The process around it (Workload API socket, metrics,
// health) is wired in runtime/agent_runtime.
#pragma once

#include <atomic>
#include <functional>
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
#include "workload_api/identity_snapshot.h"

namespace grpc {
class ClientContext;
}

namespace trellis::agent {

class Agent {
 public:
  struct Options {
    std::string join_token;  // overrides agent.join_token when non-empty
    absl::Duration sync_interval = absl::Seconds(5);
  };
  // Told the result of every sync and how long it took, from the sync thread.
  using SyncObserver = std::function<void(bool synced, absl::Duration took)>;

  // Checks the server address and the bootstrap choice; nothing is contacted yet.
  static absl::StatusOr<std::unique_ptr<Agent>> Create(common::config::AgentConfig config,
                                                       Options options, const common::Clock& clock);
  ~Agent();

  // Loads the persisted identity or attests (retrying while no server is reachable, until
  // Interrupt()). Fails when the configuration is unusable or the server refuses attestation.
  absl::Status ObtainIdentity();
  // Starts the sync and watch loops in the background; call after ObtainIdentity() succeeded.
  void StartSyncing(SyncObserver observer = nullptr);
  // Asks ObtainIdentity() and the background loops to stop; safe from any thread.
  void Interrupt();
  // Interrupt(), then joins the background loops. Call from the thread that started them.
  void Stop();

  const common::config::AgentConfig& config() const { return config_; }
  // The published identities, read by the Workload API.
  SvidCache* cache() { return &cache_; }
  std::optional<common::SpiffeId> agent_id() const { return agent_svid_.id(); }
  // True while the agent's own SVID is present and unexpired.
  bool AgentSvidValid() const { return agent_svid_.ValidAt(clock_.Now()); }
  // The agent SVID's NotAfter; nullopt without one.
  std::optional<absl::Time> AgentSvidExpiry() const {
    absl::StatusOr<std::pair<absl::Time, absl::Time>> times = agent_svid_.RenewAtAndExpiry();
    if (!times.ok()) return std::nullopt;
    return times->second;
  }
  // JWT-SVIDs cached for workloads, and workload X509-SVIDs minted since start (metrics).
  size_t CachedJwtSvids() const { return jwt_svids_.Size(); }
  uint64_t SvidsMinted() const { return minter_.MintedTotal(); }
  // A JWT-SVID for `entry` (cached or new from the server), for the Workload API.
  absl::StatusOr<std::string> FetchJwtSvid(const workload_api::CachedEntry& entry,
                                           const std::vector<std::string>& audience) {
    return jwt_svids_.Fetch(entry, audience);
  }

 private:
  Agent(common::config::AgentConfig config, Options options, const common::Clock& clock,
        std::vector<std::string> targets);

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
  // Set before the sync thread starts and cleared after it ends; only that thread calls it.
  SyncObserver sync_observer_;

  absl::Mutex wake_mu_;
  bool stop_ ABSL_GUARDED_BY(wake_mu_) = false;
  bool sync_requested_ ABSL_GUARDED_BY(wake_mu_) = false;
  grpc::ClientContext* watch_ctx_ ABSL_GUARDED_BY(wake_mu_) = nullptr;
  std::thread sync_thread_;
  std::thread watch_thread_;
};

}  // namespace trellis::agent
