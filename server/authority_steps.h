// Operator steps on the server's authorities (the admin API's localauthority and
// upstreamauthority commands): each checks that the step is safe, then asks the part that owns
// the change.
#pragma once

#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "server/authority_dependents.h"
#include "server/bundle_keeper.h"
#include "server/ca_journal.h"
#include "server/ca_options.h"
#include "server/ca_rotator.h"
#include "server/upstream_link.h"

namespace trellis::server {

// Callers serialise the steps (CaManager's step lock). Each refuses an unsafe step with
// FAILED_PRECONDITION and the reason; NOT_FOUND for an unknown id.
class AuthoritySteps {
 public:
  AuthoritySteps(const CaOptions& options, CaJournal* journal, BundleKeeper* bundle,
                 const AuthorityDependents* dependents, const UpstreamLink* link,
                 CaRotator* rotator);

  AuthorityStates X509Authorities() const;
  AuthorityStates JwtAuthorities() const;
  absl::StatusOr<AuthorityInfo> PrepareX509();
  absl::StatusOr<AuthorityInfo> ActivateX509(const std::string& id);
  absl::StatusOr<AuthorityInfo> TaintX509(const std::string& id);
  absl::StatusOr<AuthorityInfo> RevokeX509(const std::string& id);
  absl::StatusOr<AuthorityInfo> PrepareJwt();
  absl::StatusOr<AuthorityInfo> ActivateJwt(const std::string& kid);
  absl::StatusOr<AuthorityInfo> TaintJwt(const std::string& kid);
  absl::StatusOr<AuthorityInfo> RevokeJwt(const std::string& kid);
  // Upstream X.509 authorities (roots our CA chains to), by Subject Key Identifier (hex).
  absl::Status TaintUpstreamX509(const std::string& subject_key_id);
  absl::Status RevokeUpstreamX509(const std::string& subject_key_id);

 private:
  // The retired X.509 authority when its SKI is `id`; NOT_FOUND otherwise.
  absl::StatusOr<X509Slot> OldX509(const std::string& id) const;

  const CaOptions& options_;
  CaJournal* const journal_;
  BundleKeeper* const bundle_;
  const AuthorityDependents* const dependents_;
  const UpstreamLink* const link_;
  CaRotator* const rotator_;
};

}  // namespace trellis::server
