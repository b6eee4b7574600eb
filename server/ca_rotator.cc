// CaRotator: when to prepare and activate, what a fresh authority is, and the loop that asks.
#include "server/ca_rotator.h"

#include <openssl/rand.h>

#include <algorithm>
#include <utility>
#include <vector>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "common/log.h"
#include "common/status.h"

namespace trellis::server {
namespace {

constexpr absl::Duration kMaxPrepareThreshold = absl::Hours(24 * 30);
constexpr absl::Duration kMaxActivateThreshold = absl::Hours(24 * 7);

absl::StatusOr<std::string> RandomBytes(size_t n) {
  std::string out(n, '\0');
  if (RAND_bytes(reinterpret_cast<unsigned char*>(out.data()), static_cast<int>(n)) != 1) {
    return absl::InternalError("random number generator failed");
  }
  return out;
}

absl::StatusOr<std::string> RandomAlnum(size_t n) {
  static constexpr char kAlphabet[] =
      "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
  std::string out;
  // Rejection sampling keeps the characters uniform (62 does not divide 256).
  while (out.size() < n) {
    TRELLIS_ASSIGN_OR_RETURN(std::string bytes, RandomBytes(2 * n));
    for (unsigned char b : bytes) {
      if (b < 248 && out.size() < n) out.push_back(kAlphabet[b % 62]);
    }
  }
  return out;
}

absl::Duration Lifetime(absl::Time nb, absl::Time na) { return na - nb; }


// Whether an authority valid over [nb, na) still has enough life left to be activated.
bool WorthActivating(absl::Time nb, absl::Time na, absl::Time now) {
  return na - now >= CaRotator::ActivateThreshold(Lifetime(nb, na));
}

// What the threshold rule asks for the active authority valid over [nb, na); a tainted one is
// replaced at once.
struct Due {
  bool prepare = false;
  bool activate = false;
};
Due DueFor(absl::Time nb, absl::Time na, bool tainted, absl::Time now) {
  if (tainted) return {true, true};
  const absl::Duration life = Lifetime(nb, na);
  const absl::Duration remaining = na - now;
  return {remaining < CaRotator::PrepareThreshold(life),
          remaining < CaRotator::ActivateThreshold(life)};
}

}  // namespace

absl::Duration CaRotator::PrepareThreshold(absl::Duration lifetime) {
  return std::min(lifetime / 2, kMaxPrepareThreshold);
}

absl::Duration CaRotator::ActivateThreshold(absl::Duration lifetime) {
  return std::min(lifetime / 6, kMaxActivateThreshold);
}

bool CaRotator::SvidTtlTooLong(absl::Duration ca_ttl, absl::Duration svid_ttl) {
  return svid_ttl > ActivateThreshold(ca_ttl);
}

CaRotator::CaRotator(const CaOptions& options, CaJournal* journal, BundleKeeper* bundle,
                     UpstreamLink* link, CaSigner* signer, const common::Clock& clock,
                     absl::Mutex* steps_mu)
    : options_(options),
      journal_(journal),
      bundle_(bundle),
      link_(link),
      signer_(signer),
      clock_(clock),
      steps_mu_(steps_mu) {
  link_->SetEventListener([this] {
    absl::MutexLock lock(&mu_);
    wake_ = true;
  });
}

CaRotator::~CaRotator() {
  StopLoop();
  link_->SetEventListener(nullptr);
}

void CaRotator::InstallActive() {
  if (std::optional<X509Slot> active = journal_->ActiveX509()) {
    std::vector<std::string> chain_der;
    // A self-signed CA is the root itself, and chains handed out stop below the root.
    if (link_->present()) {
      for (const auto& c : active->chain) chain_der.push_back(c.der());
    }
    signer_->SetX509(active->issuer, std::move(chain_der));
  }
  if (std::optional<JwtSlot> jwt = journal_->ActiveJwt()) {
    signer_->SetJwt(jwt->kid, jwt->key, jwt->not_after);
  }
}

absl::Status CaRotator::Start() {
  const struct {
    const char* key;
    absl::Duration ttl;
    const char* what;
    const char* rotated;
  } defaults[] = {{"default_x509_svid_ttl", options_.default_x509_svid_ttl, "SVIDs", "CA"},
                  {"default_jwt_svid_ttl", options_.default_jwt_svid_ttl, "JWT-SVIDs", "key"}};
  for (const auto& d : defaults) {
    if (!SvidTtlTooLong(options_.ca_ttl, d.ttl)) continue;
    CaWarn(absl::StrCat(d.key, " ", absl::FormatDuration(d.ttl), " exceeds min(ca_ttl/6, 7 days) = ",
                        absl::FormatDuration(ActivateThreshold(options_.ca_ttl)), ": ", d.what,
                        " will be cut short at ", d.rotated, " rotation"));
  }
  TRELLIS_RETURN_IF_ERROR(journal_->Resume());
  InstallActive();
  // Make sure every live authority is in the bundle (it may have been deleted by hand).
  std::vector<datastore::X509Authority> x509;
  std::vector<datastore::JwtAuthority> jwt;
  const AuthoritySlots slots = journal_->Slots();
  for (const auto* s : {&slots.x509_active, &slots.x509_prepared}) {
    if (!*s) continue;
    for (const auto& r : (*s)->roots) x509.push_back({r.der(), r.not_after(), false});
  }
  for (const auto* s : {&slots.jwt_active, &slots.jwt_prepared}) {
    if (*s) jwt.push_back({(*s)->kid, (*s)->key.spki_der(), (*s)->not_after, false});
  }
  if (!x509.empty() || !jwt.empty()) TRELLIS_RETURN_IF_ERROR(bundle_->Append(x509, jwt));
  if (absl::Status rotated = Rotate(); !rotated.ok()) {
    // A persisted, unexpired CA keeps this server signing while its upstream is unreachable.
    if (!journal_->ActiveX509()) return rotated;
    CaWarn("rotation at start-up failed, continuing with the persisted authorities: " +
         rotated.ToString());
  }
  // Publish whatever the store holds now, even when nothing changed during start-up.
  return bundle_->Reload(/*force_notify=*/true);
}

absl::Status CaRotator::Tick() {
  // Drops the authorities kept for this tier's sake once nothing here needs them.
  if (absl::Status m = link_->RemergeIfRetaining(); !m.ok()) {
    CaWarn("re-applying the upstream bundle failed: " + m.ToString());
  }
  // The check below reads every taint mark, so queued reports are covered by it.
  TakeAndLogTaintEvents();
  absl::Status rotate = Rotate();
  const absl::Time now = clock_.Now();
  {
    absl::MutexLock lock(&mu_);
    if (now < next_housekeeping_) return rotate;
    next_housekeeping_ = now + kHousekeepingPeriod;
  }
  // Retired authorities past the grace period leave the bundle, the journal and the keys.
  const absl::Time cutoff = now - options_.prune_grace;
  absl::Status prune = bundle_->Prune(cutoff);
  if (prune.ok()) prune = journal_->Prune(cutoff);
  // Picks up changes other servers sharing the datastore made to our bundle row.
  absl::Status reload = bundle_->Reload(/*force_notify=*/false);
  if (!rotate.ok()) return rotate;
  return prune.ok() ? reload : prune;
}

bool CaRotator::TakeAndLogTaintEvents() {
  std::vector<UpstreamLink::TaintEvent> events = link_->TakeTaintEvents();
  for (const auto& e : events) {
    common::LogInfo("Upstream marked an authority tainted",
                    {{"component", "ca_manager"},
                     {"kind", datastore::AuthorityKindName(e.kind)},
                     {"authority_id", e.id}});
  }
  return !events.empty();
}

absl::Status CaRotator::HandleUpstreamEvents() {
  if (!TakeAndLogTaintEvents()) return absl::OkStatus();
  // Replaces at once whatever of ours depends on a tainted authority (no-op otherwise).
  return Rotate();
}

absl::Status CaRotator::Rotate() {
  // Independent: an unreachable upstream must not hold back the JWT key.
  absl::Status x509 = RotateX509();
  absl::Status jwt = RotateJwt();
  return x509.ok() ? jwt : x509;
}

absl::StatusOr<X509Slot> CaRotator::NewX509Ca() {
  TRELLIS_ASSIGN_OR_RETURN(std::string raw, RandomBytes(10));
  const std::string id = absl::BytesToHexString(raw);
  TRELLIS_ASSIGN_OR_RETURN(common::PrivateKey key,
                           journal_->GenerateX509Key(id, options_.ca_key_type));
  if (link_->present()) {
    auto minted = link_->MintCa(key);
    if (!minted.ok()) {
      journal_->DiscardX509Key(id);
      return minted.status();
    }
    return X509Slot{id, std::move(minted->ca_chain), std::move(minted->roots), std::move(key),
                    nullptr};
  }
  auto root = common::CreateRootCa(key, options_.trust_domain, options_.ca_ttl, clock_,
                                   options_.ca_subject);
  if (!root.ok()) {
    journal_->DiscardX509Key(id);
    return root.status();
  }
  return X509Slot{id, {*root}, {*root}, std::move(key), nullptr};
}

absl::StatusOr<JwtSlot> CaRotator::NewJwtKey() {
  TRELLIS_ASSIGN_OR_RETURN(std::string kid, RandomAlnum(32));
  TRELLIS_ASSIGN_OR_RETURN(common::PrivateKey key,
                           journal_->GenerateJwtKey(kid, options_.jwt_key_type));
  const absl::Time now = clock_.Now();
  const absl::Time not_after = now + options_.ca_ttl;
  if (link_->OwnsBundle()) {
    // Published before it signs anything, so every branch can validate its tokens.
    if (absl::Status p = link_->PublishOwnJwt({kid, key.spki_der(), not_after, false}); !p.ok()) {
      journal_->DiscardJwtKey(kid);
      return p;
    }
  }
  return JwtSlot{kid, std::move(key), now, not_after};
}

absl::Status CaRotator::PrepareX509() {
  TRELLIS_ASSIGN_OR_RETURN(X509Slot fresh, NewX509Ca());
  const absl::Time now = clock_.Now();
  const common::Certificate& ca = fresh.ca();
  // A CA cut short by its upstream's own expiry is not worth activating while the current
  // one lives longer: it would need replacing at once (and could lapse unnoticed).
  std::optional<X509Slot> active = journal_->ActiveX509();
  if (link_->present() && active && ca.not_after() - now < ActivateThreshold(options_.ca_ttl) &&
      active->ca().not_after() >= ca.not_after()) {
    journal_->DiscardX509Key(fresh.id);
    absl::Status short_lived = absl::UnavailableError(
        "upstream authority returned a CA valid only until " + absl::FormatTime(ca.not_after()) +
        ", too short to activate; retrying later");
    link_->CallDone(short_lived);
    return short_lived;
  }
  std::vector<datastore::X509Authority> roots;
  for (const auto& r : fresh.roots) roots.push_back({r.der(), r.not_after(), false});
  TRELLIS_RETURN_IF_ERROR(journal_->PrepareX509(std::move(fresh)));
  // Published before it signs anything, so agents already trust it at activation.
  return bundle_->Append(roots, {});
}

absl::Status CaRotator::ActivateX509() {
  std::optional<X509Slot> prepared = journal_->PreparedX509();
  if (!prepared) return absl::FailedPreconditionError("no prepared X.509 authority");
  TRELLIS_ASSIGN_OR_RETURN(auto issuer,
                           common::X509SvidIssuer::Create(prepared->ca(), prepared->key, clock_));
  TRELLIS_RETURN_IF_ERROR(journal_->ActivateX509(std::move(issuer)));
  InstallActive();
  if (options_.authority_activated) options_.authority_activated(datastore::AuthorityKind::kX509);
  std::function<void()> listener;
  {
    absl::MutexLock lock(&mu_);
    listener = activation_listener_;
  }
  if (listener) listener();
  return absl::OkStatus();
}

absl::Status CaRotator::RotateX509() {
  const absl::Time now = clock_.Now();
  std::optional<X509Slot> active = journal_->ActiveX509();
  std::optional<X509Slot> prepared = journal_->PreparedX509();
  const std::set<std::string> tainted = bundle_->TaintedX509KeyIds();
  // A prepared CA that is already too short-lived to be worth activating, or that chains to
  // a tainted authority, is dropped.
  if (prepared && (!WorthActivating(prepared->ca().not_before(), prepared->ca().not_after(), now) ||
                   ChainTouches(prepared->chain, tainted))) {
    TRELLIS_RETURN_IF_ERROR(journal_->RetirePreparedX509());
    prepared.reset();
  }
  // Tainted above us: replace the CA at once (the upstream already signs with another).
  const Due due = active ? DueFor(active->ca().not_before(), active->ca().not_after(),
                                  ChainTouches(active->chain, tainted), now)
                         : Due{false, true};
  if ((due.prepare || due.activate) && !prepared) {
    // While a failed upstream call's backoff runs, wait quietly: the failure was reported.
    if (link_->present() && !link_->AttemptAllowed()) return absl::OkStatus();
    TRELLIS_RETURN_IF_ERROR(PrepareX509());
  }
  if (!due.activate) return absl::OkStatus();
  return ActivateX509();
}

absl::Status CaRotator::PrepareJwt() {
  TRELLIS_ASSIGN_OR_RETURN(JwtSlot fresh, NewJwtKey());
  const datastore::JwtAuthority published{fresh.kid, fresh.key.spki_der(), fresh.not_after,
                                          false};
  TRELLIS_RETURN_IF_ERROR(journal_->PrepareJwt(std::move(fresh)));
  return bundle_->Append({}, {published});
}

absl::Status CaRotator::ActivateJwt() {
  TRELLIS_RETURN_IF_ERROR(journal_->ActivateJwt());
  InstallActive();
  if (options_.authority_activated) options_.authority_activated(datastore::AuthorityKind::kJwt);
  return absl::OkStatus();
}

absl::Status CaRotator::RotateJwt() {
  const absl::Time now = clock_.Now();
  std::optional<JwtSlot> active = journal_->ActiveJwt();
  std::optional<JwtSlot> prepared = journal_->PreparedJwt();
  if (prepared && (!WorthActivating(prepared->not_before, prepared->not_after, now) ||
                   bundle_->JwtKidTainted(prepared->kid))) {
    TRELLIS_RETURN_IF_ERROR(journal_->RetirePreparedJwt());
    prepared.reset();
  }
  // Tainted (by an operator at the root tier): replace it at once.
  const Due due = active ? DueFor(active->not_before, active->not_after,
                                  bundle_->JwtKidTainted(active->kid), now)
                         : Due{false, true};
  if ((due.prepare || due.activate) && !prepared) {
    if (link_->OwnsBundle() && !link_->AttemptAllowed()) return absl::OkStatus();
    TRELLIS_RETURN_IF_ERROR(PrepareJwt());
  }
  if (!due.activate) return absl::OkStatus();
  return ActivateJwt();
}

void CaRotator::SetActivationListener(std::function<void()> listener) {
  absl::MutexLock lock(&mu_);
  activation_listener_ = std::move(listener);
}

void CaRotator::StartLoop() {
  if (loop_.joinable()) return;
  {
    absl::MutexLock lock(&mu_);
    stopping_ = false;
  }
  loop_ = std::thread([this] { Loop(); });
}

void CaRotator::StopLoop() {
  if (!loop_.joinable()) return;
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
    wake_ = true;
  }
  loop_.join();
}

void CaRotator::Loop() {
  // The cadence is real time (the clock stands for certificate time and may be a test's).
  absl::Time next_check = absl::Now() + kCheckPeriod;
  while (true) {
    bool woken = false;
    {
      absl::MutexLock lock(&mu_);
      mu_.AwaitWithTimeout(absl::Condition(&wake_), kCheckPeriod);
      if (stopping_) return;
      woken = std::exchange(wake_, false);
    }
    absl::MutexLock steps(steps_mu_);
    if (woken) {
      if (absl::Status e = HandleUpstreamEvents(); !e.ok()) {
        common::LogWarn("Replacing an authority the upstream tainted failed",
                        {{"error", std::string(e.message())}});
      }
    }
    if (absl::Now() < next_check) continue;
    if (absl::Status t = Tick(); !t.ok()) {
      common::LogWarn("CA rotation check failed", {{"error", std::string(t.message())}});
    }
    next_check = absl::Now() + kCheckPeriod;
  }
}

}  // namespace trellis::server
