// trellis-server federation create|update|delete|list|show|refresh: relationships with other
// trust domains, with SPIRE's flags and -data JSON.
#include <iostream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "cmd/admin_client.h"
#include "cmd/admin_commands.h"
#include "common/bundle.h"
#include "common/file_util.h"
#include "common/spiffe_id.h"
#include "transport/wire_convert.h"

namespace trellis::cmd {
namespace {

std::string ProfileName(v1::BundleEndpointProfile p) {
  return p == v1::HTTPS_SPIFFE ? "https_spiffe" : "https_web";
}

void PrintRelationship(const v1::FederationRelationship& r, std::ostream& out) {
  out << "Trust domain              : " << r.trust_domain() << "\n"
      << "Bundle endpoint URL       : " << r.bundle_endpoint_url() << "\n"
      << "Bundle endpoint profile   : " << ProfileName(r.bundle_endpoint_profile()) << "\n";
  if (r.bundle_endpoint_profile() == v1::HTTPS_SPIFFE) {
    out << "Endpoint SPIFFE ID        : " << r.endpoint_spiffe_id() << "\n";
  }
  if (r.has_refresh_state()) {
    const v1::FederationRefreshState& s = r.refresh_state();
    if (s.last_success() != 0) {
      out << "Last refreshed            : " << FormatUnix(s.last_success()) << "\n";
    }
    if (s.has_sequence()) out << "Bundle sequence           : " << s.last_sequence() << "\n";
    if (s.next_attempt() != 0) {
      out << "Next refresh              : " << FormatUnix(s.next_attempt()) << "\n";
    }
    if (!s.last_error().empty()) out << "Last refresh error        : " << s.last_error() << "\n";
  }
  out << "\n";
}

absl::StatusOr<std::string> ReadInput(const std::string& path) {
  if (path == "-") {
    std::stringstream ss;
    ss << std::cin.rdbuf();
    return ss.str();
  }
  return common::ReadFile(path);
}

absl::StatusOr<v1::Bundle> ReadBundle(const std::string& td_text, const std::string& path,
                                      const std::string& format) {
  if (format != "pem" && format != "spiffe") {
    return absl::InvalidArgumentError("invalid trustDomainBundleFormat \"" + format +
                                      "\": want pem or spiffe");
  }
  absl::StatusOr<common::TrustDomain> td = common::TrustDomain::Parse(td_text);
  if (!td.ok())
    return absl::InvalidArgumentError("invalid trust domain: " +
                                      std::string(td.status().message()));
  absl::StatusOr<std::string> data = ReadInput(path);
  if (!data.ok()) {
    return absl::InvalidArgumentError("cannot read the trust domain bundle: " +
                                      std::string(data.status().message()));
  }
  absl::StatusOr<common::Bundle> bundle = format == "spiffe" ? common::ParseSpiffeBundle(*td, *data)
                                                             : common::BundleFromPem(*td, *data);
  if (!bundle.ok()) {
    return absl::InvalidArgumentError("cannot parse the trust domain bundle: " +
                                      std::string(bundle.status().message()));
  }
  return transport::BundleToProto(*bundle);
}

// One relationship of -data: {"trust_domain", "bundle_endpoint_url", "https_web": {} |
// "https_spiffe": {"endpoint_spiffe_id"}, "trust_domain_bundle": <SPIFFE bundle document>}.
absl::StatusOr<v1::FederationRelationship> RelationshipFromJson(const nlohmann::json& j,
                                                                size_t index) {
  const std::string where = "federation_relationships[" + std::to_string(index) + "]";
  auto bad = [&](const std::string& what) {
    return absl::InvalidArgumentError(where + ": " + what);
  };
  if (!j.is_object()) return bad("is not an object");
  v1::FederationRelationship r;
  for (const auto& [key, value] : j.items()) {
    if (key == "trust_domain" || key == "bundle_endpoint_url") {
      if (!value.is_string()) return bad(key + " is not a string");
      if (key == "trust_domain")
        r.set_trust_domain(value.get<std::string>());
      else
        r.set_bundle_endpoint_url(value.get<std::string>());
    } else if (key == "https_web") {
      if (!value.is_object()) return bad("https_web is not an object");
      r.set_bundle_endpoint_profile(v1::HTTPS_WEB);
    } else if (key == "https_spiffe") {
      if (!value.is_object() || !value.contains("endpoint_spiffe_id") ||
          !value["endpoint_spiffe_id"].is_string()) {
        return bad("https_spiffe needs an endpoint_spiffe_id string");
      }
      r.set_bundle_endpoint_profile(v1::HTTPS_SPIFFE);
      r.set_endpoint_spiffe_id(value["endpoint_spiffe_id"].get<std::string>());
    } else if (key == "trust_domain_bundle") {
      // Stored as text and parsed once the trust domain is known.
    } else {
      return bad("unknown field \"" + key + "\"");
    }
  }
  if (j.contains("https_web") && j.contains("https_spiffe")) {
    return bad("give one of https_web and https_spiffe, not both");
  }
  if (!j.contains("https_web") && !j.contains("https_spiffe")) {
    return bad("a profile is required: https_web or https_spiffe");
  }
  if (j.contains("trust_domain_bundle")) {
    absl::StatusOr<common::TrustDomain> td = common::TrustDomain::Parse(r.trust_domain());
    if (!td.ok()) return bad("invalid trust domain: " + std::string(td.status().message()));
    absl::StatusOr<common::Bundle> bundle =
        common::ParseSpiffeBundle(*td, j["trust_domain_bundle"].dump());
    if (!bundle.ok()) {
      return bad("trust_domain_bundle: " + std::string(bundle.status().message()));
    }
    *r.mutable_trust_domain_bundle() = transport::BundleToProto(*bundle);
  }
  return r;
}

absl::StatusOr<std::vector<v1::FederationRelationship>> RelationshipsFromData(
    const std::string& path) {
  absl::StatusOr<std::string> text = ReadInput(path);
  if (!text.ok()) {
    return absl::InvalidArgumentError("cannot read -data: " + std::string(text.status().message()));
  }
  nlohmann::json doc = nlohmann::json::parse(*text, nullptr, /*allow_exceptions=*/false);
  if (doc.is_discarded()) return absl::InvalidArgumentError("-data is not valid JSON");
  if (!doc.is_object() || !doc.contains("federation_relationships") ||
      !doc["federation_relationships"].is_array()) {
    return absl::InvalidArgumentError("-data needs a \"federation_relationships\" array");
  }
  std::vector<v1::FederationRelationship> out;
  size_t i = 0;
  for (const auto& item : doc["federation_relationships"]) {
    absl::StatusOr<v1::FederationRelationship> r = RelationshipFromJson(item, i++);
    if (!r.ok()) return r.status();
    out.push_back(*std::move(r));
  }
  return out;
}

// create and update share their flags and their output.
int CreateOrUpdate(bool create, const Args& args, std::ostream& out, std::ostream& err) {
  FlagSet fs;
  ClientFlags cf;
  std::string td, url, profile = "https_spiffe", endpoint_id, bundle_path, bundle_format = "pem",
                       data;
  cf.Add(fs, true);
  fs.String("trustDomain", &td, "Name of the trust domain to federate with (e.g., example.org)");
  fs.String("bundleEndpointURL", &url, "URL of the SPIFFE bundle endpoint of that trust domain");
  fs.String("bundleEndpointProfile", &profile,
            "Endpoint profile type (either \"https_web\" or \"https_spiffe\")");
  fs.String("endpointSpiffeID", &endpoint_id,
            "SPIFFE ID of the SPIFFE bundle endpoint server (https_spiffe only)");
  fs.String("trustDomainBundlePath", &bundle_path,
            "Path to the trust domain bundle data (optional)");
  fs.String("trustDomainBundleFormat", &bundle_format,
            "The format of the bundle data (pem or spiffe)");
  fs.String("data", &data,
            "Path to a file containing federation relationships in JSON format "
            "(\"-\" for standard input)");
  const std::string verb = create ? "create" : "update";
  if (int rc = ParseClientOrExit(
          fs, cf, args,
          "federation " + verb +
              " -trustDomain TD -bundleEndpointURL URL [-bundleEndpointProfile "
              "https_spiffe|https_web] [-endpointSpiffeID ID] [-trustDomainBundlePath FILE "
              "[-trustDomainBundleFormat pem|spiffe]] | -data FILE",
          out, err);
      rc >= 0) {
    return rc;
  }
  std::vector<v1::FederationRelationship> wanted;
  if (!data.empty()) {
    for (const char* flag : {"trustDomain", "bundleEndpointURL", "bundleEndpointProfile",
                             "endpointSpiffeID", "trustDomainBundlePath"}) {
      if (fs.IsSet(flag)) return Fail(err, std::string("-data cannot be combined with -") + flag);
    }
    absl::StatusOr<std::vector<v1::FederationRelationship>> read = RelationshipsFromData(data);
    if (!read.ok()) return Fail(err, std::string(read.status().message()));
    wanted = *std::move(read);
  } else {
    if (td.empty()) return Fail(err, "trust domain is required");
    if (url.empty()) return Fail(err, "bundle endpoint URL is required");
    v1::FederationRelationship r;
    r.set_trust_domain(td);
    r.set_bundle_endpoint_url(url);
    if (profile == "https_spiffe") {
      if (endpoint_id.empty())
        return Fail(err, "endpoint SPIFFE ID is required if profile is https_spiffe");
      r.set_bundle_endpoint_profile(v1::HTTPS_SPIFFE);
      r.set_endpoint_spiffe_id(endpoint_id);
    } else if (profile == "https_web") {
      if (!endpoint_id.empty()) return Fail(err, "endpoint SPIFFE ID is only for https_spiffe");
      r.set_bundle_endpoint_profile(v1::HTTPS_WEB);
    } else {
      return Fail(err, "unknown bundle endpoint profile type: \"" + profile + "\"");
    }
    if (!bundle_path.empty()) {
      absl::StatusOr<v1::Bundle> bundle = ReadBundle(td, bundle_path, bundle_format);
      if (!bundle.ok()) return Fail(err, std::string(bundle.status().message()));
      *r.mutable_trust_domain_bundle() = *std::move(bundle);
    }
    wanted.push_back(std::move(r));
  }
  AdminClient client(cf.socket_path);
  v1::ListFederationRelationshipsResponse done;
  int rc = 0;
  for (const auto& r : wanted) {
    v1::FederationRelationship resp;
    auto ctx = client.Context();
    grpc::Status st = create ? client->CreateFederationRelationship(ctx.get(), r, &resp)
                             : client->UpdateFederationRelationship(ctx.get(), r, &resp);
    if (!st.ok()) {
      err << "Error: failed to " << verb << " the relationship with " << r.trust_domain() << ": "
          << client.Describe(st) << "\n";
      rc = kFailExit;
      continue;
    }
    *done.add_relationships() = std::move(resp);
  }
  PrintResponse(cf.output, done, out, [&] {
    for (const auto& r : done.relationships()) PrintRelationship(r, out);
  });
  return rc;
}

int FederationList(const Args& args, std::ostream& out, std::ostream& err) {
  FlagSet fs;
  ClientFlags cf;
  cf.Add(fs, true);
  if (int rc = ParseClientOrExit(fs, cf, args, "federation list", out, err); rc >= 0) return rc;
  AdminClient client(cf.socket_path);
  v1::ListFederationRelationshipsResponse resp;
  auto ctx = client.Context();
  grpc::Status st = client->ListFederationRelationships(ctx.get(), {}, &resp);
  if (!st.ok()) return Fail(err, client.Describe(st));
  PrintResponse(cf.output, resp, out, [&] {
    int n = resp.relationships_size();
    out << "Found " << n << (n == 1 ? " federation relationship" : " federation relationships")
        << "\n\n";
    for (const auto& r : resp.relationships()) PrintRelationship(r, out);
  });
  return 0;
}

// show, delete and refresh name one relationship: show by -trustDomain, the others by -id.
int FederationByTrustDomain(const std::string& verb, const Args& args, std::ostream& out,
                            std::ostream& err) {
  FlagSet fs;
  ClientFlags cf;
  std::string td;
  cf.Add(fs, verb == "show");
  const std::string flag = verb == "show" ? "trustDomain" : "id";
  fs.String(flag, &td, "The trust domain name of the federation relationship");
  if (int rc =
          ParseClientOrExit(fs, cf, args, "federation " + verb + " -" + flag + " TD", out, err);
      rc >= 0) {
    return rc;
  }
  if (td.empty()) return Fail(err, "trust domain is required");
  absl::StatusOr<common::TrustDomain> parsed = common::TrustDomain::Parse(td);
  if (!parsed.ok()) {
    return Fail(err, "invalid trust domain: " + std::string(parsed.status().message()));
  }
  AdminClient client(cf.socket_path);
  v1::FederationRelationshipRequest req;
  req.set_trust_domain(parsed->name());
  auto ctx = client.Context();
  if (verb == "show") {
    v1::FederationRelationship resp;
    grpc::Status st = client->GetFederationRelationship(ctx.get(), req, &resp);
    if (!st.ok()) return Fail(err, client.Describe(st));
    PrintResponse(cf.output, resp, out, [&] { PrintRelationship(resp, out); });
    return 0;
  }
  v1::Empty resp;
  grpc::Status st = verb == "delete" ? client->DeleteFederationRelationship(ctx.get(), req, &resp)
                                     : client->RefreshFederationRelationship(ctx.get(), req, &resp);
  if (!st.ok()) return Fail(err, client.Describe(st));
  out << (verb == "delete" ? "federation relationship deleted.\n" : "Bundle refreshed\n");
  return 0;
}

}  // namespace

SubCommand FederationCommands() {
  return {"federation",
          "Manage federation relationships (create, update, delete, list, show, refresh)",
          [](const Args& a, std::ostream& o, std::ostream& e) {
            using namespace std::placeholders;
            return Group("federation",
                         {{"create", std::bind(CreateOrUpdate, true, _1, _2, _3)},
                          {"update", std::bind(CreateOrUpdate, false, _1, _2, _3)},
                          {"delete", std::bind(FederationByTrustDomain, "delete", _1, _2, _3)},
                          {"list", FederationList},
                          {"show", std::bind(FederationByTrustDomain, "show", _1, _2, _3)},
                          {"refresh", std::bind(FederationByTrustDomain, "refresh", _1, _2, _3)}},
                         a, o, e);
          }};
}

}  // namespace trellis::cmd
