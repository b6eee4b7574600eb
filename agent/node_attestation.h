// The agent's side of node attestation: what it sends in AttestAgent and how it answers a
// challenge, for join_token and x509pop.
#pragma once

#include <memory>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "common/config/agent_config.h"

namespace trellis::agent {

class NodeAttestor {
 public:
  virtual ~NodeAttestor() = default;
  virtual std::string Name() const = 0;
  virtual absl::StatusOr<std::string> Payload() = 0;
  virtual absl::StatusOr<std::string> Answer(std::string_view challenge) = 0;
};

// `join_token` overrides agent.join_token (the -joinToken flag) when non-empty.
// INVALID_ARGUMENT when join_token is configured without a token, or x509pop files are bad.
absl::StatusOr<std::unique_ptr<NodeAttestor>> CreateNodeAttestor(
    const common::config::AgentConfig& config, const std::string& join_token);

}  // namespace trellis::agent
