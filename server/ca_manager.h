// The server's signing authorities: X.509 CA and JWT key, their rotation, journal and bundle.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "common/bundle.h"
#include "common/clock.h"
#include "common/keys.h"
#include "common/spiffe_id.h"
#include "common/x509.h"
#include "datastore/datastore.h"
#include "server/key_manager.h"
#include "server/upstream_authority.h"

namespace trellis::server {

// Owns the X.509 CA (self-signed root, or intermediate from an UpstreamAuthority) and the JWT
// signing key, their prepare/activate rotation, the journal, and the trust bundle in the
// datastore. Thread-safe.
class CaManager {
 public:
  struct Options {
    explicit Options(common::TrustDomain td) : trust_domain(std::move(td)) {}
    common::TrustDomain trust_domain;
    absl::Duration ca_ttl = absl::Hours(24);
    absl::Duration default_x509_svid_ttl = absl::Hours(1);
    absl::Duration default_jwt_svid_ttl = absl::Minutes(5);
    common::KeyType ca_key_type = common::KeyType::kEcP256;
    common::KeyType jwt_key_type = common::KeyType::kEcP256;
    common::CaSubject ca_subject;
    std::string jwt_issuer;  // empty: no "iss" claim
    // Nullptr: self-signed root. Otherwise every X.509 CA is minted by this authority.
    std::shared_ptr<UpstreamAuthority> upstream;
    // Names this server's CA journal records, so several servers can share one store.
    std::string server_instance_id = "default";
    // How long an expired authority stays in the bundle before it is pruned.
    absl::Duration prune_grace = absl::Hours(1);
    // Bundle refresh hint published with the bundle; zero: derived from ca_ttl.
    absl::Duration refresh_hint = absl::ZeroDuration();
    // Lifetime of agent SVIDs, to tell which attested agents still hold one signed before an
    // authority was retired (revoking it would lock them out). Zero: agents are not checked.
    absl::Duration agent_svid_ttl = absl::ZeroDuration();
  };

  static absl::StatusOr<std::unique_ptr<CaManager>> Create(Options options,
                                                           datastore::DataStore* ds, KeyManager* km,
                                                           const common::Clock& clock);
  ~CaManager();

  // Loads the persisted CA/JWT key (or creates them) and publishes the bundle.
  absl::Status Start();
  // Rotation check; the runtime calls it every second. Pruning and re-reading the stored
  // bundle (changes by other servers sharing the datastore) run at most every 10 s.
  absl::Status Tick();

  // Leaf then intermediates (no root), DER each. NotAfter = min(now + ttl, CA NotAfter).
  // INVALID_ARGUMENT for a bad CSR, ID or TTL; UNAVAILABLE before Start() succeeded.
  // `not_after`, when given, receives the leaf's NotAfter (saves re-parsing the leaf).
  absl::StatusOr<std::vector<std::string>> SignX509SvidFromCsr(
      std::string_view csr_der, const common::SpiffeId& id, absl::Duration ttl,
      const std::vector<std::string>& dns_names, absl::Time* not_after = nullptr);
  // Same for a public key the caller already holds (the server's own SVID).
  absl::StatusOr<std::vector<std::string>> SignX509SvidForKey(
      const common::PublicKey& key, const common::SpiffeId& id, absl::Duration ttl,
      const std::vector<std::string>& dns_names = {});
  // Compact JWS signed with the active JWT key; exp capped at the key's NotAfter.
  // INVALID_ARGUMENT without audience, with ttl <= 0 or an ID of another trust domain.
  absl::StatusOr<std::string> SignJwtSvid(const common::SpiffeId& id,
                                          const std::vector<std::string>& audience,
                                          absl::Duration ttl);

  // Current trust bundle (sequence included). Never null after Start().
  std::shared_ptr<const common::Bundle> Bundle() const;
  // The bundle row as stored (carries JWT key expiry and taint flags).
  absl::StatusOr<datastore::Bundle> StoredBundle() const;
  // Called (from any thread) after every bundle change.
  void SetBundleListener(std::function<void(std::shared_ptr<const common::Bundle>)> listener);
  // Called after the active X.509 CA changes (e.g. to reissue the server's own SVID).
  void SetX509ActivationListener(std::function<void()> listener);

  // Active CA certificate, and its chain (CA first, up to but excluding the root: empty for
  // a self-signed CA, which is the root).
  std::optional<common::Certificate> ActiveX509Ca() const;
  std::vector<common::Certificate> ActiveX509Chain() const;
  std::optional<common::Certificate> PreparedX509Ca() const;
  std::string ActiveJwtKid() const;
  std::string PreparedJwtKid() const;
  // Increases every time a new X.509 CA becomes active.
  uint64_t X509Generation() const;

  // ---- Nesting: this server as the upstream of downstream servers ----
  // Signs a CA for a downstream server from the CSR's public key (its signature is checked),
  // valid for `preferred_ttl` (zero: ca_ttl) capped at the active CA's NotAfter. The chain is
  // the new CA, then the active CA's chain up to (excluding) the root; roots are the bundle's.
  // `caller` is remembered so an authority the downstream still chains to is not revoked.
  absl::StatusOr<UpstreamAuthority::MintResult> MintDownstreamCa(std::string_view csr_der,
                                                                 absl::Duration preferred_ttl,
                                                                 const common::SpiffeId& caller);
  // A JWT key published by a downstream server: forwarded up first when this server is
  // nested, then added to the bundle. Returns the bundle as stored afterwards.
  absl::StatusOr<datastore::Bundle> AcceptPublishedJwtAuthority(
      const datastore::JwtAuthority& authority);
  // Nested servers: makes the local bundle the upstream's (keeping local taint marks and this
  // server's own JWT keys), then replaces at once any authority of ours that is tainted.
  absl::Status ApplyUpstreamBundle(const datastore::Bundle& upstream);

  // ---- Forced rotation (operators) ----
  struct AuthorityInfo {
    std::string id;  // X.509: CA Subject Key Identifier (hex); JWT: key id
    absl::Time expires_at;
    std::string upstream_subject_key_id;  // X.509 with an upstream: the issuer's SKI
  };
  struct AuthorityStates {
    std::optional<AuthorityInfo> active, prepared, old;
  };
  AuthorityStates X509Authorities() const;
  AuthorityStates JwtAuthorities() const;
  // Each refuses an unsafe step with FAILED_PRECONDITION and the reason; NOT_FOUND for an
  // unknown id.
  absl::StatusOr<AuthorityInfo> PrepareX509();
  absl::StatusOr<AuthorityInfo> ActivateX509(const std::string& id);
  absl::StatusOr<AuthorityInfo> TaintX509(const std::string& id);
  absl::StatusOr<AuthorityInfo> RevokeX509(const std::string& id);
  absl::StatusOr<AuthorityInfo> PrepareJwt();
  absl::StatusOr<AuthorityInfo> ActivateJwt(const std::string& kid);
  absl::StatusOr<AuthorityInfo> TaintJwt(const std::string& kid);
  absl::StatusOr<AuthorityInfo> RevokeJwt(const std::string& kid);
  // Upstream X.509 authorities (roots our CA chains to), by Subject Key Identifier.
  absl::Status TaintUpstreamX509(const std::string& subject_key_id);
  absl::Status RevokeUpstreamX509(const std::string& subject_key_id);

  const Options& options() const { return options_; }

  // True when an SVID TTL exceeds min(ca_ttl/6, 7 days) (the start-up warning rule).
  static bool SvidTtlTooLong(absl::Duration ca_ttl, absl::Duration svid_ttl);
  // Threshold rule of rotation: prepare below min(lifetime/2, 30 days) of remaining life,
  // activate below min(lifetime/6, 7 days).
  static absl::Duration PrepareThreshold(absl::Duration lifetime);
  static absl::Duration ActivateThreshold(absl::Duration lifetime);

 private:
  struct State;
  struct Signer;
  struct X509Candidate {
    std::string id;
    std::vector<common::Certificate> chain;  // CA first, then intermediates (no root)
    std::vector<common::Certificate> roots;
    common::PrivateKey key;
  };
  struct JwtCandidate {
    std::string kid;
    common::PrivateKey key;
    absl::Time not_before;
    absl::Time not_after;
  };
  CaManager(Options options, datastore::DataStore* ds, KeyManager* km, const common::Clock& clock);

  std::shared_ptr<const Signer> MakeSigner(std::shared_ptr<const common::X509SvidIssuer> issuer,
                                           const std::vector<common::Certificate>& chain) const;
  std::shared_ptr<const Signer> CurrentSigner() const;
  absl::StatusOr<X509Candidate> NewX509Ca();
  absl::StatusOr<JwtCandidate> NewJwtKey();
  absl::Status Journal(datastore::AuthorityKind kind, const std::string& id,
                       datastore::AuthorityStatus status, const std::string& data,
                       absl::Time not_after);
  absl::Status AppendToBundle(const std::vector<datastore::X509Authority>& x509,
                              const std::vector<datastore::JwtAuthority>& jwt);
  absl::Status ReloadBundle(bool force_notify);
  // The *Locked functions run with State::ops_mu held.
  absl::Status RotateLocked();
  absl::Status RotateX509Locked();
  absl::Status RotateJwtLocked();
  absl::Status PruneLocked();
  absl::Status PrepareX509Locked();
  absl::Status ActivateX509Locked();
  absl::Status PrepareJwtLocked();
  absl::Status ActivateJwtLocked();
  absl::Status MergeUpstreamBundleLocked(const datastore::Bundle& upstream);
  // FAILED_PRECONDITION while a downstream's current CA chains to the key id (raw bytes).
  absl::Status RevokeUpstreamCheckLocked(const std::string& raw_key_id);
  // FAILED_PRECONDITION while an attested agent holds an SVID issued before `retired_at`
  // (by a CA that chained to the authority being removed).
  absl::Status AgentsRenewedSince(absl::Time retired_at, const std::string& what);
  // Whether this tier still depends on the X.509 authority with `raw_key_id`: our CAs chain to
  // it, a downstream's CA does, or agents hold SVIDs from our previous CA that does.
  absl::Status StillNeededLocked(const std::string& raw_key_id, const std::string& what);
  // Subject key ids of the X.509 authorities marked tainted in our bundle.
  std::set<std::string> TaintedX509KeyIds() const;
  bool JwtKidTainted(const std::string& kid) const;
  // Whether an upstream call may be made now (backoff after failures), and bookkeeping.
  bool UpstreamAttemptAllowed() const;
  void UpstreamCallDone(const absl::Status& result);

  Options options_;
  datastore::DataStore* ds_;
  KeyManager* km_;
  const common::Clock& clock_;
  std::unique_ptr<State> state_;
};

}  // namespace trellis::server
