// Node attestation interfaces: the server side and the agent side of one method.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
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

}  // namespace trellis::attestors
