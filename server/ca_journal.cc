// CaJournal: journal records (chain and roots as PEM, validity windows) and the slot moves of
// prepare, activate and retire.
#include "server/ca_journal.h"

#include <nlohmann/json.hpp>
#include <utility>

#include "common/status.h"
#include "server/ca_options.h"

namespace trellis::server {
namespace {

using datastore::AuthorityKind;
using datastore::AuthorityStatus;
using datastore::CaJournalEntry;

std::string X509KeyId(const std::string& id) { return "x509-CA-" + id; }
std::string JwtKeyId(const std::string& kid) { return "JWT-Signer-" + kid; }

// Journal payloads: the chain and roots as PEM lists (X.509), the validity window (JWT).
std::string X509JournalData(const X509Slot& slot) {
  nlohmann::json j;
  if (slot.retired_at != absl::InfiniteFuture()) {
    j["retired_at"] = absl::ToUnixSeconds(slot.retired_at);
  }
  j["chain"] = nlohmann::json::array();
  for (const auto& c : slot.chain) j["chain"].push_back(c.ToPem());
  j["roots"] = nlohmann::json::array();
  for (const auto& c : slot.roots) j["roots"].push_back(c.ToPem());
  return j.dump();
}

absl::Status ParseX509JournalData(const std::string& data, std::vector<common::Certificate>* chain,
                                  std::vector<common::Certificate>* roots,
                                  absl::Time* retired_at) {
  try {
    nlohmann::json j = nlohmann::json::parse(data);
    // Left as the caller set it when absent (records written before it was kept).
    if (j.contains("retired_at")) {
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

}  // namespace

bool ChainTouches(const std::vector<common::Certificate>& chain,
                  const std::set<std::string>& key_ids) {
  if (key_ids.empty()) return false;
  for (const auto& c : chain) {
    if (key_ids.count(c.SubjectKeyId()) || key_ids.count(c.AuthorityKeyId())) return true;
  }
  return false;
}

CaJournal::CaJournal(datastore::DataStore* ds, KeyManager* km, std::string server_id,
                     const common::Clock& clock)
    : ds_(ds), km_(km), server_id_(std::move(server_id)), clock_(clock) {}

void CaJournal::ResumeRecord(const CaJournalEntry& e, absl::Time now) {
  if (e.status == AuthorityStatus::kOld) {
    // The newest retired authority stays visible to operators (taint, revoke) until pruned.
    if (e.kind == AuthorityKind::kX509) {
      std::vector<common::Certificate> chain, roots;
      absl::Time retired_at = now;  // unknown: assume just now, the cautious side
      auto key = km_->GetKey(X509KeyId(e.authority_id));
      if (ParseX509JournalData(e.data, &chain, &roots, &retired_at).ok() && key.ok()) {
        absl::MutexLock lock(&mu_);
        slots_.x509_old = X509Slot{e.authority_id, std::move(chain), std::move(roots),
                                   std::move(*key), nullptr, retired_at};
      }
    } else {
      auto not_before = ParseJwtJournalData(e.data);
      auto key = km_->GetKey(JwtKeyId(e.authority_id));
      if (not_before.ok() && key.ok()) {
        absl::MutexLock lock(&mu_);
        slots_.jwt_old = JwtSlot{e.authority_id, std::move(*key), *not_before, e.not_after};
      }
    }
    return;
  }
  if (e.kind == AuthorityKind::kX509) {
    std::vector<common::Certificate> chain, roots;
    absl::Time unused = absl::InfiniteFuture();
    if (auto s = ParseX509JournalData(e.data, &chain, &roots, &unused); !s.ok()) {
      CaWarn("skipping X.509 CA " + e.authority_id + ": " + s.ToString());
      return;
    }
    auto key = km_->GetKey(X509KeyId(e.authority_id));
    if (!key.ok()) {
      CaWarn("skipping X.509 CA " + e.authority_id + ": " + key.status().ToString());
      return;
    }
    if (!common::CheckKeyMatchesCertificate(*key, chain.front()).ok()) {
      CaWarn("skipping X.509 CA " + e.authority_id + ": stored key does not match");
      return;
    }
    X509Slot slot{e.authority_id, std::move(chain), std::move(roots), std::move(*key), nullptr};
    if (e.status == AuthorityStatus::kActive) {
      auto issuer = common::X509SvidIssuer::Create(slot.ca(), slot.key, clock_);
      if (!issuer.ok()) {
        CaWarn("skipping X.509 CA " + e.authority_id + ": " + issuer.status().ToString());
        return;
      }
      slot.issuer = std::move(*issuer);
      absl::MutexLock lock(&mu_);
      slots_.x509_active = std::move(slot);
    } else {
      absl::MutexLock lock(&mu_);
      slots_.x509_prepared = std::move(slot);
    }
    return;
  }
  auto not_before = ParseJwtJournalData(e.data);
  auto key = km_->GetKey(JwtKeyId(e.authority_id));
  if (!not_before.ok() || !key.ok()) {
    CaWarn("skipping JWT key " + e.authority_id + ": " +
         (not_before.ok() ? key.status() : not_before.status()).ToString());
    return;
  }
  JwtSlot slot{e.authority_id, std::move(*key), *not_before, e.not_after};
  absl::MutexLock lock(&mu_);
  if (e.status == AuthorityStatus::kActive) {
    slots_.jwt_active = std::move(slot);
  } else {
    slots_.jwt_prepared = std::move(slot);
  }
}

absl::Status CaJournal::Resume() {
  TRELLIS_ASSIGN_OR_RETURN(auto journal, ds_->ListCaJournal(server_id_));
  const absl::Time now = clock_.Now();
  for (const CaJournalEntry& e : journal) {
    if (e.not_after > now) ResumeRecord(e, now);
  }
  std::set<std::pair<AuthorityKind, std::string>> resumed;
  {
    absl::MutexLock lock(&mu_);
    if (slots_.x509_active) x509_generation_++;
    for (const auto* x : {&slots_.x509_active, &slots_.x509_prepared}) {
      if (*x) resumed.insert({AuthorityKind::kX509, (*x)->id});
    }
    for (const auto* j : {&slots_.jwt_active, &slots_.jwt_prepared}) {
      if (*j) resumed.insert({AuthorityKind::kJwt, (*j)->kid});
    }
  }
  // Records not resumed (expired, unreadable, key lost, superseded) are retired.
  for (CaJournalEntry e : journal) {
    if (e.status == AuthorityStatus::kOld || resumed.count({e.kind, e.authority_id})) continue;
    e.status = AuthorityStatus::kOld;
    auto put = ds_->PutCaJournalEntry(e);
    if (!put.ok()) return Annotate(put.status(), "retiring authority " + e.authority_id);
  }
  return absl::OkStatus();
}

absl::StatusOr<common::PrivateKey> CaJournal::GenerateX509Key(const std::string& id,
                                                              common::KeyType type) {
  return km_->GenerateKey(X509KeyId(id), type);
}

absl::StatusOr<common::PrivateKey> CaJournal::GenerateJwtKey(const std::string& kid,
                                                             common::KeyType type) {
  return km_->GenerateKey(JwtKeyId(kid), type);
}

void CaJournal::DiscardX509Key(const std::string& id) { (void)km_->DeleteKey(X509KeyId(id)); }
void CaJournal::DiscardJwtKey(const std::string& kid) { (void)km_->DeleteKey(JwtKeyId(kid)); }

absl::Status CaJournal::Record(AuthorityKind kind, const std::string& id, AuthorityStatus status,
                               const std::string& data, absl::Time not_after) {
  CaJournalEntry e;
  e.server_id = server_id_;
  e.kind = kind;
  e.authority_id = id;
  e.status = status;
  e.data = data;
  e.not_after = not_after;
  auto put = ds_->PutCaJournalEntry(e);
  if (!put.ok()) {
    return Annotate(put.status(), "recording " + std::string(datastore::AuthorityKindName(kind)) +
                                      " authority " + id + " as " +
                                      datastore::AuthorityStatusName(status));
  }
  return absl::OkStatus();
}

absl::Status CaJournal::PrepareX509(X509Slot slot) {
  TRELLIS_RETURN_IF_ERROR(Record(AuthorityKind::kX509, slot.id, AuthorityStatus::kPrepared,
                                 X509JournalData(slot), slot.ca().not_after()));
  absl::MutexLock lock(&mu_);
  slots_.x509_prepared = std::move(slot);
  return absl::OkStatus();
}

absl::Status CaJournal::ActivateX509(std::shared_ptr<const common::X509SvidIssuer> issuer) {
  std::optional<X509Slot> active = ActiveX509();
  std::optional<X509Slot> prepared = PreparedX509();
  if (!prepared) return absl::FailedPreconditionError("no prepared X.509 authority");
  prepared->issuer = std::move(issuer);
  TRELLIS_RETURN_IF_ERROR(Record(AuthorityKind::kX509, prepared->id, AuthorityStatus::kActive,
                                 X509JournalData(*prepared), prepared->ca().not_after()));
  if (active) {
    active->retired_at = clock_.Now();
    active->issuer = nullptr;
    TRELLIS_RETURN_IF_ERROR(Record(AuthorityKind::kX509, active->id, AuthorityStatus::kOld,
                                   X509JournalData(*active), active->ca().not_after()));
  }
  absl::MutexLock lock(&mu_);
  if (active) slots_.x509_old = std::move(active);
  slots_.x509_active = std::move(prepared);
  slots_.x509_prepared.reset();
  x509_generation_++;
  return absl::OkStatus();
}

absl::Status CaJournal::RetirePreparedX509() {
  std::optional<X509Slot> prepared = PreparedX509();
  if (!prepared) return absl::OkStatus();
  TRELLIS_RETURN_IF_ERROR(Record(AuthorityKind::kX509, prepared->id, AuthorityStatus::kOld,
                                 X509JournalData(*prepared), prepared->ca().not_after()));
  absl::MutexLock lock(&mu_);
  slots_.x509_prepared.reset();
  return absl::OkStatus();
}

absl::Status CaJournal::PrepareJwt(JwtSlot slot) {
  TRELLIS_RETURN_IF_ERROR(Record(AuthorityKind::kJwt, slot.kid, AuthorityStatus::kPrepared,
                                 JwtJournalData(slot.not_before), slot.not_after));
  absl::MutexLock lock(&mu_);
  slots_.jwt_prepared = std::move(slot);
  return absl::OkStatus();
}

absl::Status CaJournal::ActivateJwt() {
  std::optional<JwtSlot> active = ActiveJwt();
  std::optional<JwtSlot> prepared = PreparedJwt();
  if (!prepared) return absl::FailedPreconditionError("no prepared JWT authority");
  TRELLIS_RETURN_IF_ERROR(Record(AuthorityKind::kJwt, prepared->kid, AuthorityStatus::kActive,
                                 JwtJournalData(prepared->not_before), prepared->not_after));
  if (active) {
    TRELLIS_RETURN_IF_ERROR(Record(AuthorityKind::kJwt, active->kid, AuthorityStatus::kOld,
                                   JwtJournalData(active->not_before), active->not_after));
  }
  absl::MutexLock lock(&mu_);
  if (active) slots_.jwt_old = std::move(active);
  slots_.jwt_active = std::move(prepared);
  slots_.jwt_prepared.reset();
  return absl::OkStatus();
}

absl::Status CaJournal::RetirePreparedJwt() {
  std::optional<JwtSlot> prepared = PreparedJwt();
  if (!prepared) return absl::OkStatus();
  TRELLIS_RETURN_IF_ERROR(Record(AuthorityKind::kJwt, prepared->kid, AuthorityStatus::kOld,
                                 JwtJournalData(prepared->not_before), prepared->not_after));
  absl::MutexLock lock(&mu_);
  slots_.jwt_prepared.reset();
  return absl::OkStatus();
}

void CaJournal::ForgetOldX509() {
  absl::MutexLock lock(&mu_);
  slots_.x509_old.reset();
}

void CaJournal::ForgetOldJwt(const std::string& kid) {
  absl::MutexLock lock(&mu_);
  if (slots_.jwt_old && slots_.jwt_old->kid == kid) slots_.jwt_old.reset();
}

absl::Status CaJournal::Prune(absl::Time cutoff) {
  TRELLIS_ASSIGN_OR_RETURN(auto journal, ds_->ListCaJournal(server_id_));
  for (const CaJournalEntry& e : journal) {
    if (e.status != AuthorityStatus::kOld || e.not_after >= cutoff) continue;
    const std::string key_id =
        e.kind == AuthorityKind::kX509 ? X509KeyId(e.authority_id) : JwtKeyId(e.authority_id);
    TRELLIS_RETURN_IF_ERROR(km_->DeleteKey(key_id));
    TRELLIS_RETURN_IF_ERROR(ds_->DeleteCaJournalEntry(server_id_, e.kind, e.authority_id));
    absl::MutexLock lock(&mu_);
    if (e.kind == AuthorityKind::kX509 && slots_.x509_old && slots_.x509_old->id == e.authority_id) {
      slots_.x509_old.reset();
    }
    if (e.kind == AuthorityKind::kJwt && slots_.jwt_old && slots_.jwt_old->kid == e.authority_id) {
      slots_.jwt_old.reset();
    }
  }
  return absl::OkStatus();
}

AuthoritySlots CaJournal::Slots() const {
  absl::MutexLock lock(&mu_);
  return slots_;
}

std::optional<X509Slot> CaJournal::ActiveX509() const {
  absl::MutexLock lock(&mu_);
  return slots_.x509_active;
}

std::optional<X509Slot> CaJournal::PreparedX509() const {
  absl::MutexLock lock(&mu_);
  return slots_.x509_prepared;
}

std::optional<JwtSlot> CaJournal::ActiveJwt() const {
  absl::MutexLock lock(&mu_);
  return slots_.jwt_active;
}

std::optional<JwtSlot> CaJournal::PreparedJwt() const {
  absl::MutexLock lock(&mu_);
  return slots_.jwt_prepared;
}

uint64_t CaJournal::X509Generation() const {
  absl::MutexLock lock(&mu_);
  return x509_generation_;
}

}  // namespace trellis::server
