// Token bucket arithmetic for RateLimiter.
#include "server/rate_limiter.h"

#include <algorithm>

namespace trellis::server {

RateLimiter::RateLimiter(Options options, const common::Clock& clock)
    : options_(options), clock_(clock) {}

void RateLimiter::Refill(Bucket& b, absl::Time now) const {
  if (now > b.updated) {
    double elapsed = absl::ToDoubleSeconds(now - b.updated);
    b.tokens = std::min(options_.burst, b.tokens + elapsed * options_.rate_per_second);
    b.updated = now;
  }
}

void RateLimiter::PruneIdle(absl::Time now) {
  for (auto it = buckets_.begin(); it != buckets_.end();) {
    Refill(it->second, now);
    if (it->second.tokens >= options_.burst) {
      it = buckets_.erase(it);
    } else {
      ++it;
    }
  }
}

absl::Status RateLimiter::Take(const std::string& key, double cost, const std::string& what) {
  absl::Time now = clock_.Now();
  {
    absl::MutexLock lock(&mu_);
    auto it = buckets_.find(key);
    if (it == buckets_.end()) {
      if (buckets_.size() >= options_.max_keys) PruneIdle(now);
      it = buckets_.emplace(key, Bucket{options_.burst, now}).first;
    }
    Bucket& b = it->second;
    Refill(b, now);
    double needed = std::min(cost, options_.burst);
    if (b.tokens >= needed) {
      b.tokens -= needed;
      return absl::OkStatus();
    }
  }
  if (options_.refused) options_.refused();
  return absl::ResourceExhaustedError(what + " rate limit exceeded for " + key);
}

size_t RateLimiter::KeyCount() const {
  absl::MutexLock lock(&mu_);
  return buckets_.size();
}

}  // namespace trellis::server
