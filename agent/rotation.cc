// Renewal schedule arithmetic.
#include "agent/rotation.h"

#include <algorithm>
#include <random>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"

namespace trellis::agent {
namespace {

ABSL_CONST_INIT absl::Mutex jitter_mu(absl::kConstInit);

// One generator for the process, seeded on first use; callers hold jitter_mu.
std::mt19937_64& JitterRng() ABSL_EXCLUSIVE_LOCKS_REQUIRED(jitter_mu) {
  static std::mt19937_64 rng{std::random_device{}()};
  return rng;
}

}  // namespace

double RandomUnitJitter() {
  absl::MutexLock lock(&jitter_mu);
  return std::uniform_real_distribution<double>(-1.0, 1.0)(JitterRng());
}

absl::Time RenewalTime(absl::Time not_before, absl::Time not_after, double unit_jitter) {
  unit_jitter = std::clamp(unit_jitter, -1.0, 1.0);
  absl::Duration half = (not_after - not_before) / 2;
  return not_before + half * (1.0 + kRenewalJitter * unit_jitter);
}

bool NeedsRenewal(absl::Time now, absl::Time renew_at, absl::Time not_after, int64_t svid_revision,
                  int64_t entry_revision) {
  return svid_revision != entry_revision || now >= renew_at || now >= not_after;
}

absl::Duration Backoff(int attempt, absl::Duration initial, absl::Duration max) {
  absl::Duration d = initial;
  for (int i = 0; i < attempt && d < max; ++i) d *= 2;
  return std::min(d, max);
}

}  // namespace trellis::agent
