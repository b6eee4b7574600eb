// PKCS#10 certificate signing requests: building, strict parsing and signature checks.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "common/keys.h"
#include "common/spiffe_id.h"

namespace trellis::common {

// DER CSR for `key`, empty subject, with a URI SAN extension request when `id` is given.
absl::StatusOr<std::string> BuildCsr(const PrivateKey& key,
                                     const std::optional<SpiffeId>& id = std::nullopt);

class CertificateRequest {
 public:
  // Strict DER parse (structure, supported key and signature algorithm). Does not verify the
  // signature. INVALID_ARGUMENT naming the defect.
  static absl::StatusOr<CertificateRequest> FromDer(std::string_view der);
  static absl::StatusOr<CertificateRequest> FromPem(std::string_view pem);

  // OK when the self-signature verifies; INVALID_ARGUMENT otherwise (a forged or corrupted
  // request is bad input from the requester's side).
  absl::Status VerifySignature() const;
  const PublicKey& public_key() const { return public_key_; }
  const std::string& der() const { return der_; }
  // URI SANs from the extension request attribute, if any.
  absl::StatusOr<std::vector<std::string>> UriSans() const;

 private:
  CertificateRequest(std::string der, PublicKey key) : der_(std::move(der)), public_key_(key) {}
  std::string der_;
  PublicKey public_key_;
};

namespace internal {

// The pieces of a CSR the issuance hot path needs, as views into the caller's buffer.
struct CsrView {
  std::string_view info;           // CertificationRequestInfo, full encoding (what is signed)
  std::string_view spki;           // SubjectPublicKeyInfo, full encoding
  std::string_view signature;      // signature bytes (BIT STRING content after the pad byte)
  std::string_view ec_point;       // EC public point (empty for RSA)
  const char* ec_group = nullptr;  // OpenSSL group name for EC keys
  bool rsa = false;
  HashAlg hash = HashAlg::kSha256;
};

// Strictly splits a DER CSR and checks that its key and signature algorithms are supported
// and consistent. INVALID_ARGUMENT otherwise.
absl::StatusOr<CsrView> ParseCsrView(std::string_view der);
// Verifies the CSR self-signature. EC keys are imported from the raw point (the generic
// SPKI decoder costs more than the verification). INVALID_ARGUMENT when it does not verify.
absl::Status VerifyCsrView(const CsrView& csr);

}  // namespace internal
}  // namespace trellis::common
