// AuthoritySteps: prepare, activate, taint and revoke, with the refusals that keep them safe.
#include "server/authority_steps.h"

#include <optional>
#include <set>
#include <utility>

#include "absl/strings/escaping.h"
#include "common/status.h"
#include "common/x509.h"

namespace trellis::server {
namespace {

AuthorityInfo X509Info(const std::vector<common::Certificate>& chain, bool has_upstream) {
  AuthorityInfo info;
  info.id = absl::BytesToHexString(chain.front().SubjectKeyId());
  info.expires_at = chain.front().not_after();
  if (has_upstream) info.upstream_subject_key_id = absl::BytesToHexString(chain.front().AuthorityKeyId());
  return info;
}

// Refusals both kinds share; `noun` is "X.509 authority" or "JWT authority".
absl::Status CheckNothingPrepared(const AuthorityStates& s, const std::string& noun) {
  if (!s.prepared) return absl::OkStatus();
  return absl::FailedPreconditionError(noun + " " + s.prepared->id +
                                       " is already prepared: activate it first");
}

absl::Status CheckActivatable(const AuthorityStates& s, const std::string& id,
                              const std::string& noun) {
  if (!s.prepared) {
    return absl::FailedPreconditionError("no prepared " + noun + ": prepare one first");
  }
  if (s.prepared->id == id) return absl::OkStatus();
  if (s.active && s.active->id == id) {
    return absl::FailedPreconditionError(noun + " " + id + " is already active");
  }
  return absl::FailedPreconditionError("only the prepared " + noun + " (" + s.prepared->id +
                                       ") can be activated, not " + id);
}

absl::Status CheckTaintable(const AuthorityStates& s, const std::string& id,
                            const std::string& noun) {
  if (s.active && s.active->id == id) {
    return absl::FailedPreconditionError(noun + " " + id +
                                         " is active: prepare and activate another before "
                                         "tainting it");
  }
  if (s.prepared && s.prepared->id == id) {
    return absl::FailedPreconditionError(noun + " " + id +
                                         " is prepared and has signed nothing: there is "
                                         "nothing to taint");
  }
  return absl::OkStatus();
}

absl::Status CheckRevocable(const AuthorityStates& s, const std::string& id,
                            const std::string& noun) {
  if ((s.active && s.active->id == id) || (s.prepared && s.prepared->id == id)) {
    return absl::FailedPreconditionError(noun + " " + id +
                                         " is in use by this server (active or prepared): it "
                                         "cannot be revoked");
  }
  return absl::OkStatus();
}

std::optional<datastore::JwtAuthority> FindJwt(const std::optional<datastore::Bundle>& b,
                                               const std::string& kid) {
  if (!b) return std::nullopt;
  for (const auto& a : b->jwt_authorities) {
    if (a.kid == kid) return a;
  }
  return std::nullopt;
}

absl::StatusOr<common::Certificate> FindX509ByKeyId(const std::optional<datastore::Bundle>& b,
                                                    const std::string& hex_key_id,
                                                    bool* tainted) {
  if (b) {
    for (const auto& a : b->x509_authorities) {
      auto cert = common::Certificate::FromDer(a.ca_der);
      if (cert.ok() && absl::BytesToHexString(cert->SubjectKeyId()) == hex_key_id) {
        *tainted = a.tainted;
        return *std::move(cert);
      }
    }
  }
  return absl::NotFoundError("no X.509 authority with Subject Key ID " + hex_key_id +
                             " in the trust bundle");
}

// FAILED_PRECONDITION while our active or prepared CA chains to the authority.
absl::Status CheckOwnChains(const AuthoritySlots& slots, const std::string& raw_key_id,
                            const std::string& subject_key_id) {
  const std::set<std::string> ids = {raw_key_id};
  for (const auto* s : {&slots.x509_active, &slots.x509_prepared}) {
    if (*s && ChainTouches((*s)->chain, ids)) {
      return absl::FailedPreconditionError(
          "this server's " + std::string(s == &slots.x509_active ? "active" : "prepared") +
          " X.509 authority chains to " + subject_key_id +
          ": prepare and activate a CA from the new upstream authority first");
    }
  }
  return absl::OkStatus();
}

}  // namespace

AuthoritySteps::AuthoritySteps(const CaOptions& options, CaJournal* journal,
                               BundleKeeper* bundle, const AuthorityDependents* dependents,
                               const UpstreamLink* link, CaRotator* rotator)
    : options_(options),
      journal_(journal),
      bundle_(bundle),
      dependents_(dependents),
      link_(link),
      rotator_(rotator) {}

AuthorityStates AuthoritySteps::X509Authorities() const {
  AuthorityStates out;
  const bool up = link_->present();
  const AuthoritySlots slots = journal_->Slots();
  if (slots.x509_active) out.active = X509Info(slots.x509_active->chain, up);
  if (slots.x509_prepared) out.prepared = X509Info(slots.x509_prepared->chain, up);
  if (slots.x509_old) out.old = X509Info(slots.x509_old->chain, up);
  return out;
}

AuthorityStates AuthoritySteps::JwtAuthorities() const {
  AuthorityStates out;
  const AuthoritySlots slots = journal_->Slots();
  for (auto [slot, dst] : {std::pair{&slots.jwt_active, &out.active},
                           std::pair{&slots.jwt_prepared, &out.prepared},
                           std::pair{&slots.jwt_old, &out.old}}) {
    if (*slot) *dst = AuthorityInfo{(*slot)->kid, (*slot)->not_after, ""};
  }
  return out;
}

absl::StatusOr<X509Slot> AuthoritySteps::OldX509(const std::string& id) const {
  std::optional<X509Slot> old = journal_->Slots().x509_old;
  if (!old || absl::BytesToHexString(old->ca().SubjectKeyId()) != id) {
    return absl::NotFoundError("no old X.509 authority " + id);
  }
  return *std::move(old);
}

absl::StatusOr<AuthorityInfo> AuthoritySteps::PrepareX509() {
  TRELLIS_RETURN_IF_ERROR(CheckNothingPrepared(X509Authorities(), "X.509 authority"));
  TRELLIS_RETURN_IF_ERROR(rotator_->PrepareX509());
  return *X509Authorities().prepared;
}

absl::StatusOr<AuthorityInfo> AuthoritySteps::ActivateX509(const std::string& id) {
  TRELLIS_RETURN_IF_ERROR(CheckActivatable(X509Authorities(), id, "X.509 authority"));
  TRELLIS_RETURN_IF_ERROR(rotator_->ActivateX509());
  return *X509Authorities().active;
}

absl::StatusOr<AuthorityInfo> AuthoritySteps::TaintX509(const std::string& id) {
  if (link_->present()) {
    return absl::FailedPreconditionError(
        "this server's X.509 authority is an intermediate minted by its UpstreamAuthority and "
        "is not in the trust bundle: replace it with prepare and activate, or taint the root "
        "it chains to (localauthority on the tier holding it, or upstreamauthority taint)");
  }
  AuthorityStates states = X509Authorities();
  TRELLIS_RETURN_IF_ERROR(CheckTaintable(states, id, "X.509 authority"));
  TRELLIS_ASSIGN_OR_RETURN(X509Slot old, OldX509(id));
  TRELLIS_RETURN_IF_ERROR(bundle_->TaintX509(old.ca().der()));
  return *states.old;
}

absl::StatusOr<AuthorityInfo> AuthoritySteps::RevokeX509(const std::string& id) {
  if (link_->present()) {
    return absl::FailedPreconditionError(
        "this server's X.509 authority is an intermediate minted by its UpstreamAuthority and "
        "is not in the trust bundle: there is nothing to revoke here (upstreamauthority revoke "
        "removes an upstream root)");
  }
  AuthorityStates states = X509Authorities();
  TRELLIS_RETURN_IF_ERROR(CheckRevocable(states, id, "X.509 authority"));
  TRELLIS_ASSIGN_OR_RETURN(X509Slot old, OldX509(id));
  TRELLIS_RETURN_IF_ERROR(
      dependents_->StillNeeded(old.ca().SubjectKeyId(), "X.509 authority " + id));
  TRELLIS_RETURN_IF_ERROR(bundle_->RevokeX509(old.ca().der()));
  journal_->ForgetOldX509();
  return *states.old;
}

absl::StatusOr<AuthorityInfo> AuthoritySteps::PrepareJwt() {
  TRELLIS_RETURN_IF_ERROR(CheckNothingPrepared(JwtAuthorities(), "JWT authority"));
  TRELLIS_RETURN_IF_ERROR(rotator_->PrepareJwt());
  return *JwtAuthorities().prepared;
}

absl::StatusOr<AuthorityInfo> AuthoritySteps::ActivateJwt(const std::string& kid) {
  TRELLIS_RETURN_IF_ERROR(CheckActivatable(JwtAuthorities(), kid, "JWT authority"));
  TRELLIS_RETURN_IF_ERROR(rotator_->ActivateJwt());
  return *JwtAuthorities().active;
}

absl::StatusOr<AuthorityInfo> AuthoritySteps::TaintJwt(const std::string& kid) {
  if (link_->OwnsBundle()) {
    return absl::FailedPreconditionError(
        "the trust domain's bundle is held by the root tier: taint JWT authority " + kid +
        " there (trellis-server localauthority jwt taint on the root tier); this server "
        "replaces its own key at once when it sees it tainted");
  }
  TRELLIS_RETURN_IF_ERROR(CheckTaintable(JwtAuthorities(), kid, "JWT authority"));
  std::optional<datastore::JwtAuthority> found = FindJwt(bundle_->StoredIfLoaded(), kid);
  if (!found) return absl::NotFoundError("no JWT authority " + kid + " in the trust bundle");
  TRELLIS_RETURN_IF_ERROR(bundle_->TaintJwt(kid));
  return AuthorityInfo{kid, found->expires_at, ""};
}

absl::StatusOr<AuthorityInfo> AuthoritySteps::RevokeJwt(const std::string& kid) {
  if (link_->OwnsBundle()) {
    return absl::FailedPreconditionError(
        "the trust domain's bundle is held by the root tier: revoke JWT authority " + kid +
        " there (trellis-server localauthority jwt revoke on the root tier)");
  }
  TRELLIS_RETURN_IF_ERROR(CheckRevocable(JwtAuthorities(), kid, "JWT authority"));
  std::optional<datastore::JwtAuthority> found = FindJwt(bundle_->StoredIfLoaded(), kid);
  if (!found) return absl::NotFoundError("no JWT authority " + kid + " in the trust bundle");
  if (!found->tainted) {
    return absl::FailedPreconditionError("JWT authority " + kid +
                                         " is not tainted: taint it first, and revoke it once "
                                         "every JWT-SVID it signed has been replaced");
  }
  TRELLIS_RETURN_IF_ERROR(bundle_->RevokeJwt(kid));
  journal_->ForgetOldJwt(kid);
  return AuthorityInfo{kid, found->expires_at, ""};
}

absl::Status AuthoritySteps::TaintUpstreamX509(const std::string& subject_key_id) {
  if (!link_->present()) {
    return absl::FailedPreconditionError(
        "this server has no UpstreamAuthority: its roots are local authorities (use "
        "localauthority x509 taint)");
  }
  bool tainted = false;
  TRELLIS_ASSIGN_OR_RETURN(common::Certificate cert,
                           FindX509ByKeyId(bundle_->StoredIfLoaded(), subject_key_id, &tainted));
  TRELLIS_RETURN_IF_ERROR(CheckOwnChains(journal_->Slots(), cert.SubjectKeyId(), subject_key_id));
  return bundle_->TaintX509(cert.der());
}

absl::Status AuthoritySteps::RevokeUpstreamX509(const std::string& subject_key_id) {
  if (!link_->present()) {
    return absl::FailedPreconditionError(
        "this server has no UpstreamAuthority: its roots are local authorities (use "
        "localauthority x509 revoke)");
  }
  bool tainted = false;
  TRELLIS_ASSIGN_OR_RETURN(common::Certificate cert,
                           FindX509ByKeyId(bundle_->StoredIfLoaded(), subject_key_id, &tainted));
  if (!tainted) {
    return absl::FailedPreconditionError("upstream X.509 authority " + subject_key_id +
                                         " is not tainted: taint it first");
  }
  TRELLIS_RETURN_IF_ERROR(dependents_->StillNeeded(
      cert.SubjectKeyId(), "upstream X.509 authority " + subject_key_id));
  if (std::optional<datastore::Bundle> upstream = link_->LastUpstreamBundle();
      link_->OwnsBundle() && upstream) {
    for (const auto& a : upstream->x509_authorities) {
      if (a.ca_der == cert.der()) {
        return absl::FailedPreconditionError(
            "the upstream tier still trusts " + subject_key_id +
            ": revoke it there, and it leaves this tier's bundle on the bundle stream");
      }
    }
  }
  return bundle_->RevokeX509(cert.der());
}

}  // namespace trellis::server
