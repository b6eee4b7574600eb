// The one part that decides when authorities change: the threshold rule, replacement of a
// tainted authority at once, start-up resume, housekeeping (pruning, re-reading the stored
// bundle) and the background cadence of all of it.
#pragma once

#include <functional>
#include <string>
#include <thread>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/clock.h"
#include "server/bundle_keeper.h"
#include "server/ca_journal.h"
#include "server/ca_options.h"
#include "server/ca_signer.h"
#include "server/upstream_link.h"

namespace trellis::server {

// Moves authorities through the journal's slots and installs what becomes active in the
// signer. The changing calls run with `steps_mu` held (CaManager's step lock, which the
// background loop takes itself).
class CaRotator {
 public:
  // How often the background loop checks rotation (in memory); the datastore chores of
  // housekeeping run every kHousekeepingPeriod.
  static constexpr absl::Duration kCheckPeriod = absl::Seconds(1);
  static constexpr absl::Duration kHousekeepingPeriod = absl::Seconds(10);

  CaRotator(const CaOptions& options, CaJournal* journal, BundleKeeper* bundle,
            UpstreamLink* link, CaSigner* signer, const common::Clock& clock,
            absl::Mutex* steps_mu);
  ~CaRotator();

  // Resumes from the journal, makes sure every live authority is in the bundle, rotates what
  // is due and publishes the bundle. Fails only when no X.509 CA can sign.
  absl::Status Start();
  // One rotation check; housekeeping when its period has passed.
  absl::Status Tick();
  // Acts on the authorities the upstream link found tainted: replaces ours at once.
  absl::Status HandleUpstreamEvents();

  // The steps themselves, for operators. FAILED_PRECONDITION without a prepared authority.
  absl::Status PrepareX509();
  absl::Status ActivateX509();
  absl::Status PrepareJwt();
  absl::Status ActivateJwt();

  void SetActivationListener(std::function<void()> listener);
  // Runs Tick() every kCheckPeriod, and HandleUpstreamEvents() as soon as the link reports,
  // on a thread of its own until StopLoop(). Idempotent.
  void StartLoop();
  void StopLoop();

  // The threshold rule: prepare below min(lifetime/2, 30 days) of remaining life, activate
  // below min(lifetime/6, 7 days).
  static absl::Duration PrepareThreshold(absl::Duration lifetime);
  static absl::Duration ActivateThreshold(absl::Duration lifetime);
  // True when an SVID TTL exceeds min(ca_ttl/6, 7 days): SVIDs would be cut short at rotation.
  static bool SvidTtlTooLong(absl::Duration ca_ttl, absl::Duration svid_ttl);

 private:
  absl::Status Rotate();
  // Takes the link's taint events and logs each; true when there was any.
  bool TakeAndLogTaintEvents();
  absl::Status RotateX509();
  absl::Status RotateJwt();
  absl::StatusOr<X509Slot> NewX509Ca();
  absl::StatusOr<JwtSlot> NewJwtKey();
  void InstallActive();
  void Loop();

  const CaOptions& options_;
  CaJournal* const journal_;
  BundleKeeper* const bundle_;
  UpstreamLink* const link_;
  CaSigner* const signer_;
  const common::Clock& clock_;
  absl::Mutex* const steps_mu_;
  mutable absl::Mutex mu_;
  absl::Time next_housekeeping_ ABSL_GUARDED_BY(mu_) = absl::InfinitePast();
  std::function<void()> activation_listener_ ABSL_GUARDED_BY(mu_);
  bool wake_ ABSL_GUARDED_BY(mu_) = false;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  std::thread loop_;  // started and joined by the owner's thread only
};

}  // namespace trellis::server
