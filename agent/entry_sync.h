// One SyncAuthorizedEntries call: what the agent knows goes up (entry revisions, bundle
// sequences), what changed comes back, parsed and checked.
#pragma once

#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "agent/server_connection.h"
#include "common/bundle.h"
#include "workload_api/identity_snapshot.h"

namespace trellis::agent {

struct SyncUpdate {
  // The own trust bundle, when the server sent a newer one.
  std::shared_ptr<const common::Bundle> bundle;
  bool bundle_sent = false;
  // With a bundle: subject key ids of its tainted X.509 authorities, and the key ids of its
  // tainted JWT authorities.
  std::set<std::string> tainted_key_ids;
  std::set<std::string> tainted_jwt_kids;
  // Trust domain name -> bundle; names of federated bundles to drop.
  std::map<std::string, std::shared_ptr<const common::Bundle>> federated;
  std::vector<std::string> removed_federated;
  std::vector<std::string> removed_ids;
  std::vector<std::shared_ptr<const workload_api::CachedEntry>> changed;
  // SyncAuthorizedEntries calls it took (one per page).
  int pages = 0;
};

// Pages through the agent's authorised entries (see SyncAuthorizedEntriesRequest) and gathers
// every page into one update, applied whole. A bundle of another trust domain than `td` is
// INTERNAL; entries and federated bundles that do not parse are logged and skipped.
absl::StatusOr<SyncUpdate> SyncEntries(ServerConnection& conn,
                                       const workload_api::IdentitySnapshot& known,
                                       const common::TrustDomain& td);

}  // namespace trellis::agent
