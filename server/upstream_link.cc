// UpstreamLink: checked minting, JWT publication, the bundle merge and its taint events.
#include "server/upstream_link.h"

#include <algorithm>
#include <utility>

#include "absl/strings/escaping.h"
#include "common/log.h"
#include "common/status.h"
#include "common/x509.h"

namespace trellis::server {
namespace {

constexpr absl::Duration kBackoffMin = absl::Seconds(1);
constexpr absl::Duration kBackoffMax = absl::Seconds(30);

// Tainted authorities of a bundle: X.509 by SKI (hex), JWT by key id.
std::set<std::pair<datastore::AuthorityKind, std::string>> Tainted(const datastore::Bundle& b) {
  std::set<std::pair<datastore::AuthorityKind, std::string>> out;
  for (const auto& a : b.x509_authorities) {
    if (!a.tainted) continue;
    auto cert = common::Certificate::FromDer(a.ca_der);
    if (cert.ok()) out.insert({datastore::AuthorityKind::kX509, absl::BytesToHexString(cert->SubjectKeyId())});
  }
  for (const auto& a : b.jwt_authorities) {
    if (a.tainted) out.insert({datastore::AuthorityKind::kJwt, a.kid});
  }
  return out;
}

}  // namespace

UpstreamLink::UpstreamLink(const CaOptions& options, BundleKeeper* bundle,
                           const CaJournal* journal, const AuthorityDependents* dependents,
                           const common::Clock& clock)
    : options_(options),
      bundle_(bundle),
      journal_(journal),
      dependents_(dependents),
      clock_(clock) {}

bool UpstreamLink::AttemptAllowed() const {
  absl::MutexLock lock(&mu_);
  return clock_.Now() >= next_attempt_;
}

void UpstreamLink::CallDone(const absl::Status& result) {
  absl::MutexLock lock(&mu_);
  if (result.ok()) {
    failures_ = 0;
    next_attempt_ = absl::InfinitePast();
    return;
  }
  // Exponential backoff so an unreachable upstream is not hammered by every tick.
  absl::Duration wait = kBackoffMin;
  for (int i = 0; i < failures_ && wait < kBackoffMax; ++i) wait *= 2;
  failures_++;
  next_attempt_ = clock_.Now() + std::min(wait, kBackoffMax);
}

absl::StatusOr<UpstreamAuthority::MintResult> UpstreamLink::MintCa(const common::PrivateKey& key) {
  auto minted = options_.upstream->MintX509Ca(key, options_.trust_domain, options_.ca_ttl);
  CallDone(minted.status());
  if (!minted.ok()) return Annotate(minted.status(), "minting a CA from the upstream authority");
  // Checked before use: an upstream that answers with someone else's CA, a chain that does
  // not lead to the roots, or a chain through a tainted authority is refused.
  absl::Status usable;
  if (minted->ca_chain.empty() || minted->roots.empty() ||
      !(minted->ca_chain.front().public_key() == key.public_key())) {
    usable = absl::InternalError("upstream authority returned a CA for another key");
  } else if (absl::Status v = common::VerifyCaChain(minted->ca_chain, minted->roots,
                                                    options_.trust_domain, clock_.Now());
             !v.ok()) {
    usable = Annotate(v, "upstream authority returned a CA chain that does not verify");
  } else if (ChainTouches(minted->ca_chain, bundle_->TaintedX509KeyIds())) {
    usable = absl::UnavailableError(
        "upstream authority still signs with a tainted authority; retrying later");
  }
  if (!usable.ok()) {
    CallDone(usable);
    return usable;
  }
  return minted;
}

absl::Status UpstreamLink::PublishOwnJwt(const datastore::JwtAuthority& authority) {
  auto published = options_.upstream->PublishJwtAuthority(authority);
  CallDone(published.status());
  if (!published.ok()) {
    return Annotate(published.status(), "publishing a JWT key to the upstream authority");
  }
  if (absl::Status m = Merge(*published); !m.ok()) {
    CaWarn("applying the upstream bundle failed: " + m.ToString());
  }
  return absl::OkStatus();
}

absl::Status UpstreamLink::ForwardJwt(const datastore::JwtAuthority& authority) {
  // The root holds the trust domain's bundle; it reaches us back on the stream, but the
  // answer to the publish already carries it.
  TRELLIS_ASSIGN_OR_RETURN(datastore::Bundle up, options_.upstream->PublishJwtAuthority(authority));
  return Merge(up);
}

absl::Status UpstreamLink::Merge(const datastore::Bundle& upstream) {
  if (upstream.trust_domain != options_.trust_domain.name()) {
    return absl::InvalidArgumentError("upstream bundle is for trust domain " +
                                      upstream.trust_domain + ", not " +
                                      options_.trust_domain.name());
  }
  if (upstream.x509_authorities.empty()) {
    return absl::InvalidArgumentError("upstream bundle has no X.509 authority");
  }
  const std::optional<datastore::Bundle> local = bundle_->StoredIfLoaded();
  std::vector<datastore::JwtAuthority> own_jwt;
  for (const auto& s : {journal_->ActiveJwt(), journal_->PreparedJwt()}) {
    if (s) own_jwt.push_back({s->kid, s->key.spki_der(), s->not_after, false});
  }
  {
    absl::MutexLock lock(&mu_);
    upstream_bundle_ = upstream;
  }
  datastore::Bundle merged;
  merged.trust_domain = upstream.trust_domain;
  merged.refresh_hint_seconds = local && local->refresh_hint_seconds > 0
                                    ? local->refresh_hint_seconds
                                    : upstream.refresh_hint_seconds;
  // Local taint marks stay (an operator here may taint an upstream authority first).
  auto locally_tainted_x509 = [&](const std::string& der) {
    if (!local) return false;
    for (const auto& a : local->x509_authorities) {
      if (a.ca_der == der) return a.tainted;
    }
    return false;
  };
  auto locally_tainted_jwt = [&](const std::string& kid) {
    if (!local) return false;
    for (const auto& a : local->jwt_authorities) {
      if (a.kid == kid) return a.tainted;
    }
    return false;
  };
  for (auto a : upstream.x509_authorities) {
    a.tainted = a.tainted || locally_tainted_x509(a.ca_der);
    merged.x509_authorities.push_back(std::move(a));
  }
  // An authority the upstream dropped (revoked or pruned) stays here, tainted, while this tier
  // still depends on it: our agents' SVIDs or a downstream's CA may chain to it, and removing
  // it would lock them out. It leaves at a later merge (every tick) once nothing does.
  std::set<std::string> retained;
  if (local) {
    for (const auto& a : local->x509_authorities) {
      bool upstream_has = std::any_of(
          upstream.x509_authorities.begin(), upstream.x509_authorities.end(),
          [&](const auto& u) { return u.ca_der == a.ca_der; });
      if (upstream_has) continue;
      auto cert = common::Certificate::FromDer(a.ca_der);
      if (!cert.ok()) continue;
      const std::string name = "X.509 authority " + absl::BytesToHexString(cert->SubjectKeyId());
      if (cert->not_after() > clock_.Now() &&
          !dependents_->StillNeeded(cert->SubjectKeyId(), name).ok()) {
        merged.x509_authorities.push_back({a.ca_der, a.expires_at, true});
        retained.insert(absl::BytesToHexString(cert->SubjectKeyId()));
      }
    }
  }
  {
    absl::MutexLock lock(&mu_);
    for (const auto& id : retained) {
      if (!retained_.count(id)) {
        CaWarn("keeping X.509 authority " + id +
             " that the upstream removed until this tier no longer depends on it");
      }
    }
    retained_ = std::move(retained);
  }
  for (auto a : upstream.jwt_authorities) {
    a.tainted = a.tainted || locally_tainted_jwt(a.kid);
    merged.jwt_authorities.push_back(std::move(a));
  }
  for (const auto& own : own_jwt) {
    bool present = std::any_of(merged.jwt_authorities.begin(), merged.jwt_authorities.end(),
                               [&](const auto& a) { return a.kid == own.kid; });
    if (!present) merged.jwt_authorities.push_back(own);
  }
  if (local && local->x509_authorities == merged.x509_authorities &&
      local->jwt_authorities == merged.jwt_authorities) {
    return absl::OkStatus();
  }
  TRELLIS_RETURN_IF_ERROR(bundle_->Replace(merged));
  std::function<void()> listener;
  {
    absl::MutexLock lock(&mu_);
    // A changed bundle may unblock a rotation the backoff is holding back (e.g. after a taint).
    next_attempt_ = absl::InfinitePast();
    const auto before = local ? Tainted(*local) : decltype(Tainted(merged)){};
    for (const auto& [kind, id] : Tainted(merged)) {
      if (!before.count({kind, id})) events_.push_back({kind, id});
    }
    if (!events_.empty()) listener = event_listener_;
  }
  if (listener) listener();
  return absl::OkStatus();
}

absl::Status UpstreamLink::RemergeIfRetaining() {
  std::optional<datastore::Bundle> upstream;
  {
    absl::MutexLock lock(&mu_);
    if (retained_.empty()) return absl::OkStatus();
    upstream = upstream_bundle_;
  }
  if (!upstream) return absl::OkStatus();
  return Merge(*upstream);
}

std::optional<datastore::Bundle> UpstreamLink::LastUpstreamBundle() const {
  absl::MutexLock lock(&mu_);
  return upstream_bundle_;
}

std::vector<UpstreamLink::TaintEvent> UpstreamLink::TakeTaintEvents() {
  absl::MutexLock lock(&mu_);
  return std::exchange(events_, {});
}

void UpstreamLink::SetEventListener(std::function<void()> listener) {
  absl::MutexLock lock(&mu_);
  event_listener_ = std::move(listener);
}

}  // namespace trellis::server
