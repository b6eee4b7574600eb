// Loads and validates trellis-agent configuration from the generic tree.
#include "common/config/agent_config.h"

#include <map>
#include <string>

#include "absl/strings/match.h"
#include "absl/strings/str_join.h"

namespace trellis::common::config {
namespace {

constexpr char kNodeAttestorNames[] = "join_token, x509pop, k8s_psat, aws_iid, gcp_iit, azure_msi";

absl::Status UnknownPlugin(const Section& plugins, const PluginEntry& e, const char* supported) {
  return plugins.ErrorAt(e.pos, "unknown " + e.type + " plugin " + QuoteForError(e.name) +
                                    " (supported: " + supported + ")");
}

absl::Status OnlyOne(const Section& plugins, const PluginEntry& e, int count) {
  if (count <= 1) return absl::OkStatus();
  return plugins.ErrorAt(
      e.pos, "only one " + e.type + " may be configured, found another: " + QuoteForError(e.name));
}

absl::Status ReadAgentPlugin(const Document& doc, const Section& plugins, const PluginEntry& e,
                             AgentConfig* cfg, int* node_attestors, int* key_managers) {
  TRELLIS_ASSIGN_OR_RETURN(Section data, OpenPluginData(doc, e));
  if (e.type == "NodeAttestor") {
    if (e.name == "join_token") {
      cfg->node_attestor.emplace<JoinTokenAgentAttestorConfig>();
    } else if (e.name == "x509pop") {
      X509PopAgentAttestorConfig x;
      TRELLIS_RETURN_IF_ERROR(data.ReadRequiredString("private_key_path", &x.private_key_path));
      TRELLIS_RETURN_IF_ERROR(data.ReadRequiredString("certificate_path", &x.certificate_path));
      TRELLIS_RETURN_IF_ERROR(data.ReadNonEmptyString("intermediates_path", &x.intermediates_path));
      cfg->node_attestor.emplace<X509PopAgentAttestorConfig>(std::move(x));
    } else if (e.name == "k8s_psat") {
      K8sPsatAgentAttestorConfig k;
      TRELLIS_RETURN_IF_ERROR(ReadK8sPsatAgentConfig(data, &k));
      cfg->node_attestor = std::move(k);
    } else if (e.name == "aws_iid") {
      AwsIidAgentAttestorConfig a;
      TRELLIS_RETURN_IF_ERROR(ReadAwsIidAgentConfig(data, &a));
      cfg->node_attestor = std::move(a);
    } else if (e.name == "gcp_iit") {
      GcpIitAgentAttestorConfig g;
      TRELLIS_RETURN_IF_ERROR(ReadGcpIitAgentConfig(data, &g));
      cfg->node_attestor = std::move(g);
    } else if (e.name == "azure_msi") {
      AzureMsiAgentAttestorConfig a;
      TRELLIS_RETURN_IF_ERROR(ReadAzureMsiAgentConfig(data, &a));
      cfg->node_attestor = std::move(a);
    } else {
      return UnknownPlugin(plugins, e, kNodeAttestorNames);
    }
    TRELLIS_RETURN_IF_ERROR(OnlyOne(plugins, e, ++*node_attestors));
  } else if (e.type == "KeyManager") {
    if (e.name == "disk") {
      DiskAgentKeyManagerConfig disk;
      TRELLIS_RETURN_IF_ERROR(data.ReadRequiredString("directory", &disk.directory));
      cfg->key_manager.emplace<DiskAgentKeyManagerConfig>(std::move(disk));
    } else if (e.name == "memory") {
      cfg->key_manager.emplace<MemoryAgentKeyManagerConfig>();
    } else {
      return UnknownPlugin(plugins, e, "disk, memory");
    }
    TRELLIS_RETURN_IF_ERROR(OnlyOne(plugins, e, ++*key_managers));
  } else if (e.type == "WorkloadAttestor") {
    if (e.name == "unix") {
      UnixWorkloadAttestorConfig unix_config;
      TRELLIS_RETURN_IF_ERROR(
          data.ReadBool("discover_workload_path", &unix_config.discover_workload_path));
      cfg->workload_attestors.push_back(unix_config);
    } else if (e.name == "k8s") {
      K8sWorkloadAttestorConfig k;
      TRELLIS_RETURN_IF_ERROR(ReadK8sWorkloadConfig(data, &k));
      cfg->workload_attestors.push_back(std::move(k));
    } else if (e.name == "docker") {
      DockerWorkloadAttestorConfig d;
      TRELLIS_RETURN_IF_ERROR(ReadDockerWorkloadConfig(data, &d));
      cfg->workload_attestors.push_back(std::move(d));
    } else if (e.name == "systemd") {
      cfg->workload_attestors.push_back(SystemdWorkloadAttestorConfig{});
    } else {
      return UnknownPlugin(plugins, e, "unix, k8s, docker, systemd");
    }
  } else {
    return plugins.ErrorAt(e.pos, "unknown plugin type " + QuoteForError(e.type) +
                                      " in plugins (supported: NodeAttestor, KeyManager, "
                                      "WorkloadAttestor)");
  }
  return data.Finish();
}

}  // namespace

absl::StatusOr<AgentConfig> AgentConfigFromDocument(const Document& doc) {
  TRELLIS_ASSIGN_OR_RETURN(Section top, Section::Open(doc, doc.root, ""));
  TRELLIS_RETURN_IF_ERROR(top.AllowOnly({"agent", "plugins", "health_checks", "telemetry"}));
  TRELLIS_ASSIGN_OR_RETURN(std::optional<Section> agent, top.Child("agent"));
  if (!agent.has_value()) return top.ErrorAt(doc.root.pos, "the agent { } block is required");
  Section& s = *agent;
  TRELLIS_RETURN_IF_ERROR(s.AllowOnly(
      {"trust_domain", "server_address", "server_port", "data_dir", "socket_path",
       "trust_bundle_path", "trust_bundle_url", "insecure_bootstrap", "trust_bundle_format",
       "join_token", "log_level", "log_format", "log_file", "server_connection_max_age"}));

  std::string td_text;
  TRELLIS_RETURN_IF_ERROR(s.ReadRequiredString("trust_domain", &td_text));
  absl::StatusOr<TrustDomain> td = TrustDomain::Parse(td_text);
  if (!td.ok()) {
    return s.ErrorAt(s.PositionOf("trust_domain"),
                     "agent.trust_domain: " + std::string(td.status().message()));
  }
  AgentConfig cfg(*td);
  // One address, a comma-separated string of them, or a list.
  std::vector<std::string> addresses;
  TRELLIS_RETURN_IF_ERROR(s.ReadStringList("server_address", /*allow_single=*/true, &addresses));
  if (addresses.empty()) {
    // Absent (or an empty list): the usual "is required" / wrong-type error.
    TRELLIS_RETURN_IF_ERROR(s.ReadRequiredString("server_address", &cfg.server_address));
    addresses.push_back(cfg.server_address);
  }
  for (const std::string& a : addresses) {
    if (a.empty()) {
      return s.ErrorAt(s.PositionOf("server_address"), "agent.server_address: empty address");
    }
  }
  cfg.server_address = absl::StrJoin(addresses, ",");
  TRELLIS_RETURN_IF_ERROR(
      s.ReadDuration("server_connection_max_age", &cfg.server_connection_max_age));
  TRELLIS_RETURN_IF_ERROR(s.ReadPort("server_port", &cfg.server_port));
  TRELLIS_RETURN_IF_ERROR(s.ReadNonEmptyString("data_dir", &cfg.data_dir));
  TRELLIS_RETURN_IF_ERROR(s.ReadNonEmptyString("socket_path", &cfg.socket_path));
  TRELLIS_RETURN_IF_ERROR(s.ReadNonEmptyString("trust_bundle_path", &cfg.trust_bundle_path));
  TRELLIS_RETURN_IF_ERROR(s.ReadNonEmptyString("trust_bundle_url", &cfg.trust_bundle_url));
  TRELLIS_RETURN_IF_ERROR(s.ReadBool("insecure_bootstrap", &cfg.insecure_bootstrap));
  static const std::map<std::string, TrustBundleFormat> kFormats = {
      {"pem", TrustBundleFormat::kPem}, {"spiffe", TrustBundleFormat::kSpiffe}};
  TRELLIS_RETURN_IF_ERROR(
      s.ReadEnum("trust_bundle_format", kFormats, false, &cfg.trust_bundle_format));
  TRELLIS_RETURN_IF_ERROR(s.ReadNonEmptyString("join_token", &cfg.join_token));
  TRELLIS_RETURN_IF_ERROR(ReadLogSettings(s, &cfg.log_level, &cfg.log_format, &cfg.log_file));
  TRELLIS_RETURN_IF_ERROR(s.Finish());

  int bootstraps = (cfg.trust_bundle_path.empty() ? 0 : 1) +
                   (cfg.trust_bundle_url.empty() ? 0 : 1) + (cfg.insecure_bootstrap ? 1 : 0);
  if (bootstraps != 1) {
    return s.ErrorAt(s.value().pos,
                     std::string("agent: set exactly one of trust_bundle_path, trust_bundle_url "
                                 "or insecure_bootstrap = true; ") +
                         (bootstraps == 0 ? "none is set" : "more than one is set"));
  }
  if (!cfg.trust_bundle_url.empty() && !absl::StartsWith(cfg.trust_bundle_url, "https://")) {
    return s.ErrorAt(s.PositionOf("trust_bundle_url"),
                     "agent.trust_bundle_url: expected an https:// URL, found " +
                         QuoteForError(cfg.trust_bundle_url));
  }

  TRELLIS_ASSIGN_OR_RETURN(std::optional<Section> plugins, top.Child("plugins"));
  if (!plugins.has_value()) {
    return top.ErrorAt(doc.root.pos,
                       "the plugins { } block is required (with one NodeAttestor and one "
                       "KeyManager)");
  }
  TRELLIS_ASSIGN_OR_RETURN(
      std::vector<PluginEntry> entries,
      ReadPluginEntries(*plugins, {"NodeAttestor", "KeyManager", "WorkloadAttestor"}));
  int node_attestors = 0, key_managers = 0;
  for (const PluginEntry& e : entries) {
    TRELLIS_RETURN_IF_ERROR(
        ReadAgentPlugin(doc, *plugins, e, &cfg, &node_attestors, &key_managers));
  }
  if (node_attestors == 0) {
    return plugins->ErrorAt(
        plugins->value().pos,
        std::string("plugins: a NodeAttestor is required (") + kNodeAttestorNames + ")");
  }
  if (key_managers == 0) {
    return plugins->ErrorAt(plugins->value().pos,
                            "plugins: a KeyManager is required, \"disk\" or \"memory\"");
  }

  TRELLIS_RETURN_IF_ERROR(ReadSharedBlocksAndFinish(top, &cfg.health_checks, &cfg.telemetry));
  return cfg;
}

absl::StatusOr<AgentConfig> ParseAgentConfig(std::string_view text, const std::string& filename,
                                             const ParseOptions& options) {
  TRELLIS_ASSIGN_OR_RETURN(Document doc, ParseDocument(text, filename, options));
  return AgentConfigFromDocument(doc);
}

absl::StatusOr<AgentConfig> LoadAgentConfig(const std::string& path, bool expand_env) {
  ParseOptions options;
  options.expand_env = expand_env;
  TRELLIS_ASSIGN_OR_RETURN(Document doc, LoadDocument(path, options));
  return AgentConfigFromDocument(doc);
}

}  // namespace trellis::common::config
