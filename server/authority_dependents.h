// Who still relies on this tier's X.509 authorities: the downstream servers it minted CAs for
// (it mints them, so it knows each one's chain), and agents holding SVIDs signed before an
// authority was retired.
#pragma once

#include <map>
#include <set>
#include <string>
#include <string_view>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/clock.h"
#include "common/spiffe_id.h"
#include "datastore/datastore.h"
#include "server/bundle_keeper.h"
#include "server/ca_journal.h"
#include "server/ca_options.h"
#include "server/upstream_authority.h"

namespace trellis::server {

class AuthorityDependents {
 public:
  AuthorityDependents(const CaOptions& options, datastore::DataStore* ds,
                      const CaJournal* journal, const BundleKeeper* bundle,
                      const common::Clock& clock);

  // Signs a CA for a downstream server from the CSR's public key (its signature is checked),
  // valid for `preferred_ttl` (zero: ca_ttl) capped at the active CA's NotAfter, and remembers
  // which authorities `caller`'s chain depends on.
  absl::StatusOr<UpstreamAuthority::MintResult> MintDownstreamCa(std::string_view csr_der,
                                                                 absl::Duration preferred_ttl,
                                                                 const common::SpiffeId& caller);
  // FAILED_PRECONDITION naming the dependent while this tier still needs the authority with
  // `raw_key_id` (`what` names it in the message): our active or prepared CA chains to it, a
  // downstream's current CA does, or agents hold SVIDs from our retired CA that does.
  absl::Status StillNeeded(const std::string& raw_key_id, const std::string& what) const;

 private:
  struct DownstreamMint {
    std::set<std::string> key_ids;
    absl::Time not_after;
  };
  absl::Status DownstreamsChainTo(const std::string& raw_key_id) const;
  // FAILED_PRECONDITION while an attested agent holds an SVID issued before `retired_at`.
  absl::Status AgentsRenewedSince(absl::Time retired_at, const std::string& what) const;

  const CaOptions& options_;
  datastore::DataStore* const ds_;
  const CaJournal* const journal_;
  const BundleKeeper* const bundle_;
  const common::Clock& clock_;
  mutable absl::Mutex mu_;
  // The latest CA minted for each downstream server, by caller SPIFFE ID.
  std::map<std::string, DownstreamMint> mints_ ABSL_GUARDED_BY(mu_);
};

}  // namespace trellis::server
