// The signing hot path: the active X.509 CA and JWT key, each replaced by one pointer swap.
#pragma once

#include <memory>
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
#include "common/x509.h"

namespace trellis::server {

// Signs with whatever was installed last; knows nothing of rotation. Thread-safe: a signature
// takes the lock only to copy one shared pointer.
class CaSigner {
 public:
  CaSigner(common::TrustDomain trust_domain, std::string jwt_issuer, const common::Clock& clock);

  // The active X.509 CA; `chain_der` follows the leaf in every chain handed out.
  void SetX509(std::shared_ptr<const common::X509SvidIssuer> issuer,
               std::vector<std::string> chain_der);
  void SetJwt(std::string kid, common::PrivateKey key, absl::Time not_after);

  // Leaf then `chain_der`. UNAVAILABLE before an X.509 CA is installed.
  absl::StatusOr<std::vector<std::string>> SignX509SvidFromCsr(
      std::string_view csr_der, const common::SpiffeId& id, absl::Duration ttl,
      const std::vector<std::string>& dns_names, absl::Time* not_after) const;
  absl::StatusOr<std::vector<std::string>> SignX509SvidForKey(
      const common::PublicKey& key, const common::SpiffeId& id, absl::Duration ttl,
      const std::vector<std::string>& dns_names) const;
  // exp capped at the key's NotAfter. INVALID_ARGUMENT without audience, with ttl <= 0 or an
  // ID of another trust domain; UNAVAILABLE without a live key.
  absl::StatusOr<std::string> SignJwtSvid(const common::SpiffeId& id,
                                          const std::vector<std::string>& audience,
                                          absl::Duration ttl) const;

 private:
  struct X509Key {
    std::shared_ptr<const common::X509SvidIssuer> issuer;
    std::vector<std::string> chain_der;
  };
  struct JwtKey {
    std::string kid;
    common::PrivateKey key;
    absl::Time not_after;
  };
  std::shared_ptr<const X509Key> CurrentX509() const;
  static std::vector<std::string> WithChain(std::string leaf, const X509Key& signer);

  const common::TrustDomain trust_domain_;
  const std::string jwt_issuer_;
  const common::Clock& clock_;
  mutable absl::Mutex mu_;
  std::shared_ptr<const X509Key> x509_ ABSL_GUARDED_BY(mu_);
  std::shared_ptr<const JwtKey> jwt_ ABSL_GUARDED_BY(mu_);
};

}  // namespace trellis::server
