// CaManager: builds the CA parts in their one-way order and routes each call to the part that
// owns it, serialising changes with the step lock.
#include "server/ca_manager.h"

#include "server/authority_dependents.h"
#include "server/authority_steps.h"
#include "server/bundle_keeper.h"
#include "server/ca_journal.h"
#include "server/ca_rotator.h"
#include "server/ca_signer.h"
#include "server/upstream_link.h"
#include "common/status.h"

namespace trellis::server {

CaManager::CaManager(Options options, datastore::DataStore* ds, KeyManager* km,
                     const common::Clock& clock)
    : options_(std::move(options)), clock_(clock) {
  signer_ = std::make_unique<CaSigner>(options_.trust_domain, options_.jwt_issuer, clock);
  journal_ = std::make_unique<CaJournal>(ds, km, options_.server_instance_id, clock);
  bundle_ = std::make_unique<BundleKeeper>(options_, ds);
  dependents_ =
      std::make_unique<AuthorityDependents>(options_, ds, journal_.get(), bundle_.get(), clock);
  link_ = std::make_unique<UpstreamLink>(options_, bundle_.get(), journal_.get(),
                                         dependents_.get(), clock);
  rotator_ = std::make_unique<CaRotator>(options_, journal_.get(), bundle_.get(), link_.get(),
                                         signer_.get(), clock, &steps_mu_);
  steps_ = std::make_unique<AuthoritySteps>(options_, journal_.get(), bundle_.get(),
                                            dependents_.get(), link_.get(), rotator_.get());
}

// The rotation thread stops first; merges (which may call the link's listener) run under the
// step lock, so clearing it there means no merge still calls into the rotator. The parts then
// go in reverse order.
CaManager::~CaManager() {
  StopRotation();
  absl::MutexLock steps(&steps_mu_);
  link_->SetEventListener(nullptr);
}

absl::StatusOr<std::unique_ptr<CaManager>> CaManager::Create(Options options,
                                                             datastore::DataStore* ds,
                                                             KeyManager* km,
                                                             const common::Clock& clock) {
  if (ds == nullptr || km == nullptr) {
    return absl::InvalidArgumentError("CaManager needs a datastore and a key manager");
  }
  if (options.ca_ttl <= absl::ZeroDuration()) {
    return absl::InvalidArgumentError("ca_ttl must be positive");
  }
  if (options.default_x509_svid_ttl <= absl::ZeroDuration() ||
      options.default_jwt_svid_ttl <= absl::ZeroDuration()) {
    return absl::InvalidArgumentError("default SVID TTLs must be positive");
  }
  if (options.server_instance_id.empty()) options.server_instance_id = "default";
  return std::unique_ptr<CaManager>(new CaManager(std::move(options), ds, km, clock));
}

absl::Duration CaManager::PrepareThreshold(absl::Duration lifetime) {
  return CaRotator::PrepareThreshold(lifetime);
}

absl::Duration CaManager::ActivateThreshold(absl::Duration lifetime) {
  return CaRotator::ActivateThreshold(lifetime);
}

bool CaManager::SvidTtlTooLong(absl::Duration ca_ttl, absl::Duration svid_ttl) {
  return CaRotator::SvidTtlTooLong(ca_ttl, svid_ttl);
}

absl::Status CaManager::Start() {
  absl::MutexLock steps(&steps_mu_);
  return rotator_->Start();
}

absl::Status CaManager::Tick() {
  absl::MutexLock steps(&steps_mu_);
  return rotator_->Tick();
}

void CaManager::StartRotation() { rotator_->StartLoop(); }
void CaManager::StopRotation() { rotator_->StopLoop(); }

absl::StatusOr<std::vector<std::string>> CaManager::SignX509SvidFromCsr(
    std::string_view csr_der, const common::SpiffeId& id, absl::Duration ttl,
    const std::vector<std::string>& dns_names, absl::Time* not_after) {
  return signer_->SignX509SvidFromCsr(csr_der, id, ttl, dns_names, not_after);
}

absl::StatusOr<std::vector<std::string>> CaManager::SignX509SvidForKey(
    const common::PublicKey& key, const common::SpiffeId& id, absl::Duration ttl,
    const std::vector<std::string>& dns_names) {
  return signer_->SignX509SvidForKey(key, id, ttl, dns_names);
}

absl::StatusOr<std::string> CaManager::SignJwtSvid(const common::SpiffeId& id,
                                                   const std::vector<std::string>& audience,
                                                   absl::Duration ttl) {
  return signer_->SignJwtSvid(id, audience, ttl);
}

std::shared_ptr<const common::Bundle> CaManager::Bundle() const { return bundle_->Bundle(); }

absl::StatusOr<datastore::Bundle> CaManager::StoredBundle() const { return bundle_->Stored(); }

absl::Status CaManager::ReloadBundle() { return bundle_->Reload(/*force_notify=*/false); }

void CaManager::SetBundleListener(
    std::function<void(std::shared_ptr<const common::Bundle>)> listener) {
  bundle_->SetListener(std::move(listener));
}

void CaManager::SetX509ActivationListener(std::function<void()> listener) {
  rotator_->SetActivationListener(std::move(listener));
}

std::optional<common::Certificate> CaManager::ActiveX509Ca() const {
  std::optional<X509Slot> active = journal_->ActiveX509();
  if (!active) return std::nullopt;
  return active->ca();
}

std::vector<common::Certificate> CaManager::ActiveX509Chain() const {
  if (options_.upstream == nullptr) return {};
  std::optional<X509Slot> active = journal_->ActiveX509();
  if (!active) return {};
  return active->chain;
}

std::optional<common::Certificate> CaManager::PreparedX509Ca() const {
  std::optional<X509Slot> prepared = journal_->PreparedX509();
  if (!prepared) return std::nullopt;
  return prepared->ca();
}

std::string CaManager::ActiveJwtKid() const {
  std::optional<JwtSlot> active = journal_->ActiveJwt();
  return active ? active->kid : "";
}

std::string CaManager::PreparedJwtKid() const {
  std::optional<JwtSlot> prepared = journal_->PreparedJwt();
  return prepared ? prepared->kid : "";
}

uint64_t CaManager::X509Generation() const { return journal_->X509Generation(); }

absl::StatusOr<UpstreamAuthority::MintResult> CaManager::MintDownstreamCa(
    std::string_view csr_der, absl::Duration preferred_ttl, const common::SpiffeId& caller) {
  return dependents_->MintDownstreamCa(csr_der, preferred_ttl, caller);
}

absl::StatusOr<datastore::Bundle> CaManager::AcceptPublishedJwtAuthority(
    const datastore::JwtAuthority& authority) {
  if (authority.kid.empty()) return absl::InvalidArgumentError("JWT authority has no key id");
  if (auto key = common::PublicKey::FromSpkiDer(authority.public_key_der); !key.ok()) {
    return Annotate(key.status(), "JWT authority " + authority.kid + " public key");
  }
  if (authority.expires_at <= clock_.Now()) {
    return absl::InvalidArgumentError("JWT authority " + authority.kid + " has already expired");
  }
  datastore::JwtAuthority clean = authority;
  clean.tainted = false;  // tainting is the bundle owner's decision, not the publisher's
  absl::MutexLock steps(&steps_mu_);
  // The bundle keeps one key per kid: a second key under a known kid would be dropped
  // silently and tokens signed with it would never validate.
  if (std::optional<datastore::Bundle> stored = bundle_->StoredIfLoaded()) {
    for (const auto& a : stored->jwt_authorities) {
      if (a.kid == clean.kid && a.public_key_der != clean.public_key_der) {
        return absl::AlreadyExistsError("JWT authority " + clean.kid +
                                        " is already published with another key");
      }
    }
  }
  if (link_->OwnsBundle()) {
    TRELLIS_RETURN_IF_ERROR(link_->ForwardJwt(clean));
  } else {
    TRELLIS_RETURN_IF_ERROR(bundle_->Append({}, {clean}));
  }
  return bundle_->Stored();
}

absl::Status CaManager::ApplyUpstreamBundle(const datastore::Bundle& upstream) {
  absl::MutexLock steps(&steps_mu_);
  TRELLIS_RETURN_IF_ERROR(link_->Merge(upstream));
  // The link reports what the upstream tainted; the rotator replaces ours at once.
  return rotator_->HandleUpstreamEvents();
}

CaManager::AuthorityStates CaManager::X509Authorities() const {
  return steps_->X509Authorities();
}

CaManager::AuthorityStates CaManager::JwtAuthorities() const { return steps_->JwtAuthorities(); }

absl::StatusOr<CaManager::AuthorityInfo> CaManager::PrepareX509() {
  absl::MutexLock steps(&steps_mu_);
  return steps_->PrepareX509();
}

absl::StatusOr<CaManager::AuthorityInfo> CaManager::ActivateX509(const std::string& id) {
  absl::MutexLock steps(&steps_mu_);
  return steps_->ActivateX509(id);
}

absl::StatusOr<CaManager::AuthorityInfo> CaManager::TaintX509(const std::string& id) {
  absl::MutexLock steps(&steps_mu_);
  return steps_->TaintX509(id);
}

absl::StatusOr<CaManager::AuthorityInfo> CaManager::RevokeX509(const std::string& id) {
  absl::MutexLock steps(&steps_mu_);
  return steps_->RevokeX509(id);
}

absl::StatusOr<CaManager::AuthorityInfo> CaManager::PrepareJwt() {
  absl::MutexLock steps(&steps_mu_);
  return steps_->PrepareJwt();
}

absl::StatusOr<CaManager::AuthorityInfo> CaManager::ActivateJwt(const std::string& kid) {
  absl::MutexLock steps(&steps_mu_);
  return steps_->ActivateJwt(kid);
}

absl::StatusOr<CaManager::AuthorityInfo> CaManager::TaintJwt(const std::string& kid) {
  absl::MutexLock steps(&steps_mu_);
  return steps_->TaintJwt(kid);
}

absl::StatusOr<CaManager::AuthorityInfo> CaManager::RevokeJwt(const std::string& kid) {
  absl::MutexLock steps(&steps_mu_);
  return steps_->RevokeJwt(kid);
}

absl::Status CaManager::TaintUpstreamX509(const std::string& subject_key_id) {
  absl::MutexLock steps(&steps_mu_);
  return steps_->TaintUpstreamX509(subject_key_id);
}

absl::Status CaManager::RevokeUpstreamX509(const std::string& subject_key_id) {
  absl::MutexLock steps(&steps_mu_);
  return steps_->RevokeUpstreamX509(subject_key_id);
}

}  // namespace trellis::server
