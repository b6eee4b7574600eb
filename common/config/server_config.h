// The typed, validated trellis-server configuration (SPIRE server key names and defaults).
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

enum class KeyType { kEcP256, kEcP384, kRsa2048, kRsa4096 };
std::string KeyTypeName(KeyType type);

// Subject of CA certificates. SPIRE's default is C=US, O=SPIFFE.
struct CaSubject {
  std::vector<std::string> country = {"US"};
  std::vector<std::string> organization = {"SPIFFE"};
  std::string common_name;
};

enum class BundleEndpointProfile { kHttpsWeb, kHttpsSpiffe };

// `federation { bundle_endpoint { } }`: serve this trust domain's bundle to others.
struct BundleEndpointConfig {
  std::string address = "0.0.0.0";
  uint16_t port = 443;
  absl::Duration refresh_hint = absl::ZeroDuration();  // zero: derived from the CA TTL
  // `profile "https_spiffe" {}` (the default: TLS with the server's own SVID) or
  // `profile "https_web" { serving_cert_file { cert_file_path, key_file_path } }`.
  BundleEndpointProfile profile = BundleEndpointProfile::kHttpsSpiffe;
  std::string cert_file_path;  // https_web only
  std::string key_file_path;   // https_web only
};

// `federates_with "td" { }`: where to fetch a foreign trust domain's bundle.
struct FederatesWithConfig {
  TrustDomain trust_domain;
  std::string bundle_endpoint_url;
  BundleEndpointProfile profile;
  std::optional<SpiffeId> endpoint_spiffe_id;  // set for https_spiffe only
};

struct FederationConfig {
  std::optional<BundleEndpointConfig> bundle_endpoint;
  std::vector<FederatesWithConfig> federates_with;
};

// `oidc_discovery { }`: OpenID Connect discovery of the trust domain's JWT keys.
struct OidcDiscoveryConfig {
  std::string address = "0.0.0.0";
  uint16_t port = 8008;
  // Host names requests may name; empty: any.
  std::vector<std::string> domains;
  // The jwks_uri to advertise; empty: <scheme>://<request Host>/keys.
  std::string jwks_uri;
  // HTTPS with this certificate and key (re-read on change); both empty: plain HTTP.
  std::string cert_file_path;
  std::string key_file_path;
};

struct RateLimitConfig {
  bool attestation = true;
  bool signing = true;
};

// ---- Server plugins ----

enum class DatabaseType { kSqlite3, kPostgres };

// DataStore "sql".
struct SqlDataStoreConfig {
  DatabaseType database_type = DatabaseType::kSqlite3;
  std::string connection_string;
  std::string ro_connection_string;  // optional read-only replica (postgres)
  int max_open_conns = 0;            // 0: backend default
};

// KeyManager "disk" (keys_path) or "memory".
struct DiskKeyManagerConfig {
  std::string keys_path;
};
struct MemoryKeyManagerConfig {};
using ServerKeyManagerConfig = std::variant<DiskKeyManagerConfig, MemoryKeyManagerConfig>;

// NodeAttestor "join_token" or "x509pop", or a platform's: "k8s_psat", "aws_iid", "gcp_iit",
// "azure_msi" (attestor_config.h).
struct JoinTokenServerAttestorConfig {};
struct X509PopServerAttestorConfig {
  std::vector<std::string> ca_bundle_paths;  // from ca_bundle_path or ca_bundle_paths
  std::string agent_path_template;           // empty: the attestor's default
};
using ServerNodeAttestorConfig =
    std::variant<JoinTokenServerAttestorConfig, X509PopServerAttestorConfig,
                 K8sPsatServerAttestorConfig, AwsIidServerAttestorConfig,
                 GcpIitServerAttestorConfig, AzureMsiServerAttestorConfig>;

// UpstreamAuthority "disk" (a CA on disk) or "spire" (the tier above, for nesting).
struct DiskUpstreamAuthorityConfig {
  std::string cert_file_path;
  std::string key_file_path;
  std::string bundle_file_path;  // optional: roots when cert_file_path is an intermediate
};
struct SpireUpstreamAuthorityConfig {
  std::string server_address;
  uint16_t server_port = 0;
  std::string workload_api_socket;
};
using UpstreamAuthorityConfig =
    std::variant<DiskUpstreamAuthorityConfig, SpireUpstreamAuthorityConfig>;

struct ServerConfig {
  explicit ServerConfig(TrustDomain td) : trust_domain(std::move(td)) {}

  // server { }
  TrustDomain trust_domain;
  std::string bind_address = "0.0.0.0";
  uint16_t bind_port = 8081;
  std::string socket_path = "/tmp/spire-server/private/api.sock";
  std::string data_dir = "./data/server";
  LogLevel log_level = LogLevel::kInfo;
  LogFormat log_format = LogFormat::kText;
  std::string log_file;  // empty: stderr
  absl::Duration ca_ttl = absl::Hours(24);
  absl::Duration default_x509_svid_ttl = absl::Hours(1);
  absl::Duration default_jwt_svid_ttl = absl::Minutes(5);
  // Zero means "same as default_x509_svid_ttl"; use EffectiveAgentTtl().
  absl::Duration agent_ttl = absl::ZeroDuration();
  KeyType ca_key_type = KeyType::kEcP256;
  KeyType jwt_key_type = KeyType::kEcP256;
  CaSubject ca_subject;
  std::string jwt_issuer;  // empty: no "iss" claim
  FederationConfig federation;
  RateLimitConfig ratelimit;

  // plugins { }
  SqlDataStoreConfig data_store;
  ServerKeyManagerConfig key_manager;
  std::vector<ServerNodeAttestorConfig> node_attestors;
  std::optional<UpstreamAuthorityConfig> upstream_authority;

  std::optional<OidcDiscoveryConfig> oidc_discovery;
  HealthChecksConfig health_checks;
  TelemetryConfig telemetry;

  absl::Duration EffectiveAgentTtl() const {
    return agent_ttl == absl::ZeroDuration() ? default_x509_svid_ttl : agent_ttl;
  }
};

// Builds a ServerConfig from a parsed document; every error is INVALID_ARGUMENT and names the
// file (with line:col for HCL) and the key.
absl::StatusOr<ServerConfig> ServerConfigFromDocument(const Document& doc);

// Parses `text` as the contents of `filename` (the name decides HCL vs JSON and prefixes
// errors).
absl::StatusOr<ServerConfig> ParseServerConfig(std::string_view text, const std::string& filename,
                                               const ParseOptions& options = {});

// Reads and validates a server configuration file.
absl::StatusOr<ServerConfig> LoadServerConfig(const std::string& path, bool expand_env);

}  // namespace trellis::common::config
