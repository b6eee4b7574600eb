// Node attestor factories: typed plugin configuration to attestor instances.
#include "attestors/node/node_attestor_factory.h"

#include "attestors/cloud/aws_iid.h"
#include "attestors/cloud/azure_msi.h"
#include "attestors/cloud/gcp_iit.h"
#include "attestors/k8s/k8s_psat.h"
#include "attestors/node/join_token.h"
#include "attestors/node/x509pop.h"
#include "common/status.h"

namespace trellis::attestors {

namespace {

// Each mechanism's Create returns its own type; the factories hand out the interface.
template <typename T>
absl::StatusOr<std::unique_ptr<ServerNodeAttestor>> AsServer(absl::StatusOr<std::unique_ptr<T>> a) {
  if (!a.ok()) return a.status();
  return std::unique_ptr<ServerNodeAttestor>(std::move(*a));
}

template <typename T>
absl::StatusOr<std::unique_ptr<AgentNodeAttestor>> AsAgent(absl::StatusOr<std::unique_ptr<T>> a) {
  if (!a.ok()) return a.status();
  return std::unique_ptr<AgentNodeAttestor>(std::move(*a));
}

}  // namespace

absl::StatusOr<std::unique_ptr<ServerNodeAttestor>> CreateServerNodeAttestor(
    const common::config::ServerNodeAttestorConfig& config, const common::TrustDomain& td,
    datastore::DataStore* ds, const common::Clock& clock) {
  namespace cfg = common::config;
  if (std::holds_alternative<cfg::JoinTokenServerAttestorConfig>(config)) {
    if (ds == nullptr) return absl::InvalidArgumentError("join_token attestor needs a datastore");
    return std::unique_ptr<ServerNodeAttestor>(
        std::make_unique<JoinTokenServerAttestor>(td, ds, clock));
  }
  if (const auto* x = std::get_if<cfg::X509PopServerAttestorConfig>(&config)) {
    return AsServer(X509PopServerAttestor::Create(td, x->ca_bundle_paths, clock));
  }
  if (const auto* k = std::get_if<cfg::K8sPsatServerAttestorConfig>(&config)) {
    return AsServer(K8sPsatServerAttestor::Create(td, *k));
  }
  if (const auto* a = std::get_if<cfg::AwsIidServerAttestorConfig>(&config)) {
    return AsServer(AwsIidServerAttestor::Create(td, *a, clock));
  }
  if (const auto* g = std::get_if<cfg::GcpIitServerAttestorConfig>(&config)) {
    return AsServer(GcpIitServerAttestor::Create(td, *g, clock));
  }
  return AsServer(AzureMsiServerAttestor::Create(
      td, std::get<cfg::AzureMsiServerAttestorConfig>(config), clock));
}

absl::StatusOr<std::unique_ptr<AgentNodeAttestor>> CreateAgentNodeAttestor(
    const common::config::AgentNodeAttestorConfig& config, const std::string& join_token) {
  namespace cfg = common::config;
  if (std::holds_alternative<cfg::JoinTokenAgentAttestorConfig>(config)) {
    if (join_token.empty()) {
      return absl::InvalidArgumentError(
          "NodeAttestor \"join_token\" needs a token: set agent.join_token or pass -joinToken");
    }
    return std::unique_ptr<AgentNodeAttestor>(std::make_unique<JoinTokenAgentAttestor>(join_token));
  }
  if (const auto* x = std::get_if<cfg::X509PopAgentAttestorConfig>(&config)) {
    return AsAgent(X509PopAgentAttestor::Create(x->private_key_path, x->certificate_path,
                                                x->intermediates_path));
  }
  if (const auto* k = std::get_if<cfg::K8sPsatAgentAttestorConfig>(&config)) {
    return AsAgent(K8sPsatAgentAttestor::Create(*k));
  }
  if (const auto* a = std::get_if<cfg::AwsIidAgentAttestorConfig>(&config)) {
    return AsAgent(AwsIidAgentAttestor::Create(*a));
  }
  if (const auto* g = std::get_if<cfg::GcpIitAgentAttestorConfig>(&config)) {
    return AsAgent(GcpIitAgentAttestor::Create(*g));
  }
  return AsAgent(AzureMsiAgentAttestor::Create(std::get<cfg::AzureMsiAgentAttestorConfig>(config)));
}

absl::StatusOr<std::unique_ptr<AgentNodeAttestor>> CreateAgentNodeAttestor(
    const common::config::AgentConfig& config, const std::string& join_token_flag) {
  return CreateAgentNodeAttestor(config.node_attestor,
                                 join_token_flag.empty() ? config.join_token : join_token_flag);
}

}  // namespace trellis::attestors
