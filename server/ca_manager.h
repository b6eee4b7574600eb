// The server's signing authorities: X.509 CA and JWT key, their rotation, journal and bundle,
// as one object made of parts whose calls go one way (see docs/architecture.md, CA parts).
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/bundle.h"
#include "common/clock.h"
#include "common/keys.h"
#include "common/spiffe_id.h"
#include "common/x509.h"
#include "datastore/datastore.h"
#include "server/ca_options.h"
#include "server/key_manager.h"
#include "server/upstream_authority.h"

namespace trellis::server {

class AuthorityDependents;
class AuthoritySteps;
class BundleKeeper;
class CaJournal;
class CaRotator;
class CaSigner;
class UpstreamLink;

// Owns the X.509 CA (self-signed root, or intermediate from an UpstreamAuthority) and the JWT
// signing key, their prepare/activate rotation, the journal, and the trust bundle in the
// datastore. Thread-safe: signing never waits for a rotation; changes run one at a time.
class CaManager {
 public:
  using Options = CaOptions;
  using AuthorityInfo = server::AuthorityInfo;
  using AuthorityStates = server::AuthorityStates;

  static absl::StatusOr<std::unique_ptr<CaManager>> Create(Options options,
                                                           datastore::DataStore* ds, KeyManager* km,
                                                           const common::Clock& clock);
  ~CaManager();

  // Loads the persisted CA/JWT key (or creates them) and publishes the bundle.
  absl::Status Start();
  // One rotation check now. Pruning and re-reading the stored bundle (changes by other servers
  // sharing the datastore) run at most every 10 s.
  absl::Status Tick();
  // Runs the rotation checks on a thread of the CA's own (every second, and at once when the
  // upstream taints an authority) until StopRotation() or destruction.
  void StartRotation();
  void StopRotation();

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
  // Re-reads the stored bundle (another server sharing the store changed it); tells the
  // bundle listener when its sequence moved. Reads only.
  absl::Status ReloadBundle();
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
  CaManager(Options options, datastore::DataStore* ds, KeyManager* km, const common::Clock& clock);

  const Options options_;
  const common::Clock& clock_;
  // One change at a time: start-up, rotation checks, upstream bundles, published keys and
  // operator steps. Signing and reads never take it.
  absl::Mutex steps_mu_;
  std::unique_ptr<CaSigner> signer_;
  std::unique_ptr<CaJournal> journal_;
  std::unique_ptr<BundleKeeper> bundle_;
  std::unique_ptr<AuthorityDependents> dependents_;
  std::unique_ptr<UpstreamLink> link_;
  std::unique_ptr<CaRotator> rotator_;
  std::unique_ptr<AuthoritySteps> steps_;
};

}  // namespace trellis::server
