// Keeps the bundles of federated trust domains current: for each federation relationship in
// the datastore, fetches the bundle from its endpoint when the last one's refresh hint runs
// out, stores it when its authorities changed, and keeps the last good bundle when a fetch
// fails or returns something that is not a newer bundle of that trust domain.
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/bundle.h"
#include "common/clock.h"
#include "datastore/datastore.h"
#include "federation/bundle_client.h"

namespace trellis::federation {

class BundleRefresher {
 public:
  struct Options {
    explicit Options(common::TrustDomain td) : own_trust_domain(std::move(td)) {}
    common::TrustDomain own_trust_domain;
    // This trust domain's bundle, for endpoints that present one of our own SVIDs.
    std::function<std::shared_ptr<const common::Bundle>()> own_bundle;
    // Runs after a fetched bundle was stored (the caller's index then hands it to agents).
    std::function<void()> after_write;
    const common::Clock* clock = &common::SystemClock::Get();
    // Used when a document carries no spiffe_refresh_hint; hints are clamped to the bounds.
    absl::Duration default_refresh = absl::Minutes(5);
    absl::Duration min_refresh = absl::Seconds(1);
    absl::Duration max_refresh = absl::Hours(1);
    // After a failed fetch: this, doubling per failure, never beyond the refresh interval.
    absl::Duration first_retry = absl::Seconds(5);
    absl::Duration fetch_timeout = absl::Seconds(10);
  };

  // What `federation show` reports of one relationship.
  struct State {
    absl::Time last_attempt = absl::InfinitePast();
    absl::Time last_success = absl::InfinitePast();
    absl::Time next_attempt = absl::InfinitePast();
    std::string last_error;                 // empty after a success
    std::optional<uint64_t> last_sequence;  // the endpoint's, as last accepted
    int failures = 0;
    // The endpoint this state is about (URL, profile, endpoint ID): a relationship pointed
    // elsewhere starts afresh, sequence included.
    std::string endpoint;
  };

  BundleRefresher(Options options, datastore::DataStore* ds);
  ~BundleRefresher();

  void Start();
  void Stop();

  // Fetches the trust domain's bundle now, whatever its schedule; the outcome of that fetch.
  // NOT_FOUND when no relationship names the trust domain.
  absl::Status RefreshNow(const std::string& trust_domain) ABSL_LOCKS_EXCLUDED(mu_);
  // Re-reads the relationships at once (after an admin API change).
  void Wake() ABSL_LOCKS_EXCLUDED(mu_);
  std::optional<State> StateOf(const std::string& trust_domain) const ABSL_LOCKS_EXCLUDED(mu_);

  // One pass: re-reads the relationships and fetches every one that is due. Exposed so
  // tests drive the schedule with a fake clock.
  void RunDue() ABSL_LOCKS_EXCLUDED(mu_);

 private:
  // Fetches, checks and stores one relationship's bundle; updates its state.
  absl::Status Refresh(const datastore::FederationRelationship& r) ABSL_LOCKS_EXCLUDED(mu_);
  absl::StatusOr<BundleEndpointSpec> SpecOf(const datastore::FederationRelationship& r);
  absl::Duration Interval(const common::Bundle& fetched) const;
  // The relationship's state, reset when its endpoint changed.
  State& StateFor(const datastore::FederationRelationship& r) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void Loop() ABSL_LOCKS_EXCLUDED(mu_);

  const Options options_;
  datastore::DataStore* const ds_;
  // One fetch at a time per refresher: RefreshNow and the loop never race on a domain.
  absl::Mutex fetch_mu_ ABSL_ACQUIRED_BEFORE(mu_);
  mutable absl::Mutex mu_;
  std::map<std::string, State> states_ ABSL_GUARDED_BY(mu_);
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  bool wake_ ABSL_GUARDED_BY(mu_) = false;
  std::thread thread_;
};

}  // namespace trellis::federation
