// Typed server configuration: defaults, every key, plugins, and strict validation errors.
#include <string>
#include <variant>

#include "common/config/server_config.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace trellis::common::config {
namespace {

using ::testing::HasSubstr;

constexpr char kPlugins[] = R"(
plugins {
  DataStore "sql" {
    plugin_data {
      database_type = "sqlite3"
      connection_string = "./data/datastore.sqlite3"
    }
  }
  KeyManager "memory" {}
}
)";

std::string WithServer(const std::string& server_body) {
  return "server {\n  trust_domain = \"example.org\"\n" + server_body + "}\n" + kPlugins;
}

std::string WithPlugins(const std::string& plugins_body) {
  return "server {\n  trust_domain = \"example.org\"\n}\nplugins {\n" + plugins_body + "}\n";
}

ServerConfig MustParse(const std::string& text) {
  absl::StatusOr<ServerConfig> cfg = ParseServerConfig(text, "server.conf");
  EXPECT_TRUE(cfg.ok()) << cfg.status();
  if (!cfg.ok()) return ServerConfig(*TrustDomain::Parse("invalid.test"));
  return *std::move(cfg);
}

void ExpectError(const std::string& text, const std::string& fragment,
                 const std::string& filename = "server.conf") {
  absl::StatusOr<ServerConfig> cfg = ParseServerConfig(text, filename);
  ASSERT_FALSE(cfg.ok()) << text;
  EXPECT_EQ(cfg.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(cfg.status().message()), HasSubstr(fragment));
}

TEST(ServerConfig, MinimalConfigGetsSpireDefaults) {
  ServerConfig cfg = MustParse(WithServer(""));
  EXPECT_EQ(cfg.trust_domain.name(), "example.org");
  EXPECT_EQ(cfg.bind_address, "0.0.0.0");
  EXPECT_EQ(cfg.bind_port, 8081);
  EXPECT_EQ(cfg.socket_path, "/tmp/spire-server/private/api.sock");
  EXPECT_EQ(cfg.data_dir, "./data/server");
  EXPECT_EQ(cfg.log_level, LogLevel::kInfo);
  EXPECT_EQ(cfg.log_format, LogFormat::kText);
  EXPECT_EQ(cfg.ca_ttl, absl::Hours(24));
  EXPECT_EQ(cfg.default_x509_svid_ttl, absl::Hours(1));
  EXPECT_EQ(cfg.default_jwt_svid_ttl, absl::Minutes(5));
  EXPECT_EQ(cfg.agent_ttl, absl::ZeroDuration());
  EXPECT_EQ(cfg.EffectiveAgentTtl(), absl::Hours(1));
  EXPECT_EQ(cfg.ca_key_type, KeyType::kEcP256);
  EXPECT_EQ(cfg.jwt_key_type, KeyType::kEcP256);
  EXPECT_EQ(cfg.ca_subject.country, std::vector<std::string>{"US"});
  EXPECT_EQ(cfg.ca_subject.organization, std::vector<std::string>{"SPIFFE"});
  EXPECT_TRUE(cfg.jwt_issuer.empty());
  EXPECT_TRUE(cfg.ratelimit.attestation);
  EXPECT_TRUE(cfg.ratelimit.signing);
  EXPECT_FALSE(cfg.federation.bundle_endpoint.has_value());
  EXPECT_TRUE(cfg.node_attestors.empty());
  EXPECT_FALSE(cfg.upstream_authority.has_value());
  EXPECT_FALSE(cfg.health_checks.listener_enabled);
  EXPECT_EQ(cfg.health_checks.bind_address, "localhost");
  EXPECT_EQ(cfg.health_checks.bind_port, 80);
  EXPECT_EQ(cfg.health_checks.live_path, "/live");
  EXPECT_EQ(cfg.health_checks.ready_path, "/ready");
  EXPECT_FALSE(cfg.telemetry.prometheus.has_value());
}

TEST(ServerConfig, ReadsEveryServerKey) {
  ServerConfig cfg = MustParse(WithServer(R"(
  bind_address = "127.0.0.1"
  bind_port = "9090"
  socket_path = "/run/s.sock"
  data_dir = "/var/lib/trellis"
  log_level = "debug"
  log_format = "json"
  ca_ttl = "48h"
  default_x509_svid_ttl = "2h"
  default_jwt_svid_ttl = "10m"
  agent_ttl = "3h"
  ca_key_type = "rsa-2048"
  jwt_key_type = "ec-p384"
  ca_subject = { country = "DE", organization = ["A", "B"], common_name = "ca" }
  jwt_issuer = "https://issuer.example.org"
  ratelimit { attestation = false, signing = false }
)"));
  EXPECT_EQ(cfg.bind_address, "127.0.0.1");
  EXPECT_EQ(cfg.bind_port, 9090);
  EXPECT_EQ(cfg.socket_path, "/run/s.sock");
  EXPECT_EQ(cfg.data_dir, "/var/lib/trellis");
  EXPECT_EQ(cfg.log_level, LogLevel::kDebug);
  EXPECT_EQ(cfg.log_format, LogFormat::kJson);
  EXPECT_EQ(cfg.ca_ttl, absl::Hours(48));
  EXPECT_EQ(cfg.default_x509_svid_ttl, absl::Hours(2));
  EXPECT_EQ(cfg.default_jwt_svid_ttl, absl::Minutes(10));
  EXPECT_EQ(cfg.EffectiveAgentTtl(), absl::Hours(3));
  EXPECT_EQ(cfg.ca_key_type, KeyType::kRsa2048);
  EXPECT_EQ(cfg.jwt_key_type, KeyType::kEcP384);
  EXPECT_EQ(cfg.ca_subject.country, std::vector<std::string>{"DE"});
  EXPECT_EQ(cfg.ca_subject.organization, (std::vector<std::string>{"A", "B"}));
  EXPECT_EQ(cfg.ca_subject.common_name, "ca");
  EXPECT_EQ(cfg.jwt_issuer, "https://issuer.example.org");
  EXPECT_FALSE(cfg.ratelimit.attestation);
  EXPECT_FALSE(cfg.ratelimit.signing);
}

TEST(ServerConfig, AcceptsTrustDomainInIdForm) {
  ServerConfig cfg =
      MustParse(std::string("server { trust_domain = \"spiffe://example.org\" }") + kPlugins);
  EXPECT_EQ(cfg.trust_domain.name(), "example.org");
}

TEST(ServerConfig, ReadsFederation) {
  ServerConfig cfg = MustParse(WithServer(R"(
  federation {
    bundle_endpoint { address = "0.0.0.0", port = 8443, refresh_hint = "5m" }
    federates_with "a.test" {
      bundle_endpoint_url = "https://a.test:8443"
      bundle_endpoint_profile "https_web" {}
    }
    federates_with "b.test" {
      bundle_endpoint_url = "https://b.test"
      bundle_endpoint_profile "https_spiffe" { endpoint_spiffe_id = "spiffe://b.test/be" }
    }
  }
)"));
  ASSERT_TRUE(cfg.federation.bundle_endpoint.has_value());
  EXPECT_EQ(cfg.federation.bundle_endpoint->port, 8443);
  EXPECT_EQ(cfg.federation.bundle_endpoint->refresh_hint, absl::Minutes(5));
  ASSERT_EQ(cfg.federation.federates_with.size(), 2u);
  EXPECT_EQ(cfg.federation.federates_with[0].trust_domain.name(), "a.test");
  EXPECT_EQ(cfg.federation.federates_with[0].profile, BundleEndpointProfile::kHttpsWeb);
  EXPECT_EQ(cfg.federation.federates_with[1].profile, BundleEndpointProfile::kHttpsSpiffe);
  ASSERT_TRUE(cfg.federation.federates_with[1].endpoint_spiffe_id.has_value());
  EXPECT_EQ(cfg.federation.federates_with[1].endpoint_spiffe_id->String(), "spiffe://b.test/be");
}

TEST(ServerConfig, BundleEndpointDefaultsToTheHttpsSpiffeProfile) {
  ServerConfig cfg = MustParse(WithServer(R"(
  federation {
    bundle_endpoint { port = 8443 }
  }
)"));
  ASSERT_TRUE(cfg.federation.bundle_endpoint.has_value());
  EXPECT_EQ(cfg.federation.bundle_endpoint->profile, BundleEndpointProfile::kHttpsSpiffe);
  EXPECT_EQ(cfg.federation.bundle_endpoint->address, "0.0.0.0");
  EXPECT_TRUE(cfg.federation.bundle_endpoint->cert_file_path.empty());
}

TEST(ServerConfig, ReadsTheHttpsWebBundleEndpointProfile) {
  ServerConfig cfg = MustParse(WithServer(R"(
  federation {
    bundle_endpoint {
      port = 8443
      profile "https_web" {
        serving_cert_file {
          cert_file_path = "/etc/trellis/web.pem"
          key_file_path = "/etc/trellis/web.key"
        }
      }
    }
  }
)"));
  ASSERT_TRUE(cfg.federation.bundle_endpoint.has_value());
  EXPECT_EQ(cfg.federation.bundle_endpoint->profile, BundleEndpointProfile::kHttpsWeb);
  EXPECT_EQ(cfg.federation.bundle_endpoint->cert_file_path, "/etc/trellis/web.pem");
  EXPECT_EQ(cfg.federation.bundle_endpoint->key_file_path, "/etc/trellis/web.key");
}

TEST(ServerConfig, ReadsAnExplicitHttpsSpiffeBundleEndpointProfile) {
  ServerConfig cfg = MustParse(WithServer(R"(
  federation {
    bundle_endpoint {
      profile "https_spiffe" {}
    }
  }
)"));
  EXPECT_EQ(cfg.federation.bundle_endpoint->profile, BundleEndpointProfile::kHttpsSpiffe);
}

TEST(ServerConfig, ReadsOidcDiscovery) {
  ServerConfig cfg = MustParse(WithServer("") + R"(
oidc_discovery {
  address = "127.0.0.1"
  port = 8443
  domains = ["oidc.example.org", "oidc.internal"]
  jwks_uri = "https://oidc.example.org/keys"
  serving_cert_file {
    cert_file_path = "/etc/trellis/oidc.pem"
    key_file_path = "/etc/trellis/oidc.key"
  }
}
)");
  ASSERT_TRUE(cfg.oidc_discovery.has_value());
  EXPECT_EQ(cfg.oidc_discovery->address, "127.0.0.1");
  EXPECT_EQ(cfg.oidc_discovery->port, 8443);
  EXPECT_EQ(cfg.oidc_discovery->domains.size(), 2u);
  EXPECT_EQ(cfg.oidc_discovery->jwks_uri, "https://oidc.example.org/keys");
  EXPECT_EQ(cfg.oidc_discovery->cert_file_path, "/etc/trellis/oidc.pem");
  EXPECT_FALSE(MustParse(WithServer("")).oidc_discovery.has_value());
  ServerConfig plain = MustParse(WithServer("") + "oidc_discovery {}\n");
  ASSERT_TRUE(plain.oidc_discovery.has_value());
  EXPECT_EQ(plain.oidc_discovery->port, 8008);
  EXPECT_TRUE(plain.oidc_discovery->cert_file_path.empty());
}

TEST(ServerConfig, ReadsAllPluginKinds) {
  ServerConfig cfg = MustParse(WithPlugins(R"(
  DataStore "sql" {
    plugin_data {
      database_type = "postgres"
      connection_string = "dbname=trellis"
      ro_connection_string = "dbname=replica"
      max_open_conns = 10
    }
  }
  KeyManager "disk" { plugin_data { keys_path = "./keys.json" } }
  NodeAttestor "join_token" { plugin_data {} }
  NodeAttestor "x509pop" { plugin_data = { ca_bundle_paths = ["a.pem", "b.pem"], agent_path_template = "/x/{{ .Fingerprint }}" } }
  UpstreamAuthority "spire" {
    plugin_data { server_address = "upstream", server_port = "8081", workload_api_socket = "/tmp/a.sock" }
  }
)"));
  EXPECT_EQ(cfg.data_store.database_type, DatabaseType::kPostgres);
  EXPECT_EQ(cfg.data_store.connection_string, "dbname=trellis");
  EXPECT_EQ(cfg.data_store.ro_connection_string, "dbname=replica");
  EXPECT_EQ(cfg.data_store.max_open_conns, 10);
  ASSERT_TRUE(std::holds_alternative<DiskKeyManagerConfig>(cfg.key_manager));
  EXPECT_EQ(std::get<DiskKeyManagerConfig>(cfg.key_manager).keys_path, "./keys.json");
  ASSERT_EQ(cfg.node_attestors.size(), 2u);
  EXPECT_TRUE(std::holds_alternative<JoinTokenServerAttestorConfig>(cfg.node_attestors[0]));
  const auto& x = std::get<X509PopServerAttestorConfig>(cfg.node_attestors[1]);
  EXPECT_EQ(x.ca_bundle_paths, (std::vector<std::string>{"a.pem", "b.pem"}));
  EXPECT_EQ(x.agent_path_template, "/x/{{ .Fingerprint }}");
  ASSERT_TRUE(cfg.upstream_authority.has_value());
  const auto& up = std::get<SpireUpstreamAuthorityConfig>(*cfg.upstream_authority);
  EXPECT_EQ(up.server_address, "upstream");
  EXPECT_EQ(up.server_port, 8081);
  EXPECT_EQ(up.workload_api_socket, "/tmp/a.sock");
}

TEST(ServerConfig, ReadsDiskUpstreamAndSingleCaBundlePath) {
  ServerConfig cfg = MustParse(WithPlugins(R"(
  DataStore "sql" { plugin_data { database_type = "sqlite3", connection_string = "db" } }
  KeyManager "memory" {}
  NodeAttestor "x509pop" { plugin_data { ca_bundle_path = "ca.pem" } }
  UpstreamAuthority "disk" { plugin_data { cert_file_path = "c.pem", key_file_path = "k.pem" } }
)"));
  EXPECT_EQ(std::get<X509PopServerAttestorConfig>(cfg.node_attestors[0]).ca_bundle_paths,
            std::vector<std::string>{"ca.pem"});
  const auto& disk = std::get<DiskUpstreamAuthorityConfig>(*cfg.upstream_authority);
  EXPECT_EQ(disk.cert_file_path, "c.pem");
  EXPECT_EQ(disk.key_file_path, "k.pem");
  EXPECT_TRUE(disk.bundle_file_path.empty());
}

TEST(ServerConfig, ReadsHealthChecksAndTelemetry) {
  ServerConfig cfg = MustParse(WithServer("") + R"(
health_checks {
  listener_enabled = true
  bind_address = "0.0.0.0"
  bind_port = "8080"
  live_path = "/alive"
  ready_path = "/isready"
}
telemetry { Prometheus { host = "0.0.0.0", port = 9988 } }
)");
  EXPECT_TRUE(cfg.health_checks.listener_enabled);
  EXPECT_EQ(cfg.health_checks.bind_address, "0.0.0.0");
  EXPECT_EQ(cfg.health_checks.bind_port, 8080);
  EXPECT_EQ(cfg.health_checks.live_path, "/alive");
  EXPECT_EQ(cfg.health_checks.ready_path, "/isready");
  ASSERT_TRUE(cfg.telemetry.prometheus.has_value());
  EXPECT_EQ(cfg.telemetry.prometheus->host, "0.0.0.0");
  EXPECT_EQ(cfg.telemetry.prometheus->port, 9988);
}

TEST(ServerConfig, JsonPluginListFormIsAccepted) {
  absl::StatusOr<ServerConfig> cfg = ParseServerConfig(R"({
    "server": {"trust_domain": "example.org", "bind_port": 9000},
    "plugins": {
      "DataStore": [{"sql": {"plugin_data": {"database_type": "sqlite3", "connection_string": "x"}}}],
      "KeyManager": {"memory": {}},
      "NodeAttestor": [{"join_token": {"plugin_data": {}}}, {"x509pop": {"plugin_data": {"ca_bundle_path": "ca.pem"}}}]
    }
  })",
                                                       "server.json");
  ASSERT_TRUE(cfg.ok()) << cfg.status();
  EXPECT_EQ(cfg->bind_port, 9000);
  EXPECT_EQ(cfg->node_attestors.size(), 2u);
}

// ---- Errors ----

TEST(ServerConfigErrors, UnknownServerKeyNamesFileLineColumnAndKey) {
  ExpectError("server {\n  trust_domain = \"example.org\"\n  bind_prot = 8081\n}\n",
              "server.conf:3:3: unknown key \"bind_prot\" in server");
}

TEST(ServerConfigErrors, UnknownTopLevelKey) {
  ExpectError(WithServer("") + "\nlogging {}\n", "unknown key \"logging\" at top level");
}

TEST(ServerConfigErrors, UnknownKeyInJsonNamesThePath) {
  ExpectError(R"({"server": {"trust_domain": "example.org", "bind_prot": 1}})",
              "server.json: unknown key \"bind_prot\" in server", "server.json");
}

TEST(ServerConfigErrors, MissingServerBlock) {
  ExpectError(kPlugins, "server.conf:1:1: the server { } block is required");
}

TEST(ServerConfigErrors, MissingTrustDomain) {
  ExpectError(std::string("server {\n}\n") + kPlugins,
              "server.conf:1:8: server.trust_domain is required");
}

TEST(ServerConfigErrors, InvalidTrustDomain) {
  ExpectError(std::string("server {\n  trust_domain = \"Example.ORG\"\n}\n") + kPlugins,
              "server.conf:2:18: server.trust_domain:");
}

TEST(ServerConfigErrors, ServerIsNotABlock) {
  ExpectError("server = \"x\"", "server.conf:1:10: server: expected a block, found string \"x\"");
}

TEST(ServerConfigErrors, PortOutOfRange) {
  ExpectError(WithServer("  bind_port = 70000\n"),
              "server.conf:3:15: server.bind_port: expected a port number from 0 to 65535, "
              "found number 70000");
}

TEST(ServerConfigErrors, PortNotNumeric) {
  ExpectError(WithServer("  bind_port = \"http\"\n"),
              "server.bind_port: expected a port number from 0 to 65535, found string \"http\"");
}

TEST(ServerConfigErrors, PortAsFloat) {
  ExpectError(WithServer("  bind_port = 80.5\n"), "server.bind_port: expected a port number");
}

TEST(ServerConfigErrors, BadDuration) {
  ExpectError(WithServer("  ca_ttl = \"24 hours\"\n"), "server.conf:3:12: server.ca_ttl:");
}

TEST(ServerConfigErrors, DurationAsNumber) {
  ExpectError(WithServer("  ca_ttl = 24\n"),
              "server.ca_ttl: expected a duration string such as \"1h\" or \"90s\"");
}

TEST(ServerConfigErrors, ZeroCaTtl) {
  ExpectError(WithServer("  ca_ttl = \"0s\"\n"), "server.ca_ttl: must be greater than zero");
}

TEST(ServerConfigErrors, BadLogLevel) {
  ExpectError(WithServer("  log_level = \"verbose\"\n"),
              "server.log_level: expected one of DEBUG, ERROR, INFO, WARN, found string "
              "\"verbose\"");
}

TEST(ServerConfigErrors, BadLogFormat) {
  ExpectError(WithServer("  log_format = \"xml\"\n"),
              "server.log_format: expected one of json, text");
}

TEST(ServerConfigErrors, BadKeyType) {
  ExpectError(WithServer("  ca_key_type = \"ec-p521\"\n"),
              "server.ca_key_type: expected one of ec-p256, ec-p384, rsa-2048, rsa-4096");
}

TEST(ServerConfigErrors, StringWhereBoolExpected) {
  ExpectError(WithServer("  ratelimit { attestation = \"yes\" }\n"),
              "server.ratelimit.attestation: expected true or false, found string \"yes\"");
}

TEST(ServerConfigErrors, UnknownRatelimitKey) {
  ExpectError(WithServer("  ratelimit { burst = 1 }\n"),
              "unknown key \"burst\" in server.ratelimit");
}

TEST(ServerConfigErrors, EmptyBindAddress) {
  ExpectError(WithServer("  bind_address = \"\"\n"),
              "server.bind_address: expected a non-empty string");
}

TEST(ServerConfigErrors, CaSubjectListOfNumbers) {
  ExpectError(WithServer("  ca_subject { country = [1] }\n"),
              "server.ca_subject.country: expected a string or a list of strings, found number "
              "1 in the list");
}

TEST(ServerConfigErrors, FederationWithOwnTrustDomain) {
  ExpectError(WithServer(R"(  federation {
    federates_with "example.org" {
      bundle_endpoint_url = "https://x"
      bundle_endpoint_profile "https_web" {}
    }
  })"),
              "cannot federate with its own trust domain");
}

TEST(ServerConfigErrors, BundleEndpointAcmeIsRefusedWithTheAlternative) {
  ExpectError(WithServer(R"(  federation {
    bundle_endpoint {
      acme { domain_name = "example.org", email = "ops@example.org" }
    }
  })"),
              "ACME is not supported; give the https_web profile a certificate with "
              "serving_cert_file");
  ExpectError(WithServer(R"(  federation {
    bundle_endpoint {
      profile "https_web" { acme { domain_name = "example.org" } }
    }
  })"),
              "ACME is not supported");
}

TEST(ServerConfigErrors, HttpsWebBundleEndpointNeedsItsCertificateFiles) {
  ExpectError(WithServer(R"(  federation {
    bundle_endpoint {
      profile "https_web" {}
    }
  })"),
              "the https_web profile needs serving_cert_file");
  ExpectError(WithServer(R"(  federation {
    bundle_endpoint {
      profile "https_web" { serving_cert_file { cert_file_path = "/c.pem" } }
    }
  })"),
              "key_file_path is required");
}

TEST(ServerConfigErrors, BundleEndpointUnknownOrSecondProfile) {
  ExpectError(WithServer(R"(  federation {
    bundle_endpoint {
      profile "mtls" {}
    }
  })"),
              "unknown bundle endpoint profile \"mtls\"");
  ExpectError(WithServer(R"(  federation {
    bundle_endpoint {
      profile "https_spiffe" {}
      profile "https_web" { serving_cert_file { cert_file_path = "c", key_file_path = "k" } }
    }
  })"),
              "only one profile may be given");
}

TEST(ServerConfigErrors, OidcDiscoveryBadValuesAreNamed) {
  ExpectError(WithServer("") + "oidc_discovery { jwks_uri = \"ftp://x/keys\" }\n",
              "oidc_discovery.jwks_uri");
  ExpectError(WithServer("") + "oidc_discovery { domains = [\"a/b\"] }\n",
              "\"a/b\" is not a host name");
  ExpectError(WithServer("") + "oidc_discovery { acme { domain_name = \"x\" } }\n",
              "ACME is not supported");
  ExpectError(WithServer("") + "oidc_discovery { serving_cert_file { cert_file_path = \"c\" } }\n",
              "key_file_path is required");
  ExpectError(WithServer("") + "oidc_discovery { listen = 1 }\n", "listen");
}

TEST(ServerConfigErrors, FederationUnknownProfile) {
  ExpectError(WithServer(R"(  federation {
    federates_with "a.test" {
      bundle_endpoint_url = "https://x"
      bundle_endpoint_profile "mtls" {}
    }
  })"),
              "unknown bundle endpoint profile \"mtls\"");
}

TEST(ServerConfigErrors, FederationMissingProfile) {
  ExpectError(WithServer(R"(  federation {
    federates_with "a.test" { bundle_endpoint_url = "https://x" }
  })"),
              "server.federation.federates_with.a.test.bundle_endpoint_profile: exactly one "
              "profile is required");
}

TEST(ServerConfigErrors, FederationSpiffeProfileNeedsId) {
  ExpectError(WithServer(R"(  federation {
    federates_with "a.test" {
      bundle_endpoint_url = "https://x"
      bundle_endpoint_profile "https_spiffe" {}
    }
  })"),
              "endpoint_spiffe_id is required");
}

TEST(ServerConfigErrors, FederationHttpUrl) {
  ExpectError(WithServer(R"(  federation {
    federates_with "a.test" {
      bundle_endpoint_url = "http://x"
      bundle_endpoint_profile "https_web" {}
    }
  })"),
              "bundle_endpoint_url: expected an https:// URL");
}

TEST(ServerConfigErrors, FederationDuplicateTrustDomainInTwoForms) {
  ExpectError(WithServer(R"(  federation {
    federates_with "a.test" {
      bundle_endpoint_url = "https://x"
      bundle_endpoint_profile "https_web" {}
    }
    federates_with "spiffe://a.test" {
      bundle_endpoint_url = "https://x"
      bundle_endpoint_profile "https_web" {}
    }
  })"),
              "duplicate federates_with for trust domain \"a.test\"");
}

TEST(ServerConfigErrors, MissingPluginsBlock) {
  ExpectError("server { trust_domain = \"example.org\" }", "the plugins { } block is required");
}

TEST(ServerConfigErrors, MissingDataStore) {
  ExpectError(WithPlugins("  KeyManager \"memory\" {}\n"),
              "server.conf:4:9: plugins: a DataStore is required");
}

TEST(ServerConfigErrors, MissingKeyManager) {
  ExpectError(WithPlugins("  DataStore \"sql\" { plugin_data { database_type = \"sqlite3\", "
                          "connection_string = \"x\" } }\n"),
              "plugins: a KeyManager is required");
}

TEST(ServerConfigErrors, TwoKeyManagers) {
  ExpectError(WithPlugins("  DataStore \"sql\" { plugin_data { database_type = \"sqlite3\", "
                          "connection_string = \"x\" } }\n  KeyManager \"memory\" {}\n"
                          "  KeyManager \"disk\" { plugin_data { keys_path = \"k\" } }\n"),
              "server.conf:7:14: only one KeyManager may be configured");
}

TEST(ServerConfigErrors, UnknownPluginType) {
  ExpectError(WithPlugins("  Notifier \"k8sbundle\" {}\n"),
              "server.conf:5:3: unknown plugin type \"Notifier\" in plugins");
}

TEST(ServerConfigErrors, UnknownPluginTypeWithNoPluginsUnderIt) {
  ExpectError(WithPlugins("  Notifier {}\n"), "server.conf:5:3: unknown plugin type \"Notifier\"");
}

TEST(ServerConfigErrors, UnknownPluginName) {
  ExpectError(WithPlugins("  DataStore \"mysql\" {}\n"),
              "server.conf:5:13: unknown DataStore plugin \"mysql\" (supported: sql)");
}

TEST(ServerConfigErrors, UnknownNodeAttestorName) {
  ExpectError(WithPlugins("  NodeAttestor \"tpm_devid\" {}\n"),
              "unknown NodeAttestor plugin \"tpm_devid\" (supported: join_token, x509pop, "
              "k8s_psat, aws_iid, gcp_iit, azure_msi)");
}

TEST(ServerConfigErrors, UnknownKeyInPluginBody) {
  ExpectError(WithPlugins("  KeyManager \"memory\" { plugin_cmd = \"/bin/x\" }\n"),
              "unknown key \"plugin_cmd\" in plugins.KeyManager.memory");
}

TEST(ServerConfigErrors, UnknownKeyInPluginData) {
  ExpectError(WithPlugins("  DataStore \"sql\" { plugin_data { database_type = \"sqlite3\", "
                          "connection_string = \"x\", log_sql = true } }\n"
                          "  KeyManager \"memory\" {}\n"),
              "unknown key \"log_sql\" in plugins.DataStore.sql.plugin_data");
}

TEST(ServerConfigErrors, BadDatabaseType) {
  ExpectError(WithPlugins("  DataStore \"sql\" { plugin_data { database_type = \"mysql\", "
                          "connection_string = \"x\" } }\n"),
              "plugins.DataStore.sql.plugin_data.database_type: expected one of postgres, "
              "sqlite3, found string \"mysql\"");
}

TEST(ServerConfigErrors, MissingConnectionString) {
  ExpectError(WithPlugins("  DataStore \"sql\" { plugin_data { database_type = \"sqlite3\" } }\n"),
              "plugins.DataStore.sql.plugin_data.connection_string is required");
}

TEST(ServerConfigErrors, MissingPluginDataEntirely) {
  ExpectError(WithPlugins("  DataStore \"sql\" {}\n"),
              "server.conf:5:19: plugins.DataStore.sql.plugin_data.database_type is required");
}

TEST(ServerConfigErrors, PluginDataNotABlock) {
  ExpectError(WithPlugins("  DataStore \"sql\" { plugin_data = \"x\" }\n"),
              "plugins.DataStore.sql.plugin_data: expected a block, found string \"x\"");
}

TEST(ServerConfigErrors, KeyManagerDiskNeedsKeysPath) {
  ExpectError(WithPlugins("  KeyManager \"disk\" { plugin_data {} }\n"),
              "plugins.KeyManager.disk.plugin_data.keys_path is required");
}

TEST(ServerConfigErrors, X509PopNeedsCaBundle) {
  ExpectError(WithPlugins("  NodeAttestor \"x509pop\" { plugin_data {} }\n"),
              "ca_bundle_path or ca_bundle_paths is required");
}

TEST(ServerConfigErrors, X509PopBothCaBundleForms) {
  ExpectError(WithPlugins("  NodeAttestor \"x509pop\" { plugin_data { ca_bundle_path = \"a\", "
                          "ca_bundle_paths = [\"b\"] } }\n"),
              "set ca_bundle_path or ca_bundle_paths, not both");
}

TEST(ServerConfigErrors, TwoUpstreamAuthorities) {
  ExpectError(WithPlugins("  DataStore \"sql\" { plugin_data { database_type = \"sqlite3\", "
                          "connection_string = \"x\" } }\n  KeyManager \"memory\" {}\n"
                          "  UpstreamAuthority \"disk\" { plugin_data { cert_file_path = \"c\", "
                          "key_file_path = \"k\" } }\n"
                          "  UpstreamAuthority \"spire\" { plugin_data { server_address = \"a\", "
                          "server_port = 1, workload_api_socket = \"s\" } }\n"),
              "only one UpstreamAuthority may be configured");
}

TEST(ServerConfigErrors, SpireUpstreamNeedsPort) {
  ExpectError(WithPlugins("  UpstreamAuthority \"spire\" { plugin_data { server_address = \"a\", "
                          "workload_api_socket = \"s\" } }\n"),
              "plugins.UpstreamAuthority.spire.plugin_data.server_port is required");
}

TEST(ServerConfigErrors, JsonDuplicatePluginAcrossListItems) {
  ExpectError(R"({"server": {"trust_domain": "example.org"},
    "plugins": {"NodeAttestor": [{"join_token": {}}, {"join_token": {}}]}})",
              "server.json: duplicate block plugins.NodeAttestor \"join_token\"", "server.json");
}

TEST(ServerConfigErrors, JsonPluginListOfStrings) {
  ExpectError(R"({"server": {"trust_domain": "example.org"},
    "plugins": {"NodeAttestor": ["join_token"]}})",
              "plugins.NodeAttestor: expected a list of {\"label\": {...}} objects, found string "
              "\"join_token\"",
              "server.json");
}

TEST(ServerConfigErrors, PluginTypeAsString) {
  ExpectError(WithPlugins("  DataStore = \"sql\"\n"), "plugins.DataStore: expected blocks written");
}

TEST(ServerConfigErrors, HealthCheckPathMustStartWithSlash) {
  ExpectError(WithServer("") + "health_checks { live_path = \"live\" }",
              "health_checks.live_path: expected a path starting with '/'");
}

TEST(ServerConfigErrors, PrometheusNeedsPort) {
  ExpectError(WithServer("") + "telemetry { Prometheus { host = \"x\" } }",
              "telemetry.Prometheus.port is required");
}

TEST(ServerConfigErrors, UnknownTelemetrySink) {
  ExpectError(WithServer("") + "telemetry { Statsd { address = \"x\" } }",
              "unknown key \"Statsd\" in telemetry");
}

TEST(ServerConfigErrors, ExpandedEmptyValueIsReported) {
  ParseOptions options;
  options.expand_env = true;
  options.env = [](const std::string&) { return std::nullopt; };
  absl::StatusOr<ServerConfig> cfg = ParseServerConfig(
      std::string("server { trust_domain = \"${TD}\" }") + kPlugins, "server.conf", options);
  ASSERT_FALSE(cfg.ok());
  EXPECT_EQ(cfg.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(cfg.status().message()),
              HasSubstr("server.trust_domain: expected a non-empty string, found string \"\""));
}

// Near the size limit, many distinct plugin types must still be handled in linear time.
TEST(ServerConfigErrors, HugePluginsBlockReportsFirstUnknownType) {
  std::string body;
  for (int i = 0; body.size() < kMaxConfigSize - 4096; ++i) {
    body += "T" + std::to_string(i) + " {}\n";
  }
  ExpectError(WithPlugins(body), "server.conf:5:1: unknown plugin type \"T0\" in plugins");
}

TEST(LoadServerConfig, MissingFileIsNotFound) {
  absl::StatusOr<ServerConfig> cfg = LoadServerConfig("/nonexistent/trellis/server.conf", false);
  ASSERT_FALSE(cfg.ok());
  EXPECT_EQ(cfg.status().code(), absl::StatusCode::kNotFound);
}

}  // namespace
}  // namespace trellis::common::config
