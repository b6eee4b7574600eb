// CaManager: X.509 CA and JWT key lifecycle (prepare, activate, retire, prune), the CA
// journal that lets a restart resume, and the trust bundle kept in the datastore.
#include "server/ca_manager.h"

#include <openssl/rand.h>
#include <openssl/x509.h>

#include <algorithm>
#include <nlohmann/json.hpp>
#include <map>
#include <set>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "common/csr.h"
#include "common/file_util.h"
#include "common/jwt.h"
#include "common/log.h"
#include "common/status.h"

namespace trellis::server {
namespace {

using datastore::AuthorityKind;
using datastore::AuthorityStatus;
using datastore::CaJournalEntry;

constexpr absl::Duration kMaxPrepareThreshold = absl::Hours(24 * 30);
constexpr absl::Duration kMaxActivateThreshold = absl::Hours(24 * 7);
constexpr absl::Duration kHousekeepingPeriod = absl::Seconds(10);

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

std::string X509KeyId(const std::string& id) { return "x509-CA-" + id; }
std::string JwtKeyId(const std::string& kid) { return "JWT-Signer-" + kid; }

std::string StatusName(AuthorityStatus s) { return datastore::AuthorityStatusName(s); }

}  // namespace

// ---- CaManager ----

// What the signing hot path needs, swapped as one pointer on activation.
struct CaManager::Signer {
  std::shared_ptr<const common::X509SvidIssuer> issuer;
  std::vector<std::string> chain_der;  // appended after the leaf: CA and intermediates
};

struct CaManager::State {
  struct X509Slot {
    std::string id;
    std::vector<common::Certificate> chain;  // CA first, then intermediates (no root)
    std::vector<common::Certificate> roots;  // bundle anchors for this CA
    common::PrivateKey key;
    std::shared_ptr<const common::X509SvidIssuer> issuer;
    // When it stopped signing (old authorities); SVIDs it signed were issued before.
    absl::Time retired_at = absl::InfiniteFuture();
    const common::Certificate& ca() const { return chain.front(); }
  };
  struct JwtSlot {
    std::string kid;
    common::PrivateKey key;
    absl::Time not_before;
    absl::Time not_after;
  };

  std::mutex ops_mu;  // serialises Start/Tick (rotation and bundle writes)
  mutable std::mutex mu;
  std::optional<X509Slot> x509_active, x509_prepared;                          // guarded by mu
  std::optional<JwtSlot> jwt_active, jwt_prepared;                             // guarded by mu
  std::shared_ptr<const common::Bundle> bundle;                                // guarded by mu
  std::optional<datastore::Bundle> stored_bundle;                              // guarded by mu
  uint64_t x509_generation = 0;                                                // guarded by mu
  std::shared_ptr<const Signer> signer;                                        // guarded by mu
  std::function<void(std::shared_ptr<const common::Bundle>)> bundle_listener;  // guarded by mu
  std::function<void()> activation_listener;                                   // guarded by mu
  // The authority retired by the last activation, until pruned (operators taint/revoke it).
  std::optional<X509Slot> x509_old;  // guarded by mu
  std::optional<JwtSlot> jwt_old;    // guarded by mu
  // Next pruning and bundle re-read (guarded by ops_mu).
  absl::Time next_housekeeping = absl::InfinitePast();
  // Backoff between failed upstream calls (guarded by ops_mu).
  absl::Time next_upstream_attempt = absl::InfinitePast();
  int upstream_failures = 0;
  // Latest CA minted for each downstream server: the key ids its chain depends on.
  struct DownstreamMint {
    std::set<std::string> key_ids;
    absl::Time not_after;
  };
  std::map<std::string, DownstreamMint> downstream_mints;  // guarded by mu
  // The upstream's bundle as last received (nested servers).
  std::optional<datastore::Bundle> upstream_bundle;  // guarded by mu
  // Authorities (SKI hex) the upstream dropped that this tier still needs (guarded by ops_mu).
  std::set<std::string> retained_upstream;
};

CaManager::CaManager(Options options, datastore::DataStore* ds, KeyManager* km,
                     const common::Clock& clock)
    : options_(std::move(options)),
      ds_(ds),
      km_(km),
      clock_(clock),
      state_(std::make_unique<State>()) {}

CaManager::~CaManager() = default;

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
  return std::min(lifetime / 2, kMaxPrepareThreshold);
}

absl::Duration CaManager::ActivateThreshold(absl::Duration lifetime) {
  return std::min(lifetime / 6, kMaxActivateThreshold);
}

bool CaManager::SvidTtlTooLong(absl::Duration ca_ttl, absl::Duration svid_ttl) {
  return svid_ttl > ActivateThreshold(ca_ttl);
}

namespace {

// Journal payloads: the chain and roots as PEM lists (X.509), the validity window (JWT).
std::string X509JournalData(const std::vector<common::Certificate>& chain,
                            const std::vector<common::Certificate>& roots,
                            absl::Time retired_at = absl::InfiniteFuture()) {
  nlohmann::json j;
  if (retired_at != absl::InfiniteFuture()) j["retired_at"] = absl::ToUnixSeconds(retired_at);
  j["chain"] = nlohmann::json::array();
  for (const auto& c : chain) j["chain"].push_back(c.ToPem());
  j["roots"] = nlohmann::json::array();
  for (const auto& c : roots) j["roots"].push_back(c.ToPem());
  return j.dump();
}

absl::Status ParseX509JournalData(const std::string& data, std::vector<common::Certificate>* chain,
                                  std::vector<common::Certificate>* roots,
                                  absl::Time* retired_at = nullptr) {
  try {
    nlohmann::json j = nlohmann::json::parse(data);
    // Left as the caller set it when absent (records written before it was kept).
    if (retired_at != nullptr && j.contains("retired_at")) {
      *retired_at = absl::FromUnixSeconds(j.at("retired_at").get<int64_t>());
    }
    for (const auto& p : j.at("chain")) {
      TRELLIS_ASSIGN_OR_RETURN(auto c, common::Certificate::FromPem(p.get<std::string>()));
      chain->push_back(std::move(c));
    }
    for (const auto& p : j.at("roots")) {
      TRELLIS_ASSIGN_OR_RETURN(auto c, common::Certificate::FromPem(p.get<std::string>()));
      roots->push_back(std::move(c));
    }
  } catch (const nlohmann::json::exception& e) {
    return absl::DataLossError(std::string("CA journal record is not valid: ") + e.what());
  }
  if (chain->empty()) return absl::DataLossError("CA journal record has an empty chain");
  return absl::OkStatus();
}

std::string JwtJournalData(absl::Time not_before) {
  nlohmann::json j;
  j["not_before"] = absl::ToUnixSeconds(not_before);
  return j.dump();
}

absl::StatusOr<absl::Time> ParseJwtJournalData(const std::string& data) {
  try {
    nlohmann::json j = nlohmann::json::parse(data);
    return absl::FromUnixSeconds(j.at("not_before").get<int64_t>());
  } catch (const nlohmann::json::exception& e) {
    return absl::DataLossError(std::string("JWT journal record is not valid: ") + e.what());
  }
}

void Warn(const std::string& message) { common::LogWarn(message, {{"component", "ca_manager"}}); }

}  // namespace

std::shared_ptr<const CaManager::Signer> CaManager::MakeSigner(
    std::shared_ptr<const common::X509SvidIssuer> issuer,
    const std::vector<common::Certificate>& chain) const {
  auto signer = std::make_shared<Signer>();
  signer->issuer = std::move(issuer);
  // A self-signed CA is the root itself, and chains handed out stop below the root.
  if (options_.upstream != nullptr) {
    for (const auto& c : chain) signer->chain_der.push_back(c.der());
  }
  return signer;
}

absl::Status CaManager::Start() {
  std::lock_guard<std::mutex> ops(state_->ops_mu);
  if (SvidTtlTooLong(options_.ca_ttl, options_.default_x509_svid_ttl)) {
    Warn(absl::StrCat("default_x509_svid_ttl ",
                      absl::FormatDuration(options_.default_x509_svid_ttl),
                      " exceeds min(ca_ttl/6, 7 days) = ",
                      absl::FormatDuration(ActivateThreshold(options_.ca_ttl)),
                      ": SVIDs will be cut short at CA rotation"));
  }
  if (SvidTtlTooLong(options_.ca_ttl, options_.default_jwt_svid_ttl)) {
    Warn(absl::StrCat("default_jwt_svid_ttl ", absl::FormatDuration(options_.default_jwt_svid_ttl),
                      " exceeds min(ca_ttl/6, 7 days) = ",
                      absl::FormatDuration(ActivateThreshold(options_.ca_ttl)),
                      ": JWT-SVIDs will be cut short at key rotation"));
  }

  // Resume from the journal: the newest usable active and prepared record of each kind.
  TRELLIS_ASSIGN_OR_RETURN(auto journal, ds_->ListCaJournal(options_.server_instance_id));
  const absl::Time now = clock_.Now();
  for (const CaJournalEntry& e : journal) {
    if (e.not_after <= now) continue;
    if (e.status == AuthorityStatus::kOld) {
      // The newest retired authority stays visible to operators (taint, revoke) until pruned.
      if (e.kind == AuthorityKind::kX509) {
        std::vector<common::Certificate> chain, roots;
        absl::Time retired_at = now;  // unknown: assume just now, the cautious side
        auto key = km_->GetKey(X509KeyId(e.authority_id));
        if (ParseX509JournalData(e.data, &chain, &roots, &retired_at).ok() && key.ok()) {
          std::lock_guard<std::mutex> lock(state_->mu);
          state_->x509_old = State::X509Slot{e.authority_id, std::move(chain), std::move(roots),
                                             std::move(*key), nullptr, retired_at};
        }
      } else {
        auto not_before = ParseJwtJournalData(e.data);
        auto key = km_->GetKey(JwtKeyId(e.authority_id));
        if (not_before.ok() && key.ok()) {
          std::lock_guard<std::mutex> lock(state_->mu);
          state_->jwt_old = State::JwtSlot{e.authority_id, std::move(*key), *not_before,
                                           e.not_after};
        }
      }
      continue;
    }
    if (e.kind == AuthorityKind::kX509) {
      std::vector<common::Certificate> chain, roots;
      if (auto s = ParseX509JournalData(e.data, &chain, &roots); !s.ok()) {
        Warn("skipping X.509 CA " + e.authority_id + ": " + s.ToString());
        continue;
      }
      auto key = km_->GetKey(X509KeyId(e.authority_id));
      if (!key.ok()) {
        Warn("skipping X.509 CA " + e.authority_id + ": " + key.status().ToString());
        continue;
      }
      if (!common::CheckKeyMatchesCertificate(*key, chain.front()).ok()) {
        Warn("skipping X.509 CA " + e.authority_id + ": stored key does not match");
        continue;
      }
      State::X509Slot slot{e.authority_id, std::move(chain), std::move(roots), std::move(*key),
                           nullptr};
      if (e.status == AuthorityStatus::kActive) {
        auto issuer = common::X509SvidIssuer::Create(slot.ca(), slot.key, clock_);
        if (!issuer.ok()) {
          Warn("skipping X.509 CA " + e.authority_id + ": " + issuer.status().ToString());
          continue;
        }
        slot.issuer = std::move(*issuer);
        auto signer = MakeSigner(slot.issuer, slot.chain);
        std::lock_guard<std::mutex> lock(state_->mu);
        state_->x509_active = std::move(slot);
        state_->signer = std::move(signer);
      } else {
        std::lock_guard<std::mutex> lock(state_->mu);
        state_->x509_prepared = std::move(slot);
      }
    } else {
      auto not_before = ParseJwtJournalData(e.data);
      auto key = km_->GetKey(JwtKeyId(e.authority_id));
      if (!not_before.ok() || !key.ok()) {
        Warn("skipping JWT key " + e.authority_id + ": " +
             (not_before.ok() ? key.status() : not_before.status()).ToString());
        continue;
      }
      State::JwtSlot slot{e.authority_id, std::move(*key), *not_before, e.not_after};
      std::lock_guard<std::mutex> lock(state_->mu);
      if (e.status == AuthorityStatus::kActive) {
        state_->jwt_active = std::move(slot);
      } else {
        state_->jwt_prepared = std::move(slot);
      }
    }
  }
  // Records not resumed (expired, unreadable, key lost, superseded) are retired so they are
  // pruned like any old authority instead of being reconsidered on every start.
  std::set<std::pair<AuthorityKind, std::string>> resumed;
  {
    std::lock_guard<std::mutex> lock(state_->mu);
    if (state_->x509_active) state_->x509_generation++;
    for (const auto* x : {&state_->x509_active, &state_->x509_prepared}) {
      if (*x) resumed.insert({AuthorityKind::kX509, (*x)->id});
    }
    for (const auto* j : {&state_->jwt_active, &state_->jwt_prepared}) {
      if (*j) resumed.insert({AuthorityKind::kJwt, (*j)->kid});
    }
  }
  for (CaJournalEntry e : journal) {
    if (e.status == AuthorityStatus::kOld || resumed.count({e.kind, e.authority_id})) continue;
    e.status = AuthorityStatus::kOld;
    auto put = ds_->PutCaJournalEntry(e);
    if (!put.ok()) return Annotate(put.status(), "retiring authority " + e.authority_id);
  }
  // Make sure every live authority is in the bundle (it may have been deleted by hand).
  std::vector<datastore::X509Authority> x509;
  std::vector<datastore::JwtAuthority> jwt;
  {
    std::lock_guard<std::mutex> lock(state_->mu);
    for (const auto* s : {&state_->x509_active, &state_->x509_prepared}) {
      if (!*s) continue;
      for (const auto& r : (*s)->roots) x509.push_back({r.der(), r.not_after(), false});
    }
    for (const auto* s : {&state_->jwt_active, &state_->jwt_prepared}) {
      if (*s) jwt.push_back({(*s)->kid, (*s)->key.spki_der(), (*s)->not_after, false});
    }
  }
  if (!x509.empty() || !jwt.empty()) TRELLIS_RETURN_IF_ERROR(AppendToBundle(x509, jwt));
  if (absl::Status rotated = RotateLocked(); !rotated.ok()) {
    // A persisted, unexpired CA keeps this server signing while its upstream is unreachable.
    bool have_ca;
    {
      std::lock_guard<std::mutex> lock(state_->mu);
      have_ca = state_->x509_active.has_value();
    }
    if (!have_ca) return rotated;
    Warn("rotation at start-up failed, continuing with the persisted authorities: " +
         rotated.ToString());
  }
  // Publish whatever the store holds now, even when nothing changed during start-up.
  return ReloadBundle(/*force_notify=*/true);
}

absl::Status CaManager::Tick() {
  std::lock_guard<std::mutex> ops(state_->ops_mu);
  if (!state_->retained_upstream.empty()) {
    // Drops the authorities kept for this tier's sake once nothing here needs them.
    std::optional<datastore::Bundle> upstream;
    {
      std::lock_guard<std::mutex> lock(state_->mu);
      upstream = state_->upstream_bundle;
    }
    if (upstream) {
      if (absl::Status m = MergeUpstreamBundleLocked(*upstream); !m.ok()) {
        Warn("re-applying the upstream bundle failed: " + m.ToString());
      }
    }
  }
  absl::Status rotate = RotateLocked();
  // Rotation is checked on every tick (in memory); the datastore chores need not be.
  const absl::Time now = clock_.Now();
  if (now < state_->next_housekeeping) return rotate;
  state_->next_housekeeping = now + kHousekeepingPeriod;
  absl::Status prune = PruneLocked();
  // Picks up changes other servers sharing the datastore made to our bundle row.
  absl::Status reload = ReloadBundle(/*force_notify=*/false);
  if (!rotate.ok()) return rotate;
  return prune.ok() ? reload : prune;
}

absl::Status CaManager::AppendToBundle(const std::vector<datastore::X509Authority>& x509,
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
  return ReloadBundle(/*force_notify=*/false);
}

absl::Status CaManager::ReloadBundle(bool force_notify) {
  auto stored = ds_->GetBundle(options_.trust_domain.name());
  if (!stored.ok()) {
    if (absl::IsNotFound(stored.status()) && !force_notify) return absl::OkStatus();
    return Annotate(stored.status(), "reading the trust bundle");
  }
  std::function<void(std::shared_ptr<const common::Bundle>)> listener;
  std::shared_ptr<const common::Bundle> published;
  {
    std::lock_guard<std::mutex> lock(state_->mu);
    if (!force_notify && state_->stored_bundle &&
        state_->stored_bundle->sequence_number == stored->sequence_number) {
      return absl::OkStatus();
    }
    auto bundle = std::make_shared<common::Bundle>(options_.trust_domain);
    for (const auto& a : stored->x509_authorities) {
      auto cert = common::Certificate::FromDer(a.ca_der);
      if (!cert.ok() || !bundle->AddX509Authority(*cert).ok()) {
        Warn("ignoring an unreadable X.509 authority in the stored bundle");
      }
    }
    for (const auto& a : stored->jwt_authorities) {
      auto key = common::PublicKey::FromSpkiDer(a.public_key_der);
      if (!key.ok() || !bundle->AddJwtAuthority(a.kid, *key).ok()) {
        Warn("ignoring an unreadable JWT authority " + a.kid + " in the stored bundle");
      }
    }
    bundle->set_sequence(static_cast<uint64_t>(stored->sequence_number));
    if (stored->refresh_hint_seconds > 0) {
      bundle->set_refresh_hint_seconds(stored->refresh_hint_seconds);
    }
    state_->stored_bundle = std::move(*stored);
    state_->bundle = bundle;
    published = bundle;
    listener = state_->bundle_listener;
  }
  if (listener) listener(published);
  return absl::OkStatus();
}

namespace {

std::string Hex(const std::string& raw) { return absl::BytesToHexString(raw); }

// True when a certificate of `chain` is, or is signed by, an authority in `key_ids`.
bool ChainTouches(const std::vector<common::Certificate>& chain,
                  const std::set<std::string>& key_ids) {
  if (key_ids.empty()) return false;
  for (const auto& c : chain) {
    if (key_ids.count(c.SubjectKeyId()) || key_ids.count(c.AuthorityKeyId())) return true;
  }
  return false;
}

constexpr absl::Duration kUpstreamBackoffMin = absl::Seconds(1);
constexpr absl::Duration kUpstreamBackoffMax = absl::Seconds(30);

}  // namespace

std::set<std::string> CaManager::TaintedX509KeyIds() const {
  std::set<std::string> out;
  std::lock_guard<std::mutex> lock(state_->mu);
  if (!state_->stored_bundle) return out;
  for (const auto& a : state_->stored_bundle->x509_authorities) {
    if (!a.tainted) continue;
    auto cert = common::Certificate::FromDer(a.ca_der);
    if (cert.ok()) out.insert(cert->SubjectKeyId());
  }
  return out;
}

bool CaManager::JwtKidTainted(const std::string& kid) const {
  std::lock_guard<std::mutex> lock(state_->mu);
  if (!state_->stored_bundle) return false;
  for (const auto& a : state_->stored_bundle->jwt_authorities) {
    if (a.kid == kid) return a.tainted;
  }
  return false;
}

bool CaManager::UpstreamAttemptAllowed() const {
  return clock_.Now() >= state_->next_upstream_attempt;
}

void CaManager::UpstreamCallDone(const absl::Status& result) {
  if (result.ok()) {
    state_->upstream_failures = 0;
    state_->next_upstream_attempt = absl::InfinitePast();
    return;
  }
  // Exponential backoff so an unreachable upstream is not hammered by every tick.
  absl::Duration wait = kUpstreamBackoffMin;
  for (int i = 0; i < state_->upstream_failures && wait < kUpstreamBackoffMax; ++i) wait *= 2;
  state_->upstream_failures++;
  state_->next_upstream_attempt = clock_.Now() + std::min(wait, kUpstreamBackoffMax);
}

absl::StatusOr<CaManager::X509Candidate> CaManager::NewX509Ca() {
  TRELLIS_ASSIGN_OR_RETURN(std::string raw, RandomBytes(10));
  const std::string id = absl::BytesToHexString(raw);
  TRELLIS_ASSIGN_OR_RETURN(common::PrivateKey key,
                           km_->GenerateKey(X509KeyId(id), options_.ca_key_type));
  std::vector<common::Certificate> chain, roots;
  if (options_.upstream) {
    auto minted = options_.upstream->MintX509Ca(key, options_.trust_domain, options_.ca_ttl);
    UpstreamCallDone(minted.status());
    if (!minted.ok()) {
      (void)km_->DeleteKey(X509KeyId(id));
      return Annotate(minted.status(), "minting a CA from the upstream authority");
    }
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
    } else if (ChainTouches(minted->ca_chain, TaintedX509KeyIds())) {
      usable = absl::UnavailableError(
          "upstream authority still signs with a tainted authority; retrying later");
    }
    if (!usable.ok()) {
      UpstreamCallDone(usable);
      (void)km_->DeleteKey(X509KeyId(id));
      return usable;
    }
    chain = std::move(minted->ca_chain);
    roots = std::move(minted->roots);
  } else {
    auto root = common::CreateRootCa(key, options_.trust_domain, options_.ca_ttl, clock_,
                                     options_.ca_subject);
    if (!root.ok()) {
      (void)km_->DeleteKey(X509KeyId(id));
      return root.status();
    }
    chain = {*root};
    roots = {*root};
  }
  return X509Candidate{id, std::move(chain), std::move(roots), std::move(key)};
}

absl::StatusOr<CaManager::JwtCandidate> CaManager::NewJwtKey() {
  TRELLIS_ASSIGN_OR_RETURN(std::string kid, RandomAlnum(32));
  TRELLIS_ASSIGN_OR_RETURN(common::PrivateKey key,
                           km_->GenerateKey(JwtKeyId(kid), options_.jwt_key_type));
  const absl::Time now = clock_.Now();
  const absl::Time not_after = now + options_.ca_ttl;
  if (options_.upstream && options_.upstream->OwnsBundle()) {
    // Published before it signs anything, so every branch can validate its tokens.
    auto published =
        options_.upstream->PublishJwtAuthority({kid, key.spki_der(), not_after, false});
    UpstreamCallDone(published.status());
    if (!published.ok()) {
      (void)km_->DeleteKey(JwtKeyId(kid));
      return Annotate(published.status(), "publishing a JWT key to the upstream authority");
    }
    if (absl::Status m = MergeUpstreamBundleLocked(*published); !m.ok()) {
      Warn("applying the upstream bundle failed: " + m.ToString());
    }
  }
  return JwtCandidate{kid, std::move(key), now, not_after};
}

absl::Status CaManager::Journal(AuthorityKind kind, const std::string& id, AuthorityStatus status,
                                const std::string& data, absl::Time not_after) {
  CaJournalEntry e;
  e.server_id = options_.server_instance_id;
  e.kind = kind;
  e.authority_id = id;
  e.status = status;
  e.data = data;
  e.not_after = not_after;
  auto put = ds_->PutCaJournalEntry(e);
  if (!put.ok()) {
    return Annotate(put.status(), "recording " + std::string(datastore::AuthorityKindName(kind)) +
                                      " authority " + id + " as " + StatusName(status));
  }
  return absl::OkStatus();
}

absl::Status CaManager::RotateLocked() {
  // Independent: an unreachable upstream must not hold back the JWT key.
  absl::Status x509 = RotateX509Locked();
  absl::Status jwt = RotateJwtLocked();
  return x509.ok() ? jwt : x509;
}

namespace {

absl::Duration Lifetime(absl::Time nb, absl::Time na) { return na - nb; }

}  // namespace

absl::Status CaManager::PrepareX509Locked() {
  TRELLIS_ASSIGN_OR_RETURN(X509Candidate fresh, NewX509Ca());
  const absl::Time now = clock_.Now();
  const common::Certificate& ca = fresh.chain.front();
  {
    // A CA cut short by its upstream's own expiry is not worth activating while the current
    // one lives longer: it would need replacing at once (and could lapse unnoticed).
    std::lock_guard<std::mutex> lock(state_->mu);
    if (options_.upstream && state_->x509_active &&
        ca.not_after() - now < ActivateThreshold(options_.ca_ttl) &&
        state_->x509_active->ca().not_after() >= ca.not_after()) {
      (void)km_->DeleteKey(X509KeyId(fresh.id));
      absl::Status short_lived = absl::UnavailableError(
          "upstream authority returned a CA valid only until " + absl::FormatTime(ca.not_after()) +
          ", too short to activate; retrying later");
      UpstreamCallDone(short_lived);
      return short_lived;
    }
  }
  TRELLIS_RETURN_IF_ERROR(Journal(AuthorityKind::kX509, fresh.id, AuthorityStatus::kPrepared,
                                  X509JournalData(fresh.chain, fresh.roots), ca.not_after()));
  State::X509Slot slot{fresh.id, fresh.chain, fresh.roots, fresh.key, nullptr};
  {
    std::lock_guard<std::mutex> lock(state_->mu);
    state_->x509_prepared = slot;
  }
  // Published before it signs anything, so agents already trust it at activation.
  std::vector<datastore::X509Authority> roots;
  for (const auto& r : slot.roots) roots.push_back({r.der(), r.not_after(), false});
  return AppendToBundle(roots, {});
}

absl::Status CaManager::ActivateX509Locked() {
  std::optional<State::X509Slot> active, prepared;
  {
    std::lock_guard<std::mutex> lock(state_->mu);
    active = state_->x509_active;
    prepared = state_->x509_prepared;
  }
  if (!prepared) return absl::FailedPreconditionError("no prepared X.509 authority");
  TRELLIS_ASSIGN_OR_RETURN(auto issuer,
                           common::X509SvidIssuer::Create(prepared->ca(), prepared->key, clock_));
  prepared->issuer = std::move(issuer);
  TRELLIS_RETURN_IF_ERROR(Journal(AuthorityKind::kX509, prepared->id, AuthorityStatus::kActive,
                                  X509JournalData(prepared->chain, prepared->roots),
                                  prepared->ca().not_after()));
  if (active) {
    active->retired_at = clock_.Now();
    TRELLIS_RETURN_IF_ERROR(Journal(AuthorityKind::kX509, active->id, AuthorityStatus::kOld,
                                    X509JournalData(active->chain, active->roots,
                                                    active->retired_at),
                                    active->ca().not_after()));
  }
  std::function<void()> listener;
  auto signer = MakeSigner(prepared->issuer, prepared->chain);
  {
    std::lock_guard<std::mutex> lock(state_->mu);
    if (active) state_->x509_old = std::move(active);
    state_->x509_active = std::move(prepared);
    state_->signer = std::move(signer);
    state_->x509_prepared.reset();
    state_->x509_generation++;
    listener = state_->activation_listener;
  }
  if (listener) listener();
  return absl::OkStatus();
}

absl::Status CaManager::RotateX509Locked() {
  const absl::Time now = clock_.Now();
  std::optional<State::X509Slot> active, prepared;
  {
    std::lock_guard<std::mutex> lock(state_->mu);
    active = state_->x509_active;
    prepared = state_->x509_prepared;
  }
  const std::set<std::string> tainted = TaintedX509KeyIds();
  auto usable = [&](const State::X509Slot& s) {
    const auto& ca = s.ca();
    return ca.not_after() - now >= ActivateThreshold(Lifetime(ca.not_before(), ca.not_after())) &&
           !ChainTouches(s.chain, tainted);
  };
  // A prepared CA that is already too short-lived to be worth activating, or that chains to
  // a tainted authority, is dropped.
  if (prepared && !usable(*prepared)) {
    TRELLIS_RETURN_IF_ERROR(Journal(AuthorityKind::kX509, prepared->id, AuthorityStatus::kOld,
                                    X509JournalData(prepared->chain, prepared->roots),
                                    prepared->ca().not_after()));
    prepared.reset();
    std::lock_guard<std::mutex> lock(state_->mu);
    state_->x509_prepared.reset();
  }
  bool need_prepare = false;
  bool need_activate = false;
  if (!active) {
    need_activate = true;
  } else {
    const auto& ca = active->ca();
    const absl::Duration life = Lifetime(ca.not_before(), ca.not_after());
    const absl::Duration remaining = ca.not_after() - now;
    if (remaining < PrepareThreshold(life)) need_prepare = true;
    if (remaining < ActivateThreshold(life)) need_activate = true;
    // Tainted above us: replace the CA at once (the upstream already signs with another).
    if (ChainTouches(active->chain, tainted)) need_prepare = need_activate = true;
  }
  if ((need_prepare || need_activate) && !prepared) {
    // While a failed upstream call's backoff runs, wait quietly: the failure was reported.
    if (options_.upstream && !UpstreamAttemptAllowed()) return absl::OkStatus();
    TRELLIS_RETURN_IF_ERROR(PrepareX509Locked());
  }
  if (!need_activate) return absl::OkStatus();
  return ActivateX509Locked();
}

absl::Status CaManager::PrepareJwtLocked() {
  TRELLIS_ASSIGN_OR_RETURN(JwtCandidate fresh, NewJwtKey());
  TRELLIS_RETURN_IF_ERROR(Journal(AuthorityKind::kJwt, fresh.kid, AuthorityStatus::kPrepared,
                                  JwtJournalData(fresh.not_before), fresh.not_after));
  State::JwtSlot slot{fresh.kid, fresh.key, fresh.not_before, fresh.not_after};
  {
    std::lock_guard<std::mutex> lock(state_->mu);
    state_->jwt_prepared = slot;
  }
  return AppendToBundle({}, {{slot.kid, slot.key.spki_der(), slot.not_after, false}});
}

absl::Status CaManager::ActivateJwtLocked() {
  std::optional<State::JwtSlot> active, prepared;
  {
    std::lock_guard<std::mutex> lock(state_->mu);
    active = state_->jwt_active;
    prepared = state_->jwt_prepared;
  }
  if (!prepared) return absl::FailedPreconditionError("no prepared JWT authority");
  TRELLIS_RETURN_IF_ERROR(Journal(AuthorityKind::kJwt, prepared->kid, AuthorityStatus::kActive,
                                  JwtJournalData(prepared->not_before), prepared->not_after));
  if (active) {
    TRELLIS_RETURN_IF_ERROR(Journal(AuthorityKind::kJwt, active->kid, AuthorityStatus::kOld,
                                    JwtJournalData(active->not_before), active->not_after));
  }
  std::lock_guard<std::mutex> lock(state_->mu);
  if (active) state_->jwt_old = std::move(active);
  state_->jwt_active = std::move(prepared);
  state_->jwt_prepared.reset();
  return absl::OkStatus();
}

absl::Status CaManager::RotateJwtLocked() {
  const absl::Time now = clock_.Now();
  std::optional<State::JwtSlot> active, prepared;
  {
    std::lock_guard<std::mutex> lock(state_->mu);
    active = state_->jwt_active;
    prepared = state_->jwt_prepared;
  }
  auto usable = [&](const State::JwtSlot& s) {
    return s.not_after - now >= ActivateThreshold(Lifetime(s.not_before, s.not_after)) &&
           !JwtKidTainted(s.kid);
  };
  if (prepared && !usable(*prepared)) {
    TRELLIS_RETURN_IF_ERROR(Journal(AuthorityKind::kJwt, prepared->kid, AuthorityStatus::kOld,
                                    JwtJournalData(prepared->not_before), prepared->not_after));
    prepared.reset();
    std::lock_guard<std::mutex> lock(state_->mu);
    state_->jwt_prepared.reset();
  }
  bool need_prepare = false;
  bool need_activate = false;
  if (!active) {
    need_activate = true;
  } else {
    const absl::Duration life = Lifetime(active->not_before, active->not_after);
    const absl::Duration remaining = active->not_after - now;
    if (remaining < PrepareThreshold(life)) need_prepare = true;
    if (remaining < ActivateThreshold(life)) need_activate = true;
    // Tainted (by an operator at the root tier): replace it at once.
    if (JwtKidTainted(active->kid)) need_prepare = need_activate = true;
  }
  if ((need_prepare || need_activate) && !prepared) {
    if (options_.upstream && options_.upstream->OwnsBundle() && !UpstreamAttemptAllowed()) {
      return absl::OkStatus();
    }
    TRELLIS_RETURN_IF_ERROR(PrepareJwtLocked());
  }
  if (!need_activate) return absl::OkStatus();
  return ActivateJwtLocked();
}

absl::Status CaManager::PruneLocked() {
  const absl::Time cutoff = clock_.Now() - options_.prune_grace;
  auto pruned = ds_->PruneBundle(options_.trust_domain.name(), cutoff);
  if (!pruned.ok() && !absl::IsFailedPrecondition(pruned.status()) &&
      !absl::IsNotFound(pruned.status())) {
    return Annotate(pruned.status(), "pruning the trust bundle");
  }
  // Retired authorities past the grace period: forget the record and destroy the key.
  TRELLIS_ASSIGN_OR_RETURN(auto journal, ds_->ListCaJournal(options_.server_instance_id));
  for (const CaJournalEntry& e : journal) {
    if (e.status != AuthorityStatus::kOld || e.not_after >= cutoff) continue;
    const std::string key_id =
        e.kind == AuthorityKind::kX509 ? X509KeyId(e.authority_id) : JwtKeyId(e.authority_id);
    TRELLIS_RETURN_IF_ERROR(km_->DeleteKey(key_id));
    TRELLIS_RETURN_IF_ERROR(
        ds_->DeleteCaJournalEntry(options_.server_instance_id, e.kind, e.authority_id));
    std::lock_guard<std::mutex> lock(state_->mu);
    if (e.kind == AuthorityKind::kX509 && state_->x509_old &&
        state_->x509_old->id == e.authority_id) {
      state_->x509_old.reset();
    }
    if (e.kind == AuthorityKind::kJwt && state_->jwt_old && state_->jwt_old->kid == e.authority_id) {
      state_->jwt_old.reset();
    }
  }
  return absl::OkStatus();
}

std::shared_ptr<const CaManager::Signer> CaManager::CurrentSigner() const {
  std::lock_guard<std::mutex> lock(state_->mu);
  return state_->signer;
}

absl::StatusOr<std::vector<std::string>> CaManager::SignX509SvidFromCsr(
    std::string_view csr_der, const common::SpiffeId& id, absl::Duration ttl,
    const std::vector<std::string>& dns_names, absl::Time* not_after) {
  auto signer = CurrentSigner();
  if (!signer) return absl::UnavailableError("no active X.509 CA yet");
  TRELLIS_ASSIGN_OR_RETURN(std::string leaf,
                           signer->issuer->IssueFromCsr(csr_der, id, ttl, dns_names, not_after));
  std::vector<std::string> out;
  out.reserve(1 + signer->chain_der.size());
  out.push_back(std::move(leaf));
  out.insert(out.end(), signer->chain_der.begin(), signer->chain_der.end());
  return out;
}

absl::StatusOr<std::vector<std::string>> CaManager::SignX509SvidForKey(
    const common::PublicKey& key, const common::SpiffeId& id, absl::Duration ttl,
    const std::vector<std::string>& dns_names) {
  auto signer = CurrentSigner();
  if (!signer) return absl::UnavailableError("no active X.509 CA yet");
  TRELLIS_ASSIGN_OR_RETURN(std::string leaf,
                           signer->issuer->IssueForPublicKey(key, id, ttl, dns_names));
  std::vector<std::string> out;
  out.reserve(1 + signer->chain_der.size());
  out.push_back(std::move(leaf));
  out.insert(out.end(), signer->chain_der.begin(), signer->chain_der.end());
  return out;
}

absl::StatusOr<std::string> CaManager::SignJwtSvid(const common::SpiffeId& id,
                                                   const std::vector<std::string>& audience,
                                                   absl::Duration ttl) {
  if (audience.empty()) return absl::InvalidArgumentError("a JWT-SVID needs an audience");
  if (ttl <= absl::ZeroDuration()) return absl::InvalidArgumentError("JWT-SVID ttl must be > 0");
  if (id.trust_domain().name() != options_.trust_domain.name()) {
    return absl::InvalidArgumentError("SPIFFE ID " + id.String() + " is outside the trust domain " +
                                      options_.trust_domain.name());
  }
  std::optional<State::JwtSlot> key;
  {
    std::lock_guard<std::mutex> lock(state_->mu);
    key = state_->jwt_active;
  }
  if (!key) return absl::UnavailableError("no active JWT signing key yet");
  const absl::Time now = clock_.Now();
  if (now >= key->not_after) return absl::UnavailableError("the JWT signing key has expired");
  // Whole seconds: exp is a NumericDate and must not exceed the key's life.
  absl::Time expiry = std::min(now + ttl, key->not_after);
  nlohmann::json extra = nlohmann::json::object();
  if (!options_.jwt_issuer.empty()) extra["iss"] = options_.jwt_issuer;
  return common::SignJwtSvid(key->key, key->kid, id, audience, now, expiry, std::nullopt, extra);
}

std::shared_ptr<const common::Bundle> CaManager::Bundle() const {
  std::lock_guard<std::mutex> lock(state_->mu);
  return state_->bundle;
}

absl::StatusOr<datastore::Bundle> CaManager::StoredBundle() const {
  std::lock_guard<std::mutex> lock(state_->mu);
  if (!state_->stored_bundle) return absl::UnavailableError("the trust bundle is not loaded yet");
  return *state_->stored_bundle;
}

void CaManager::SetBundleListener(
    std::function<void(std::shared_ptr<const common::Bundle>)> listener) {
  std::lock_guard<std::mutex> lock(state_->mu);
  state_->bundle_listener = std::move(listener);
}

void CaManager::SetX509ActivationListener(std::function<void()> listener) {
  std::lock_guard<std::mutex> lock(state_->mu);
  state_->activation_listener = std::move(listener);
}

std::optional<common::Certificate> CaManager::ActiveX509Ca() const {
  std::lock_guard<std::mutex> lock(state_->mu);
  if (!state_->x509_active) return std::nullopt;
  return state_->x509_active->ca();
}

std::vector<common::Certificate> CaManager::ActiveX509Chain() const {
  std::lock_guard<std::mutex> lock(state_->mu);
  if (!state_->x509_active) return {};
  if (options_.upstream == nullptr) return {};
  return state_->x509_active->chain;
}

std::optional<common::Certificate> CaManager::PreparedX509Ca() const {
  std::lock_guard<std::mutex> lock(state_->mu);
  if (!state_->x509_prepared) return std::nullopt;
  return state_->x509_prepared->ca();
}

std::string CaManager::ActiveJwtKid() const {
  std::lock_guard<std::mutex> lock(state_->mu);
  return state_->jwt_active ? state_->jwt_active->kid : "";
}

std::string CaManager::PreparedJwtKid() const {
  std::lock_guard<std::mutex> lock(state_->mu);
  return state_->jwt_prepared ? state_->jwt_prepared->kid : "";
}

uint64_t CaManager::X509Generation() const {
  std::lock_guard<std::mutex> lock(state_->mu);
  return state_->x509_generation;
}

// ---- Nesting ----

absl::StatusOr<UpstreamAuthority::MintResult> CaManager::MintDownstreamCa(
    std::string_view csr_der, absl::Duration preferred_ttl, const common::SpiffeId& caller) {
  auto csr = common::CertificateRequest::FromDer(csr_der);
  if (!csr.ok()) return Annotate(csr.status(), "downstream CA request");
  if (absl::Status v = csr->VerifySignature(); !v.ok()) {
    return Annotate(v, "downstream CA request");
  }
  if (preferred_ttl < absl::ZeroDuration()) {
    return absl::InvalidArgumentError("preferred_ttl must not be negative");
  }
  std::optional<State::X509Slot> active;
  std::shared_ptr<const common::Bundle> bundle;
  {
    std::lock_guard<std::mutex> lock(state_->mu);
    active = state_->x509_active;
    bundle = state_->bundle;
  }
  if (!active || !bundle) return absl::UnavailableError("no active X.509 CA yet");
  if (ChainTouches(active->chain, TaintedX509KeyIds())) {
    // A CA minted now would chain to the tainted authority and be replaced at once.
    return absl::UnavailableError(
        "this server's CA chains to a tainted authority and is being replaced; retry shortly");
  }
  const absl::Duration ttl = preferred_ttl > absl::ZeroDuration() ? preferred_ttl : options_.ca_ttl;
  // NotAfter is capped at the active CA's, so a downstream CA never outlives its issuer.
  TRELLIS_ASSIGN_OR_RETURN(
      common::Certificate ca,
      common::CreateIntermediateCa(active->ca(), active->key, csr->public_key(),
                                   options_.trust_domain, ttl, clock_, options_.ca_subject));
  UpstreamAuthority::MintResult result;
  result.ca_chain.push_back(ca);
  // A self-signed active CA is the root itself, which chains stop below.
  if (options_.upstream) {
    for (const auto& c : active->chain) result.ca_chain.push_back(c);
  }
  result.roots = bundle->x509_authorities();
  State::DownstreamMint record;
  for (const auto& c : result.ca_chain) {
    record.key_ids.insert(c.SubjectKeyId());
    record.key_ids.insert(c.AuthorityKeyId());
  }
  record.not_after = ca.not_after();
  std::lock_guard<std::mutex> lock(state_->mu);
  state_->downstream_mints[caller.String()] = std::move(record);
  return result;
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
  std::lock_guard<std::mutex> ops(state_->ops_mu);
  {
    // The bundle keeps one key per kid: a second key under a known kid would be dropped
    // silently and tokens signed with it would never validate.
    std::lock_guard<std::mutex> lock(state_->mu);
    if (state_->stored_bundle) {
      for (const auto& a : state_->stored_bundle->jwt_authorities) {
        if (a.kid == clean.kid && a.public_key_der != clean.public_key_der) {
          return absl::AlreadyExistsError("JWT authority " + clean.kid +
                                          " is already published with another key");
        }
      }
    }
  }
  if (options_.upstream && options_.upstream->OwnsBundle()) {
    // Nested: the root holds the trust domain's bundle; it reaches us back on the stream, but
    // the answer to the publish already carries it.
    TRELLIS_ASSIGN_OR_RETURN(datastore::Bundle up,
                             options_.upstream->PublishJwtAuthority(clean));
    TRELLIS_RETURN_IF_ERROR(MergeUpstreamBundleLocked(up));
  } else {
    TRELLIS_RETURN_IF_ERROR(AppendToBundle({}, {clean}));
  }
  return StoredBundle();
}

absl::Status CaManager::ApplyUpstreamBundle(const datastore::Bundle& upstream) {
  std::lock_guard<std::mutex> ops(state_->ops_mu);
  TRELLIS_RETURN_IF_ERROR(MergeUpstreamBundleLocked(upstream));
  // Replace at once whatever the upstream has just tainted (no-op otherwise).
  return RotateLocked();
}

absl::Status CaManager::MergeUpstreamBundleLocked(const datastore::Bundle& upstream) {
  if (upstream.trust_domain != options_.trust_domain.name()) {
    return absl::InvalidArgumentError("upstream bundle is for trust domain " +
                                      upstream.trust_domain + ", not " +
                                      options_.trust_domain.name());
  }
  if (upstream.x509_authorities.empty()) {
    return absl::InvalidArgumentError("upstream bundle has no X.509 authority");
  }
  std::optional<datastore::Bundle> local;
  std::vector<datastore::JwtAuthority> own_jwt;
  {
    std::lock_guard<std::mutex> lock(state_->mu);
    local = state_->stored_bundle;
    state_->upstream_bundle = upstream;
    for (const auto* s : {&state_->jwt_active, &state_->jwt_prepared}) {
      if (*s) own_jwt.push_back({(*s)->kid, (*s)->key.spki_der(), (*s)->not_after, false});
    }
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
      const std::string name = "X.509 authority " + Hex(cert->SubjectKeyId());
      if (cert->not_after() > clock_.Now() &&
          !StillNeededLocked(cert->SubjectKeyId(), name).ok()) {
        merged.x509_authorities.push_back({a.ca_der, a.expires_at, true});
        retained.insert(Hex(cert->SubjectKeyId()));
      }
    }
  }
  if (retained != state_->retained_upstream) {
    for (const auto& id : retained) {
      if (!state_->retained_upstream.count(id)) {
        Warn("keeping X.509 authority " + id +
             " that the upstream removed until this tier no longer depends on it");
      }
    }
    state_->retained_upstream = retained;
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
  auto stored = ds_->SetBundle(merged);
  if (!stored.ok()) return Annotate(stored.status(), "storing the upstream bundle");
  // A changed bundle may unblock a rotation the backoff is holding back (e.g. after a taint).
  state_->next_upstream_attempt = absl::InfinitePast();
  return ReloadBundle(/*force_notify=*/false);
}

// ---- Forced rotation ----

namespace {

CaManager::AuthorityInfo X509Info(const std::vector<common::Certificate>& chain,
                                  bool has_upstream) {
  CaManager::AuthorityInfo info;
  info.id = Hex(chain.front().SubjectKeyId());
  info.expires_at = chain.front().not_after();
  if (has_upstream) info.upstream_subject_key_id = Hex(chain.front().AuthorityKeyId());
  return info;
}

}  // namespace

CaManager::AuthorityStates CaManager::X509Authorities() const {
  AuthorityStates out;
  const bool up = options_.upstream != nullptr;
  std::lock_guard<std::mutex> lock(state_->mu);
  if (state_->x509_active) out.active = X509Info(state_->x509_active->chain, up);
  if (state_->x509_prepared) out.prepared = X509Info(state_->x509_prepared->chain, up);
  if (state_->x509_old) out.old = X509Info(state_->x509_old->chain, up);
  return out;
}

CaManager::AuthorityStates CaManager::JwtAuthorities() const {
  AuthorityStates out;
  std::lock_guard<std::mutex> lock(state_->mu);
  for (auto [slot, dst] : {std::pair{&state_->jwt_active, &out.active},
                           std::pair{&state_->jwt_prepared, &out.prepared},
                           std::pair{&state_->jwt_old, &out.old}}) {
    if (*slot) *dst = AuthorityInfo{(*slot)->kid, (*slot)->not_after, ""};
  }
  return out;
}

namespace {

// Refusals both kinds share; `noun` is "X.509 authority" or "JWT authority".
absl::Status CheckNothingPrepared(const CaManager::AuthorityStates& s, const std::string& noun) {
  if (!s.prepared) return absl::OkStatus();
  return absl::FailedPreconditionError(noun + " " + s.prepared->id +
                                       " is already prepared: activate it first");
}

absl::Status CheckActivatable(const CaManager::AuthorityStates& s, const std::string& id,
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

absl::Status CheckTaintable(const CaManager::AuthorityStates& s, const std::string& id,
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

absl::Status CheckRevocable(const CaManager::AuthorityStates& s, const std::string& id,
                            const std::string& noun) {
  if ((s.active && s.active->id == id) || (s.prepared && s.prepared->id == id)) {
    return absl::FailedPreconditionError(noun + " " + id +
                                         " is in use by this server (active or prepared): it "
                                         "cannot be revoked");
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<CaManager::AuthorityInfo> CaManager::PrepareX509() {
  std::lock_guard<std::mutex> ops(state_->ops_mu);
  TRELLIS_RETURN_IF_ERROR(CheckNothingPrepared(X509Authorities(), "X.509 authority"));
  TRELLIS_RETURN_IF_ERROR(PrepareX509Locked());
  return *X509Authorities().prepared;
}

absl::StatusOr<CaManager::AuthorityInfo> CaManager::ActivateX509(const std::string& id) {
  std::lock_guard<std::mutex> ops(state_->ops_mu);
  TRELLIS_RETURN_IF_ERROR(CheckActivatable(X509Authorities(), id, "X.509 authority"));
  TRELLIS_RETURN_IF_ERROR(ActivateX509Locked());
  return *X509Authorities().active;
}

absl::StatusOr<CaManager::AuthorityInfo> CaManager::TaintX509(const std::string& id) {
  std::lock_guard<std::mutex> ops(state_->ops_mu);
  if (options_.upstream) {
    return absl::FailedPreconditionError(
        "this server's X.509 authority is an intermediate minted by its UpstreamAuthority and "
        "is not in the trust bundle: replace it with prepare and activate, or taint the root "
        "it chains to (localauthority on the tier holding it, or upstreamauthority taint)");
  }
  AuthorityStates states = X509Authorities();
  TRELLIS_RETURN_IF_ERROR(CheckTaintable(states, id, "X.509 authority"));
  std::optional<State::X509Slot> old;
  {
    std::lock_guard<std::mutex> lock(state_->mu);
    old = state_->x509_old;
  }
  if (!old || Hex(old->ca().SubjectKeyId()) != id) {
    return absl::NotFoundError("no old X.509 authority " + id);
  }
  TRELLIS_RETURN_IF_ERROR(
      ds_->TaintX509Authority(options_.trust_domain.name(), old->ca().der()));
  TRELLIS_RETURN_IF_ERROR(ReloadBundle(/*force_notify=*/false));
  return *states.old;
}

absl::StatusOr<CaManager::AuthorityInfo> CaManager::RevokeX509(const std::string& id) {
  std::lock_guard<std::mutex> ops(state_->ops_mu);
  if (options_.upstream) {
    return absl::FailedPreconditionError(
        "this server's X.509 authority is an intermediate minted by its UpstreamAuthority and "
        "is not in the trust bundle: there is nothing to revoke here (upstreamauthority revoke "
        "removes an upstream root)");
  }
  AuthorityStates states = X509Authorities();
  TRELLIS_RETURN_IF_ERROR(CheckRevocable(states, id, "X.509 authority"));
  std::optional<State::X509Slot> old;
  {
    std::lock_guard<std::mutex> lock(state_->mu);
    old = state_->x509_old;
  }
  if (!old || Hex(old->ca().SubjectKeyId()) != id) {
    return absl::NotFoundError("no old X.509 authority " + id);
  }
  TRELLIS_RETURN_IF_ERROR(StillNeededLocked(old->ca().SubjectKeyId(), "X.509 authority " + id));
  TRELLIS_RETURN_IF_ERROR(
      ds_->RevokeX509Authority(options_.trust_domain.name(), old->ca().der()));
  {
    std::lock_guard<std::mutex> lock(state_->mu);
    state_->x509_old.reset();
  }
  TRELLIS_RETURN_IF_ERROR(ReloadBundle(/*force_notify=*/false));
  return *states.old;
}

absl::Status CaManager::RevokeUpstreamCheckLocked(const std::string& raw_key_id) {
  // Downstream servers whose current CA still chains to it would be cut off.
  const absl::Time now = clock_.Now();
  std::lock_guard<std::mutex> lock(state_->mu);
  for (const auto& [caller, mint] : state_->downstream_mints) {
    if (mint.not_after > now && mint.key_ids.count(raw_key_id)) {
      return absl::FailedPreconditionError(
          "downstream server " + caller + " still signs with a CA that chains to " +
          Hex(raw_key_id) + " (valid until " + absl::FormatTime(mint.not_after) +
          "): taint it and wait for the downstream to rotate");
    }
  }
  return absl::OkStatus();
}

absl::Status CaManager::AgentsRenewedSince(absl::Time retired_at, const std::string& what) {
  if (options_.agent_svid_ttl <= absl::ZeroDuration()) return absl::OkStatus();
  const absl::Time now = clock_.Now();
  datastore::ListNodesRequest req;
  req.by_banned = false;
  req.page_size = 1000;
  // Certificate and datastore times are whole seconds: an SVID issued in the second the
  // authority was retired counts as renewed (agents also renew at once on the taint).
  const absl::Time cutoff = absl::FromUnixSeconds(absl::ToUnixSeconds(retired_at));
  int64_t waiting = 0;
  std::string example;
  absl::Time until = absl::InfinitePast();
  do {
    TRELLIS_ASSIGN_OR_RETURN(datastore::ListNodesResponse page, ds_->ListNodes(req));
    for (const auto& n : page.nodes) {
      // The newest SVID the agent holds; its issue time is NotAfter minus the agent TTL (or
      // earlier when the CA capped it, which only makes this check more cautious).
      const absl::Time latest = std::max(n.cert_not_after, n.new_cert_not_after);
      if (latest <= now) continue;
      if (latest - options_.agent_svid_ttl < cutoff) {
        ++waiting;
        if (example.empty()) example = n.spiffe_id;
        until = std::max(until, latest);
      }
    }
    req.page_token = page.next_page_token;
  } while (!req.page_token.empty());
  if (waiting == 0) return absl::OkStatus();
  return absl::FailedPreconditionError(absl::StrCat(
      waiting, " agent(s) still hold an SVID signed under ", what, " (e.g. ", example,
      "; the last expires at ", absl::FormatTime(absl::RFC3339_sec, until, absl::UTCTimeZone()),
      "): wait until they renew (agents renew at once when it is tainted)"));
}

absl::Status CaManager::StillNeededLocked(const std::string& raw_key_id, const std::string& what) {
  const std::set<std::string> ids = {raw_key_id};
  std::optional<State::X509Slot> active, prepared, old;
  {
    std::lock_guard<std::mutex> lock(state_->mu);
    active = state_->x509_active;
    prepared = state_->x509_prepared;
    old = state_->x509_old;
  }
  for (const auto* s : {&active, &prepared}) {
    if (*s && ChainTouches((*s)->chain, ids)) {
      return absl::FailedPreconditionError(
          "this server's " + std::string(s == &active ? "active" : "prepared") +
          " X.509 authority chains to " + what + ": prepare and activate another first");
    }
  }
  TRELLIS_RETURN_IF_ERROR(RevokeUpstreamCheckLocked(raw_key_id));
  if (old && ChainTouches(old->chain, ids)) {
    TRELLIS_RETURN_IF_ERROR(AgentsRenewedSince(old->retired_at, what));
  }
  return absl::OkStatus();
}

absl::StatusOr<CaManager::AuthorityInfo> CaManager::PrepareJwt() {
  std::lock_guard<std::mutex> ops(state_->ops_mu);
  TRELLIS_RETURN_IF_ERROR(CheckNothingPrepared(JwtAuthorities(), "JWT authority"));
  TRELLIS_RETURN_IF_ERROR(PrepareJwtLocked());
  return *JwtAuthorities().prepared;
}

absl::StatusOr<CaManager::AuthorityInfo> CaManager::ActivateJwt(const std::string& kid) {
  std::lock_guard<std::mutex> ops(state_->ops_mu);
  TRELLIS_RETURN_IF_ERROR(CheckActivatable(JwtAuthorities(), kid, "JWT authority"));
  TRELLIS_RETURN_IF_ERROR(ActivateJwtLocked());
  return *JwtAuthorities().active;
}

namespace {

std::optional<datastore::JwtAuthority> FindJwt(const std::optional<datastore::Bundle>& b,
                                               const std::string& kid) {
  if (!b) return std::nullopt;
  for (const auto& a : b->jwt_authorities) {
    if (a.kid == kid) return a;
  }
  return std::nullopt;
}

}  // namespace

absl::StatusOr<CaManager::AuthorityInfo> CaManager::TaintJwt(const std::string& kid) {
  std::lock_guard<std::mutex> ops(state_->ops_mu);
  if (options_.upstream && options_.upstream->OwnsBundle()) {
    return absl::FailedPreconditionError(
        "the trust domain's bundle is held by the root tier: taint JWT authority " + kid +
        " there (trellis-server localauthority jwt taint on the root tier); this server "
        "replaces its own key at once when it sees it tainted");
  }
  TRELLIS_RETURN_IF_ERROR(CheckTaintable(JwtAuthorities(), kid, "JWT authority"));
  std::optional<datastore::JwtAuthority> found;
  {
    std::lock_guard<std::mutex> lock(state_->mu);
    found = FindJwt(state_->stored_bundle, kid);
  }
  if (!found) return absl::NotFoundError("no JWT authority " + kid + " in the trust bundle");
  TRELLIS_RETURN_IF_ERROR(ds_->TaintJwtAuthority(options_.trust_domain.name(), kid));
  TRELLIS_RETURN_IF_ERROR(ReloadBundle(/*force_notify=*/false));
  return AuthorityInfo{kid, found->expires_at, ""};
}

absl::StatusOr<CaManager::AuthorityInfo> CaManager::RevokeJwt(const std::string& kid) {
  std::lock_guard<std::mutex> ops(state_->ops_mu);
  if (options_.upstream && options_.upstream->OwnsBundle()) {
    return absl::FailedPreconditionError(
        "the trust domain's bundle is held by the root tier: revoke JWT authority " + kid +
        " there (trellis-server localauthority jwt revoke on the root tier)");
  }
  TRELLIS_RETURN_IF_ERROR(CheckRevocable(JwtAuthorities(), kid, "JWT authority"));
  std::optional<datastore::JwtAuthority> found;
  {
    std::lock_guard<std::mutex> lock(state_->mu);
    found = FindJwt(state_->stored_bundle, kid);
  }
  if (!found) return absl::NotFoundError("no JWT authority " + kid + " in the trust bundle");
  if (!found->tainted) {
    return absl::FailedPreconditionError("JWT authority " + kid +
                                         " is not tainted: taint it first, and revoke it once "
                                         "every JWT-SVID it signed has been replaced");
  }
  TRELLIS_RETURN_IF_ERROR(ds_->RevokeJwtAuthority(options_.trust_domain.name(), kid));
  {
    std::lock_guard<std::mutex> lock(state_->mu);
    if (state_->jwt_old && state_->jwt_old->kid == kid) state_->jwt_old.reset();
  }
  TRELLIS_RETURN_IF_ERROR(ReloadBundle(/*force_notify=*/false));
  return AuthorityInfo{kid, found->expires_at, ""};
}

namespace {

absl::StatusOr<common::Certificate> FindX509ByKeyId(const std::optional<datastore::Bundle>& b,
                                                    const std::string& hex_key_id,
                                                    bool* tainted) {
  if (b) {
    for (const auto& a : b->x509_authorities) {
      auto cert = common::Certificate::FromDer(a.ca_der);
      if (cert.ok() && Hex(cert->SubjectKeyId()) == hex_key_id) {
        *tainted = a.tainted;
        return *std::move(cert);
      }
    }
  }
  return absl::NotFoundError("no X.509 authority with Subject Key ID " + hex_key_id +
                             " in the trust bundle");
}

}  // namespace

absl::Status CaManager::TaintUpstreamX509(const std::string& subject_key_id) {
  std::lock_guard<std::mutex> ops(state_->ops_mu);
  if (!options_.upstream) {
    return absl::FailedPreconditionError(
        "this server has no UpstreamAuthority: its roots are local authorities (use "
        "localauthority x509 taint)");
  }
  bool tainted = false;
  std::optional<datastore::Bundle> stored;
  std::optional<State::X509Slot> active, prepared;
  {
    std::lock_guard<std::mutex> lock(state_->mu);
    stored = state_->stored_bundle;
    active = state_->x509_active;
    prepared = state_->x509_prepared;
  }
  TRELLIS_ASSIGN_OR_RETURN(common::Certificate cert,
                           FindX509ByKeyId(stored, subject_key_id, &tainted));
  const std::set<std::string> ids = {cert.SubjectKeyId()};
  for (const auto* s : {&active, &prepared}) {
    if (*s && ChainTouches((*s)->chain, ids)) {
      return absl::FailedPreconditionError(
          "this server's " + std::string(s == &active ? "active" : "prepared") +
          " X.509 authority chains to " + subject_key_id +
          ": prepare and activate a CA from the new upstream authority first");
    }
  }
  TRELLIS_RETURN_IF_ERROR(ds_->TaintX509Authority(options_.trust_domain.name(), cert.der()));
  return ReloadBundle(/*force_notify=*/false);
}

absl::Status CaManager::RevokeUpstreamX509(const std::string& subject_key_id) {
  std::lock_guard<std::mutex> ops(state_->ops_mu);
  if (!options_.upstream) {
    return absl::FailedPreconditionError(
        "this server has no UpstreamAuthority: its roots are local authorities (use "
        "localauthority x509 revoke)");
  }
  bool tainted = false;
  std::optional<datastore::Bundle> stored, upstream_bundle;
  std::optional<State::X509Slot> active, prepared;
  {
    std::lock_guard<std::mutex> lock(state_->mu);
    stored = state_->stored_bundle;
    upstream_bundle = state_->upstream_bundle;
    active = state_->x509_active;
    prepared = state_->x509_prepared;
  }
  TRELLIS_ASSIGN_OR_RETURN(common::Certificate cert,
                           FindX509ByKeyId(stored, subject_key_id, &tainted));
  if (!tainted) {
    return absl::FailedPreconditionError("upstream X.509 authority " + subject_key_id +
                                         " is not tainted: taint it first");
  }
  TRELLIS_RETURN_IF_ERROR(
      StillNeededLocked(cert.SubjectKeyId(), "upstream X.509 authority " + subject_key_id));
  if (options_.upstream->OwnsBundle() && upstream_bundle) {
    for (const auto& a : upstream_bundle->x509_authorities) {
      if (a.ca_der == cert.der()) {
        return absl::FailedPreconditionError(
            "the upstream tier still trusts " + subject_key_id +
            ": revoke it there, and it leaves this tier's bundle on the bundle stream");
      }
    }
  }
  TRELLIS_RETURN_IF_ERROR(ds_->RevokeX509Authority(options_.trust_domain.name(), cert.der()));
  return ReloadBundle(/*force_notify=*/false);
}

}  // namespace trellis::server
