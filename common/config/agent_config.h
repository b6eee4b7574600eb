// The typed, validated trellis-agent configuration (SPIRE agent key names and defaults).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <variant>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "common/config/attestor_config.h"
#include "common/config/parser.h"
#include "common/config/shared_config.h"
#include "common/spiffe_id.h"

namespace trellis::common::config {

enum class TrustBundleFormat { kPem, kSpiffe };

// NodeAttestor "join_token" (the token comes from agent.join_token or -joinToken),
// "x509pop" (proof of possession of a certificate's key), or a platform's own proof:
// "k8s_psat", "aws_iid", "gcp_iit", "azure_msi" (attestor_config.h).
struct JoinTokenAgentAttestorConfig {};
struct X509PopAgentAttestorConfig {
  std::string private_key_path;
  std::string certificate_path;
  std::string intermediates_path;  // optional
};
using AgentNodeAttestorConfig =
    std::variant<JoinTokenAgentAttestorConfig, X509PopAgentAttestorConfig,
                 K8sPsatAgentAttestorConfig, AwsIidAgentAttestorConfig, GcpIitAgentAttestorConfig,
                 AzureMsiAgentAttestorConfig>;

// KeyManager "disk" (directory) or "memory".
struct DiskAgentKeyManagerConfig {
  std::string directory;
};
struct MemoryAgentKeyManagerConfig {};
using AgentKeyManagerConfig = std::variant<DiskAgentKeyManagerConfig, MemoryAgentKeyManagerConfig>;

// WorkloadAttestor "unix"; "k8s", "docker" and "systemd" are in attestor_config.h.
struct UnixWorkloadAttestorConfig {
  bool discover_workload_path = false;
};
using WorkloadAttestorConfig =
    std::variant<UnixWorkloadAttestorConfig, K8sWorkloadAttestorConfig,
                 DockerWorkloadAttestorConfig, SystemdWorkloadAttestorConfig>;

struct AgentConfig {
  explicit AgentConfig(TrustDomain td) : trust_domain(std::move(td)) {}

  // agent { }
  TrustDomain trust_domain;
  // One or more servers of the tier, comma-separated ("a:8081,b:8081"); an item without a
  // port takes server_port.
  std::string server_address;
  uint16_t server_port = 8081;
  // How long the agent keeps one server connection before it picks a server afresh (with
  // +/-20% jitter), so agents spread over replicas that joined or came back. 0: never.
  absl::Duration server_connection_max_age = absl::Minutes(10);
  std::string data_dir = "./data/agent";
  std::string socket_path = "/tmp/spire-agent/public/api.sock";
  // Bootstrap: exactly one of these three is set.
  std::string trust_bundle_path;
  std::string trust_bundle_url;
  bool insecure_bootstrap = false;
  TrustBundleFormat trust_bundle_format = TrustBundleFormat::kPem;
  std::string join_token;
  LogLevel log_level = LogLevel::kInfo;
  LogFormat log_format = LogFormat::kText;
  std::string log_file;  // empty: stderr

  // plugins { }
  AgentNodeAttestorConfig node_attestor;
  AgentKeyManagerConfig key_manager = MemoryAgentKeyManagerConfig{};
  std::vector<WorkloadAttestorConfig> workload_attestors;

  HealthChecksConfig health_checks;
  TelemetryConfig telemetry;
};

// Builds an AgentConfig from a parsed document; every error is INVALID_ARGUMENT and names the
// file (with line:col for HCL) and the key.
absl::StatusOr<AgentConfig> AgentConfigFromDocument(const Document& doc);

absl::StatusOr<AgentConfig> ParseAgentConfig(std::string_view text, const std::string& filename,
                                             const ParseOptions& options = {});

// Reads and validates an agent configuration file.
absl::StatusOr<AgentConfig> LoadAgentConfig(const std::string& path, bool expand_env);

}  // namespace trellis::common::config
