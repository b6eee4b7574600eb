// The agent's own SVID: adopted after attestation or renewal (checked, persisted with the
// bundle), renewed at half its lifetime or at once when a tainted authority issued it.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "agent/server_connection.h"
#include "agent/state_store.h"
#include "common/bundle.h"
#include "common/clock.h"
#include "common/keys.h"
#include "common/spiffe_id.h"
#include "common/x509.h"
#include "transport/spiffe_tls.h"

namespace trellis::agent {

class AgentSvid {
 public:
  AgentSvid(std::string data_dir, common::TrustDomain td, const common::Clock& clock)
      : data_dir_(std::move(data_dir)), td_(std::move(td)), clock_(clock) {}

  // Takes a persisted SVID as is (LoadAgentState checked it).
  void Restore(AgentState state);
  // Checks the pair (key matches, an agent ID of the trust domain), makes it current and
  // persists it with `bundle`; returns the TLS identity for new channels.
  absl::StatusOr<transport::TlsIdentity> Adopt(std::vector<common::Certificate> chain,
                                               common::PrivateKey key,
                                               const common::Bundle* bundle);
  // The current pair as a TLS identity; nullopt without one.
  absl::StatusOr<std::optional<transport::TlsIdentity>> Identity() const;

  bool present() const;
  bool reattestable() const;
  void set_reattestable(bool reattestable);
  std::optional<common::SpiffeId> id() const;
  // True when present and not expired at `now`.
  bool ValidAt(absl::Time now) const;
  // The chain's DER certificates concatenated, leaf first (empty without an SVID).
  std::string ChainDer() const;
  // UNAUTHENTICATED without an SVID; otherwise the renewal time and expiry.
  absl::StatusOr<std::pair<absl::Time, absl::Time>> RenewAtAndExpiry() const;

  // A new SVID from RenewAgent on `conn` (not adopted yet).
  static absl::StatusOr<std::pair<std::vector<common::Certificate>, common::PrivateKey>> Renew(
      ServerConnection& conn);

 private:
  const std::string data_dir_;
  const common::TrustDomain td_;
  const common::Clock& clock_;
  mutable absl::Mutex mu_;
  std::vector<common::Certificate> chain_ ABSL_GUARDED_BY(mu_);
  std::optional<common::PrivateKey> key_ ABSL_GUARDED_BY(mu_);
  absl::Time renew_at_ ABSL_GUARDED_BY(mu_);
  bool reattestable_ ABSL_GUARDED_BY(mu_) = false;
};

}  // namespace trellis::agent
