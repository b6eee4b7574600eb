// SPIFFE bundle documents, PEM and DER bundle encodings.
#include "common/bundle.h"

#include <algorithm>
#include <nlohmann/json.hpp>

#include "absl/status/status.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "common/jwt.h"
#include "common/status.h"

namespace trellis::common {
namespace {

using json = nlohmann::json;

constexpr char kUseX509[] = "x509-svid";
constexpr char kUseJwt[] = "jwt-svid";

absl::Status Bad(const std::string& what) {
  return absl::InvalidArgumentError("SPIFFE bundle: " + what);
}

// Strict standard base64 (RFC 4648 section 4, padded), as x5c requires.
absl::StatusOr<std::string> StdBase64Decode(const std::string& in) {
  if (in.empty() || in.size() % 4 != 0) return absl::InvalidArgumentError("bad base64 length");
  for (char c : in) {
    bool ok = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
              c == '+' || c == '/' || c == '=';
    if (!ok) return absl::InvalidArgumentError("bad base64 character");
  }
  std::string out;
  if (!absl::Base64Unescape(in, &out)) return absl::InvalidArgumentError("undecodable base64");
  std::string again;
  absl::Base64Escape(out, &again);
  if (again != in) return absl::InvalidArgumentError("non-canonical base64");
  return out;
}

}  // namespace

absl::Status Bundle::AddX509Authority(const Certificate& cert) {
  if (!cert.IsCa()) return absl::InvalidArgumentError("X.509 authority is not a CA certificate");
  if (std::find(x509_authorities_.begin(), x509_authorities_.end(), cert) ==
      x509_authorities_.end()) {
    x509_authorities_.push_back(cert);
  }
  return absl::OkStatus();
}

absl::Status Bundle::AddJwtAuthority(const std::string& kid, const PublicKey& key) {
  if (kid.empty()) return absl::InvalidArgumentError("JWT authority without kid");
  auto [it, inserted] = jwt_authorities_.emplace(kid, key);
  if (!inserted && !(it->second == key)) {
    return absl::AlreadyExistsError("JWT authority kid \"" + kid + "\" already holds another key");
  }
  return absl::OkStatus();
}

bool Bundle::RemoveX509Authority(const Certificate& cert) {
  auto it = std::find(x509_authorities_.begin(), x509_authorities_.end(), cert);
  if (it == x509_authorities_.end()) return false;
  x509_authorities_.erase(it);
  return true;
}

bool Bundle::RemoveJwtAuthority(const std::string& kid) { return jwt_authorities_.erase(kid) > 0; }

bool Bundle::SameAuthorities(const Bundle& other) const {
  if (!(trust_domain_ == other.trust_domain_)) return false;
  if (jwt_authorities_ != other.jwt_authorities_) return false;
  if (x509_authorities_.size() != other.x509_authorities_.size()) return false;
  for (const auto& c : x509_authorities_) {
    if (std::find(other.x509_authorities_.begin(), other.x509_authorities_.end(), c) ==
        other.x509_authorities_.end()) {
      return false;
    }
  }
  return true;
}

bool Bundle::operator==(const Bundle& other) const {
  return SameAuthorities(other) && sequence_ == other.sequence_ &&
         refresh_hint_seconds_ == other.refresh_hint_seconds_;
}

absl::StatusOr<Bundle> ParseSpiffeBundle(const TrustDomain& trust_domain, std::string_view text) {
  json doc = json::parse(text.begin(), text.end(), nullptr, false);
  if (doc.is_discarded()) return Bad("not valid JSON");
  if (!doc.is_object()) return Bad("not a JSON object");
  Bundle bundle(trust_domain);
  auto keys_it = doc.find("keys");
  if (keys_it == doc.end()) return Bad("\"keys\" is missing");
  if (!keys_it->is_array()) return Bad("\"keys\" is not an array");
  if (auto seq = doc.find("spiffe_sequence"); seq != doc.end()) {
    if (!seq->is_number_unsigned()) return Bad("spiffe_sequence is not a non-negative integer");
    bundle.set_sequence(seq->get<uint64_t>());
  }
  if (auto hint = doc.find("spiffe_refresh_hint"); hint != doc.end()) {
    if (!hint->is_number_integer() || hint->get<int64_t>() < 0) {
      return Bad("spiffe_refresh_hint is not a non-negative integer");
    }
    bundle.set_refresh_hint_seconds(hint->get<int64_t>());
  }
  size_t i = 0;
  for (const auto& key : *keys_it) {
    std::string where = absl::StrCat("keys[", i++, "]");
    if (!key.is_object()) return Bad(where + " is not an object");
    auto kty = key.find("kty");
    if (kty == key.end() || !kty->is_string()) return Bad(where + " has no kty");
    auto use = key.find("use");
    if (use == key.end() || !use->is_string()) continue;  // ignored by the spec
    std::string use_str = use->get<std::string>();
    if (use_str == kUseX509) {
      if (key.contains("kid")) return Bad(where + ": x509-svid key must not have a kid");
      auto x5c = key.find("x5c");
      if (x5c == key.end() || !x5c->is_array() || x5c->size() != 1 || !(*x5c)[0].is_string()) {
        return Bad(where + ": x509-svid key must have exactly one x5c certificate");
      }
      auto der = StdBase64Decode((*x5c)[0].get<std::string>());
      if (!der.ok())
        return Bad(where + ": x5c is not standard base64: " + std::string(der.status().message()));
      auto cert = Certificate::FromDer(*der);
      if (!cert.ok()) return Bad(where + ": x5c: " + std::string(cert.status().message()));
      auto jwk_key = PublicKeyFromJwk(key);
      if (!jwk_key.ok()) return Bad(where + ": " + std::string(jwk_key.status().message()));
      if (!(*jwk_key == cert->public_key())) {
        return Bad(where + ": key parameters do not match the x5c certificate");
      }
      auto added = bundle.AddX509Authority(*cert);
      if (!added.ok()) return Bad(where + ": " + std::string(added.message()));
    } else if (use_str == kUseJwt) {
      auto kid = key.find("kid");
      if (kid == key.end() || !kid->is_string() || kid->get<std::string>().empty()) {
        return Bad(where + ": jwt-svid key must have a kid");
      }
      auto pub = PublicKeyFromJwk(key);
      if (!pub.ok()) return Bad(where + ": " + std::string(pub.status().message()));
      std::string kid_str = kid->get<std::string>();
      if (bundle.jwt_authorities().count(kid_str)) {
        return Bad(where + ": duplicate kid \"" + kid_str + "\"");
      }
      TRELLIS_RETURN_IF_ERROR(bundle.AddJwtAuthority(kid_str, *pub));
    }
  }
  return bundle;
}

absl::StatusOr<std::string> SpiffeBundleToJson(const Bundle& bundle) {
  json keys = json::array();
  for (const auto& cert : bundle.x509_authorities()) {
    TRELLIS_ASSIGN_OR_RETURN(json jwk, PublicKeyToJwk(cert.public_key()));
    jwk["use"] = kUseX509;
    std::string b64;
    absl::Base64Escape(cert.der(), &b64);
    jwk["x5c"] = json::array({b64});
    keys.push_back(std::move(jwk));
  }
  for (const auto& [kid, key] : bundle.jwt_authorities()) {
    TRELLIS_ASSIGN_OR_RETURN(json jwk, PublicKeyToJwk(key, kid));
    jwk["use"] = kUseJwt;
    keys.push_back(std::move(jwk));
  }
  json doc = {{"keys", keys}, {"spiffe_sequence", bundle.sequence()}};
  if (bundle.refresh_hint_seconds().has_value()) {
    doc["spiffe_refresh_hint"] = *bundle.refresh_hint_seconds();
  }
  try {
    return doc.dump(2);
  } catch (const json::exception& e) {
    return absl::InvalidArgumentError(std::string("SPIFFE bundle: cannot serialise: ") + e.what());
  }
}

absl::StatusOr<Bundle> BundleFromPem(const TrustDomain& trust_domain, std::string_view pem) {
  auto certs = Certificate::ChainFromPem(pem);
  if (!certs.ok()) return Annotate(certs.status(), "PEM bundle");
  Bundle bundle(trust_domain);
  for (const auto& c : *certs) {
    auto added = bundle.AddX509Authority(c);
    if (!added.ok()) return Annotate(added, "PEM bundle");
  }
  return bundle;
}

std::string BundleToPem(const Bundle& bundle) {
  return Certificate::ChainToPem(bundle.x509_authorities());
}

absl::StatusOr<Bundle> BundleFromDer(const TrustDomain& trust_domain, std::string_view der) {
  if (der.empty()) return Bundle(trust_domain);  // a trust domain may have no authorities yet
  auto certs = Certificate::ChainFromDer(der);
  if (!certs.ok()) return Annotate(certs.status(), "DER bundle");
  Bundle bundle(trust_domain);
  for (const auto& c : *certs) {
    auto added = bundle.AddX509Authority(c);
    if (!added.ok()) return Annotate(added, "DER bundle");
  }
  return bundle;
}

std::string BundleToDer(const Bundle& bundle) {
  return Certificate::ChainToDer(bundle.x509_authorities());
}

absl::StatusOr<SpiffeId> VerifyX509Svid(const std::vector<Certificate>& chain, const Bundle& bundle,
                                        absl::Time now) {
  return VerifyX509Svid(chain, bundle.x509_authorities(), bundle.trust_domain(), now);
}

}  // namespace trellis::common
