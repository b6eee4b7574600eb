// Loads and validates trellis-server configuration from the generic tree.
#include "common/config/server_config.h"

#include <map>
#include <set>
#include <string>

#include "absl/strings/match.h"

namespace trellis::common::config {
namespace {

const std::map<std::string, KeyType>& KeyTypes() {
  static const auto* const kTypes =
      new std::map<std::string, KeyType>{{"ec-p256", KeyType::kEcP256},
                                         {"ec-p384", KeyType::kEcP384},
                                         {"rsa-2048", KeyType::kRsa2048},
                                         {"rsa-4096", KeyType::kRsa4096}};
  return *kTypes;
}

absl::Status ReadPositiveDuration(Section& s, std::string_view key, absl::Duration* out) {
  TRELLIS_RETURN_IF_ERROR(s.ReadDuration(key, out));
  if (*out <= absl::ZeroDuration()) {
    return s.ErrorAt(s.PositionOf(key), s.KeyPath(key) + ": must be greater than zero");
  }
  return absl::OkStatus();
}

absl::StatusOr<CaSubject> ReadCaSubject(Section& s) {
  CaSubject subject;
  TRELLIS_RETURN_IF_ERROR(s.ReadStringList("country", true, &subject.country));
  TRELLIS_RETURN_IF_ERROR(s.ReadStringList("organization", true, &subject.organization));
  TRELLIS_RETURN_IF_ERROR(s.ReadString("common_name", &subject.common_name));
  TRELLIS_RETURN_IF_ERROR(s.Finish());
  return subject;
}

absl::StatusOr<FederatesWithConfig> ReadFederatesWith(const Document& doc,
                                                      const LabelledBlock& block,
                                                      const TrustDomain& own) {
  TRELLIS_ASSIGN_OR_RETURN(Section s, Section::Open(doc, *block.body, block.path));
  absl::StatusOr<TrustDomain> td = TrustDomain::Parse(block.label);
  if (!td.ok()) {
    return s.ErrorAt(block.pos,
                     block.path + ": invalid trust domain: " + std::string(td.status().message()));
  }
  if (*td == own) {
    return s.ErrorAt(block.pos,
                     block.path + ": a server cannot federate with its own trust domain");
  }
  std::string url;
  TRELLIS_RETURN_IF_ERROR(s.ReadRequiredString("bundle_endpoint_url", &url));
  if (!absl::StartsWith(url, "https://") || url.size() <= 8) {
    return s.WrongValue("bundle_endpoint_url", *s.Get("bundle_endpoint_url"), "an https:// URL");
  }
  TRELLIS_ASSIGN_OR_RETURN(std::vector<LabelledBlock> profiles,
                           ReadLabelledBlocks(s, "bundle_endpoint_profile"));
  if (profiles.size() != 1) {
    return s.ErrorAt(s.PositionOf("bundle_endpoint_profile"),
                     s.KeyPath("bundle_endpoint_profile") +
                         ": exactly one profile is required, \"https_web\" or \"https_spiffe\"");
  }
  const LabelledBlock& profile = profiles[0];
  TRELLIS_ASSIGN_OR_RETURN(Section ps, Section::Open(doc, *profile.body, profile.path));
  FederatesWithConfig fw{*td, url, BundleEndpointProfile::kHttpsWeb, std::nullopt};
  if (profile.label == "https_spiffe") {
    fw.profile = BundleEndpointProfile::kHttpsSpiffe;
    std::string id_text;
    TRELLIS_RETURN_IF_ERROR(ps.ReadRequiredString("endpoint_spiffe_id", &id_text));
    absl::StatusOr<SpiffeId> id = SpiffeId::Parse(id_text);
    if (!id.ok()) {
      return ps.ErrorAt(
          ps.PositionOf("endpoint_spiffe_id"),
          ps.KeyPath("endpoint_spiffe_id") + ": " + std::string(id.status().message()));
    }
    fw.endpoint_spiffe_id = *id;
  } else if (profile.label != "https_web") {
    return s.ErrorAt(profile.pos, "unknown bundle endpoint profile " +
                                      QuoteForError(profile.label) + " in " + s.path() +
                                      " (use \"https_web\" or \"https_spiffe\")");
  }
  TRELLIS_RETURN_IF_ERROR(ps.Finish());
  TRELLIS_RETURN_IF_ERROR(s.Finish());
  return fw;
}

constexpr char kNoAcme[] =
    ": ACME is not supported; give the https_web profile a certificate with "
    "serving_cert_file { cert_file_path, key_file_path }";

// `profile "https_spiffe" {}` or `profile "https_web" { serving_cert_file { } }`.
absl::Status ReadEndpointProfile(Section& be, BundleEndpointConfig* endpoint) {
  if (be.Get("acme") != nullptr)
    return be.ErrorAt(be.PositionOf("acme"), be.KeyPath("acme") + kNoAcme);
  TRELLIS_ASSIGN_OR_RETURN(std::vector<LabelledBlock> profiles, ReadLabelledBlocks(be, "profile"));
  if (profiles.empty()) return absl::OkStatus();
  if (profiles.size() != 1) {
    return be.ErrorAt(profiles[1].pos, be.KeyPath("profile") + ": only one profile may be given");
  }
  const LabelledBlock& profile = profiles[0];
  TRELLIS_ASSIGN_OR_RETURN(Section ps, Section::Open(be.doc(), *profile.body, profile.path));
  if (profile.label == "https_spiffe") {
    endpoint->profile = BundleEndpointProfile::kHttpsSpiffe;
    return ps.Finish();
  }
  if (profile.label != "https_web") {
    return be.ErrorAt(profile.pos, "unknown bundle endpoint profile " +
                                       QuoteForError(profile.label) + " in " + be.path() +
                                       " (use \"https_web\" or \"https_spiffe\")");
  }
  endpoint->profile = BundleEndpointProfile::kHttpsWeb;
  if (ps.Get("acme") != nullptr)
    return ps.ErrorAt(ps.PositionOf("acme"), ps.KeyPath("acme") + kNoAcme);
  TRELLIS_ASSIGN_OR_RETURN(std::optional<Section> files, ps.Child("serving_cert_file"));
  if (!files.has_value()) {
    return ps.ErrorAt(profile.pos, profile.path +
                                       ": the https_web profile needs serving_cert_file "
                                       "{ cert_file_path, key_file_path }");
  }
  TRELLIS_RETURN_IF_ERROR(files->ReadRequiredString("cert_file_path", &endpoint->cert_file_path));
  TRELLIS_RETURN_IF_ERROR(files->ReadRequiredString("key_file_path", &endpoint->key_file_path));
  TRELLIS_RETURN_IF_ERROR(files->Finish());
  return ps.Finish();
}

absl::StatusOr<FederationConfig> ReadFederation(Section& s, const TrustDomain& own) {
  FederationConfig fed;
  TRELLIS_ASSIGN_OR_RETURN(std::optional<Section> be, s.Child("bundle_endpoint"));
  if (be.has_value()) {
    BundleEndpointConfig endpoint;
    TRELLIS_RETURN_IF_ERROR(be->ReadNonEmptyString("address", &endpoint.address));
    TRELLIS_RETURN_IF_ERROR(be->ReadPort("port", &endpoint.port));
    TRELLIS_RETURN_IF_ERROR(be->ReadDuration("refresh_hint", &endpoint.refresh_hint));
    TRELLIS_RETURN_IF_ERROR(ReadEndpointProfile(*be, &endpoint));
    TRELLIS_RETURN_IF_ERROR(be->Finish());
    fed.bundle_endpoint = endpoint;
  }
  TRELLIS_ASSIGN_OR_RETURN(std::vector<LabelledBlock> blocks,
                           ReadLabelledBlocks(s, "federates_with"));
  std::set<std::string> seen;
  for (const LabelledBlock& block : blocks) {
    TRELLIS_ASSIGN_OR_RETURN(FederatesWithConfig fw, ReadFederatesWith(s.doc(), block, own));
    // "example.org" and "spiffe://example.org" name the same trust domain.
    if (!seen.insert(fw.trust_domain.name()).second) {
      return s.ErrorAt(block.pos, "duplicate federates_with for trust domain " +
                                      QuoteForError(fw.trust_domain.name()));
    }
    fed.federates_with.push_back(std::move(fw));
  }
  TRELLIS_RETURN_IF_ERROR(s.Finish());
  return fed;
}

absl::StatusOr<OidcDiscoveryConfig> ReadOidcDiscovery(Section& s) {
  OidcDiscoveryConfig o;
  TRELLIS_RETURN_IF_ERROR(s.ReadNonEmptyString("address", &o.address));
  TRELLIS_RETURN_IF_ERROR(s.ReadPort("port", &o.port));
  TRELLIS_RETURN_IF_ERROR(s.ReadStringList("domains", true, &o.domains));
  for (const std::string& d : o.domains) {
    if (d.empty() || d.find_first_of("/ \t") != std::string::npos) {
      return s.ErrorAt(s.PositionOf("domains"),
                       s.KeyPath("domains") + ": " + QuoteForError(d) + " is not a host name");
    }
  }
  TRELLIS_RETURN_IF_ERROR(s.ReadNonEmptyString("jwks_uri", &o.jwks_uri));
  if (!o.jwks_uri.empty() && !absl::StartsWith(o.jwks_uri, "https://") &&
      !absl::StartsWith(o.jwks_uri, "http://")) {
    return s.WrongValue("jwks_uri", *s.Get("jwks_uri"), "an http:// or https:// URL");
  }
  if (s.Get("acme") != nullptr) {
    return s.ErrorAt(s.PositionOf("acme"),
                     s.KeyPath("acme") +
                         ": ACME is not supported; give serving_cert_file { cert_file_path, "
                         "key_file_path }");
  }
  TRELLIS_ASSIGN_OR_RETURN(std::optional<Section> files, s.Child("serving_cert_file"));
  if (files.has_value()) {
    TRELLIS_RETURN_IF_ERROR(files->ReadRequiredString("cert_file_path", &o.cert_file_path));
    TRELLIS_RETURN_IF_ERROR(files->ReadRequiredString("key_file_path", &o.key_file_path));
    TRELLIS_RETURN_IF_ERROR(files->Finish());
  }
  TRELLIS_RETURN_IF_ERROR(s.Finish());
  return o;
}

constexpr char kNodeAttestorNames[] = "join_token, x509pop, k8s_psat, aws_iid, gcp_iit, azure_msi";

absl::Status UnknownPlugin(const Section& plugins, const PluginEntry& e, const char* supported) {
  return plugins.ErrorAt(e.pos, "unknown " + e.type + " plugin " + QuoteForError(e.name) +
                                    " (supported: " + supported + ")");
}

absl::Status ReadServerPlugin(const Document& doc, const Section& plugins, const PluginEntry& e,
                              ServerConfig* cfg, int* data_stores, int* key_managers,
                              int* upstreams) {
  TRELLIS_ASSIGN_OR_RETURN(Section data, OpenPluginData(doc, e));
  if (e.type == "DataStore") {
    if (e.name != "sql") return UnknownPlugin(plugins, e, "sql");
    if (++*data_stores > 1) {
      return plugins.ErrorAt(
          e.pos, "only one DataStore may be configured, found another: " + QuoteForError(e.name));
    }
    static const std::map<std::string, DatabaseType> kDbTypes = {
        {"sqlite3", DatabaseType::kSqlite3}, {"postgres", DatabaseType::kPostgres}};
    if (data.Get("database_type") == nullptr) return data.Missing("database_type");
    TRELLIS_RETURN_IF_ERROR(
        data.ReadEnum("database_type", kDbTypes, false, &cfg->data_store.database_type));
    TRELLIS_RETURN_IF_ERROR(
        data.ReadRequiredString("connection_string", &cfg->data_store.connection_string));
    TRELLIS_RETURN_IF_ERROR(
        data.ReadNonEmptyString("ro_connection_string", &cfg->data_store.ro_connection_string));
    int64_t conns = 0;
    TRELLIS_RETURN_IF_ERROR(data.ReadInt("max_open_conns", 0, 10000, &conns));
    cfg->data_store.max_open_conns = static_cast<int>(conns);
  } else if (e.type == "KeyManager") {
    if (e.name == "disk") {
      DiskKeyManagerConfig disk;
      TRELLIS_RETURN_IF_ERROR(data.ReadRequiredString("keys_path", &disk.keys_path));
      cfg->key_manager = disk;
    } else if (e.name == "memory") {
      cfg->key_manager = MemoryKeyManagerConfig{};
    } else {
      return UnknownPlugin(plugins, e, "disk, memory");
    }
    if (++*key_managers > 1) {
      return plugins.ErrorAt(
          e.pos, "only one KeyManager may be configured, found another: " + QuoteForError(e.name));
    }
  } else if (e.type == "NodeAttestor") {
    if (e.name == "join_token") {
      cfg->node_attestors.emplace_back(std::in_place_type<JoinTokenServerAttestorConfig>);
    } else if (e.name == "x509pop") {
      X509PopServerAttestorConfig x;
      std::string single;
      TRELLIS_RETURN_IF_ERROR(data.ReadNonEmptyString("ca_bundle_path", &single));
      TRELLIS_RETURN_IF_ERROR(data.ReadStringList("ca_bundle_paths", false, &x.ca_bundle_paths));
      if (!single.empty() && !x.ca_bundle_paths.empty()) {
        return data.ErrorAt(data.PositionOf("ca_bundle_paths"),
                            data.path() + ": set ca_bundle_path or ca_bundle_paths, not both");
      }
      if (!single.empty()) x.ca_bundle_paths = {single};
      if (x.ca_bundle_paths.empty()) {
        return data.ErrorAt(data.value().pos,
                            data.path() + ": ca_bundle_path or ca_bundle_paths is required");
      }
      for (const std::string& p : x.ca_bundle_paths) {
        if (p.empty()) {
          return data.ErrorAt(data.PositionOf("ca_bundle_paths"),
                              data.KeyPath("ca_bundle_paths") + ": paths must not be empty");
        }
      }
      TRELLIS_RETURN_IF_ERROR(
          data.ReadNonEmptyString("agent_path_template", &x.agent_path_template));
      cfg->node_attestors.emplace_back(std::in_place_type<X509PopServerAttestorConfig>,
                                       std::move(x));
    } else if (e.name == "k8s_psat") {
      K8sPsatServerAttestorConfig k;
      TRELLIS_RETURN_IF_ERROR(ReadK8sPsatServerConfig(data, &k));
      cfg->node_attestors.emplace_back(std::move(k));
    } else if (e.name == "aws_iid") {
      AwsIidServerAttestorConfig a;
      TRELLIS_RETURN_IF_ERROR(ReadAwsIidServerConfig(data, &a));
      cfg->node_attestors.emplace_back(std::move(a));
    } else if (e.name == "gcp_iit") {
      GcpIitServerAttestorConfig g;
      TRELLIS_RETURN_IF_ERROR(ReadGcpIitServerConfig(data, &g));
      cfg->node_attestors.emplace_back(std::move(g));
    } else if (e.name == "azure_msi") {
      AzureMsiServerAttestorConfig a;
      TRELLIS_RETURN_IF_ERROR(ReadAzureMsiServerConfig(data, &a));
      cfg->node_attestors.emplace_back(std::move(a));
    } else {
      return UnknownPlugin(plugins, e, kNodeAttestorNames);
    }
  } else if (e.type == "UpstreamAuthority") {
    if (e.name == "disk") {
      DiskUpstreamAuthorityConfig d;
      TRELLIS_RETURN_IF_ERROR(data.ReadRequiredString("cert_file_path", &d.cert_file_path));
      TRELLIS_RETURN_IF_ERROR(data.ReadRequiredString("key_file_path", &d.key_file_path));
      TRELLIS_RETURN_IF_ERROR(data.ReadNonEmptyString("bundle_file_path", &d.bundle_file_path));
      cfg->upstream_authority = d;
    } else if (e.name == "spire") {
      SpireUpstreamAuthorityConfig sp;
      TRELLIS_RETURN_IF_ERROR(data.ReadRequiredString("server_address", &sp.server_address));
      if (data.Get("server_port") == nullptr) return data.Missing("server_port");
      TRELLIS_RETURN_IF_ERROR(data.ReadPort("server_port", &sp.server_port));
      TRELLIS_RETURN_IF_ERROR(
          data.ReadRequiredString("workload_api_socket", &sp.workload_api_socket));
      cfg->upstream_authority = sp;
    } else {
      return UnknownPlugin(plugins, e, "disk, spire");
    }
    if (++*upstreams > 1) {
      return plugins.ErrorAt(
          e.pos,
          "only one UpstreamAuthority may be configured, found another: " + QuoteForError(e.name));
    }
  } else {
    return plugins.ErrorAt(e.pos, "unknown plugin type " + QuoteForError(e.type) +
                                      " in plugins (supported: DataStore, KeyManager, "
                                      "NodeAttestor, UpstreamAuthority)");
  }
  return data.Finish();
}

}  // namespace

std::string KeyTypeName(KeyType type) {
  for (const auto& [name, t] : KeyTypes()) {
    if (t == type) return name;
  }
  return "ec-p256";
}

absl::StatusOr<ServerConfig> ServerConfigFromDocument(const Document& doc) {
  TRELLIS_ASSIGN_OR_RETURN(Section top, Section::Open(doc, doc.root, ""));
  TRELLIS_RETURN_IF_ERROR(
      top.AllowOnly({"server", "plugins", "oidc_discovery", "health_checks", "telemetry"}));
  TRELLIS_ASSIGN_OR_RETURN(std::optional<Section> server, top.Child("server"));
  if (!server.has_value()) return top.ErrorAt(doc.root.pos, "the server { } block is required");

  TRELLIS_RETURN_IF_ERROR(
      server->AllowOnly({"trust_domain", "bind_address", "bind_port", "socket_path", "data_dir",
                         "log_level", "log_format", "log_file", "ca_ttl", "default_x509_svid_ttl",
                         "default_jwt_svid_ttl", "agent_ttl", "ca_key_type", "jwt_key_type",
                         "ca_subject", "jwt_issuer", "federation", "ratelimit"}));
  std::string td_text;
  TRELLIS_RETURN_IF_ERROR(server->ReadRequiredString("trust_domain", &td_text));
  absl::StatusOr<TrustDomain> td = TrustDomain::Parse(td_text);
  if (!td.ok()) {
    return server->ErrorAt(server->PositionOf("trust_domain"),
                           "server.trust_domain: " + std::string(td.status().message()));
  }
  ServerConfig cfg(*td);
  Section& s = *server;
  TRELLIS_RETURN_IF_ERROR(s.ReadNonEmptyString("bind_address", &cfg.bind_address));
  TRELLIS_RETURN_IF_ERROR(s.ReadPort("bind_port", &cfg.bind_port));
  TRELLIS_RETURN_IF_ERROR(s.ReadNonEmptyString("socket_path", &cfg.socket_path));
  TRELLIS_RETURN_IF_ERROR(s.ReadNonEmptyString("data_dir", &cfg.data_dir));
  TRELLIS_RETURN_IF_ERROR(ReadLogSettings(s, &cfg.log_level, &cfg.log_format, &cfg.log_file));
  TRELLIS_RETURN_IF_ERROR(ReadPositiveDuration(s, "ca_ttl", &cfg.ca_ttl));
  TRELLIS_RETURN_IF_ERROR(
      ReadPositiveDuration(s, "default_x509_svid_ttl", &cfg.default_x509_svid_ttl));
  TRELLIS_RETURN_IF_ERROR(
      ReadPositiveDuration(s, "default_jwt_svid_ttl", &cfg.default_jwt_svid_ttl));
  TRELLIS_RETURN_IF_ERROR(s.ReadDuration("agent_ttl", &cfg.agent_ttl));
  TRELLIS_RETURN_IF_ERROR(s.ReadEnum("ca_key_type", KeyTypes(), false, &cfg.ca_key_type));
  TRELLIS_RETURN_IF_ERROR(s.ReadEnum("jwt_key_type", KeyTypes(), false, &cfg.jwt_key_type));
  TRELLIS_ASSIGN_OR_RETURN(std::optional<Section> subject, s.Child("ca_subject"));
  if (subject.has_value()) {
    TRELLIS_ASSIGN_OR_RETURN(cfg.ca_subject, ReadCaSubject(*subject));
  }
  TRELLIS_RETURN_IF_ERROR(s.ReadNonEmptyString("jwt_issuer", &cfg.jwt_issuer));
  TRELLIS_ASSIGN_OR_RETURN(std::optional<Section> federation, s.Child("federation"));
  if (federation.has_value()) {
    TRELLIS_ASSIGN_OR_RETURN(cfg.federation, ReadFederation(*federation, cfg.trust_domain));
  }
  TRELLIS_ASSIGN_OR_RETURN(std::optional<Section> ratelimit, s.Child("ratelimit"));
  if (ratelimit.has_value()) {
    TRELLIS_RETURN_IF_ERROR(ratelimit->ReadBool("attestation", &cfg.ratelimit.attestation));
    TRELLIS_RETURN_IF_ERROR(ratelimit->ReadBool("signing", &cfg.ratelimit.signing));
    TRELLIS_RETURN_IF_ERROR(ratelimit->Finish());
  }
  TRELLIS_RETURN_IF_ERROR(s.Finish());

  TRELLIS_ASSIGN_OR_RETURN(std::optional<Section> plugins, top.Child("plugins"));
  if (!plugins.has_value()) {
    return top.ErrorAt(doc.root.pos,
                       "the plugins { } block is required (with one DataStore and one KeyManager)");
  }
  TRELLIS_ASSIGN_OR_RETURN(std::vector<PluginEntry> entries,
                           ReadPluginEntries(*plugins, {"DataStore", "KeyManager", "NodeAttestor",
                                                        "UpstreamAuthority"}));
  int data_stores = 0, key_managers = 0, upstreams = 0;
  for (const PluginEntry& e : entries) {
    TRELLIS_RETURN_IF_ERROR(
        ReadServerPlugin(doc, *plugins, e, &cfg, &data_stores, &key_managers, &upstreams));
  }
  if (data_stores == 0) {
    return plugins->ErrorAt(plugins->value().pos,
                            "plugins: a DataStore is required, as DataStore \"sql\" { ... }");
  }
  if (key_managers == 0) {
    return plugins->ErrorAt(plugins->value().pos,
                            "plugins: a KeyManager is required, \"disk\" or \"memory\"");
  }

  TRELLIS_ASSIGN_OR_RETURN(std::optional<Section> oidc, top.Child("oidc_discovery"));
  if (oidc.has_value()) {
    TRELLIS_ASSIGN_OR_RETURN(cfg.oidc_discovery, ReadOidcDiscovery(*oidc));
  }
  TRELLIS_RETURN_IF_ERROR(ReadSharedBlocksAndFinish(top, &cfg.health_checks, &cfg.telemetry));
  return cfg;
}

absl::StatusOr<ServerConfig> ParseServerConfig(std::string_view text, const std::string& filename,
                                               const ParseOptions& options) {
  TRELLIS_ASSIGN_OR_RETURN(Document doc, ParseDocument(text, filename, options));
  return ServerConfigFromDocument(doc);
}

absl::StatusOr<ServerConfig> LoadServerConfig(const std::string& path, bool expand_env) {
  ParseOptions options;
  options.expand_env = expand_env;
  TRELLIS_ASSIGN_OR_RETURN(Document doc, LoadDocument(path, options));
  return ServerConfigFromDocument(doc);
}

}  // namespace trellis::common::config
