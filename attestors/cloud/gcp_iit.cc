// gcp_iit attestation: Google instance identity tokens, and instance details from Compute.
#include "attestors/cloud/gcp_iit.h"

#include <algorithm>
#include <nlohmann/json.hpp>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/file_util.h"
#include "common/https_url.h"
#include "common/jwt.h"
#include "common/status.h"

namespace trellis::attestors {
namespace {

using json = nlohmann::json;

constexpr char kDefaultComputeEndpoint[] = "https://compute.googleapis.com";
constexpr char kDefaultTokenUri[] = "https://oauth2.googleapis.com/token";
constexpr char kJwtBearerGrant[] = "urn:ietf:params:oauth:grant-type:jwt-bearer";
// The longest access token lifetime believed, in seconds; Google's are an hour.
constexpr int64_t kMaxTokenLifetime = 86400;
// An identity token of format=full is about 1 KiB.
constexpr size_t kMaxPayloadBytes = 16 * 1024;

absl::Status Denied(const std::string& why) {
  return absl::PermissionDeniedError(std::string(kGcpIitName) + ": " + why);
}
absl::Status ConfigError(const std::string& why) {
  return absl::InvalidArgumentError(std::string("NodeAttestor \"") + kGcpIitName + "\": " + why);
}

// GCE names: projects, zones and instances are lowercase letters, digits, '-' (projects may
// carry a "domain:" prefix and '.'); nothing that could change the meaning of a path or
// selector.
bool SafeName(const std::string& s) {
  return !s.empty() && s.size() <= 256 && std::all_of(s.begin(), s.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
           c == '_' || c == '.' || c == ':';
  });
}

struct ComputeEngineClaims {
  std::string project_id;
  std::string project_number;
  std::string zone;
  std::string instance_id;
  std::string instance_name;
};

absl::StatusOr<std::string> StringOrNumber(const json& ce, const char* name) {
  auto it = ce.find(name);
  if (it == ce.end()) return Denied(std::string("token has no google.compute_engine.") + name);
  if (it->is_string()) return it->get<std::string>();
  if (it->is_number_unsigned()) return std::to_string(it->get<uint64_t>());
  if (it->is_number_integer()) return std::to_string(it->get<int64_t>());
  return Denied(std::string("token claim google.compute_engine.") + name +
                " is not a string or an integer");
}

absl::StatusOr<ComputeEngineClaims> ReadComputeEngine(const json& claims) {
  auto google = claims.find("google");
  if (google == claims.end() || !google->is_object()) {
    return Denied("token has no \"google\" claim (the agent must ask for format=full)");
  }
  auto ce = google->find("compute_engine");
  if (ce == google->end() || !ce->is_object()) {
    return Denied(
        "token has no google.compute_engine claim (not a Compute Engine instance, or "
        "not format=full)");
  }
  ComputeEngineClaims out;
  TRELLIS_ASSIGN_OR_RETURN(out.project_id, StringOrNumber(*ce, "project_id"));
  TRELLIS_ASSIGN_OR_RETURN(out.project_number, StringOrNumber(*ce, "project_number"));
  TRELLIS_ASSIGN_OR_RETURN(out.zone, StringOrNumber(*ce, "zone"));
  TRELLIS_ASSIGN_OR_RETURN(out.instance_id, StringOrNumber(*ce, "instance_id"));
  TRELLIS_ASSIGN_OR_RETURN(out.instance_name, StringOrNumber(*ce, "instance_name"));
  auto created = ce->find("instance_creation_timestamp");
  if (created == ce->end() || !created->is_number()) {
    return Denied("token has no numeric google.compute_engine.instance_creation_timestamp");
  }
  for (const auto* field : {&out.project_id, &out.zone, &out.instance_id, &out.instance_name}) {
    if (!SafeName(*field)) {
      return Denied("token's google.compute_engine claims hold an invalid name \"" +
                    field->substr(0, 64) + "\"");
    }
  }
  return out;
}

std::map<std::string, std::string> TemplateFields(const ComputeEngineClaims& c) {
  return {{"PluginName", kGcpIitName},         {"ProjectID", c.project_id},
          {"ProjectNumber", c.project_number}, {"Zone", c.zone},
          {"InstanceID", c.instance_id},       {"InstanceName", c.instance_name}};
}

}  // namespace

absl::StatusOr<std::unique_ptr<GcpIitServerAttestor>> GcpIitServerAttestor::Create(
    common::TrustDomain td, common::config::GcpIitServerAttestorConfig config,
    const common::Clock& clock, cloud_jwt::HttpOptions http) {
  if (config.projectid_allow_list.empty()) return ConfigError("projectid_allow_list is required");
  if (config.audience.empty()) return ConfigError("audience must not be empty");
  if (config.max_metadata_value_size <= 0) {
    return ConfigError("max_metadata_value_size must be positive");
  }
  if (config.agent_path_template.empty()) {
    config.agent_path_template = kGcpIitDefaultAgentPathTemplate;
  }
  {
    ComputeEngineClaims sample{"project", "1", "zone", "1", "name"};
    auto path = cloud_jwt::ExpandAgentPathTemplate(config.agent_path_template,
                                                   TemplateFields(sample), kGcpIitName);
    if (!path.ok()) return path.status();
    auto id = common::SpiffeId::FromPath(td, "/spire/agent/" + *path);
    if (!id.ok()) return ConfigError("agent_path_template: " + std::string(id.status().message()));
  }
  cloud_jwt::JwtKeyCache::Options key_options;
  key_options.location = config.google_certs_url;
  key_options.plugin = kGcpIitName;
  key_options.what = "Google's signing keys";
  key_options.http = http;
  auto keys = cloud_jwt::JwtKeyCache::Create(std::move(key_options), clock);
  if (!keys.ok()) return ConfigError(std::string(keys.status().message()));

  std::optional<ServiceAccount> account;
  if (config.use_instance_metadata) {
    const std::string endpoint =
        config.compute_endpoint.empty() ? kDefaultComputeEndpoint : config.compute_endpoint;
    auto url = cloud_jwt::ParseHttpUrl(endpoint, "compute_endpoint");
    if (!url.ok()) return ConfigError(std::string(url.status().message()));
    if (config.service_account_file.empty()) {
      return ConfigError(
          "use_instance_metadata needs service_account_file (a service account "
          "JSON key allowed to read instances)");
    }
    const std::string& path = config.service_account_file;
    auto text = common::ReadFile(path);
    if (!text.ok())
      return ConfigError("service_account_file: " + std::string(text.status().message()));
    json doc = json::parse(*text, nullptr, /*allow_exceptions=*/false);
    if (doc.is_discarded() || !doc.is_object()) {
      return ConfigError("service_account_file " + path + " is not a JSON object");
    }
    auto field = [&](const char* name) -> std::string {
      auto it = doc.find(name);
      return it != doc.end() && it->is_string() ? it->get<std::string>() : "";
    };
    if (const std::string type = field("type"); !type.empty() && type != "service_account") {
      return ConfigError("service_account_file " + path + " is of type \"" + type.substr(0, 32) +
                         "\", not \"service_account\"");
    }
    std::string email = field("client_email");
    std::string key_id = field("private_key_id");
    std::string pem = field("private_key");
    std::string token_uri = field("token_uri");
    if (token_uri.empty()) token_uri = kDefaultTokenUri;
    if (email.empty() || key_id.empty() || pem.empty()) {
      return ConfigError("service_account_file " + path +
                         " lacks client_email, private_key_id or private_key");
    }
    auto token_url = cloud_jwt::ParseHttpUrl(token_uri, "service_account_file token_uri");
    if (!token_url.ok()) return ConfigError(std::string(token_url.status().message()));
    auto key = common::PrivateKey::FromPem(pem);
    if (!key.ok() || common::IsEcKeyType(key->type())) {
      return ConfigError("service_account_file " + path + ": private_key is not an RSA key");
    }
    account =
        ServiceAccount{std::move(email), std::move(key_id), std::move(token_uri), *std::move(key)};
  }
  return std::unique_ptr<GcpIitServerAttestor>(
      new GcpIitServerAttestor(std::move(td), std::move(config), clock, std::move(http),
                               *std::move(keys), std::move(account)));
}

absl::StatusOr<std::string> GcpIitServerAttestor::AccessToken() {
  const absl::Time now = clock_.Now();
  {
    absl::MutexLock lock(&token_mu_);
    if (!access_token_.empty() && now < access_token_expiry_) return access_token_;
  }
  // No lock is held while asking: concurrent attestations each ask (the endpoint issues as
  // many tokens as asked for), so a stuck endpoint holds each for its own request deadline
  // only.
  const ServiceAccount& sa = *account_;
  json claims = {{"iss", sa.email},
                 {"scope", kGcpComputeReadonlyScope},
                 {"aud", sa.token_uri},
                 {"iat", absl::ToUnixSeconds(now)},
                 {"exp", absl::ToUnixSeconds(now + absl::Hours(1))}};
  auto assertion = common::SignJwt(sa.key, sa.key_id, claims, common::JwtAlg::kRs256);
  if (!assertion.ok()) return Annotate(assertion.status(), "gcp_iit: signing the OAuth assertion");
  const std::string form = "grant_type=" + common::PercentEncode(kJwtBearerGrant) +
                           "&assertion=" + common::PercentEncode(*assertion);
  TRELLIS_ASSIGN_OR_RETURN(
      cloud_jwt::HttpResponse res,
      cloud_jwt::HttpRequest("POST", sa.token_uri, {{"Accept", "application/json"}}, http_, form,
                             "application/x-www-form-urlencoded"));
  if (res.status != 200) {
    return absl::UnavailableError("gcp_iit: OAuth token endpoint " + sa.token_uri +
                                  " answered HTTP " + std::to_string(res.status) + ": " +
                                  cloud_jwt::BodySnippet(res.body));
  }
  json doc = json::parse(res.body, nullptr, /*allow_exceptions=*/false);
  auto token = doc.is_object() ? doc.find("access_token") : doc.end();
  if (!doc.is_object() || token == doc.end() || !token->is_string() ||
      token->get<std::string>().empty()) {
    return absl::UnavailableError("gcp_iit: OAuth token endpoint " + sa.token_uri +
                                  " answered no access_token");
  }
  int64_t lifetime = 3600;
  if (auto exp = doc.find("expires_in"); exp != doc.end()) {
    // Clamped before any arithmetic: a hostile or broken endpoint cannot make it overflow.
    if (exp->is_number_unsigned()) {
      lifetime = static_cast<int64_t>(std::min<uint64_t>(exp->get<uint64_t>(), kMaxTokenLifetime));
    } else if (exp->is_number_integer()) {
      lifetime = std::clamp<int64_t>(exp->get<int64_t>(), 0, kMaxTokenLifetime);
    }
  }
  std::string issued = token->get<std::string>();
  absl::MutexLock lock(&token_mu_);
  access_token_ = issued;
  // Renew a minute early so a token never expires between here and the Compute call.
  access_token_expiry_ = now + absl::Seconds(std::max<int64_t>(0, lifetime - 60));
  return issued;
}

absl::StatusOr<std::vector<datastore::Selector>> GcpIitServerAttestor::InstanceSelectors(
    const std::string& project, const std::string& zone, const std::string& name,
    const std::string& instance_id) {
  TRELLIS_ASSIGN_OR_RETURN(std::string token, AccessToken());
  std::string endpoint =
      config_.compute_endpoint.empty() ? kDefaultComputeEndpoint : config_.compute_endpoint;
  while (absl::EndsWith(endpoint, "/")) endpoint.pop_back();
  const std::string url = endpoint + "/compute/v1/projects/" + common::PercentEncode(project) +
                          "/zones/" + common::PercentEncode(zone) + "/instances/" +
                          common::PercentEncode(name);
  TRELLIS_ASSIGN_OR_RETURN(
      cloud_jwt::HttpResponse res,
      cloud_jwt::HttpRequest("GET", url,
                             {{"Authorization", "Bearer " + token}, {"Accept", "application/json"}},
                             http_));
  if (res.status == 401) {
    absl::MutexLock lock(&token_mu_);
    access_token_.clear();  // the next attestation asks for a new one
  }
  if (res.status == 404) {
    return Denied("instance " + name + " of project " + project + " in zone " + zone +
                  " does not exist");
  }
  if (res.status != 200) {
    return absl::UnavailableError("gcp_iit: Compute API answered HTTP " +
                                  std::to_string(res.status) + " for instance " + name + ": " +
                                  cloud_jwt::BodySnippet(res.body));
  }
  json doc = json::parse(res.body, nullptr, /*allow_exceptions=*/false);
  if (doc.is_discarded() || !doc.is_object()) {
    return absl::UnavailableError("gcp_iit: Compute API answer for instance " + name +
                                  " is not a JSON object");
  }
  auto malformed = [&](const std::string& what) {
    return absl::UnavailableError("gcp_iit: Compute API answer for instance " + name + ": " + what);
  };
  // The instance is looked up by name; a name can be reused by a later instance, which must
  // not lend its details to the token of an earlier one.
  auto id = doc.find("id");
  std::string answered_id;
  if (id != doc.end() && id->is_string()) {
    answered_id = id->get<std::string>();
  } else if (id != doc.end() && id->is_number_unsigned()) {
    answered_id = std::to_string(id->get<uint64_t>());
  } else {
    return malformed("id is missing or not a string");
  }
  if (answered_id != instance_id) {
    return Denied("instance " + name + " of project " + project + " in zone " + zone +
                  " now has ID " + answered_id.substr(0, 64) + ", not the token's " + instance_id +
                  " (the instance was recreated)");
  }
  std::vector<datastore::Selector> out;
  auto add = [&](std::string value) { out.push_back({kGcpIitName, std::move(value)}); };
  if (auto tags = doc.find("tags"); tags != doc.end()) {
    if (!tags->is_object()) return malformed("tags is not an object");
    if (auto items = tags->find("items"); items != tags->end()) {
      if (!items->is_array()) return malformed("tags.items is not an array");
      for (const auto& t : *items) {
        if (!t.is_string()) return malformed("tags.items holds a non-string");
        add("tag:" + t.get<std::string>());
      }
    }
  }
  if (auto accounts = doc.find("serviceAccounts"); accounts != doc.end()) {
    if (!accounts->is_array()) return malformed("serviceAccounts is not an array");
    for (const auto& a : *accounts) {
      auto email = a.is_object() ? a.find("email") : a.end();
      if (!a.is_object() || email == a.end() || !email->is_string()) {
        return malformed("serviceAccounts holds an entry without an email");
      }
      add("sa:" + email->get<std::string>());
    }
  }
  if (auto labels = doc.find("labels");
      labels != doc.end() && !config_.allowed_label_keys.empty()) {
    if (!labels->is_object()) return malformed("labels is not an object");
    for (const std::string& key : config_.allowed_label_keys) {
      auto v = labels->find(key);
      if (v == labels->end()) continue;
      if (!v->is_string()) return malformed("label " + key + " is not a string");
      add("label:" + key + ":" + v->get<std::string>());
    }
  }
  if (auto metadata = doc.find("metadata");
      metadata != doc.end() && !config_.allowed_metadata_keys.empty()) {
    if (!metadata->is_object()) return malformed("metadata is not an object");
    if (auto items = metadata->find("items"); items != metadata->end()) {
      if (!items->is_array()) return malformed("metadata.items is not an array");
      for (const auto& item : *items) {
        auto k = item.is_object() ? item.find("key") : item.end();
        if (!item.is_object() || k == item.end() || !k->is_string()) {
          return malformed("metadata.items holds an entry without a key");
        }
        const std::string key = k->get<std::string>();
        if (std::find(config_.allowed_metadata_keys.begin(), config_.allowed_metadata_keys.end(),
                      key) == config_.allowed_metadata_keys.end()) {
          continue;
        }
        std::string value;
        if (auto v = item.find("value"); v != item.end()) {
          if (!v->is_string()) return malformed("metadata " + key + " is not a string");
          value = v->get<std::string>();
        }
        if (static_cast<int64_t>(value.size()) > config_.max_metadata_value_size) {
          return Denied("instance metadata \"" + key + "\" is " + std::to_string(value.size()) +
                        " bytes, over max_metadata_value_size " +
                        std::to_string(config_.max_metadata_value_size));
        }
        add("metadata:" + key + ":" + value);
      }
    }
  }
  return out;
}

absl::StatusOr<ServerNodeAttestor::Result> GcpIitServerAttestor::Attest(
    std::string_view payload, const std::function<absl::StatusOr<std::string>(std::string)>&) {
  if (payload.size() > kMaxPayloadBytes) {
    return absl::InvalidArgumentError("gcp_iit: identity token payload is too large");
  }
  cloud_jwt::JwtExpectations expect;
  expect.plugin = kGcpIitName;
  expect.issuers = {"https://accounts.google.com", "accounts.google.com"};
  expect.audience = config_.audience;
  TRELLIS_ASSIGN_OR_RETURN(json claims,
                           cloud_jwt::VerifyJwt(payload, *keys_, expect, clock_.Now()));
  TRELLIS_ASSIGN_OR_RETURN(ComputeEngineClaims ce, ReadComputeEngine(claims));
  const auto& allow = config_.projectid_allow_list;
  if (std::find(allow.begin(), allow.end(), ce.project_id) == allow.end()) {
    return Denied("project \"" + ce.project_id + "\" is not in projectid_allow_list");
  }
  TRELLIS_ASSIGN_OR_RETURN(std::string path,
                           cloud_jwt::ExpandAgentPathTemplate(config_.agent_path_template,
                                                              TemplateFields(ce), kGcpIitName));
  auto agent_id = common::SpiffeId::FromPath(td_, "/spire/agent/" + path);
  if (!agent_id.ok()) return Denied("agent ID: " + std::string(agent_id.status().message()));
  Result result{*std::move(agent_id), {}, config_.allow_reattestation};
  result.selectors.push_back({kGcpIitName, "project-id:" + ce.project_id});
  result.selectors.push_back({kGcpIitName, "zone:" + ce.zone});
  result.selectors.push_back({kGcpIitName, "instance-name:" + ce.instance_name});
  if (config_.use_instance_metadata) {
    TRELLIS_ASSIGN_OR_RETURN(
        std::vector<datastore::Selector> more,
        InstanceSelectors(ce.project_id, ce.zone, ce.instance_name, ce.instance_id));
    for (auto& s : more) result.selectors.push_back(std::move(s));
  }
  return result;
}

absl::StatusOr<std::unique_ptr<GcpIitAgentAttestor>> GcpIitAgentAttestor::Create(
    const common::config::GcpIitAgentAttestorConfig& config, cloud_jwt::HttpOptions http) {
  if (config.service_account.empty()) return ConfigError("service_account must not be empty");
  const std::string& host = config.identity_token_host;
  if (host.empty() || host.find_first_of("/?#@ \t\r\n") != std::string::npos) {
    return ConfigError("identity_token_host \"" + host.substr(0, 100) +
                       "\" is not a host name with an optional port");
  }
  // '@' is a legal path character and how service account e-mails appear in the path.
  std::string account = common::PercentEncode(config.service_account);
  for (size_t at; (at = account.find("%40")) != std::string::npos;) account.replace(at, 3, "@");
  std::string url = "http://" + host + "/computeMetadata/v1/instance/service-accounts/" + account +
                    "/identity?audience=" + common::PercentEncode(kGcpIitAudience) + "&format=full";
  auto parsed = cloud_jwt::ParseHttpUrl(url, "identity_token_host");
  if (!parsed.ok()) return ConfigError(std::string(parsed.status().message()));
  return std::unique_ptr<GcpIitAgentAttestor>(new GcpIitAgentAttestor(url, std::move(http)));
}

absl::StatusOr<std::string> GcpIitAgentAttestor::Payload() {
  TRELLIS_ASSIGN_OR_RETURN(
      cloud_jwt::HttpResponse res,
      cloud_jwt::HttpRequest("GET", url_, {{"Metadata-Flavor", "Google"}}, http_));
  if (res.status != 200) {
    return absl::UnavailableError("gcp_iit: metadata server answered HTTP " +
                                  std::to_string(res.status) + ": " +
                                  cloud_jwt::BodySnippet(res.body));
  }
  std::string token = res.body;
  while (!token.empty() && (token.back() == '\n' || token.back() == '\r' || token.back() == ' ')) {
    token.pop_back();
  }
  auto peeked = common::PeekJwt(token);
  if (!peeked.ok() || !peeked->claims.is_object()) {
    return absl::UnavailableError("gcp_iit: metadata server did not answer an identity token");
  }
  return token;
}

absl::StatusOr<std::string> GcpIitAgentAttestor::Answer(std::string_view) {
  return absl::InvalidArgumentError("gcp_iit attestation has no challenge");
}

}  // namespace trellis::attestors
