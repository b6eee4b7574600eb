// BundleKeeper: writes to the stored bundle row, and its parsed, published form.
#include "server/bundle_keeper.h"

#include <algorithm>

#include "common/log.h"
#include "common/status.h"
#include "common/x509.h"

namespace trellis::server {

BundleKeeper::BundleKeeper(const CaOptions& options, datastore::DataStore* ds)
    : options_(options), ds_(ds) {}

absl::Status BundleKeeper::Append(const std::vector<datastore::X509Authority>& x509,
                                  const std::vector<datastore::JwtAuthority>& jwt) {
  datastore::Bundle add;
  add.trust_domain = options_.trust_domain.name();
  add.x509_authorities = x509;
  add.jwt_authorities = jwt;
  // Default hint: a tenth of the CA lifetime, between 5 s and 5 min.
  const absl::Duration hint =
      options_.refresh_hint > absl::ZeroDuration()
          ? options_.refresh_hint
          : std::clamp(options_.ca_ttl / 10, absl::Seconds(5), absl::Minutes(5));
  add.refresh_hint_seconds = absl::ToInt64Seconds(hint);
  auto stored = ds_->AppendBundle(add);
  if (!stored.ok()) return Annotate(stored.status(), "updating the trust bundle");
  return Reload(/*force_notify=*/false);
}

absl::Status BundleKeeper::Replace(const datastore::Bundle& bundle) {
  auto stored = ds_->SetBundle(bundle);
  if (!stored.ok()) return Annotate(stored.status(), "storing the upstream bundle");
  return Reload(/*force_notify=*/false);
}

absl::Status BundleKeeper::Reload(bool force_notify) {
  auto stored = ds_->GetBundle(options_.trust_domain.name());
  if (!stored.ok()) {
    if (absl::IsNotFound(stored.status()) && !force_notify) return absl::OkStatus();
    return Annotate(stored.status(), "reading the trust bundle");
  }
  Listener listener;
  std::shared_ptr<const common::Bundle> published;
  {
    absl::MutexLock lock(&mu_);
    // Sequence numbers only grow: a read that raced a newer write keeps the newer bundle.
    if (!force_notify && stored_ && stored_->sequence_number >= stored->sequence_number) {
      return absl::OkStatus();
    }
    auto bundle = std::make_shared<common::Bundle>(options_.trust_domain);
    for (const auto& a : stored->x509_authorities) {
      auto cert = common::Certificate::FromDer(a.ca_der);
      if (!cert.ok() || !bundle->AddX509Authority(*cert).ok()) {
        CaWarn("ignoring an unreadable X.509 authority in the stored bundle");
      }
    }
    for (const auto& a : stored->jwt_authorities) {
      auto key = common::PublicKey::FromSpkiDer(a.public_key_der);
      if (!key.ok() || !bundle->AddJwtAuthority(a.kid, *key).ok()) {
        CaWarn("ignoring an unreadable JWT authority " + a.kid + " in the stored bundle");
      }
    }
    bundle->set_sequence(static_cast<uint64_t>(stored->sequence_number));
    if (stored->refresh_hint_seconds > 0) {
      bundle->set_refresh_hint_seconds(stored->refresh_hint_seconds);
    }
    tainted_x509_.clear();
    for (const auto& a : stored->x509_authorities) {
      if (!a.tainted) continue;
      auto cert = common::Certificate::FromDer(a.ca_der);
      if (cert.ok()) tainted_x509_.insert(cert->SubjectKeyId());
    }
    stored_ = std::move(*stored);
    bundle_ = bundle;
    published = bundle;
    listener = listener_;
  }
  if (listener) listener(published);
  return absl::OkStatus();
}

absl::Status BundleKeeper::Prune(absl::Time cutoff) {
  auto pruned = ds_->PruneBundle(options_.trust_domain.name(), cutoff);
  if (!pruned.ok() && !absl::IsFailedPrecondition(pruned.status()) &&
      !absl::IsNotFound(pruned.status())) {
    return Annotate(pruned.status(), "pruning the trust bundle");
  }
  return absl::OkStatus();
}

absl::Status BundleKeeper::TaintX509(const std::string& ca_der) {
  TRELLIS_RETURN_IF_ERROR(ds_->TaintX509Authority(options_.trust_domain.name(), ca_der));
  return Reload(/*force_notify=*/false);
}

absl::Status BundleKeeper::RevokeX509(const std::string& ca_der) {
  TRELLIS_RETURN_IF_ERROR(ds_->RevokeX509Authority(options_.trust_domain.name(), ca_der));
  return Reload(/*force_notify=*/false);
}

absl::Status BundleKeeper::TaintJwt(const std::string& kid) {
  TRELLIS_RETURN_IF_ERROR(ds_->TaintJwtAuthority(options_.trust_domain.name(), kid));
  return Reload(/*force_notify=*/false);
}

absl::Status BundleKeeper::RevokeJwt(const std::string& kid) {
  TRELLIS_RETURN_IF_ERROR(ds_->RevokeJwtAuthority(options_.trust_domain.name(), kid));
  return Reload(/*force_notify=*/false);
}

std::shared_ptr<const common::Bundle> BundleKeeper::Bundle() const {
  absl::MutexLock lock(&mu_);
  return bundle_;
}

absl::StatusOr<datastore::Bundle> BundleKeeper::Stored() const {
  absl::MutexLock lock(&mu_);
  if (!stored_) return absl::UnavailableError("the trust bundle is not loaded yet");
  return *stored_;
}

std::optional<datastore::Bundle> BundleKeeper::StoredIfLoaded() const {
  absl::MutexLock lock(&mu_);
  return stored_;
}

std::set<std::string> BundleKeeper::TaintedX509KeyIds() const {
  absl::MutexLock lock(&mu_);
  return tainted_x509_;
}

bool BundleKeeper::JwtKidTainted(const std::string& kid) const {
  absl::MutexLock lock(&mu_);
  if (!stored_) return false;
  for (const auto& a : stored_->jwt_authorities) {
    if (a.kid == kid) return a.tainted;
  }
  return false;
}

void BundleKeeper::SetListener(Listener listener) {
  absl::MutexLock lock(&mu_);
  listener_ = std::move(listener);
}

}  // namespace trellis::server
