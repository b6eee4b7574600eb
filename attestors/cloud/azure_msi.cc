// azure_msi attestation: managed identity access tokens verified against the tenant's keys.
#include "attestors/cloud/azure_msi.h"

#include <algorithm>
#include <nlohmann/json.hpp>
#include <string_view>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_replace.h"
#include "absl/strings/str_split.h"
#include "common/https_url.h"
#include "common/status.h"

namespace trellis::attestors {
namespace {

using json = nlohmann::json;

// An access token is a few KiB; its JSON wrapper adds a few bytes.
constexpr size_t kMaxPayloadBytes = 32 * 1024;

absl::Status Denied(const std::string& why) {
  return absl::PermissionDeniedError(std::string(kAzureMsiName) + ": " + why);
}
absl::Status Malformed(const std::string& why) {
  return absl::InvalidArgumentError(std::string(kAzureMsiName) + ": " + why);
}
absl::Status ConfigError(const std::string& why) {
  return absl::InvalidArgumentError(std::string("NodeAttestor \"") + kAzureMsiName + "\": " + why);
}

// Tenant IDs are GUIDs (or verified domain names): characters safe in a URL and an ID path.
bool SafeTenant(const std::string& s) {
  return !s.empty() && s.size() <= 128 && std::all_of(s.begin(), s.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
           c == '.' || c == '_';
  });
}

// A resource group or resource name from xms_mirid: nothing that could change the meaning of
// a selector ("vm-name:<rg>:<name>") or a path. Azure allows Unicode letters in resource
// group names, so bytes above 0x7f pass.
bool SafeResourceName(std::string_view s) {
  return !s.empty() && s.size() <= 256 && std::all_of(s.begin(), s.end(), [](char c) {
    const auto u = static_cast<unsigned char>(c);
    return u > 0x20 && u != 0x7f && c != '/' && c != ':' && c != '?' && c != '#' && c != '%' &&
           c != '\\';
  });
}

// The parts of a managed identity's Azure resource ID ("xms_mirid").
struct ManagedIdentityId {
  std::string subscription;
  std::string resource_group;
  std::string provider_namespace;
  std::string type;
  std::string name;
};

// /subscriptions/<sub>/resourcegroups/<rg>/providers/<namespace>/<type>/<name>, the fixed
// words in any case (IMDS writes "resourcegroups", Resource Manager "resourceGroups").
absl::StatusOr<ManagedIdentityId> ParseManagedIdentityId(const std::string& mirid) {
  auto bad = [&](const std::string& why) {
    return Denied("token's xms_mirid \"" + mirid.substr(0, 200) +
                  "\" is not a managed identity resource ID: " + why);
  };
  if (mirid.size() > 1024) return bad("too long");
  if (!absl::StartsWithIgnoreCase(mirid, "/subscriptions/")) {
    return bad("does not start with /subscriptions/");
  }
  std::vector<std::string> parts = absl::StrSplit(mirid.substr(1), '/');
  if (parts.size() != 8 || !absl::EqualsIgnoreCase(parts[2], "resourcegroups") ||
      !absl::EqualsIgnoreCase(parts[4], "providers")) {
    return bad(
        "expected /subscriptions/<subscription>/resourcegroups/<group>/providers/<namespace>/"
        "<type>/<name>");
  }
  ManagedIdentityId out{parts[1], parts[3], parts[5], parts[6], parts[7]};
  if (!SafeTenant(out.subscription)) return bad("the subscription ID is not a GUID");
  for (const std::string* part :
       {&out.resource_group, &out.provider_namespace, &out.type, &out.name}) {
    if (!SafeResourceName(*part)) return bad("it holds an empty or invalid name");
  }
  return out;
}

std::map<std::string, std::string> TemplateFields(const std::string& tenant,
                                                  const std::string& principal) {
  return {{"PluginName", kAzureMsiName}, {"TenantID", tenant}, {"PrincipalID", principal}};
}

}  // namespace

absl::StatusOr<std::unique_ptr<AzureMsiServerAttestor>> AzureMsiServerAttestor::Create(
    common::TrustDomain td, common::config::AzureMsiServerAttestorConfig config,
    const common::Clock& clock, cloud_jwt::HttpOptions http) {
  if (config.tenants.empty()) return ConfigError("at least one tenant is required");
  if (config.jwks_url.empty()) return ConfigError("jwks_url must not be empty");
  std::string tmpl = config.agent_path_template.empty() ? kAzureMsiDefaultAgentPathTemplate
                                                        : config.agent_path_template;
  {
    auto path = cloud_jwt::ExpandAgentPathTemplate(tmpl, TemplateFields("tenant", "principal"),
                                                   kAzureMsiName);
    if (!path.ok()) return path.status();
    auto id = common::SpiffeId::FromPath(td, "/spire/agent/" + *path);
    if (!id.ok()) return ConfigError("agent_path_template: " + std::string(id.status().message()));
  }
  std::map<std::string, Tenant> tenants;
  for (const auto& [id, tenant_config] : config.tenants) {
    if (!SafeTenant(id)) {
      return ConfigError("tenant ID \"" + id.substr(0, 64) + "\" is not a GUID or domain name");
    }
    cloud_jwt::JwtKeyCache::Options key_options;
    key_options.location = absl::StrReplaceAll(config.jwks_url, {{"{tenant}", id}});
    key_options.plugin = kAzureMsiName;
    key_options.what = "the signing keys of tenant " + id;
    key_options.http = http;
    auto keys = cloud_jwt::JwtKeyCache::Create(std::move(key_options), clock);
    if (!keys.ok()) return ConfigError(std::string(keys.status().message()));
    tenants.emplace(id, Tenant{tenant_config.resource_id.empty() ? kAzureMsiDefaultResource
                                                                 : tenant_config.resource_id,
                               *std::move(keys)});
  }
  return std::unique_ptr<AzureMsiServerAttestor>(new AzureMsiServerAttestor(
      std::move(td), std::move(tmpl), config.allow_reattestation, std::move(tenants), clock));
}

absl::StatusOr<ServerNodeAttestor::Result> AzureMsiServerAttestor::Attest(
    std::string_view payload, const std::function<absl::StatusOr<std::string>(std::string)>&) {
  if (payload.size() > kMaxPayloadBytes) return Malformed("payload is too large");
  json doc = json::parse(payload.begin(), payload.end(), nullptr, /*allow_exceptions=*/false);
  if (doc.is_discarded() || !doc.is_object()) return Malformed("payload is not a JSON object");
  auto token_it = doc.find("token");
  if (token_it == doc.end() || !token_it->is_string() || token_it->get<std::string>().empty()) {
    return Malformed("payload has no \"token\" string");
  }
  const std::string token = token_it->get<std::string>();

  // The unverified tenant only chooses whose keys verify the token; it is checked again below.
  TRELLIS_ASSIGN_OR_RETURN(json unverified, cloud_jwt::PeekClaims(token, kAzureMsiName));
  auto tid_it = unverified.find("tid");
  if (tid_it == unverified.end() || !tid_it->is_string()) {
    return Denied("token has no tenant ID (\"tid\" claim)");
  }
  const std::string tid = tid_it->get<std::string>();
  auto tenant = tenants_.find(tid);
  if (tenant == tenants_.end()) {
    return Denied("tenant \"" + tid.substr(0, 64) + "\" is not configured");
  }

  cloud_jwt::JwtExpectations expect;
  expect.plugin = kAzureMsiName;
  expect.issuers = {"https://sts.windows.net/" + tid + "/"};
  expect.audience = tenant->second.resource_id;
  TRELLIS_ASSIGN_OR_RETURN(json claims,
                           cloud_jwt::VerifyJwt(token, *tenant->second.keys, expect, clock_.Now()));
  auto verified_tid = claims.find("tid");
  if (verified_tid == claims.end() || *verified_tid != tid) {
    return Denied("token tenant does not match");
  }
  auto sub_it = claims.find("sub");
  if (sub_it == claims.end() || !sub_it->is_string() || sub_it->get<std::string>().empty()) {
    return Denied("token has no principal (\"sub\" claim)");
  }
  const std::string principal = sub_it->get<std::string>();
  if (!SafeTenant(principal)) {
    return Denied("token principal \"" + principal.substr(0, 64) + "\" is not an object ID");
  }
  // Only managed identity tokens carry the identity's resource ID; any other principal of
  // the tenant (a user, an application's service principal) can get a token for the resource.
  auto mirid_it = claims.find("xms_mirid");
  if (mirid_it == claims.end() || !mirid_it->is_string()) {
    return Denied("token is not a managed identity token (no xms_mirid claim)");
  }
  TRELLIS_ASSIGN_OR_RETURN(ManagedIdentityId mi,
                           ParseManagedIdentityId(mirid_it->get<std::string>()));
  TRELLIS_ASSIGN_OR_RETURN(
      std::string path, cloud_jwt::ExpandAgentPathTemplate(
                            agent_path_template_, TemplateFields(tid, principal), kAzureMsiName));
  auto agent_id = common::SpiffeId::FromPath(td_, "/spire/agent/" + path);
  if (!agent_id.ok()) return Denied("agent ID: " + std::string(agent_id.status().message()));
  Result result{*std::move(agent_id), {}, allow_reattestation_};
  result.selectors.push_back({kAzureMsiName, "tenant-id:" + tid});
  result.selectors.push_back({kAzureMsiName, "principal-id:" + principal});
  result.selectors.push_back({kAzureMsiName, "subscription-id:" + mi.subscription});
  if (absl::EqualsIgnoreCase(mi.provider_namespace, "Microsoft.Compute") &&
      absl::EqualsIgnoreCase(mi.type, "virtualMachines")) {
    // A VM's system-assigned identity: the resource is the VM itself.
    result.selectors.push_back({kAzureMsiName, "vm-name:" + mi.resource_group + ":" + mi.name});
  }
  return result;
}

absl::StatusOr<std::unique_ptr<AzureMsiAgentAttestor>> AzureMsiAgentAttestor::Create(
    const common::config::AzureMsiAgentAttestorConfig& config, cloud_jwt::HttpOptions http) {
  if (config.resource_id.empty()) return ConfigError("resource_id must not be empty");
  std::string base = config.metadata_endpoint;
  while (absl::EndsWith(base, "/")) base.pop_back();
  auto parsed = cloud_jwt::ParseHttpUrl(base, "metadata_endpoint");
  if (!parsed.ok()) return ConfigError(std::string(parsed.status().message()));
  if (parsed->path.find('?') != std::string::npos) {
    return ConfigError("metadata_endpoint must not carry a query");
  }
  std::string url =
      base + "/metadata/identity/oauth2/token?api-version=" + std::string(kAzureImdsApiVersion) +
      "&resource=" + common::PercentEncode(config.resource_id);
  return std::unique_ptr<AzureMsiAgentAttestor>(new AzureMsiAgentAttestor(url, std::move(http)));
}

absl::StatusOr<std::string> AzureMsiAgentAttestor::Payload() {
  TRELLIS_ASSIGN_OR_RETURN(cloud_jwt::HttpResponse res,
                           cloud_jwt::HttpRequest("GET", url_, {{"Metadata", "true"}}, http_));
  if (res.status != 200) {
    return absl::UnavailableError("azure_msi: instance metadata service answered HTTP " +
                                  std::to_string(res.status) + ": " +
                                  cloud_jwt::BodySnippet(res.body));
  }
  json doc = json::parse(res.body, nullptr, /*allow_exceptions=*/false);
  auto token = doc.is_object() ? doc.find("access_token") : doc.end();
  if (!doc.is_object() || token == doc.end() || !token->is_string() ||
      token->get<std::string>().empty()) {
    return absl::UnavailableError("azure_msi: instance metadata service answered no access_token");
  }
  return json{{"token", token->get<std::string>()}}.dump(-1, ' ', false,
                                                         json::error_handler_t::replace);
}

absl::StatusOr<std::string> AzureMsiAgentAttestor::Answer(std::string_view) {
  return absl::InvalidArgumentError("azure_msi attestation has no challenge");
}

}  // namespace trellis::attestors
