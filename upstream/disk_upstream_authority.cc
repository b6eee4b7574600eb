// UpstreamAuthority "disk": loads and checks the operator's CA files once, then signs each
// new server CA as an intermediate under them.
#include "upstream/disk_upstream_authority.h"

#include <openssl/x509.h>

#include <algorithm>
#include <utility>
#include <vector>

#include "common/file_util.h"
#include "common/keys.h"
#include "common/status.h"
#include "common/x509.h"

namespace trellis::upstream {

using server::UpstreamAuthority;

namespace {

class DiskUpstreamAuthority final : public UpstreamAuthority {
 public:
  DiskUpstreamAuthority(common::Certificate cert, common::PrivateKey key,
                        std::vector<common::Certificate> intermediates,
                        std::vector<common::Certificate> roots, const common::Clock& clock)
      : cert_(std::move(cert)),
        key_(std::move(key)),
        intermediates_(std::move(intermediates)),
        roots_(std::move(roots)),
        clock_(clock) {}

  absl::StatusOr<MintResult> MintX509Ca(const common::PrivateKey& ca_key,
                                        const common::TrustDomain& td,
                                        absl::Duration ttl) override {
    TRELLIS_ASSIGN_OR_RETURN(
        common::Certificate ca,
        common::CreateIntermediateCa(cert_, key_, ca_key.public_key(), td, ttl, clock_));
    MintResult result;
    result.ca_chain.push_back(std::move(ca));
    for (const auto& c : intermediates_) result.ca_chain.push_back(c);
    result.roots = roots_;
    return result;
  }

 private:
  common::Certificate cert_;
  common::PrivateKey key_;
  std::vector<common::Certificate> intermediates_;  // upstream cert and above, roots excluded
  std::vector<common::Certificate> roots_;
  const common::Clock& clock_;
};

bool Contains(const std::vector<common::Certificate>& v, const common::Certificate& c) {
  return std::find(v.begin(), v.end(), c) != v.end();
}

}  // namespace

absl::StatusOr<std::unique_ptr<UpstreamAuthority>> CreateDiskUpstreamAuthority(
    const DiskUpstreamOptions& options, const common::Clock& clock) {
  if (options.cert_file_path.empty() || options.key_file_path.empty()) {
    return absl::InvalidArgumentError(
        "UpstreamAuthority \"disk\" needs cert_file_path and key_file_path");
  }
  TRELLIS_ASSIGN_OR_RETURN(std::string cert_pem, common::ReadFile(options.cert_file_path));
  auto certs = common::Certificate::ChainFromPem(cert_pem);
  if (!certs.ok()) return Annotate(certs.status(), "cert_file_path " + options.cert_file_path);
  auto key = common::ReadPrivateKeyFile(options.key_file_path);
  if (!key.ok()) return Annotate(key.status(), "key_file_path");
  const common::Certificate& signer = certs->front();
  if (auto s = common::CheckKeyMatchesCertificate(*key, signer); !s.ok()) {
    return absl::InvalidArgumentError("key_file_path " + options.key_file_path +
                                      " does not match cert_file_path " + options.cert_file_path);
  }
  if (!signer.IsCa() ||
      (signer.HasKeyUsageExtension() && (signer.key_usage() & common::kKeyUsageKeyCertSign) == 0)) {
    return absl::InvalidArgumentError("cert_file_path " + options.cert_file_path +
                                      " is not a CA certificate allowed to sign certificates");
  }
  std::vector<common::Certificate> roots;
  if (!options.bundle_file_path.empty()) {
    TRELLIS_ASSIGN_OR_RETURN(std::string bundle_pem, common::ReadFile(options.bundle_file_path));
    auto parsed = common::Certificate::ChainFromPem(bundle_pem);
    if (!parsed.ok()) {
      return Annotate(parsed.status(), "bundle_file_path " + options.bundle_file_path);
    }
    roots = std::move(*parsed);
  } else {
    // Without a bundle the upstream certificate must itself be the root.
    if (certs->size() != 1 || X509_self_signed(signer.x509(), /*verify_signature=*/1) != 1) {
      return absl::InvalidArgumentError(
          "cert_file_path " + options.cert_file_path +
          " is not self-signed: set bundle_file_path to the roots it chains to");
    }
    roots.push_back(signer);
  }
  std::vector<common::Certificate> intermediates;
  for (const auto& c : *certs) {
    if (!Contains(roots, c)) intermediates.push_back(c);
  }
  if (clock.Now() >= signer.not_after()) {
    return absl::FailedPreconditionError("upstream CA " + options.cert_file_path + " has expired");
  }
  return std::unique_ptr<UpstreamAuthority>(new DiskUpstreamAuthority(
      signer, std::move(*key), std::move(intermediates), std::move(roots), clock));
}

}  // namespace trellis::upstream
