// Typed plugin_data of the node attestors (server and agent sides) and workload attestors that
// talk to a platform: Kubernetes, AWS, GCP, Azure, Docker and systemd. Key names and defaults
// are SPIRE's, so existing configurations load unchanged; every endpoint such an attestor
// reaches can be pointed elsewhere by configuration.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/time/time.h"

namespace trellis::common::config {

class Section;

// ---- Node attestors, server side ----

// NodeAttestor "k8s_psat": clusters { "<name>" { ... } }.
struct K8sPsatClusterConfig {
  std::vector<std::string> service_account_allow_list;  // "namespace:name", required
  std::vector<std::string> audience = {"spire-server"};
  // Empty: in-cluster (KUBERNETES_SERVICE_HOST/PORT and the pod's service account).
  std::string kube_config_file;
  std::vector<std::string> allowed_node_label_keys;
  std::vector<std::string> allowed_pod_label_keys;
};
struct K8sPsatServerAttestorConfig {
  std::map<std::string, K8sPsatClusterConfig> clusters;  // at least one
};

// NodeAttestor "aws_iid".
struct AwsIidServerAttestorConfig {
  std::string access_key_id;  // for DescribeInstances; empty: no instance lookups
  std::string secret_access_key;
  // Only these accounts may attest (empty: any account).
  std::vector<std::string> account_ids;
  // Documents older than this are refused (zero: no age limit).
  absl::Duration max_document_age = absl::ZeroDuration();
  // PEM files of further AWS certificates (regions or partitions not built in).
  std::vector<std::string> aws_ca_cert_paths;
  // EC2 API endpoint for DescribeInstances; empty: https://ec2.<region>.amazonaws.com.
  std::string ec2_endpoint;
  // IAM API endpoint for GetInstanceProfile (iamrole selectors); empty: the global endpoint of
  // the region's partition (https://iam.amazonaws.com for the aws partition).
  std::string iam_endpoint;
  bool skip_block_device = false;
  bool disable_instance_profile_selectors = false;
  bool allow_reattestation = false;  // SPIRE's trust-on-first-use when false
  std::string agent_path_template;   // empty: the attestor's default
};

// NodeAttestor "gcp_iit".
struct GcpIitServerAttestorConfig {
  std::vector<std::string> projectid_allow_list;  // required
  std::string audience = "spire-gcp-node-attestor";
  // Where Google's signing keys are read (JWKS); a file path or an https:// URL.
  std::string google_certs_url = "https://www.googleapis.com/oauth2/v3/certs";
  bool use_instance_metadata = false;
  std::string compute_endpoint;  // empty: https://compute.googleapis.com
  std::string service_account_file;
  std::vector<std::string> allowed_label_keys;
  std::vector<std::string> allowed_metadata_keys;
  int64_t max_metadata_value_size = 128;
  bool allow_reattestation = false;
  std::string agent_path_template;
};

// NodeAttestor "azure_msi".
struct AzureMsiTenantConfig {
  std::string resource_id;  // the token audience; empty: https://management.azure.com/
};
struct AzureMsiServerAttestorConfig {
  std::map<std::string, AzureMsiTenantConfig> tenants;  // at least one
  // Where a tenant's signing keys are read; "{tenant}" is replaced by the tenant ID.
  std::string jwks_url = "https://login.microsoftonline.com/{tenant}/discovery/v2.0/keys";
  bool allow_reattestation = false;
  std::string agent_path_template;
};

// ---- Node attestors, agent side ----

struct K8sPsatAgentAttestorConfig {
  std::string cluster;  // required
  std::string token_path = "/var/run/secrets/tokens/spire-agent";
};
struct AwsIidAgentAttestorConfig {
  std::string ec2_metadata_endpoint = "http://169.254.169.254";
};
struct GcpIitAgentAttestorConfig {
  std::string identity_token_host = "metadata.google.internal";
  std::string service_account = "default";
};
struct AzureMsiAgentAttestorConfig {
  std::string resource_id = "https://management.azure.com/";
  std::string metadata_endpoint = "http://169.254.169.254";
};

// ---- Workload attestors ----

struct K8sWorkloadAttestorConfig {
  // Non-zero: the kubelet's read-only HTTP port; zero: the secure port.
  uint16_t kubelet_read_only_port = 0;
  uint16_t kubelet_secure_port = 10250;
  std::string kubelet_host = "127.0.0.1";
  int64_t max_poll_attempts = 60;
  absl::Duration poll_retry_interval = absl::Milliseconds(500);
  bool skip_kubelet_verification = false;
  std::string kubelet_ca_path = "/var/run/secrets/kubernetes.io/serviceaccount/ca.crt";
  std::string token_path = "/var/run/secrets/kubernetes.io/serviceaccount/token";
  std::string certificate_path;  // client certificate instead of the token
  std::string private_key_path;
  bool use_anonymous_authentication = false;
  std::string node_name_env = "MY_NODE_NAME";
  std::string node_name;
  bool disable_container_selectors = false;
};

struct DockerWorkloadAttestorConfig {
  std::string docker_socket_path = "unix:///var/run/docker.sock";
  std::string docker_version = "1.41";
  std::vector<std::string> container_id_cgroup_matchers;
};

struct SystemdWorkloadAttestorConfig {};

// Readers of each plugin's plugin_data block; every error names the file, position and key.
absl::Status ReadK8sPsatServerConfig(Section& data, K8sPsatServerAttestorConfig* out);
absl::Status ReadAwsIidServerConfig(Section& data, AwsIidServerAttestorConfig* out);
absl::Status ReadGcpIitServerConfig(Section& data, GcpIitServerAttestorConfig* out);
absl::Status ReadAzureMsiServerConfig(Section& data, AzureMsiServerAttestorConfig* out);
absl::Status ReadK8sPsatAgentConfig(Section& data, K8sPsatAgentAttestorConfig* out);
absl::Status ReadAwsIidAgentConfig(Section& data, AwsIidAgentAttestorConfig* out);
absl::Status ReadGcpIitAgentConfig(Section& data, GcpIitAgentAttestorConfig* out);
absl::Status ReadAzureMsiAgentConfig(Section& data, AzureMsiAgentAttestorConfig* out);
absl::Status ReadK8sWorkloadConfig(Section& data, K8sWorkloadAttestorConfig* out);
absl::Status ReadDockerWorkloadConfig(Section& data, DockerWorkloadAttestorConfig* out);

}  // namespace trellis::common::config
