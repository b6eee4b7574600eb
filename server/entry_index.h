// In-memory index of registration entries and attested nodes, for per-agent authorisation.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "common/clock.h"
#include "common/spiffe_id.h"
#include "datastore/datastore.h"

namespace trellis::server {

// Kept current from DataStore::ListEvents (Poll() reads new events; Refresh() after local
// writes). Thread-safe; lookups never touch the datastore.
class EntryIndex {
 public:
  // Loads every entry and node (with selectors). The clock decides entry expiry.
  static absl::StatusOr<std::unique_ptr<EntryIndex>> Create(
      datastore::DataStore* ds, const common::Clock& clock = common::SystemClock::Get());
  ~EntryIndex();

  // Applies new change-log events (re-reading changed rows by id).
  absl::Status Poll();
  absl::Status Refresh() { return Poll(); }
  // Bumps on every applied change.
  uint64_t Version() const;

  // Entries the agent may mint for: parent == agent; node aliases (parent ==
  // spiffe://<td>/spire/server) whose selectors are a subset of the node's selectors; then,
  // transitively, entries whose parent is the spiffe_id of an entry already authorised. No
  // duplicates; expired entries are left out.
  std::vector<datastore::RegistrationEntry> AuthorizedEntries(
      const common::SpiffeId& agent_id) const;
  // The entry when it is one of AuthorizedEntries(agent_id), found by walking up from the
  // entry rather than down from the agent: the cost follows the entry's depth, not the number
  // of entries the agent holds.
  std::optional<datastore::RegistrationEntry> AuthorizedEntry(const common::SpiffeId& agent_id,
                                                             const std::string& entry_id) const;
  // Node row including selectors, banned flag and serials.
  std::optional<datastore::AttestedNode> Node(const std::string& agent_spiffe_id) const;
  std::optional<datastore::RegistrationEntry> Entry(const std::string& entry_id) const;
  // Unexpired entries whose spiffe_id equals `spiffe_id`.
  std::vector<datastore::RegistrationEntry> EntriesBySpiffeId(const std::string& spiffe_id) const;
  size_t EntryCount() const;
  size_t NodeCount() const;

  // Called after Poll() applied changes (outside the index lock), with the new version and
  // the agents whose authorised entries or node row may have changed: the agents above each
  // changed entry (before and after the change; through node aliases, the nodes whose
  // selectors cover the alias) and each changed node. Work for a change is proportional to
  // the agents it concerns, never to every agent.
  // Bundle rows written (by this server or another sharing the store) are named by trust
  // domain, so the bundle and federated bundles are re-read at once.
  struct Change {
    std::set<std::string> agents;
    std::set<std::string> bundles;
  };
  using ChangeListener = std::function<void(uint64_t version, const Change& change)>;
  void SetChangeListener(ChangeListener listener);

 private:
  struct Data;
  EntryIndex(datastore::DataStore* ds, const common::Clock& clock);
  absl::Status LoadAll();

  datastore::DataStore* ds_;
  const common::Clock& clock_;
  absl::Mutex poll_mu_;  // one Poll at a time
  int64_t last_event_id_ ABSL_GUARDED_BY(poll_mu_) = 0;
  mutable absl::Mutex mu_ ABSL_ACQUIRED_AFTER(poll_mu_);
  std::unique_ptr<Data> data_ ABSL_GUARDED_BY(mu_);
  ChangeListener listener_ ABSL_GUARDED_BY(mu_);
};

}  // namespace trellis::server
