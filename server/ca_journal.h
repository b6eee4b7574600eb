// The CA journal and the authority slots it persists: for each kind (X.509, JWT) an active, a
// prepared and the last retired authority, recorded so that a restart resumes where it stopped.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/clock.h"
#include "common/keys.h"
#include "common/x509.h"
#include "datastore/datastore.h"
#include "server/key_manager.h"

namespace trellis::server {

struct X509Slot {
  std::string id;
  std::vector<common::Certificate> chain;  // CA first, then intermediates (no root)
  std::vector<common::Certificate> roots;  // bundle anchors for this CA
  common::PrivateKey key;
  // Set on the active slot only: what signs.
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

struct AuthoritySlots {
  std::optional<X509Slot> x509_active, x509_prepared, x509_old;
  std::optional<JwtSlot> jwt_active, jwt_prepared, jwt_old;
};

// True when a certificate of `chain` is, or is signed by, an authority in `key_ids` (raw
// Subject Key Identifiers).
bool ChainTouches(const std::vector<common::Certificate>& chain,
                  const std::set<std::string>& key_ids);

// Each transition writes the journal first and changes the slot only once the record is
// stored. Callers serialise transitions (CaManager's step lock); reads are thread-safe.
class CaJournal {
 public:
  CaJournal(datastore::DataStore* ds, KeyManager* km, std::string server_id,
            const common::Clock& clock);

  // Loads the newest usable record of each kind and state (a record whose chain, key or issuer
  // is unusable is skipped with a warning) and retires every record not resumed, so it is
  // pruned like any old authority instead of being reconsidered on every start.
  absl::Status Resume();

  // Keys in the KeyManager, named after the authority.
  absl::StatusOr<common::PrivateKey> GenerateX509Key(const std::string& id, common::KeyType type);
  absl::StatusOr<common::PrivateKey> GenerateJwtKey(const std::string& kid, common::KeyType type);
  void DiscardX509Key(const std::string& id);
  void DiscardJwtKey(const std::string& kid);

  absl::Status PrepareX509(X509Slot slot);
  // The prepared authority becomes active with `issuer`; the active one is retired now.
  // FAILED_PRECONDITION without a prepared authority.
  absl::Status ActivateX509(std::shared_ptr<const common::X509SvidIssuer> issuer);
  absl::Status RetirePreparedX509();
  absl::Status PrepareJwt(JwtSlot slot);
  absl::Status ActivateJwt();
  absl::Status RetirePreparedJwt();
  // Operators revoked the retired authority: it leaves the slots (its record is pruned).
  void ForgetOldX509();
  void ForgetOldJwt(const std::string& kid);
  // Destroys the keys and records of authorities retired and expired before `cutoff`.
  absl::Status Prune(absl::Time cutoff);

  AuthoritySlots Slots() const;
  std::optional<X509Slot> ActiveX509() const;
  std::optional<X509Slot> PreparedX509() const;
  std::optional<JwtSlot> ActiveJwt() const;
  std::optional<JwtSlot> PreparedJwt() const;
  // Increases every time an X.509 CA becomes active (resumed or activated).
  uint64_t X509Generation() const;

 private:
  absl::Status Record(datastore::AuthorityKind kind, const std::string& id,
                      datastore::AuthorityStatus status, const std::string& data,
                      absl::Time not_after);
  void ResumeRecord(const datastore::CaJournalEntry& e, absl::Time now);

  datastore::DataStore* const ds_;
  KeyManager* const km_;
  const std::string server_id_;
  const common::Clock& clock_;
  mutable absl::Mutex mu_;
  AuthoritySlots slots_ ABSL_GUARDED_BY(mu_);
  uint64_t x509_generation_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace trellis::server
