// ServerSvidRotator: the server's own X509-SVID, written to data_dir for its TLS listener.
#include "server/server_svid.h"

#include "common/file_util.h"
#include "common/status.h"

namespace trellis::server {

absl::StatusOr<std::unique_ptr<ServerSvidRotator>> ServerSvidRotator::Create(
    Options options, CaManager* ca, const common::Clock& clock) {
  if (ca == nullptr) return absl::InvalidArgumentError("ServerSvidRotator needs a CaManager");
  if (options.data_dir.empty()) return absl::InvalidArgumentError("data_dir is empty");
  if (options.ttl == absl::ZeroDuration()) options.ttl = ca->options().default_x509_svid_ttl;
  if (options.ttl < absl::ZeroDuration()) return absl::InvalidArgumentError("ttl is negative");
  TRELLIS_RETURN_IF_ERROR(Annotate(common::EnsurePrivateDir(options.data_dir), "data_dir"));
  return std::unique_ptr<ServerSvidRotator>(new ServerSvidRotator(std::move(options), ca, clock));
}

std::string ServerSvidRotator::CertChainPath() const {
  return options_.data_dir + "/server_svid.pem";
}

std::string ServerSvidRotator::KeyPath() const { return options_.data_dir + "/server_svid.key"; }

std::optional<common::Certificate> ServerSvidRotator::Current() const {
  absl::MutexLock lock(&mu_);
  return current_;
}

absl::Status ServerSvidRotator::Start() {
  absl::MutexLock lock(&mu_);
  return Rotate();
}

absl::Status ServerSvidRotator::Tick() {
  absl::MutexLock lock(&mu_);
  if (!current_ || ca_->X509Generation() != issued_generation_) return Rotate();
  const absl::Time half_life =
      current_->not_before() + (current_->not_after() - current_->not_before()) / 2;
  if (clock_.Now() >= half_life) return Rotate();
  return absl::OkStatus();
}

absl::Status ServerSvidRotator::Rotate() {
  const uint64_t generation = ca_->X509Generation();
  TRELLIS_ASSIGN_OR_RETURN(
      auto id, common::SpiffeId::FromPath(ca_->options().trust_domain, "/spire/server"));
  TRELLIS_ASSIGN_OR_RETURN(common::PrivateKey key, common::PrivateKey::Generate(options_.key_type));
  TRELLIS_ASSIGN_OR_RETURN(std::string csr, common::BuildCsr(key, id));
  TRELLIS_ASSIGN_OR_RETURN(std::vector<std::string> chain_der,
                           ca_->SignX509SvidFromCsr(csr, id, options_.ttl, {}));
  std::vector<common::Certificate> chain;
  for (const auto& der : chain_der) {
    TRELLIS_ASSIGN_OR_RETURN(auto cert, common::Certificate::FromDer(der));
    chain.push_back(std::move(cert));
  }
  TRELLIS_ASSIGN_OR_RETURN(common::SecretBytes key_pem, key.ToPem());
  // The key goes first: a reader that sees the new chain must find its key already there.
  // The TLS layer re-reads both and checks they match, so a torn pair is refused, not used.
  TRELLIS_RETURN_IF_ERROR(common::WriteFileAtomic(KeyPath(), key_pem.view(), 0600));
  TRELLIS_RETURN_IF_ERROR(
      common::WriteFileAtomic(CertChainPath(), common::Certificate::ChainToPem(chain), 0600));
  current_ = chain.front();
  issued_generation_ = generation;
  return absl::OkStatus();
}

}  // namespace trellis::server
