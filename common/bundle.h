// SPIFFE trust bundles: X.509 and JWT authorities of one trust domain, with the SPIFFE
// bundle document (JWK Set + spiffe_sequence/spiffe_refresh_hint), PEM and DER forms.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "common/keys.h"
#include "common/spiffe_id.h"
#include "common/x509.h"

namespace trellis::common {

class Bundle {
 public:
  explicit Bundle(TrustDomain trust_domain) : trust_domain_(std::move(trust_domain)) {}

  const TrustDomain& trust_domain() const { return trust_domain_; }
  const std::vector<Certificate>& x509_authorities() const { return x509_authorities_; }
  const std::map<std::string, PublicKey>& jwt_authorities() const { return jwt_authorities_; }
  uint64_t sequence() const { return sequence_; }
  void set_sequence(uint64_t sequence) { sequence_ = sequence; }
  std::optional<int64_t> refresh_hint_seconds() const { return refresh_hint_seconds_; }
  void set_refresh_hint_seconds(std::optional<int64_t> s) { refresh_hint_seconds_ = s; }

  // Adds a CA certificate; a certificate already present is ignored. INVALID_ARGUMENT when
  // it is not a CA certificate.
  absl::Status AddX509Authority(const Certificate& cert);
  // Adds a JWT key; ALREADY_EXISTS when `kid` is taken by a different key, INVALID_ARGUMENT
  // for an empty kid.
  absl::Status AddJwtAuthority(const std::string& kid, const PublicKey& key);
  bool RemoveX509Authority(const Certificate& cert);
  bool RemoveJwtAuthority(const std::string& kid);

  // Same authorities, ignoring order of X.509 authorities, sequence and refresh hint.
  bool SameAuthorities(const Bundle& other) const;
  bool operator==(const Bundle& other) const;

 private:
  TrustDomain trust_domain_;
  std::vector<Certificate> x509_authorities_;
  std::map<std::string, PublicKey> jwt_authorities_;
  uint64_t sequence_ = 0;
  std::optional<int64_t> refresh_hint_seconds_;
};

// SPIFFE bundle document. Keys with missing or unknown "use" are ignored; "x509-svid" keys
// need exactly one standard-base64 "x5c" CA certificate (whose key must match the JWK
// parameters) and no "kid"; "jwt-svid" keys need a unique "kid". INVALID_ARGUMENT naming the
// offending key otherwise.
absl::StatusOr<Bundle> ParseSpiffeBundle(const TrustDomain& trust_domain, std::string_view json);
absl::StatusOr<std::string> SpiffeBundleToJson(const Bundle& bundle);

// PEM: concatenated CERTIFICATE blocks (X.509 authorities only).
absl::StatusOr<Bundle> BundleFromPem(const TrustDomain& trust_domain, std::string_view pem);
std::string BundleToPem(const Bundle& bundle);
// Raw concatenated DER certificates (the Workload API bundle format).
absl::StatusOr<Bundle> BundleFromDer(const TrustDomain& trust_domain, std::string_view der);
std::string BundleToDer(const Bundle& bundle);

// VerifyX509Svid against this bundle's X.509 authorities and trust domain.
absl::StatusOr<SpiffeId> VerifyX509Svid(const std::vector<Certificate>& chain, const Bundle& bundle,
                                        absl::Time now);

}  // namespace trellis::common
