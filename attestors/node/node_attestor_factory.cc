// Node attestor factories: typed plugin configuration to attestor instances.
#include "attestors/node/node_attestor_factory.h"

#include "attestors/node/join_token.h"
#include "attestors/node/x509pop.h"
#include "common/status.h"

namespace trellis::attestors {

absl::StatusOr<std::unique_ptr<ServerNodeAttestor>> CreateServerNodeAttestor(
    const common::config::ServerNodeAttestorConfig& config, const common::TrustDomain& td,
    datastore::DataStore* ds, const common::Clock& clock) {
  if (std::holds_alternative<common::config::JoinTokenServerAttestorConfig>(config)) {
    if (ds == nullptr) return absl::InvalidArgumentError("join_token attestor needs a datastore");
    return std::unique_ptr<ServerNodeAttestor>(
        std::make_unique<JoinTokenServerAttestor>(td, ds, clock));
  }
  const auto& x = std::get<common::config::X509PopServerAttestorConfig>(config);
  TRELLIS_ASSIGN_OR_RETURN(auto attestor,
                           X509PopServerAttestor::Create(td, x.ca_bundle_paths, clock));
  return std::unique_ptr<ServerNodeAttestor>(std::move(attestor));
}

absl::StatusOr<std::unique_ptr<AgentNodeAttestor>> CreateAgentNodeAttestor(
    const common::config::AgentNodeAttestorConfig& config, const std::string& join_token) {
  if (std::holds_alternative<common::config::JoinTokenAgentAttestorConfig>(config)) {
    if (join_token.empty()) {
      return absl::InvalidArgumentError(
          "NodeAttestor \"join_token\" needs a token: set agent.join_token or pass -joinToken");
    }
    return std::unique_ptr<AgentNodeAttestor>(std::make_unique<JoinTokenAgentAttestor>(join_token));
  }
  const auto& x = std::get<common::config::X509PopAgentAttestorConfig>(config);
  TRELLIS_ASSIGN_OR_RETURN(
      auto attestor,
      X509PopAgentAttestor::Create(x.private_key_path, x.certificate_path, x.intermediates_path));
  return std::unique_ptr<AgentNodeAttestor>(std::move(attestor));
}

absl::StatusOr<std::unique_ptr<AgentNodeAttestor>> CreateAgentNodeAttestor(
    const common::config::AgentConfig& config, const std::string& join_token_flag) {
  return CreateAgentNodeAttestor(config.node_attestor,
                                 join_token_flag.empty() ? config.join_token : join_token_flag);
}

}  // namespace trellis::attestors
