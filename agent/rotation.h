// When to renew an SVID: at half of its lifetime, moved by up to +/-10% so a fleet minted at
// the same moment does not come back to the server at the same moment.
#pragma once

#include <cstdint>

#include "absl/time/time.h"

namespace trellis::agent {

inline constexpr double kRenewalJitter = 0.10;

// A uniformly random factor in [-1, 1] (thread-safe).
double RandomUnitJitter();

// not_before + (not_after - not_before) / 2 * (1 + kRenewalJitter * unit_jitter), with
// unit_jitter clamped to [-1, 1].
absl::Time RenewalTime(absl::Time not_before, absl::Time not_after, double unit_jitter);

// True when an SVID minted for `svid_revision`, due for renewal at `renew_at` and expiring at
// `not_after`, must be replaced at `now` for an entry now at `entry_revision`.
bool NeedsRenewal(absl::Time now, absl::Time renew_at, absl::Time not_after, int64_t svid_revision,
                  int64_t entry_revision);

// Exponential backoff: initial * 2^attempt, capped at max.
absl::Duration Backoff(int attempt, absl::Duration initial = absl::Seconds(1),
                       absl::Duration max = absl::Seconds(30));

}  // namespace trellis::agent
