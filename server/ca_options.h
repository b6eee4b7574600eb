// Settings shared by the parts of the server's CA (CaManager and the classes it is made of), and
// the view operators get of each authority.
#pragma once

#include <functional>
#include <memory>
#include <optional>
#include <string>

#include "absl/time/time.h"
#include "common/keys.h"
#include "common/log.h"
#include "common/spiffe_id.h"
#include "common/x509.h"
#include "server/upstream_authority.h"

namespace trellis::server {

struct CaOptions {
  explicit CaOptions(common::TrustDomain td) : trust_domain(std::move(td)) {}
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
  // Called after every activation of a new authority (a rotation, or the first authority of
  // a new server), from the thread that activated it; for metrics.
  std::function<void(datastore::AuthorityKind)> authority_activated;
};

// One authority as the admin API shows it.
struct AuthorityInfo {
  std::string id;  // X.509: CA Subject Key Identifier (hex); JWT: key id
  absl::Time expires_at;
  std::string upstream_subject_key_id;  // X.509 with an upstream: the issuer's SKI
};

struct AuthorityStates {
  std::optional<AuthorityInfo> active, prepared, old;
};

// A warning from one of the CA parts, tagged with the component they share.
inline void CaWarn(const std::string& message) {
  common::LogWarn(message, {{"component", "ca_manager"}});
}

}  // namespace trellis::server
