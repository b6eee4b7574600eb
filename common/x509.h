// X.509 certificates: parsing and inspection, CA builders and the X509-SVID issuer that follow
// the SPIFFE X509-SVID profile, and chain verification against trust bundle authorities.
#pragma once

#include <openssl/types.h>

#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/clock.h"
#include "common/keys.h"
#include "common/spiffe_id.h"

namespace trellis::common {

// Key usage bits as returned by Certificate::key_usage() (OpenSSL's KU_* values).
inline constexpr uint32_t kKeyUsageDigitalSignature = 0x0080;
inline constexpr uint32_t kKeyUsageKeyEncipherment = 0x0020;
inline constexpr uint32_t kKeyUsageKeyAgreement = 0x0008;
inline constexpr uint32_t kKeyUsageKeyCertSign = 0x0004;
inline constexpr uint32_t kKeyUsageCrlSign = 0x0002;

// Chains longer than this are refused before any signature work (CPU denial of service).
inline constexpr size_t kMaxChainLength = 16;

class Certificate {
 public:
  // Exactly one DER certificate, no trailing bytes.
  static absl::StatusOr<Certificate> FromDer(std::string_view der);
  // Exactly one CERTIFICATE PEM block.
  static absl::StatusOr<Certificate> FromPem(std::string_view pem);
  // One or more concatenated DER certificates (the Workload API chain format).
  static absl::StatusOr<std::vector<Certificate>> ChainFromDer(std::string_view der);
  // One or more CERTIFICATE blocks; any other block or stray non-whitespace text is refused.
  static absl::StatusOr<std::vector<Certificate>> ChainFromPem(std::string_view pem);
  static std::string ChainToDer(const std::vector<Certificate>& chain);
  static std::string ChainToPem(const std::vector<Certificate>& chain);

  const std::string& der() const { return der_; }
  std::string ToPem() const;

  // Lowercase hex of the serial's magnitude (no leading zero byte).
  std::string SerialHex() const;
  absl::Time not_before() const { return not_before_; }
  absl::Time not_after() const { return not_after_; }
  // RFC 2253 rendering of the subject / issuer ("" when empty).
  std::string Subject() const;
  std::string Issuer() const;
  // DER of the subject Name (used to build issuer fields verbatim).
  std::string SubjectNameDer() const;
  std::vector<std::string> UriSans() const;
  std::vector<std::string> DnsSans() const;
  // The SPIFFE ID: exactly one URI SAN that parses as a SPIFFE ID, else INVALID_ARGUMENT.
  absl::StatusOr<SpiffeId> GetSpiffeId() const;
  // True when basicConstraints says cA = TRUE.
  bool IsCa() const;
  // Bitmask of kKeyUsage*; 0 when the extension is absent.
  uint32_t key_usage() const;
  bool HasKeyUsageExtension() const;
  // Raw key identifier bytes ("" when absent).
  std::string SubjectKeyId() const;
  std::string AuthorityKeyId() const;
  const PublicKey& public_key() const { return public_key_; }
  // Lowercase hex digests of the DER.
  std::string Sha1Fingerprint() const;
  std::string Sha256Fingerprint() const;

  X509* x509() const { return x509_.get(); }
  bool operator==(const Certificate& other) const { return der_ == other.der_; }

 private:
  Certificate(std::shared_ptr<X509> x509, std::string der, PublicKey pub, absl::Time nb,
              absl::Time na)
      : x509_(std::move(x509)),
        der_(std::move(der)),
        public_key_(std::move(pub)),
        not_before_(nb),
        not_after_(na) {}
  static absl::StatusOr<Certificate> FromOwned(X509* x509, std::string der);
  std::shared_ptr<X509> x509_;
  std::string der_;
  PublicKey public_key_;
  absl::Time not_before_;
  absl::Time not_after_;
};

// Subject attributes for CA certificates (SPIRE's defaults: C=US, O=SPIFFE).
struct CaSubject {
  std::string country = "US";
  std::string organization = "SPIFFE";
  std::string common_name;
};

// Self-signed root CA: CA:TRUE (critical, no path length), key usage critical
// keyCertSign + cRLSign, URI SAN spiffe://<td>, SKI = AKI, NotBefore = now - 10 s.
absl::StatusOr<Certificate> CreateRootCa(const PrivateKey& key, const TrustDomain& td,
                                         absl::Duration ttl, const Clock& clock,
                                         const CaSubject& subject = {});

// Intermediate or downstream CA for `ca_public_key`, signed by `parent` / `parent_key`, with
// the root CA profile except that NotAfter is capped at the parent's NotAfter and AKI is the
// parent's SKI. FAILED_PRECONDITION when the parent is not a usable CA or has expired.
absl::StatusOr<Certificate> CreateIntermediateCa(const Certificate& parent,
                                                 const PrivateKey& parent_key,
                                                 const PublicKey& ca_public_key,
                                                 const TrustDomain& td, absl::Duration ttl,
                                                 const Clock& clock, const CaSubject& subject = {});

// Issues X509-SVID leaves from one CA. The TBSCertificate is written directly in DER with
// the requester's SubjectPublicKeyInfo copied verbatim and the issuer Name / key identifier
// precomputed, because the generic OpenSSL path costs several times the signature itself.
// Thread-safe.
class X509SvidIssuer {
 public:
  // FAILED_PRECONDITION when `ca` is not a CA with keyCertSign or `ca_key` does not match it.
  static absl::StatusOr<std::unique_ptr<X509SvidIssuer>> Create(Certificate ca, PrivateKey ca_key,
                                                                const Clock& clock);

  // Parses the PKCS#10 CSR (strict DER), verifies its signature, and returns the leaf DER.
  // The identity comes from `id` alone: names requested inside the CSR are ignored.
  // INVALID_ARGUMENT for a malformed CSR, a bad CSR signature, an unsupported key, a SPIFFE ID
  // outside the CA's trust domain or a trust-domain-only ID, bad DNS names, or ttl <= 0.
  // FAILED_PRECONDITION when the CA has expired. When `not_after` is given it receives the
  // leaf's NotAfter, so callers need not parse the DER back just to learn the expiry.
  absl::StatusOr<std::string> IssueFromCsr(std::string_view csr_der, const SpiffeId& id,
                                           absl::Duration ttl,
                                           const std::vector<std::string>& dns_names = {},
                                           absl::Time* not_after = nullptr) const;
  // Same for a key the caller already holds.
  absl::StatusOr<std::string> IssueForPublicKey(
      const PublicKey& key, const SpiffeId& id, absl::Duration ttl,
      const std::vector<std::string>& dns_names = {}) const;

  const Certificate& ca() const { return ca_; }

 private:
  X509SvidIssuer(Certificate ca, PrivateKey ca_key, const Clock& clock)
      : ca_(std::move(ca)), ca_key_(std::move(ca_key)), clock_(clock) {}
  absl::StatusOr<std::string> Issue(std::string_view spki_der, bool rsa_key, const SpiffeId& id,
                                    absl::Duration ttl, const std::vector<std::string>& dns_names,
                                    absl::Time* not_after_out) const;

  // Signs a digest of the TBSCertificate with a pooled, pre-initialised signing context.
  absl::StatusOr<std::string> SignDigest(std::string_view tbs) const;

  Certificate ca_;
  PrivateKey ca_key_;
  const Clock& clock_;
  // Contexts already bound to ca_key_: initialising one costs a provider lookup per call.
  mutable absl::Mutex pool_mu_;
  mutable std::vector<EvpPkeyCtxPtr> sign_ctx_pool_ ABSL_GUARDED_BY(pool_mu_);
  std::optional<TrustDomain> ca_trust_domain_;
  std::string issuer_name_der_;    // the CA subject Name, verbatim
  std::string aki_extension_der_;  // complete AuthorityKeyIdentifier extension
  std::string sig_alg_der_;        // AlgorithmIdentifier for the CA's signatures
  HashAlg hash_ = HashAlg::kSha256;
  int64_t ca_not_after_ = 0;  // unix seconds
};

// Verifies an X509-SVID chain (leaf first, optional intermediates) against the X.509
// authorities of `trust_domain`'s bundle; every authority is a trust anchor. Returns the
// leaf's SPIFFE ID. INVALID_ARGUMENT for an empty or overlong chain; UNAUTHENTICATED for
// every verification failure (no path to an authority, expired or not yet valid, leaf not
// a valid X509-SVID, a non-leaf that is not a CA with keyCertSign, ID outside `trust_domain`).
absl::StatusOr<SpiffeId> VerifyX509Svid(const std::vector<Certificate>& chain,
                                        const std::vector<Certificate>& authorities,
                                        const TrustDomain& trust_domain, absl::Time now);

// Verifies a CA chain (the CA first, then intermediates) against `authorities` (every one a
// trust anchor) at `now`: each certificate a CA with keyCertSign, the first carrying the trust
// domain ID as URI SAN. UNAUTHENTICATED for every verification failure.
absl::Status VerifyCaChain(const std::vector<Certificate>& chain,
                           const std::vector<Certificate>& authorities,
                           const TrustDomain& trust_domain, absl::Time now);

// OK when `key` is the private half of `cert`'s public key; INVALID_ARGUMENT otherwise.
absl::Status CheckKeyMatchesCertificate(const PrivateKey& key, const Certificate& cert);

// Builds an X509-SVID with the plain OpenSSL X509 API; kept as the reference path for
// comparison in tests and benchmarks, not for production issuance.
absl::StatusOr<std::string> IssueX509SvidWithOpenSsl(const Certificate& ca,
                                                     const PrivateKey& ca_key,
                                                     std::string_view csr_der, const SpiffeId& id,
                                                     absl::Duration ttl, const Clock& clock);

}  // namespace trellis::common
