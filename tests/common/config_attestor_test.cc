// Platform attestor plugin_data: SPIRE's key names load into the typed structs, defaults hold,
// and bad values are refused naming the file, position and key.
#include <string>
#include <variant>

#include "common/config/agent_config.h"
#include "common/config/server_config.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace trellis::common::config {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

std::string Server(const std::string& node_attestor) {
  return "server {\n  trust_domain = \"example.org\"\n}\nplugins {\n"
         "  DataStore \"sql\" { plugin_data { database_type = \"sqlite3\", "
         "connection_string = \"db\" } }\n"
         "  KeyManager \"memory\" {}\n" +
         node_attestor + "\n}\n";
}

std::string Agent(const std::string& plugins) {
  return "agent {\n  trust_domain = \"example.org\"\n  server_address = \"s\"\n"
         "  insecure_bootstrap = true\n}\nplugins {\n  KeyManager \"memory\" {}\n" +
         plugins + "\n}\n";
}

template <typename T>
T ServerAttestor(const std::string& node_attestor) {
  absl::StatusOr<ServerConfig> cfg = ParseServerConfig(Server(node_attestor), "server.conf");
  EXPECT_TRUE(cfg.ok()) << cfg.status();
  if (!cfg.ok() || cfg->node_attestors.size() != 1 ||
      !std::holds_alternative<T>(cfg->node_attestors[0])) {
    ADD_FAILURE() << "no single node attestor of the expected kind";
    return T{};
  }
  return std::get<T>(cfg->node_attestors[0]);
}

void ExpectServerError(const std::string& node_attestor, const std::string& fragment) {
  absl::StatusOr<ServerConfig> cfg = ParseServerConfig(Server(node_attestor), "server.conf");
  ASSERT_FALSE(cfg.ok()) << node_attestor;
  EXPECT_EQ(cfg.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(cfg.status().message()), HasSubstr(fragment));
}

AgentConfig MustParseAgent(const std::string& plugins) {
  absl::StatusOr<AgentConfig> cfg = ParseAgentConfig(Agent(plugins), "agent.conf");
  EXPECT_TRUE(cfg.ok()) << cfg.status();
  if (!cfg.ok()) return AgentConfig(*TrustDomain::Parse("invalid.test"));
  return *std::move(cfg);
}

void ExpectAgentError(const std::string& plugins, const std::string& fragment) {
  absl::StatusOr<AgentConfig> cfg = ParseAgentConfig(Agent(plugins), "agent.conf");
  ASSERT_FALSE(cfg.ok()) << plugins;
  EXPECT_EQ(cfg.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(cfg.status().message()), HasSubstr(fragment));
}

TEST(K8sPsatConfig, ClustersInSpireShape) {
  auto k = ServerAttestor<K8sPsatServerAttestorConfig>(R"(
  NodeAttestor "k8s_psat" {
    plugin_data {
      clusters = {
        "prod" = {
          service_account_allow_list = ["spire:spire-agent"]
          kube_config_file = "/etc/kube/prod.yaml"
          allowed_node_label_keys = ["zone"]
          allowed_pod_label_keys = ["app"]
        }
        "dev" = {
          service_account_allow_list = ["spire:spire-agent", "ops:agent"]
          audience = ["trellis", "spire-server"]
        }
      }
    }
  })");
  ASSERT_EQ(k.clusters.size(), 2u);
  const K8sPsatClusterConfig& prod = k.clusters.at("prod");
  EXPECT_THAT(prod.service_account_allow_list, ElementsAre("spire:spire-agent"));
  EXPECT_THAT(prod.audience, ElementsAre("spire-server"));
  EXPECT_EQ(prod.kube_config_file, "/etc/kube/prod.yaml");
  EXPECT_THAT(prod.allowed_node_label_keys, ElementsAre("zone"));
  EXPECT_THAT(prod.allowed_pod_label_keys, ElementsAre("app"));
  const K8sPsatClusterConfig& dev = k.clusters.at("dev");
  EXPECT_THAT(dev.audience, ElementsAre("trellis", "spire-server"));
  EXPECT_TRUE(dev.kube_config_file.empty());
}

TEST(K8sPsatConfig, RefusesWhatCannotWork) {
  ExpectServerError("NodeAttestor \"k8s_psat\" { plugin_data {} }",
                    "plugins.NodeAttestor.k8s_psat.plugin_data.clusters: at least one cluster");
  ExpectServerError("NodeAttestor \"k8s_psat\" { plugin_data { clusters = { \"c\" = { } } } }",
                    "service_account_allow_list is required");
  ExpectServerError(
      "NodeAttestor \"k8s_psat\" { plugin_data { clusters = { \"c\" = { "
      "service_account_allow_list = [\"no-colon\"] } } } }",
      "\"no-colon\" is not \"<namespace>:<service account>\"");
  ExpectServerError(
      "NodeAttestor \"k8s_psat\" { plugin_data { clusters = { \"c\" = { "
      "service_account_allow_list = [\"a:b\"], audience = [] } } } }",
      "audience: must list at least one item");
  ExpectServerError(
      "NodeAttestor \"k8s_psat\" { plugin_data { clusters = { \"a/b\" = { "
      "service_account_allow_list = [\"a:b\"] } } } }",
      "a cluster name must be non-empty and hold no '/'");
  ExpectServerError(
      "NodeAttestor \"k8s_psat\" { plugin_data { clusters = { \"c\" = { "
      "service_account_allow_list = [\"a:b\"], kubeconfig = \"x\" } } } }",
      "unknown key \"kubeconfig\"");
}

TEST(AwsIidConfig, KeysAndChecks) {
  auto a = ServerAttestor<AwsIidServerAttestorConfig>(R"(
  NodeAttestor "aws_iid" {
    plugin_data {
      access_key_id = "AKIDEXAMPLE"
      secret_access_key = "secret"
      account_ids = ["123456789012"]
      max_document_age = "10m"
      aws_ca_cert_paths = ["/etc/aws/extra.pem"]
      ec2_endpoint = "http://127.0.0.1:9999"
      skip_block_device = true
      disable_instance_profile_selectors = true
      allow_reattestation = true
    }
  })");
  EXPECT_EQ(a.access_key_id, "AKIDEXAMPLE");
  EXPECT_THAT(a.account_ids, ElementsAre("123456789012"));
  EXPECT_EQ(a.max_document_age, absl::Minutes(10));
  EXPECT_THAT(a.aws_ca_cert_paths, ElementsAre("/etc/aws/extra.pem"));
  EXPECT_EQ(a.ec2_endpoint, "http://127.0.0.1:9999");
  EXPECT_TRUE(a.skip_block_device);
  EXPECT_TRUE(a.disable_instance_profile_selectors);
  EXPECT_TRUE(a.allow_reattestation);

  auto defaults = ServerAttestor<AwsIidServerAttestorConfig>("NodeAttestor \"aws_iid\" {}");
  EXPECT_FALSE(defaults.allow_reattestation);
  EXPECT_TRUE(defaults.account_ids.empty());

  ExpectServerError("NodeAttestor \"aws_iid\" { plugin_data { account_ids = [\"12\"] } }",
                    "\"12\" is not a 12-digit AWS account ID");
  ExpectServerError("NodeAttestor \"aws_iid\" { plugin_data { access_key_id = \"A\" } }",
                    "set access_key_id and secret_access_key together");
  ExpectServerError("NodeAttestor \"aws_iid\" { plugin_data { ec2_endpoint = \"ec2.local\" } }",
                    "ec2_endpoint: expected an http:// or https:// URL");
}

TEST(GcpIitConfig, KeysAndChecks) {
  auto g = ServerAttestor<GcpIitServerAttestorConfig>(R"(
  NodeAttestor "gcp_iit" {
    plugin_data {
      projectid_allow_list = ["proj-a", "proj-b"]
      audience = "trellis"
      google_certs_url = "/etc/google/certs.json"
    }
  })");
  EXPECT_THAT(g.projectid_allow_list, ElementsAre("proj-a", "proj-b"));
  EXPECT_EQ(g.audience, "trellis");
  EXPECT_EQ(g.google_certs_url, "/etc/google/certs.json");
  EXPECT_EQ(g.max_metadata_value_size, 128);
  ExpectServerError("NodeAttestor \"gcp_iit\" {}", "projectid_allow_list is required");
  ExpectServerError(
      "NodeAttestor \"gcp_iit\" { plugin_data { projectid_allow_list = [\"p\"], "
      "google_certs_url = \"http://keys\" } }",
      "expected an https:// URL or a file path");
}

TEST(AzureMsiConfig, TenantsInSpireShape) {
  auto a = ServerAttestor<AzureMsiServerAttestorConfig>(R"(
  NodeAttestor "azure_msi" {
    plugin_data {
      tenants = {
        "9b0e4d8c-0000-4000-8000-000000000001" = { resource_id = "api://trellis" }
        "9b0e4d8c-0000-4000-8000-000000000002" = { }
      }
    }
  })");
  ASSERT_EQ(a.tenants.size(), 2u);
  EXPECT_EQ(a.tenants.at("9b0e4d8c-0000-4000-8000-000000000001").resource_id, "api://trellis");
  EXPECT_TRUE(a.tenants.at("9b0e4d8c-0000-4000-8000-000000000002").resource_id.empty());
  ExpectServerError("NodeAttestor \"azure_msi\" { plugin_data {} }",
                    "tenants: at least one tenant is required");
}

TEST(PlatformAgentAttestors, EachLoadsWithItsKeys) {
  AgentConfig k = MustParseAgent(
      "NodeAttestor \"k8s_psat\" { plugin_data { cluster = \"prod\", token_path = \"/t\" } }");
  EXPECT_EQ(std::get<K8sPsatAgentAttestorConfig>(k.node_attestor).cluster, "prod");
  EXPECT_EQ(std::get<K8sPsatAgentAttestorConfig>(k.node_attestor).token_path, "/t");
  AgentConfig aws = MustParseAgent(
      "NodeAttestor \"aws_iid\" { plugin_data { ec2_metadata_endpoint = \"http://127.0.0.1:1\" } "
      "}");
  EXPECT_EQ(std::get<AwsIidAgentAttestorConfig>(aws.node_attestor).ec2_metadata_endpoint,
            "http://127.0.0.1:1");
  AgentConfig gcp = MustParseAgent("NodeAttestor \"gcp_iit\" {}");
  EXPECT_EQ(std::get<GcpIitAgentAttestorConfig>(gcp.node_attestor).identity_token_host,
            "metadata.google.internal");
  AgentConfig az = MustParseAgent("NodeAttestor \"azure_msi\" {}");
  EXPECT_EQ(std::get<AzureMsiAgentAttestorConfig>(az.node_attestor).resource_id,
            "https://management.azure.com/");
  ExpectAgentError("NodeAttestor \"k8s_psat\" { plugin_data {} }",
                   "plugins.NodeAttestor.k8s_psat.plugin_data.cluster is required");
}

TEST(PlatformWorkloadAttestors, LoadInOrderWithSpireKeys) {
  AgentConfig cfg = MustParseAgent(R"(
  NodeAttestor "join_token" {}
  WorkloadAttestor "k8s" {
    plugin_data {
      kubelet_read_only_port = 10255
      max_poll_attempts = 5
      poll_retry_interval = "1s"
      node_name = "node-1"
      disable_container_selectors = true
    }
  }
  WorkloadAttestor "docker" { plugin_data { docker_socket_path = "unix:///run/docker.sock" } }
  WorkloadAttestor "systemd" {}
  WorkloadAttestor "unix" {})");
  ASSERT_EQ(cfg.workload_attestors.size(), 4u);
  const auto& k = std::get<K8sWorkloadAttestorConfig>(cfg.workload_attestors[0]);
  EXPECT_EQ(k.kubelet_read_only_port, 10255);
  EXPECT_EQ(k.kubelet_secure_port, 10250);
  EXPECT_EQ(k.max_poll_attempts, 5);
  EXPECT_EQ(k.poll_retry_interval, absl::Seconds(1));
  EXPECT_EQ(k.node_name, "node-1");
  EXPECT_TRUE(k.disable_container_selectors);
  EXPECT_EQ(std::get<DockerWorkloadAttestorConfig>(cfg.workload_attestors[1]).docker_socket_path,
            "unix:///run/docker.sock");
  EXPECT_TRUE(std::holds_alternative<SystemdWorkloadAttestorConfig>(cfg.workload_attestors[2]));
  EXPECT_TRUE(std::holds_alternative<UnixWorkloadAttestorConfig>(cfg.workload_attestors[3]));
}

TEST(PlatformWorkloadAttestors, BadValuesAreNamed) {
  ExpectAgentError(
      "NodeAttestor \"join_token\" {}\n"
      "WorkloadAttestor \"docker\" { plugin_data { docker_socket_path = \"/x.sock\" } }",
      "docker_socket_path: expected a unix:// socket address");
  ExpectAgentError(
      "NodeAttestor \"join_token\" {}\n"
      "WorkloadAttestor \"docker\" { plugin_data { container_id_cgroup_matchers = "
      "[\"/docker/*\"] } }",
      "\"/docker/*\" has no <id> element");
  ExpectAgentError(
      "NodeAttestor \"join_token\" {}\n"
      "WorkloadAttestor \"k8s\" { plugin_data { certificate_path = \"/c.pem\" } }",
      "set certificate_path and private_key_path together");
  ExpectAgentError(
      "NodeAttestor \"join_token\" {}\n"
      "WorkloadAttestor \"k8s\" { plugin_data { kubelet_read_only_port = 70000 } }",
      "kubelet_read_only_port");
  ExpectAgentError(
      "NodeAttestor \"join_token\" {}\n"
      "WorkloadAttestor \"systemd\" { plugin_data { unit = \"x\" } }",
      "unknown key \"unit\"");
  ExpectAgentError("NodeAttestor \"join_token\" {}\nWorkloadAttestor \"podman\" {}",
                   "unknown WorkloadAttestor plugin \"podman\" (supported: unix, k8s, docker, "
                   "systemd)");
}

}  // namespace
}  // namespace trellis::common::config
