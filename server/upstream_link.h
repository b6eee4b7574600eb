// This server's side of its UpstreamAuthority: CAs minted and checked before use, JWT keys
// published, the upstream's bundle merged into ours, a backoff after failed calls, and the
// upstream authorities found newly tainted, reported as events for the rotator to act on.
#pragma once

#include <functional>
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
#include "datastore/types.h"
#include "server/authority_dependents.h"
#include "server/bundle_keeper.h"
#include "server/ca_journal.h"
#include "server/ca_options.h"
#include "server/upstream_authority.h"

namespace trellis::server {

// Calls never go back up to the rotator: it reads TakeTaintEvents(). Callers serialise the
// changing calls (CaManager's step lock); the state kept here has its own lock.
class UpstreamLink {
 public:
  struct TaintEvent {
    datastore::AuthorityKind kind;
    std::string id;  // X.509: Subject Key Identifier (hex); JWT: key id
  };

  UpstreamLink(const CaOptions& options, BundleKeeper* bundle, const CaJournal* journal,
               const AuthorityDependents* dependents, const common::Clock& clock);

  // Whether there is an upstream at all, and whether it holds the trust domain's bundle.
  bool present() const { return options_.upstream != nullptr; }
  bool OwnsBundle() const { return present() && options_.upstream->OwnsBundle(); }
  // False while the backoff after a failed call runs.
  bool AttemptAllowed() const;
  // Backoff bookkeeping for a call made (or a result refused) on the upstream's behalf.
  void CallDone(const absl::Status& result);

  // A CA for `key` from the upstream, refused unless it carries that key, verifies up to the
  // roots and does not chain through a tainted authority.
  absl::StatusOr<UpstreamAuthority::MintResult> MintCa(const common::PrivateKey& key);
  // Publishes one of our JWT keys before it signs, then merges the bundle the upstream
  // answers with (a failed merge is only logged: the key is published).
  absl::Status PublishOwnJwt(const datastore::JwtAuthority& authority);
  // Forwards a downstream server's JWT key, then merges the answer.
  absl::Status ForwardJwt(const datastore::JwtAuthority& authority);
  // Makes the local bundle the upstream's, keeping local taint marks, this server's own JWT
  // keys and any dropped authority this tier still depends on.
  absl::Status Merge(const datastore::Bundle& upstream);
  // Merges the last upstream bundle again while authorities are retained, so they leave once
  // nothing depends on them.
  absl::Status RemergeIfRetaining();
  std::optional<datastore::Bundle> LastUpstreamBundle() const;

  // Authorities the merges found newly tainted since the last call.
  std::vector<TaintEvent> TakeTaintEvents();
  // Called (outside any lock here) after a merge queued events.
  void SetEventListener(std::function<void()> listener);

 private:
  const CaOptions& options_;
  BundleKeeper* const bundle_;
  const CaJournal* const journal_;
  const AuthorityDependents* const dependents_;
  const common::Clock& clock_;
  mutable absl::Mutex mu_;
  absl::Time next_attempt_ ABSL_GUARDED_BY(mu_) = absl::InfinitePast();
  int failures_ ABSL_GUARDED_BY(mu_) = 0;
  // The upstream's bundle as last received.
  std::optional<datastore::Bundle> upstream_bundle_ ABSL_GUARDED_BY(mu_);
  // Authorities (SKI hex) the upstream dropped that this tier still needs.
  std::set<std::string> retained_ ABSL_GUARDED_BY(mu_);
  std::vector<TaintEvent> events_ ABSL_GUARDED_BY(mu_);
  std::function<void()> event_listener_ ABSL_GUARDED_BY(mu_);
};

}  // namespace trellis::server
