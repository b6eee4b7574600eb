// k8s_psat node attestation: a projected service account token, checked by the cluster's API.
#pragma once

#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "attestors/k8s/kube_client.h"
#include "attestors/node/node_attestor.h"
#include "common/config/attestor_config.h"
#include "common/spiffe_id.h"

namespace trellis::attestors {

inline constexpr char kK8sPsatName[] = "k8s_psat";

// Set-up the configuration does not carry: where in-cluster clients look, and call timeouts.
struct K8sPsatServerOptions {
  k8s::InClusterOptions in_cluster;
  k8s::KubeClientOptions client;
};

// Reviews the agent's token with the cluster's TokenReview API, then ties it to a live pod
// and that pod's node. Agent ID spiffe://<td>/spire/agent/k8s_psat/<cluster>/<node uid>;
// selectors as SPIRE's k8s_psat. Refusals are PERMISSION_DENIED; API failures keep the
// client's code (UNAVAILABLE, FAILED_PRECONDITION, INTERNAL) so they are not mistaken for a
// refusal. Safe for concurrent Attest calls.
class K8sPsatServerAttestor final : public ServerNodeAttestor {
 public:
  // One client per cluster, from kube_config_file or in-cluster. INVALID_ARGUMENT for no
  // clusters, a cluster without service_account_allow_list, a malformed allow-list entry, a
  // cluster name that is not a SPIFFE path segment, or an unusable kubeconfig.
  static absl::StatusOr<std::unique_ptr<K8sPsatServerAttestor>> Create(
      common::TrustDomain td, const common::config::K8sPsatServerAttestorConfig& config,
      const K8sPsatServerOptions& options);
  static absl::StatusOr<std::unique_ptr<K8sPsatServerAttestor>> Create(
      common::TrustDomain td, const common::config::K8sPsatServerAttestorConfig& config);

  std::string Name() const override { return kK8sPsatName; }
  absl::StatusOr<Result> Attest(
      std::string_view payload,
      const std::function<absl::StatusOr<std::string>(std::string)>& challenge) override;

 private:
  struct Cluster {
    std::vector<std::string> allowed_service_accounts;  // "namespace:name"
    std::vector<std::string> audiences;
    std::vector<std::string> node_label_keys;
    std::vector<std::string> pod_label_keys;
    std::unique_ptr<k8s::KubeClient> client;
  };
  K8sPsatServerAttestor(common::TrustDomain td, std::map<std::string, Cluster> clusters)
      : td_(std::move(td)), clusters_(std::move(clusters)) {}

  common::TrustDomain td_;
  const std::map<std::string, Cluster> clusters_;  // read-only after construction
};

// Sends {"cluster": ..., "token": ...} with the token file's current content; no challenge.
class K8sPsatAgentAttestor final : public AgentNodeAttestor {
 public:
  // INVALID_ARGUMENT without a cluster or token_path. The token file is read on each Payload.
  static absl::StatusOr<std::unique_ptr<K8sPsatAgentAttestor>> Create(
      const common::config::K8sPsatAgentAttestorConfig& config);

  std::string Name() const override { return kK8sPsatName; }
  absl::StatusOr<std::string> Payload() override;
  absl::StatusOr<std::string> Answer(std::string_view challenge) override;

 private:
  explicit K8sPsatAgentAttestor(common::config::K8sPsatAgentAttestorConfig config)
      : config_(std::move(config)) {}
  const common::config::K8sPsatAgentAttestorConfig config_;
};

}  // namespace trellis::attestors
