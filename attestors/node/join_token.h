// join_token node attestation: a single-use token the operator generated on the server.
#pragma once

#include <string>

#include "attestors/node/node_attestor.h"
#include "common/clock.h"

namespace trellis::attestors {

inline constexpr char kJoinTokenName[] = "join_token";

// Consumes the token atomically, so of racing attestations with one token exactly one wins.
// Unknown, used or expired tokens: PERMISSION_DENIED.
class JoinTokenServerAttestor final : public ServerNodeAttestor {
 public:
  JoinTokenServerAttestor(common::TrustDomain td, datastore::DataStore* ds,
                          const common::Clock& clock)
      : td_(std::move(td)), ds_(ds), clock_(clock) {}
  std::string Name() const override { return kJoinTokenName; }
  absl::StatusOr<Result> Attest(
      std::string_view payload,
      const std::function<absl::StatusOr<std::string>(std::string)>& challenge) override;

 private:
  common::TrustDomain td_;
  datastore::DataStore* ds_;
  const common::Clock& clock_;
};

class JoinTokenAgentAttestor final : public AgentNodeAttestor {
 public:
  explicit JoinTokenAgentAttestor(std::string token) : token_(std::move(token)) {}
  std::string Name() const override { return kJoinTokenName; }
  absl::StatusOr<std::string> Payload() override;
  // join_token has no challenge: any challenge is a protocol error.
  absl::StatusOr<std::string> Answer(std::string_view challenge) override;

 private:
  std::string token_;
};

}  // namespace trellis::attestors
