// CaSigner: X.509-SVIDs and JWT-SVIDs from the installed authorities.
#include "server/ca_signer.h"

#include <algorithm>
#include <nlohmann/json.hpp>
#include <optional>

#include "common/jwt.h"
#include "common/status.h"

namespace trellis::server {

CaSigner::CaSigner(common::TrustDomain trust_domain, std::string jwt_issuer,
                   const common::Clock& clock)
    : trust_domain_(std::move(trust_domain)), jwt_issuer_(std::move(jwt_issuer)), clock_(clock) {}

void CaSigner::SetX509(std::shared_ptr<const common::X509SvidIssuer> issuer,
                       std::vector<std::string> chain_der) {
  auto next = std::make_shared<const X509Key>(X509Key{std::move(issuer), std::move(chain_der)});
  absl::MutexLock lock(&mu_);
  x509_ = std::move(next);
}

void CaSigner::SetJwt(std::string kid, common::PrivateKey key, absl::Time not_after) {
  auto next = std::make_shared<const JwtKey>(JwtKey{std::move(kid), std::move(key), not_after});
  absl::MutexLock lock(&mu_);
  jwt_ = std::move(next);
}

std::shared_ptr<const CaSigner::X509Key> CaSigner::CurrentX509() const {
  absl::MutexLock lock(&mu_);
  return x509_;
}

std::vector<std::string> CaSigner::WithChain(std::string leaf, const X509Key& signer) {
  std::vector<std::string> out;
  out.reserve(1 + signer.chain_der.size());
  out.push_back(std::move(leaf));
  out.insert(out.end(), signer.chain_der.begin(), signer.chain_der.end());
  return out;
}

absl::StatusOr<std::vector<std::string>> CaSigner::SignX509SvidFromCsr(
    std::string_view csr_der, const common::SpiffeId& id, absl::Duration ttl,
    const std::vector<std::string>& dns_names, absl::Time* not_after) const {
  std::shared_ptr<const X509Key> signer = CurrentX509();
  if (!signer) return absl::UnavailableError("no active X.509 CA yet");
  TRELLIS_ASSIGN_OR_RETURN(std::string leaf,
                           signer->issuer->IssueFromCsr(csr_der, id, ttl, dns_names, not_after));
  return WithChain(std::move(leaf), *signer);
}

absl::StatusOr<std::vector<std::string>> CaSigner::SignX509SvidForKey(
    const common::PublicKey& key, const common::SpiffeId& id, absl::Duration ttl,
    const std::vector<std::string>& dns_names) const {
  std::shared_ptr<const X509Key> signer = CurrentX509();
  if (!signer) return absl::UnavailableError("no active X.509 CA yet");
  TRELLIS_ASSIGN_OR_RETURN(std::string leaf,
                           signer->issuer->IssueForPublicKey(key, id, ttl, dns_names));
  return WithChain(std::move(leaf), *signer);
}

absl::StatusOr<std::string> CaSigner::SignJwtSvid(const common::SpiffeId& id,
                                                  const std::vector<std::string>& audience,
                                                  absl::Duration ttl) const {
  if (audience.empty()) return absl::InvalidArgumentError("a JWT-SVID needs an audience");
  if (ttl <= absl::ZeroDuration()) return absl::InvalidArgumentError("JWT-SVID ttl must be > 0");
  if (id.trust_domain().name() != trust_domain_.name()) {
    return absl::InvalidArgumentError("SPIFFE ID " + id.String() + " is outside the trust domain " +
                                      trust_domain_.name());
  }
  std::shared_ptr<const JwtKey> key;
  {
    absl::MutexLock lock(&mu_);
    key = jwt_;
  }
  if (!key) return absl::UnavailableError("no active JWT signing key yet");
  const absl::Time now = clock_.Now();
  if (now >= key->not_after) return absl::UnavailableError("the JWT signing key has expired");
  // Whole seconds: exp is a NumericDate and must not exceed the key's life.
  const absl::Time expiry = std::min(now + ttl, key->not_after);
  nlohmann::json extra = nlohmann::json::object();
  if (!jwt_issuer_.empty()) extra["iss"] = jwt_issuer_;
  return common::SignJwtSvid(key->key, key->kid, id, audience, now, expiry, std::nullopt, extra);
}

}  // namespace trellis::server
