// Adoption, persistence and renewal of the agent SVID.
#include "agent/agent_svid.h"

#include <grpcpp/grpcpp.h>

#include "agent/rotation.h"
#include "common/csr.h"
#include "common/log.h"
#include "common/status.h"
#include "transport/grpc_status.h"
#include "transport/wire_convert.h"

namespace trellis::agent {

namespace v1 = ::trellis::server::v1;

void AgentSvid::Restore(AgentState state) {
  absl::MutexLock lock(&mu_);
  chain_ = std::move(state.chain);
  key_ = std::move(state.key);
  renew_at_ = RenewalTime(chain_.front().not_before(), chain_.front().not_after(),
                          RandomUnitJitter());
}

absl::StatusOr<transport::TlsIdentity> AgentSvid::Adopt(std::vector<common::Certificate> chain,
                                                        common::PrivateKey key,
                                                        const common::Bundle* bundle) {
  TRELLIS_RETURN_IF_ERROR(common::CheckKeyMatchesCertificate(key, chain.front()));
  TRELLIS_ASSIGN_OR_RETURN(common::SpiffeId id, chain.front().GetSpiffeId());
  if (!id.MemberOf(td_) || !id.IsAgentId()) {
    return absl::PermissionDeniedError("server issued " + id.String() +
                                       ", which is not an agent ID of " + td_.name());
  }
  TRELLIS_ASSIGN_OR_RETURN(common::SecretBytes key_pem, key.ToPem());
  transport::TlsIdentity identity{common::Certificate::ChainToPem(chain),
                                  std::string(key_pem.view())};
  AgentState state{chain, key, bundle ? *bundle : common::Bundle(td_), false};
  {
    absl::MutexLock lock(&mu_);
    state.reattestable = reattestable_;
    chain_ = chain;
    key_ = key;
    // NotBefore is backdated for clock skew; the lifetime we got starts now.
    renew_at_ = RenewalTime(std::max(chain.front().not_before(), clock_.Now()),
                            chain.front().not_after(), RandomUnitJitter());
  }
  if (absl::Status s = SaveAgentState(data_dir_, state); !s.ok()) {
    common::LogError("cannot persist the agent SVID: " + std::string(s.message()));
  }
  common::LogInfo("agent SVID " + id.String() + " valid until " +
                  absl::FormatTime(chain.front().not_after()));
  return identity;
}

absl::StatusOr<std::optional<transport::TlsIdentity>> AgentSvid::Identity() const {
  absl::MutexLock lock(&mu_);
  if (chain_.empty()) return std::nullopt;
  TRELLIS_ASSIGN_OR_RETURN(common::SecretBytes key_pem, key_->ToPem());
  return transport::TlsIdentity{common::Certificate::ChainToPem(chain_),
                                std::string(key_pem.view())};
}

bool AgentSvid::present() const {
  absl::MutexLock lock(&mu_);
  return !chain_.empty();
}

bool AgentSvid::reattestable() const {
  absl::MutexLock lock(&mu_);
  return reattestable_;
}

void AgentSvid::set_reattestable(bool reattestable) {
  absl::MutexLock lock(&mu_);
  reattestable_ = reattestable;
}

std::optional<common::SpiffeId> AgentSvid::id() const {
  absl::MutexLock lock(&mu_);
  if (chain_.empty()) return std::nullopt;
  auto id = chain_.front().GetSpiffeId();
  if (!id.ok()) return std::nullopt;
  return *id;
}

bool AgentSvid::ValidAt(absl::Time now) const {
  absl::MutexLock lock(&mu_);
  return !chain_.empty() && now < chain_.front().not_after();
}

std::string AgentSvid::ChainDer() const {
  absl::MutexLock lock(&mu_);
  return common::Certificate::ChainToDer(chain_);
}

absl::StatusOr<std::pair<absl::Time, absl::Time>> AgentSvid::RenewAtAndExpiry() const {
  absl::MutexLock lock(&mu_);
  if (chain_.empty()) return absl::UnauthenticatedError("no agent SVID");
  return std::make_pair(renew_at_, chain_.front().not_after());
}

absl::StatusOr<std::pair<std::vector<common::Certificate>, common::PrivateKey>> AgentSvid::Renew(
    ServerConnection& conn) {
  TRELLIS_ASSIGN_OR_RETURN(common::PrivateKey key, common::PrivateKey::Generate());
  TRELLIS_ASSIGN_OR_RETURN(std::string csr, common::BuildCsr(key));
  v1::RenewAgentRequest req;
  req.set_csr(std::move(csr));
  v1::RenewAgentResponse resp;
  grpc::ClientContext ctx;
  SetDeadline(&ctx, kCallTimeout);
  grpc::Status s = conn.Stub()->RenewAgent(&ctx, req, &resp);
  if (!s.ok()) return transport::FromGrpcStatus(s);
  TRELLIS_ASSIGN_OR_RETURN(auto chain, transport::ChainFromProto(resp.svid()));
  return std::make_pair(std::move(chain), std::move(key));
}

}  // namespace trellis::agent
