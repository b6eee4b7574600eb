// The agent's view of what workloads may receive: entries, their X509-SVIDs, and bundles.
// The agent writes it; the Workload API reads snapshots of it and is told of every change.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "absl/time/time.h"
#include "common/bundle.h"
#include "common/spiffe_id.h"

namespace trellis::workload_api {

// A registration entry as the agent holds it (selectors as "type:value").
struct CachedEntry {
  std::string id;
  common::SpiffeId spiffe_id;
  std::vector<std::string> selectors;
  std::vector<std::string> federates_with;  // trust domain names
  std::string hint;
  int64_t revision = 0;
  int64_t created_at = 0;
  int32_t jwt_svid_ttl = 0;
};

struct CachedSvid {
  std::vector<std::string> chain_der;  // leaf first, no root
  std::string key_pkcs8_der;
  absl::Time not_before;
  absl::Time not_after;
  int64_t entry_revision = 0;  // revision the SVID was minted for
};

struct Identity {
  const CachedEntry* entry;
  const CachedSvid* svid;
};

// An immutable picture of the cache; readers keep it alive with shared_ptr.
struct CacheSnapshot {
  uint64_t version = 0;
  // False until the agent has synced at least once: callers then get UNAVAILABLE.
  bool ready = false;
  std::shared_ptr<const common::Bundle> bundle;
  // Trust domain name -> bundle.
  std::map<std::string, std::shared_ptr<const common::Bundle>> federated;
  // Entry id -> entry; entry id -> SVID (entries without an SVID yet are absent there).
  // Entries and SVIDs are immutable and shared with the agent's own tables and with later
  // snapshots, so publishing a snapshot does not copy every entry, certificate and key.
  std::map<std::string, std::shared_ptr<const CachedEntry>> entries;
  std::map<std::string, std::shared_ptr<const CachedSvid>> svids;

  // Entries whose selectors are a subset of `selectors` and that hold an SVID, ordered so the
  // first is the default identity (oldest entry first, then by id).
  std::vector<Identity> IdentitiesFor(const std::vector<std::string>& selectors) const;
  // Every entry matching `selectors`, SVID or not.
  std::vector<const CachedEntry*> EntriesFor(const std::vector<std::string>& selectors) const;
  // Own bundle plus `federates_with` bundles of `ids`, keyed by trust domain ID string.
  std::map<std::string, std::shared_ptr<const common::Bundle>> BundlesFor(
      const std::vector<Identity>& ids, bool include_own) const;
  // The bundle (own or federated) for a trust domain; nullptr when unknown.
  std::shared_ptr<const common::Bundle> BundleOf(const common::TrustDomain& td) const;
};

// Thread-safe holder of the current snapshot with change listeners.
class Cache {
 public:
  using Listener = std::function<void(std::shared_ptr<const CacheSnapshot>)>;

  Cache();
  std::shared_ptr<const CacheSnapshot> Snapshot() const;
  // Replaces the snapshot (its version is set here) and notifies every listener, in the
  // calling thread, outside the cache's lock.
  void Publish(CacheSnapshot next);
  // Returns an id for RemoveListener. The listener may run concurrently with removal: it must
  // guard its own target (the Workload API streams do).
  uint64_t AddListener(Listener listener);
  void RemoveListener(uint64_t id);
  size_t ListenerCount() const;

 private:
  mutable std::mutex mu_;
  std::shared_ptr<const CacheSnapshot> snapshot_;            // guarded by mu_
  std::map<uint64_t, std::shared_ptr<Listener>> listeners_;  // guarded by mu_
  uint64_t next_listener_id_ = 1;                            // guarded by mu_
  uint64_t next_version_ = 1;                                // guarded by mu_
  std::mutex publish_mu_;  // keeps notifications in publication order
};

}  // namespace trellis::workload_api
