// join_token sends the token; x509pop sends its chain and signs the server's challenge.
#include "agent/node_attestation.h"

#include "common/file_util.h"
#include "common/keys.h"
#include "common/status.h"
#include "common/x509.h"

namespace trellis::agent {
namespace {

constexpr std::string_view kX509PopContext = "trellis-x509pop-v1";

class JoinTokenAttestor final : public NodeAttestor {
 public:
  explicit JoinTokenAttestor(std::string token) : token_(std::move(token)) {}
  std::string Name() const override { return "join_token"; }
  absl::StatusOr<std::string> Payload() override { return token_; }
  absl::StatusOr<std::string> Answer(std::string_view) override {
    return absl::InvalidArgumentError("join_token attestation has no challenge");
  }

 private:
  std::string token_;
};

class X509PopAttestor final : public NodeAttestor {
 public:
  X509PopAttestor(std::string chain_der, common::PrivateKey key)
      : chain_der_(std::move(chain_der)), key_(std::move(key)) {}
  std::string Name() const override { return "x509pop"; }
  absl::StatusOr<std::string> Payload() override { return chain_der_; }
  absl::StatusOr<std::string> Answer(std::string_view challenge) override {
    std::string data(kX509PopContext);
    data.append(challenge);
    bool rsa = !common::IsEcKeyType(key_.type());
    return key_.Sign(data, common::HashAlg::kSha256, /*pss=*/rsa);
  }

 private:
  std::string chain_der_;
  common::PrivateKey key_;
};

absl::StatusOr<std::unique_ptr<NodeAttestor>> CreateX509Pop(
    const common::config::X509PopAgentAttestorConfig& cfg) {
  TRELLIS_ASSIGN_OR_RETURN(std::string key_pem, common::ReadFile(cfg.private_key_path));
  auto key = common::PrivateKey::FromPem(key_pem);
  if (!key.ok()) return Annotate(key.status(), "x509pop private_key_path " + cfg.private_key_path);
  TRELLIS_ASSIGN_OR_RETURN(std::string cert_pem, common::ReadFile(cfg.certificate_path));
  auto chain = common::Certificate::ChainFromPem(cert_pem);
  if (!chain.ok())
    return Annotate(chain.status(), "x509pop certificate_path " + cfg.certificate_path);
  if (!cfg.intermediates_path.empty()) {
    TRELLIS_ASSIGN_OR_RETURN(std::string inter_pem, common::ReadFile(cfg.intermediates_path));
    auto inter = common::Certificate::ChainFromPem(inter_pem);
    if (!inter.ok()) {
      return Annotate(inter.status(), "x509pop intermediates_path " + cfg.intermediates_path);
    }
    chain->insert(chain->end(), inter->begin(), inter->end());
  }
  if (absl::Status s = common::CheckKeyMatchesCertificate(*key, chain->front()); !s.ok()) {
    return Annotate(s, "x509pop private key does not match " + cfg.certificate_path);
  }
  return std::unique_ptr<NodeAttestor>(
      new X509PopAttestor(common::Certificate::ChainToDer(*chain), std::move(*key)));
}

}  // namespace

absl::StatusOr<std::unique_ptr<NodeAttestor>> CreateNodeAttestor(
    const common::config::AgentConfig& config, const std::string& join_token) {
  if (const auto* pop =
          std::get_if<common::config::X509PopAgentAttestorConfig>(&config.node_attestor)) {
    return CreateX509Pop(*pop);
  }
  std::string token = join_token.empty() ? config.join_token : join_token;
  if (token.empty()) {
    return absl::InvalidArgumentError(
        "NodeAttestor \"join_token\" needs a token: set agent.join_token or pass -joinToken");
  }
  return std::unique_ptr<NodeAttestor>(new JoinTokenAttestor(std::move(token)));
}

}  // namespace trellis::agent
