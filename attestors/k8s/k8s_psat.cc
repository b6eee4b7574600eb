// k8s_psat attestation: TokenReview, then the token's pod and node as the cluster knows them.
#include "attestors/k8s/k8s_psat.h"

#include <algorithm>
#include <nlohmann/json.hpp>

#include "absl/strings/ascii.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "common/file_util.h"
#include "common/status.h"

namespace trellis::attestors {
namespace {

using Json = nlohmann::json;

// A projected token is a JWT of a few kilobytes; anything far larger is not one.
constexpr size_t kMaxPayloadBytes = 64 * 1024;
constexpr char kServiceAccountPrefix[] = "system:serviceaccount:";
constexpr char kExtraPodName[] = "authentication.kubernetes.io/pod-name";
constexpr char kExtraPodUid[] = "authentication.kubernetes.io/pod-uid";
constexpr char kExtraNodeName[] = "authentication.kubernetes.io/node-name";

absl::Status Denied(const std::string& why) {
  return absl::PermissionDeniedError(std::string(kK8sPsatName) + ": " + why);
}

absl::Status Malformed(const std::string& why) {
  return absl::InvalidArgumentError(std::string(kK8sPsatName) + ": " + why);
}

// An identifier that becomes one segment of the agent's SPIFFE ID.
absl::Status CheckSegment(const std::string& value, const std::string& what) {
  if (value.find('/') != std::string::npos) {
    return absl::InvalidArgumentError(what + " \"" + value + "\" contains '/'");
  }
  absl::Status s = common::ValidatePath("/" + value);
  if (value.empty() || !s.ok()) {
    return absl::InvalidArgumentError(what + " \"" + value +
                                      "\" cannot be a SPIFFE ID path segment" +
                                      (s.ok() ? "" : ": " + std::string(s.message())));
  }
  return absl::OkStatus();
}

// The single value of a user extra key; empty when absent or ambiguous.
std::string SingleExtra(const k8s::TokenReviewStatus& review, const std::string& key) {
  auto it = review.extra.find(key);
  if (it == review.extra.end() || it->second.size() != 1) return "";
  return it->second.front();
}

void AddLabelSelectors(const std::vector<std::string>& keys,
                       const std::map<std::string, std::string>& labels, const std::string& kind,
                       std::vector<datastore::Selector>* out) {
  std::vector<std::string> sorted = keys;
  std::sort(sorted.begin(), sorted.end());
  sorted.erase(std::unique(sorted.begin(), sorted.end()), sorted.end());
  for (const std::string& key : sorted) {
    auto it = labels.find(key);
    if (it == labels.end()) continue;
    out->push_back({kK8sPsatName, kind + ":" + key + ":" + it->second});
  }
}

}  // namespace

absl::StatusOr<std::unique_ptr<K8sPsatServerAttestor>> K8sPsatServerAttestor::Create(
    common::TrustDomain td, const common::config::K8sPsatServerAttestorConfig& config) {
  return Create(std::move(td), config, K8sPsatServerOptions());
}

absl::StatusOr<std::unique_ptr<K8sPsatServerAttestor>> K8sPsatServerAttestor::Create(
    common::TrustDomain td, const common::config::K8sPsatServerAttestorConfig& config,
    const K8sPsatServerOptions& options) {
  auto invalid = [](const std::string& why) {
    return absl::InvalidArgumentError("NodeAttestor \"k8s_psat\": " + why);
  };
  if (config.clusters.empty()) return invalid("configure at least one cluster");
  std::map<std::string, Cluster> clusters;
  for (const auto& [name, c] : config.clusters) {
    const std::string where = "cluster \"" + name + "\"";
    if (absl::Status s = CheckSegment(name, "cluster name"); !s.ok()) {
      return invalid(std::string(s.message()));
    }
    if (c.service_account_allow_list.empty()) {
      return invalid(where + " needs service_account_allow_list");
    }
    for (const std::string& entry : c.service_account_allow_list) {
      std::vector<std::string> parts = absl::StrSplit(entry, ':');
      if (parts.size() != 2 || parts[0].empty() || parts[1].empty()) {
        return invalid(where + " service_account_allow_list entry \"" + entry +
                       "\" is not \"namespace:name\"");
      }
    }
    Cluster cluster;
    cluster.allowed_service_accounts = c.service_account_allow_list;
    // SPIRE reads an empty audience list as its default.
    cluster.audiences = c.audience.empty() ? std::vector<std::string>{"spire-server"} : c.audience;
    cluster.node_label_keys = c.allowed_node_label_keys;
    cluster.pod_label_keys = c.allowed_pod_label_keys;
    absl::StatusOr<std::unique_ptr<k8s::KubeClient>> client =
        c.kube_config_file.empty()
            ? k8s::KubeClient::InCluster(options.in_cluster, options.client)
            : k8s::KubeClient::FromKubeconfig(c.kube_config_file, options.client);
    if (!client.ok()) return invalid(where + ": " + std::string(client.status().message()));
    cluster.client = std::move(*client);
    clusters.emplace(name, std::move(cluster));
  }
  return std::unique_ptr<K8sPsatServerAttestor>(
      new K8sPsatServerAttestor(std::move(td), std::move(clusters)));
}

absl::StatusOr<ServerNodeAttestor::Result> K8sPsatServerAttestor::Attest(
    std::string_view payload, const std::function<absl::StatusOr<std::string>(std::string)>&) {
  if (payload.empty()) return Malformed("empty attestation payload");
  if (payload.size() > kMaxPayloadBytes) return Malformed("attestation payload is too large");
  Json j = Json::parse(payload, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded() || !j.is_object()) {
    return Malformed("attestation payload is not a JSON object");
  }
  auto cluster_it = j.find("cluster");
  auto token_it = j.find("token");
  if (cluster_it == j.end() || !cluster_it->is_string() || cluster_it->get<std::string>().empty()) {
    return Malformed("attestation payload lacks a \"cluster\" string");
  }
  if (token_it == j.end() || !token_it->is_string() || token_it->get<std::string>().empty()) {
    return Malformed("attestation payload lacks a \"token\" string");
  }
  const std::string cluster_name = cluster_it->get<std::string>();
  const std::string token = token_it->get<std::string>();
  auto found = clusters_.find(cluster_name);
  if (found == clusters_.end()) {
    return Denied("cluster \"" + cluster_name + "\" is not configured");
  }
  const Cluster& cluster = found->second;
  const std::string in_cluster = " in cluster \"" + cluster_name + "\"";
  auto api_error = [&](const absl::Status& s) {
    return Annotate(s, std::string(kK8sPsatName) + ": cluster \"" + cluster_name + "\"");
  };

  // The cluster vouches for the token, for one of our audiences.
  absl::StatusOr<k8s::TokenReviewStatus> review =
      cluster.client->CreateTokenReview(token, cluster.audiences);
  if (!review.ok()) return api_error(review.status());
  if (!review->authenticated) {
    return Denied("token is not authenticated" + in_cluster +
                  (review->error.empty() ? "" : ": " + review->error));
  }
  // An empty status.audiences means the API server's own audience, which is not ours.
  const bool audience_ok =
      std::any_of(review->audiences.begin(), review->audiences.end(), [&](const std::string& a) {
        return std::find(cluster.audiences.begin(), cluster.audiences.end(), a) !=
               cluster.audiences.end();
      });
  if (!audience_ok) {
    return Denied("token audiences [" + absl::StrJoin(review->audiences, ", ") +
                  "] do not include any of [" + absl::StrJoin(cluster.audiences, ", ") + "]" +
                  in_cluster);
  }

  // A service account on the allow list.
  const std::string& username = review->username;
  if (username.rfind(kServiceAccountPrefix, 0) != 0) {
    return Denied("token user \"" + username + "\" is not a service account");
  }
  std::vector<std::string> sa_parts =
      absl::StrSplit(username.substr(sizeof(kServiceAccountPrefix) - 1), ':');
  if (sa_parts.size() != 2 || sa_parts[0].empty() || sa_parts[1].empty()) {
    return Denied("token user \"" + username + "\" is not a service account");
  }
  const std::string& ns = sa_parts[0];
  const std::string& sa = sa_parts[1];
  const std::string ns_sa = ns + ":" + sa;
  if (std::find(cluster.allowed_service_accounts.begin(), cluster.allowed_service_accounts.end(),
                ns_sa) == cluster.allowed_service_accounts.end()) {
    return Denied("service account \"" + ns_sa + "\" is not allowed" + in_cluster);
  }

  // The token is bound to a pod that still exists with the same UID.
  const std::string pod_name = SingleExtra(*review, kExtraPodName);
  const std::string pod_uid = SingleExtra(*review, kExtraPodUid);
  if (pod_name.empty() || pod_uid.empty()) {
    return Denied("token of " + ns_sa + " is not bound to a pod");
  }
  absl::StatusOr<k8s::PodInfo> pod = cluster.client->GetPod(ns, pod_name);
  if (absl::IsNotFound(pod.status())) {
    return Denied("pod " + ns + "/" + pod_name + " does not exist" + in_cluster);
  }
  if (!pod.ok()) return api_error(pod.status());
  if (pod->uid != pod_uid) {
    return Denied("pod " + ns + "/" + pod_name + " has UID " + pod->uid +
                  " but the token was issued for UID " + pod_uid + " (a stale or replayed token)");
  }
  if (pod->node_name.empty()) {
    return Denied("pod " + ns + "/" + pod_name + " is not scheduled on a node");
  }
  if (const std::string bound_node = SingleExtra(*review, kExtraNodeName);
      !bound_node.empty() && bound_node != pod->node_name) {
    return Denied("token is bound to node " + bound_node + " but pod " + ns + "/" + pod_name +
                  " runs on " + pod->node_name);
  }

  absl::StatusOr<k8s::NodeInfo> node = cluster.client->GetNode(pod->node_name);
  if (absl::IsNotFound(node.status())) {
    return Denied("node " + pod->node_name + " does not exist" + in_cluster);
  }
  if (!node.ok()) return api_error(node.status());
  if (absl::Status s = CheckSegment(node->uid, "node UID"); !s.ok()) {
    return Denied("node " + pod->node_name + ": " + std::string(s.message()));
  }

  absl::StatusOr<common::SpiffeId> agent_id =
      common::AgentId(td_, kK8sPsatName, cluster_name + "/" + node->uid);
  if (!agent_id.ok()) return Denied("agent ID: " + std::string(agent_id.status().message()));

  Result result{std::move(*agent_id), {}, /*reattestable=*/true};
  auto add = [&](const std::string& value) { result.selectors.push_back({kK8sPsatName, value}); };
  add("cluster:" + cluster_name);
  add("agent_ns:" + ns);
  add("agent_sa:" + sa);
  add("agent_pod_name:" + pod_name);
  add("agent_pod_uid:" + pod_uid);
  if (!pod->host_ip.empty()) add("agent_node_ip:" + pod->host_ip);
  add("agent_node_name:" + pod->node_name);
  add("agent_node_uid:" + node->uid);
  AddLabelSelectors(cluster.node_label_keys, node->labels, "agent_node_label", &result.selectors);
  AddLabelSelectors(cluster.pod_label_keys, pod->labels, "agent_pod_label", &result.selectors);
  return result;
}

absl::StatusOr<std::unique_ptr<K8sPsatAgentAttestor>> K8sPsatAgentAttestor::Create(
    const common::config::K8sPsatAgentAttestorConfig& config) {
  if (config.cluster.empty()) {
    return absl::InvalidArgumentError("NodeAttestor \"k8s_psat\" needs cluster");
  }
  if (config.token_path.empty()) {
    return absl::InvalidArgumentError("NodeAttestor \"k8s_psat\" needs token_path");
  }
  return std::unique_ptr<K8sPsatAgentAttestor>(new K8sPsatAgentAttestor(config));
}

absl::StatusOr<std::string> K8sPsatAgentAttestor::Payload() {
  // Read on every attestation: the kubelet rotates projected tokens in place.
  absl::StatusOr<std::string> token = common::ReadFile(config_.token_path);
  if (!token.ok()) {
    return absl::FailedPreconditionError(
        std::string(kK8sPsatName) +
        ": cannot read the service account token: " + std::string(token.status().message()));
  }
  std::string trimmed(absl::StripAsciiWhitespace(*token));
  if (trimmed.empty()) {
    return absl::FailedPreconditionError(std::string(kK8sPsatName) + ": token file " +
                                         config_.token_path + " is empty");
  }
  Json payload = {{"cluster", config_.cluster}, {"token", trimmed}};
  try {
    return payload.dump();
  } catch (const Json::exception&) {
    return absl::FailedPreconditionError(std::string(kK8sPsatName) + ": token file " +
                                         config_.token_path + " or cluster is not valid UTF-8");
  }
}

absl::StatusOr<std::string> K8sPsatAgentAttestor::Answer(std::string_view) {
  return absl::InvalidArgumentError("k8s_psat: no challenge expected");
}

}  // namespace trellis::attestors
