// x509pop node attestation: proof of possession of a client certificate's key.
#pragma once

#include <string>
#include <vector>

#include "attestors/node/node_attestor.h"
#include "common/clock.h"
#include "common/keys.h"
#include "common/x509.h"

namespace trellis::attestors {

inline constexpr char kX509PopName[] = "x509pop";
// Signed together with the challenge so a signature cannot be replayed in another protocol.
inline constexpr char kX509PopContext[] = "trellis-x509pop-v1";
inline constexpr size_t kX509PopChallengeSize = 32;
inline constexpr size_t kX509PopMaxChain = 8;

// The message the agent signs: kX509PopContext || challenge.
std::string X509PopSignedMessage(std::string_view challenge);

// Verifies the agent's chain (plain X.509 client certificates, not SPIFFE) to the configured
// CAs, then challenges the leaf key. Chains over 8 certificates and RSA keys outside
// 2048..8192 bits are refused before any signature work.
class X509PopServerAttestor final : public ServerNodeAttestor {
 public:
  // Reads the CA certificates from the PEM files; INVALID_ARGUMENT when none is usable.
  static absl::StatusOr<std::unique_ptr<X509PopServerAttestor>> Create(
      common::TrustDomain td, const std::vector<std::string>& ca_bundle_paths,
      const common::Clock& clock);
  static absl::StatusOr<std::unique_ptr<X509PopServerAttestor>> CreateFromCerts(
      common::TrustDomain td, std::vector<common::Certificate> cas, const common::Clock& clock);

  std::string Name() const override { return kX509PopName; }
  absl::StatusOr<Result> Attest(
      std::string_view payload,
      const std::function<absl::StatusOr<std::string>(std::string)>& challenge) override;

 private:
  X509PopServerAttestor(common::TrustDomain td, std::vector<common::Certificate> cas,
                        const common::Clock& clock)
      : td_(std::move(td)), cas_(std::move(cas)), clock_(clock) {}
  common::TrustDomain td_;
  std::vector<common::Certificate> cas_;
  const common::Clock& clock_;
};

// Sends the certificate chain and signs challenges with the matching key.
class X509PopAgentAttestor final : public AgentNodeAttestor {
 public:
  // Reads the key, the leaf certificate and the optional intermediates (PEM files); refuses a
  // key that does not match the certificate.
  static absl::StatusOr<std::unique_ptr<X509PopAgentAttestor>> Create(
      const std::string& private_key_path, const std::string& certificate_path,
      const std::string& intermediates_path);
  X509PopAgentAttestor(common::PrivateKey key, std::vector<common::Certificate> chain)
      : key_(std::move(key)), chain_(std::move(chain)) {}

  std::string Name() const override { return kX509PopName; }
  absl::StatusOr<std::string> Payload() override;
  absl::StatusOr<std::string> Answer(std::string_view challenge) override;

 private:
  common::PrivateKey key_;
  std::vector<common::Certificate> chain_;
};

}  // namespace trellis::attestors
