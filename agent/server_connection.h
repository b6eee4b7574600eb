// The agent's channels to its servers: the configured targets, the one in use, failover to
// the next on a transient error, and a fresh channel whenever the agent SVID changes.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
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

// The client identity is fixed per channel, so a new agent SVID means new channels.
class ServerConnection {
 public:
  ServerConnection(std::vector<std::string> targets, common::TrustDomain td,
                   transport::BundleSource bundle);

  const std::vector<std::string>& targets() const { return targets_; }

  void SetIdentity(std::optional<transport::TlsIdentity> identity);
  // The current target's stub with the agent's identity.
  std::shared_ptr<server::v1::Agent::Stub> Stub();
  // A stub without client identity for attestation against one target.
  std::shared_ptr<server::v1::Agent::Stub> AnonymousStub(const std::string& target,
                                                         bool insecure);
  void Failover();
  std::string CurrentTarget();

 private:
  std::shared_ptr<server::v1::Agent::Stub> MakeStub(
      const std::string& target, std::optional<transport::TlsIdentity> identity, bool insecure);

  const std::vector<std::string> targets_;
  const common::TrustDomain td_;
  const transport::BundleSource bundle_;
  absl::Mutex mu_;
  std::optional<transport::TlsIdentity> identity_ ABSL_GUARDED_BY(mu_);
  std::shared_ptr<server::v1::Agent::Stub> stub_ ABSL_GUARDED_BY(mu_);
  size_t current_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace trellis::agent
