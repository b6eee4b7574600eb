// OIDC discovery documents and their listener.
#include "oidc/discovery.h"

#include <httplib.h>

#include <algorithm>
#include <nlohmann/json.hpp>

#include "common/jwt.h"
#include "common/keys.h"

namespace trellis::oidc {
namespace {

const char* AlgorithmOf(common::KeyType type) {
  switch (type) {
    case common::KeyType::kEcP256:
      return "ES256";
    case common::KeyType::kEcP384:
      return "ES384";
    case common::KeyType::kEcP521:
      return "ES512";
    default:
      return "RS256";
  }
}

// The request's Host without its port, and with it ("oidc.example.org:8443").
std::pair<std::string, std::string> HostOf(const httplib::Request& req) {
  std::string with_port = req.get_header_value("Host");
  std::string name = with_port;
  if (!name.empty() && name.front() == '[') {
    name = name.substr(0, name.find(']') + 1);
  } else if (size_t colon = name.rfind(':'); colon != std::string::npos) {
    name = name.substr(0, colon);
  }
  return {name, with_port};
}

}  // namespace

std::string DiscoveryDocument(const std::string& issuer, const std::string& jwks_uri) {
  nlohmann::json doc = {
      {"issuer", issuer},
      {"jwks_uri", jwks_uri},
      {"authorization_endpoint", ""},
      {"response_types_supported", {"id_token"}},
      {"subject_types_supported", {"public"}},
      {"id_token_signing_alg_values_supported", {"RS256", "ES256", "ES384", "ES512"}},
  };
  return doc.dump(2);
}

absl::StatusOr<std::string> KeysDocument(const std::vector<datastore::JwtAuthority>& authorities,
                                         absl::Time now) {
  std::vector<const datastore::JwtAuthority*> usable;
  for (const auto& a : authorities) {
    if (!a.tainted && a.expires_at > now) usable.push_back(&a);
  }
  std::sort(usable.begin(), usable.end(),
            [](const auto* x, const auto* y) { return x->expires_at > y->expires_at; });
  if (usable.size() > kMaxKeys) usable.resize(kMaxKeys);
  nlohmann::json keys = nlohmann::json::array();
  for (const datastore::JwtAuthority* a : usable) {
    absl::StatusOr<common::PublicKey> key = common::PublicKey::FromSpkiDer(a->public_key_der);
    if (!key.ok()) {
      return absl::InvalidArgumentError("JWT authority " + a->kid + ": " +
                                        std::string(key.status().message()));
    }
    absl::StatusOr<nlohmann::json> jwk = common::PublicKeyToJwk(*key, a->kid);
    if (!jwk.ok()) return jwk.status();
    (*jwk)["use"] = "sig";
    (*jwk)["alg"] = AlgorithmOf(key->type());
    keys.push_back(*std::move(jwk));
  }
  return nlohmann::json{{"keys", keys}}.dump(2);
}

absl::StatusOr<std::unique_ptr<DiscoveryServer>> DiscoveryServer::Start(Options options) {
  if (!options.authorities) return absl::InvalidArgumentError("OIDC discovery needs a key source");
  web::HttpListener::Options o;
  o.name = "oidc_discovery";
  o.address = options.address;
  o.port = options.port;
  o.tls = options.tls;
  const std::string scheme = options.tls ? "https://" : "http://";
  auto opts = std::make_shared<const Options>(std::move(options));
  // A request naming a host outside `domains`: 400, before anything is computed.
  auto allowed = [opts](const httplib::Request& req, httplib::Response& res) {
    if (opts->domains.empty()) return true;
    std::string host = HostOf(req).first;
    if (std::find(opts->domains.begin(), opts->domains.end(), host) != opts->domains.end()) {
      return true;
    }
    res.status = 400;
    res.set_content("{\"error\":\"domain not allowed\"}", "application/json");
    return false;
  };
  o.routes = [opts, scheme, allowed](httplib::Server& s) {
    s.Get("/.well-known/openid-configuration",
          [opts, scheme, allowed](const httplib::Request& req, httplib::Response& res) {
            if (!allowed(req, res)) return;
            std::string base = scheme + HostOf(req).second;
            std::string issuer = opts->issuer.empty() ? base : opts->issuer;
            std::string jwks = opts->jwks_uri.empty() ? base + "/keys" : opts->jwks_uri;
            res.set_content(DiscoveryDocument(issuer, jwks), "application/json");
          });
    s.Get("/keys", [opts, allowed](const httplib::Request& req, httplib::Response& res) {
      if (!allowed(req, res)) return;
      absl::StatusOr<std::vector<datastore::JwtAuthority>> authorities = opts->authorities();
      absl::StatusOr<std::string> doc = authorities.ok()
                                            ? KeysDocument(*authorities, opts->now())
                                            : absl::StatusOr<std::string>(authorities.status());
      if (!doc.ok()) {
        res.status = 503;
        res.set_content("{\"error\":\"keys not available\"}", "application/json");
        return;
      }
      res.set_header("Cache-Control", "max-age=60");
      res.set_content(*std::move(doc), "application/json");
    });
  };
  absl::StatusOr<std::unique_ptr<web::HttpListener>> listener =
      web::HttpListener::Start(std::move(o));
  if (!listener.ok()) return listener.status();
  return std::unique_ptr<DiscoveryServer>(new DiscoveryServer(*std::move(listener)));
}

}  // namespace trellis::oidc
