// Node attestation: the server and agent sides of each method, and their factories.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "common/clock.h"
#include "common/config/agent_config.h"
#include "common/config/server_config.h"
#include "common/spiffe_id.h"
#include "datastore/datastore.h"

namespace trellis::attestors {

// Server side of one attestation method.
class ServerNodeAttestor {
 public:
  virtual ~ServerNodeAttestor() = default;
  virtual std::string Name() const = 0;  // "join_token", "x509pop"
  struct Result {
    common::SpiffeId agent_id;
    std::vector<datastore::Selector> selectors;
    bool reattestable = false;
  };
  // `challenge(bytes) -> StatusOr<response bytes>` performs one round trip with the agent.
  // PERMISSION_DENIED when attestation fails, INVALID_ARGUMENT for a malformed payload.
  virtual absl::StatusOr<Result> Attest(
      std::string_view payload,
      const std::function<absl::StatusOr<std::string>(std::string)>& challenge) = 0;
};

// Agent side of one attestation method.
class AgentNodeAttestor {
 public:
  virtual ~AgentNodeAttestor() = default;
  virtual std::string Name() const = 0;
  virtual absl::StatusOr<std::string> Payload() = 0;
  virtual absl::StatusOr<std::string> Answer(std::string_view challenge) = 0;
};

absl::StatusOr<std::unique_ptr<ServerNodeAttestor>> CreateServerNodeAttestor(
    const common::config::ServerNodeAttestorConfig& config, const common::TrustDomain& td,
    datastore::DataStore* ds, const common::Clock& clock);

// `join_token` overrides the configured token (the -joinToken flag) when non-empty.
absl::StatusOr<std::unique_ptr<AgentNodeAttestor>> CreateAgentNodeAttestor(
    const common::config::AgentNodeAttestorConfig& config, const std::string& join_token);

}  // namespace trellis::attestors
