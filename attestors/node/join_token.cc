// join_token attestation: the server consumes the token atomically; the agent sends it.
#include "attestors/node/join_token.h"

#include "common/status.h"

namespace trellis::attestors {

absl::StatusOr<ServerNodeAttestor::Result> JoinTokenServerAttestor::Attest(
    std::string_view payload, const std::function<absl::StatusOr<std::string>(std::string)>&) {
  if (payload.empty()) return absl::InvalidArgumentError("join token is empty");
  // The token becomes a path segment of the agent ID; a token that cannot is not ours.
  auto agent_id = common::AgentId(td_, kJoinTokenName, payload);
  if (!agent_id.ok()) return absl::PermissionDeniedError("join token is not valid");
  auto consumed = ds_->ConsumeJoinToken(std::string(payload), clock_.Now());
  if (!consumed.ok()) {
    if (absl::IsNotFound(consumed.status())) {
      return absl::PermissionDeniedError("join token does not exist or has already been used");
    }
    if (absl::IsFailedPrecondition(consumed.status())) {
      return absl::PermissionDeniedError("join token has expired");
    }
    return Annotate(consumed.status(), "consuming the join token");
  }
  return Result{*agent_id, {}, /*reattestable=*/false};
}

absl::StatusOr<std::string> JoinTokenAgentAttestor::Payload() {
  if (token_.empty()) {
    return absl::FailedPreconditionError(
        "join_token attestation needs a token (agent join_token or -joinToken)");
  }
  return token_;
}

absl::StatusOr<std::string> JoinTokenAgentAttestor::Answer(std::string_view) {
  return absl::InvalidArgumentError("join_token attestation has no challenge");
}

}  // namespace trellis::attestors
