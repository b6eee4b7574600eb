// Typed agent configuration: defaults, bootstrap rules, plugins, and validation errors.
#include <string>
#include <variant>

#include "common/config/agent_config.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace trellis::common::config {
namespace {

using ::testing::HasSubstr;

constexpr char kPlugins[] = R"(
plugins {
  NodeAttestor "join_token" { plugin_data {} }
  KeyManager "memory" {}
}
)";

std::string WithAgent(const std::string& agent_body) {
  return "agent {\n  trust_domain = \"example.org\"\n  server_address = \"127.0.0.1\"\n" +
         agent_body + "}\n" + kPlugins;
}

std::string WithPlugins(const std::string& plugins_body) {
  return "agent {\n  trust_domain = \"example.org\"\n  server_address = \"s\"\n"
         "  insecure_bootstrap = true\n}\nplugins {\n" +
         plugins_body + "}\n";
}

AgentConfig MustParse(const std::string& text) {
  absl::StatusOr<AgentConfig> cfg = ParseAgentConfig(text, "agent.conf");
  EXPECT_TRUE(cfg.ok()) << cfg.status();
  if (!cfg.ok()) return AgentConfig(*TrustDomain::Parse("invalid.test"));
  return *std::move(cfg);
}

void ExpectError(const std::string& text, const std::string& fragment,
                 const std::string& filename = "agent.conf") {
  absl::StatusOr<AgentConfig> cfg = ParseAgentConfig(text, filename);
  ASSERT_FALSE(cfg.ok()) << text;
  EXPECT_EQ(cfg.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(cfg.status().message()), HasSubstr(fragment));
}

TEST(AgentConfig, ServerAddressTakesAListOfReplicas) {
  AgentConfig cfg = ParseAgentConfig(
                        "agent {\n  trust_domain = \"example.org\"\n"
                        "  server_address = [\"a:8081\", \"b\"]\n"
                        "  server_connection_max_age = \"90s\"\n"
                        "  insecure_bootstrap = true\n}\n"
                        "plugins {\n  NodeAttestor \"join_token\" { plugin_data {} }\n"
                        "  KeyManager \"memory\" { plugin_data {} }\n}\n",
                        "agent.conf")
                        .value();
  EXPECT_EQ(cfg.server_address, "a:8081,b");
  EXPECT_EQ(cfg.server_connection_max_age, absl::Seconds(90));
}

TEST(AgentConfig, NegativeConnectionAgeIsRefused) {
  ExpectError(WithAgent("  insecure_bootstrap = true\n  server_connection_max_age = \"-1s\"\n"),
              "is negative");
}

TEST(AgentConfig, EmptyServerAddressInAListIsRefused) {
  ExpectError(
      "agent {\n  trust_domain = \"example.org\"\n  server_address = [\"a\", \"\"]\n"
      "  insecure_bootstrap = true\n}\n",
      "agent.server_address: empty address");
}

TEST(AgentConfig, MinimalConfigGetsSpireDefaults) {
  AgentConfig cfg = MustParse(WithAgent("  trust_bundle_path = \"bundle.pem\"\n"));
  EXPECT_EQ(cfg.trust_domain.name(), "example.org");
  EXPECT_EQ(cfg.server_address, "127.0.0.1");
  EXPECT_EQ(cfg.server_port, 8081);
  EXPECT_EQ(cfg.data_dir, "./data/agent");
  EXPECT_EQ(cfg.socket_path, "/tmp/spire-agent/public/api.sock");
  EXPECT_EQ(cfg.trust_bundle_path, "bundle.pem");
  EXPECT_TRUE(cfg.trust_bundle_url.empty());
  EXPECT_FALSE(cfg.insecure_bootstrap);
  EXPECT_EQ(cfg.trust_bundle_format, TrustBundleFormat::kPem);
  EXPECT_TRUE(cfg.join_token.empty());
  EXPECT_EQ(cfg.log_level, LogLevel::kInfo);
  EXPECT_EQ(cfg.log_format, LogFormat::kText);
  EXPECT_EQ(cfg.server_connection_max_age, absl::Minutes(10));
  EXPECT_TRUE(std::holds_alternative<JoinTokenAgentAttestorConfig>(cfg.node_attestor));
  EXPECT_TRUE(std::holds_alternative<MemoryAgentKeyManagerConfig>(cfg.key_manager));
  EXPECT_TRUE(cfg.workload_attestors.empty());
  EXPECT_FALSE(cfg.health_checks.listener_enabled);
  EXPECT_EQ(cfg.health_checks.bind_port, 80);
  EXPECT_FALSE(cfg.telemetry.prometheus.has_value());
}

TEST(AgentConfig, ReadsEveryAgentKey) {
  AgentConfig cfg = MustParse(WithAgent(R"(
  server_port = 9443
  data_dir = "/var/lib/agent"
  socket_path = "/run/agent.sock"
  trust_bundle_url = "https://bundle.example.org/bundle"
  trust_bundle_format = "spiffe"
  join_token = "abc"
  log_level = "Warn"
  log_format = "json"
)"));
  EXPECT_EQ(cfg.server_port, 9443);
  EXPECT_EQ(cfg.data_dir, "/var/lib/agent");
  EXPECT_EQ(cfg.socket_path, "/run/agent.sock");
  EXPECT_EQ(cfg.trust_bundle_url, "https://bundle.example.org/bundle");
  EXPECT_EQ(cfg.trust_bundle_format, TrustBundleFormat::kSpiffe);
  EXPECT_EQ(cfg.join_token, "abc");
  EXPECT_EQ(cfg.log_level, LogLevel::kWarn);
  EXPECT_EQ(cfg.log_format, LogFormat::kJson);
}

TEST(AgentConfig, InsecureBootstrapAloneIsEnough) {
  AgentConfig cfg = MustParse(WithAgent("  insecure_bootstrap = true\n"));
  EXPECT_TRUE(cfg.insecure_bootstrap);
}

TEST(AgentConfig, ReadsAllPluginKinds) {
  AgentConfig cfg = MustParse(WithPlugins(R"(
  NodeAttestor "x509pop" {
    plugin_data {
      private_key_path = "key.pem"
      certificate_path = "cert.pem"
      intermediates_path = "inter.pem"
    }
  }
  KeyManager "disk" { plugin_data { directory = "./data/agent" } }
  WorkloadAttestor "unix" { plugin_data { discover_workload_path = true } }
)"));
  const auto& x = std::get<X509PopAgentAttestorConfig>(cfg.node_attestor);
  EXPECT_EQ(x.private_key_path, "key.pem");
  EXPECT_EQ(x.certificate_path, "cert.pem");
  EXPECT_EQ(x.intermediates_path, "inter.pem");
  EXPECT_EQ(std::get<DiskAgentKeyManagerConfig>(cfg.key_manager).directory, "./data/agent");
  ASSERT_EQ(cfg.workload_attestors.size(), 1u);
  EXPECT_TRUE(
      std::get<UnixWorkloadAttestorConfig>(cfg.workload_attestors[0]).discover_workload_path);
}

TEST(AgentConfig, JsonShapeMatchesHcl) {
  absl::StatusOr<AgentConfig> cfg = ParseAgentConfig(R"({
    "agent": {"trust_domain": "example.org", "server_address": "s", "server_port": "8082",
              "insecure_bootstrap": true},
    "plugins": {"NodeAttestor": [{"join_token": {}}], "KeyManager": {"memory": {}},
                "WorkloadAttestor": {"unix": {"plugin_data": {}}}}
  })",
                                                     "agent.json");
  ASSERT_TRUE(cfg.ok()) << cfg.status();
  EXPECT_EQ(cfg->server_port, 8082);
  EXPECT_EQ(cfg->workload_attestors.size(), 1u);
  EXPECT_FALSE(
      std::get<UnixWorkloadAttestorConfig>(cfg->workload_attestors[0]).discover_workload_path);
}

TEST(AgentConfigErrors, NoBootstrapSource) {
  ExpectError(WithAgent(""),
              "agent.conf:1:7: agent: set exactly one of trust_bundle_path, trust_bundle_url or "
              "insecure_bootstrap = true; none is set");
}

TEST(AgentConfigErrors, InsecureBootstrapFalseCountsAsUnset) {
  ExpectError(WithAgent("  insecure_bootstrap = false\n"), "none is set");
}

TEST(AgentConfigErrors, TwoBootstrapSources) {
  ExpectError(WithAgent("  trust_bundle_path = \"b.pem\"\n  insecure_bootstrap = true\n"),
              "more than one is set");
}

TEST(AgentConfigErrors, TrustBundleUrlMustBeHttps) {
  ExpectError(WithAgent("  trust_bundle_url = \"http://x/bundle\"\n"),
              "agent.conf:4:22: agent.trust_bundle_url: expected an https:// URL");
}

TEST(AgentConfigErrors, BadTrustBundleFormat) {
  ExpectError(WithAgent("  insecure_bootstrap = true\n  trust_bundle_format = \"der\"\n"),
              "agent.trust_bundle_format: expected one of pem, spiffe, found string \"der\"");
}

TEST(AgentConfigErrors, UnknownAgentKey) {
  ExpectError(WithAgent("  insecure_bootstrap = true\n  server_adress = \"x\"\n"),
              "agent.conf:5:3: unknown key \"server_adress\" in agent");
}

TEST(AgentConfigErrors, MissingAgentBlock) {
  ExpectError(kPlugins, "the agent { } block is required");
}

TEST(AgentConfigErrors, ServerBlockInAgentFile) {
  ExpectError("server { trust_domain = \"example.org\" }",
              "agent.conf:1:1: unknown key \"server\" at top level");
}

TEST(AgentConfigErrors, MissingServerAddress) {
  ExpectError("agent { trust_domain = \"example.org\", insecure_bootstrap = true }",
              "agent.server_address is required");
}

TEST(AgentConfigErrors, MissingTrustDomain) {
  ExpectError("agent { server_address = \"x\" }", "agent.trust_domain is required");
}

TEST(AgentConfigErrors, BadServerPort) {
  ExpectError(WithAgent("  insecure_bootstrap = true\n  server_port = -1\n"),
              "agent.server_port: expected a port number from 0 to 65535, found number -1");
}

TEST(AgentConfigErrors, MissingNodeAttestor) {
  ExpectError(WithPlugins("  KeyManager \"memory\" {}\n"), "plugins: a NodeAttestor is required");
}

TEST(AgentConfigErrors, TwoNodeAttestors) {
  ExpectError(WithPlugins("  KeyManager \"memory\" {}\n  NodeAttestor \"join_token\" {}\n"
                          "  NodeAttestor \"x509pop\" { plugin_data { private_key_path = \"k\", "
                          "certificate_path = \"c\" } }\n"),
              "only one NodeAttestor may be configured");
}

TEST(AgentConfigErrors, MissingKeyManager) {
  ExpectError(WithPlugins("  NodeAttestor \"join_token\" {}\n"),
              "plugins: a KeyManager is required");
}

TEST(AgentConfigErrors, X509PopNeedsKeyAndCert) {
  ExpectError(
      WithPlugins("  KeyManager \"memory\" {}\n"
                  "  NodeAttestor \"x509pop\" { plugin_data { certificate_path = \"c\" } }\n"),
      "plugins.NodeAttestor.x509pop.plugin_data.private_key_path is required");
}

TEST(AgentConfigErrors, DiskKeyManagerNeedsDirectory) {
  ExpectError(WithPlugins("  NodeAttestor \"join_token\" {}\n  KeyManager \"disk\" {}\n"),
              "plugins.KeyManager.disk.plugin_data.directory is required");
}

TEST(AgentConfigErrors, UnknownWorkloadAttestor) {
  ExpectError(WithPlugins("  NodeAttestor \"join_token\" {}\n  KeyManager \"memory\" {}\n"
                          "  WorkloadAttestor \"sigstore\" {}\n"),
              "unknown WorkloadAttestor plugin \"sigstore\" (supported: unix, k8s, docker, "
              "systemd)");
}

TEST(AgentConfigErrors, DiscoverWorkloadPathMustBeBool) {
  ExpectError(
      WithPlugins("  NodeAttestor \"join_token\" {}\n  KeyManager \"memory\" {}\n"
                  "  WorkloadAttestor \"unix\" { plugin_data { discover_workload_path = 1 } }\n"),
      "plugins.WorkloadAttestor.unix.plugin_data.discover_workload_path: expected true or "
      "false, found number 1");
}

TEST(AgentConfigErrors, ServerPluginTypeInAgentFile) {
  ExpectError(WithPlugins("  DataStore \"sql\" {}\n"),
              "unknown plugin type \"DataStore\" in plugins (supported: NodeAttestor, KeyManager, "
              "WorkloadAttestor)");
}

}  // namespace
}  // namespace trellis::common::config
