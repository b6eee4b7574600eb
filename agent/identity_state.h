// The agent's working picture of what workloads may receive, kept copy-on-write: every
// change builds a new immutable snapshot and swaps one pointer, and publishing hands that
// pointer to the SvidCache when it differs from the published one.
#pragma once

#include <memory>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "agent/entry_sync.h"
#include "agent/svid_cache.h"
#include "common/bundle.h"
#include "workload_api/identity_snapshot.h"

namespace trellis::agent {

class IdentityState {
 public:
  IdentityState();

  std::shared_ptr<const workload_api::IdentitySnapshot> Current() const;
  // The agent's own trust bundle (null before bootstrap trust or with insecure bootstrap).
  std::shared_ptr<const common::Bundle> Bundle() const;
  void SetBundle(std::shared_ptr<const common::Bundle> bundle);

  // Applies what a sync brought and marks the state synced. Returns the ids of entries that
  // went away or changed revision (their JWT-SVIDs must be fetched again).
  std::vector<std::string> ApplySync(SyncUpdate update);
  // Adds freshly minted SVIDs (each names its entry); returns the ids of the entries kept
  // (an entry removed meanwhile gets none).
  std::vector<std::string> AddSvids(
      std::vector<std::shared_ptr<const workload_api::CachedSvid>> svids);
  // Drops SVIDs expired at `now`; false when there were none.
  bool PruneExpired(absl::Time now);

  // True when a certificate of `chain_der` (concatenated DER) is, or was signed by, an X.509
  // authority the server marked tainted in its last bundle.
  bool IssuedByTainted(std::string_view chain_der) const;

  // Hands the current snapshot to `cache` unless it is the one published already; false
  // when nothing a workload can see changed.
  bool PublishTo(SvidCache* cache) const;

 private:
  // Replaces current_ by a copy that `edit` changed, versioned after it.
  template <typename Edit>
  void EditLocked(Edit edit) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  mutable absl::Mutex mu_;
  std::shared_ptr<const workload_api::IdentitySnapshot> current_ ABSL_GUARDED_BY(mu_);
  std::set<std::string> tainted_key_ids_ ABSL_GUARDED_BY(mu_);  // subject key ids
};

}  // namespace trellis::agent
