// Per-caller token buckets for the agent API (attestation and signing limits per IP).
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <unordered_map>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/clock.h"

namespace trellis::server {

// Each key (a peer address) owns a bucket that refills at `rate_per_second` up to `burst`
// tokens. Thread-safe. Memory stays bounded: once more than `max_keys` buckets exist, those
// that have refilled completely (idle callers) are dropped, which loses nothing.
class RateLimiter {
 public:
  struct Options {
    Options() = default;
    Options(double rate, double burst_size, size_t keys)
        : rate_per_second(rate), burst(burst_size), max_keys(keys) {}
    double rate_per_second = 1;
    double burst = 1;
    size_t max_keys = 10000;
    // Called (outside the limiter's lock) after every refusal, for metrics.
    std::function<void()> refused;
  };

  RateLimiter(Options options, const common::Clock& clock);

  // Takes `cost` tokens from `key`'s bucket. RESOURCE_EXHAUSTED (naming `what`) when they are
  // not there; nothing is taken then. A cost above the burst is allowed from a full bucket,
  // so a large batch is slowed, never refused forever.
  absl::Status Take(const std::string& key, double cost = 1, const std::string& what = "request");

  size_t KeyCount() const;

 private:
  struct Bucket {
    double tokens;
    absl::Time updated;
  };
  void Refill(Bucket& b, absl::Time now) const;
  void PruneIdle(absl::Time now) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const Options options_;
  const common::Clock& clock_;
  mutable absl::Mutex mu_;
  std::unordered_map<std::string, Bucket> buckets_ ABSL_GUARDED_BY(mu_);
};

// SPIRE's per-IP defaults: one attestation per second, 500 signatures per second. The
// attestation burst lets a host start a handful of agents at once.
struct RateLimits {
  bool attestation_enabled = true;
  RateLimiter::Options attestation{1, 10, 10000};
  bool signing_enabled = true;
  RateLimiter::Options signing{500, 500, 10000};
};

}  // namespace trellis::server
