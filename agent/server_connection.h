// The agent's channels to its servers: the configured targets, the one in use, failover to
// the next on a transient error, and a fresh channel whenever the agent SVID changes.
#pragma once

#include <cstdint>
#include <memory>
#include <functional>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/spiffe_id.h"
#include "transport/spiffe_tls.h"
#include "trellis/server/v1/agent.grpc.pb.h"

namespace grpc {
class ClientContext;
}

namespace trellis::agent {

// Deadline of one call to the server.
inline constexpr absl::Duration kCallTimeout = absl::Seconds(15);

// "host:port" targets from server_address (comma-separated; an item without a port gets
// server_port). INVALID_ARGUMENT when empty.
absl::StatusOr<std::vector<std::string>> ServerTargets(const std::string& server_address,
                                                       uint16_t server_port);

// True for failures another attempt (or another server) may not repeat.
bool IsTransient(const absl::Status& s);

void SetDeadline(grpc::ClientContext* ctx, absl::Duration d);

// How an agent spreads over the servers of its tier: it starts on a server picked at random,
// moves to another on a transient failure, and after max_age (+/- jitter) picks afresh at
// random among all of them, so a replica that joined or came back gets its share of agents
// without restarting them. A name resolving to several addresses counts each address.
struct ConnectionPolicy {
  absl::Duration max_age = absl::Minutes(10);  // zero: keep a connection until it fails
  double jitter = 0.2;                         // fraction of max_age, either way
};

// The client identity is fixed per channel, so a new agent SVID means new channels.
class ServerConnection {
 public:
  ServerConnection(std::vector<std::string> targets, common::TrustDomain td,
                   transport::BundleSource bundle, ConnectionPolicy policy = {});

  const std::vector<std::string>& targets() const { return targets_; }
  // The targets in the order to try them: the current one first.
  std::vector<std::string> TargetsFromCurrent();

  void SetIdentity(std::optional<transport::TlsIdentity> identity);
  // The current server's stub with the agent's identity; past the connection's age, a new
  // server is picked first.
  std::shared_ptr<server::v1::Agent::Stub> Stub();
  // A stub without client identity for attestation against one target.
  std::shared_ptr<server::v1::Agent::Stub> AnonymousStub(const std::string& target,
                                                         bool insecure);
  // Moves to another server (a transient failure on this one).
  void Failover();
  // Makes `target` (one of targets()) the current one, e.g. where attestation succeeded.
  void Prefer(const std::string& target);
  // The configured target in use, and the address connected to.
  std::string CurrentTarget();
  std::string CurrentAddress();
  // Called (outside the lock) whenever the server in use changes, so long-lived streams on
  // the old channel can move too.
  void SetSwitchListener(std::function<void()> listener);

 private:
  std::shared_ptr<server::v1::Agent::Stub> MakeStub(
      const std::string& address, std::optional<transport::TlsIdentity> identity, bool insecure);
  // Picks a target (or the given one) and one of its addresses at random; with
  // `avoid_current` (a failover) another address when one exists, and always a fresh channel.
  void RepickLocked(bool avoid_current, std::optional<size_t> only_target = std::nullopt)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::Time NextRotationLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void NotifySwitch();

  const std::vector<std::string> targets_;
  const common::TrustDomain td_;
  const transport::BundleSource bundle_;
  const ConnectionPolicy policy_;
  absl::Mutex mu_;
  std::optional<transport::TlsIdentity> identity_ ABSL_GUARDED_BY(mu_);
  std::shared_ptr<server::v1::Agent::Stub> stub_ ABSL_GUARDED_BY(mu_);
  size_t current_ ABSL_GUARDED_BY(mu_) = 0;
  std::string address_ ABSL_GUARDED_BY(mu_);  // gRPC target of current_
  absl::Time rotate_at_ ABSL_GUARDED_BY(mu_) = absl::InfiniteFuture();
  std::mt19937_64 rng_ ABSL_GUARDED_BY(mu_);
  std::function<void()> switch_listener_ ABSL_GUARDED_BY(mu_);
};

// The gRPC targets for "host:port": one per address the host resolves to ("ipv4:..." /
// "ipv6:[...]:port"), or the name itself for gRPC to resolve when it does not resolve now.
std::vector<std::string> ResolveTarget(const std::string& target);

}  // namespace trellis::agent
