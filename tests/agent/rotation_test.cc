// Renewal schedule: half-life with bounded jitter, revision changes, expiry, backoff.
#include "agent/rotation.h"

#include "common/clock.h"
#include "gtest/gtest.h"

namespace trellis::agent {
namespace {

const absl::Time kStart = absl::FromUnixSeconds(1700000000);

TEST(RenewalTime, NoJitterIsHalfLife) {
  EXPECT_EQ(RenewalTime(kStart, kStart + absl::Hours(1), 0.0), kStart + absl::Minutes(30));
}

TEST(RenewalTime, JitterStaysWithinTenPercentOfHalfLife) {
  const absl::Time lo = kStart + absl::Minutes(27);  // 30 min - 10%
  const absl::Time hi = kStart + absl::Minutes(33);  // 30 min + 10%
  for (int i = 0; i < 10000; ++i) {
    absl::Time t = RenewalTime(kStart, kStart + absl::Hours(1), RandomUnitJitter());
    ASSERT_GE(t, lo);
    ASSERT_LE(t, hi);
  }
}

TEST(RenewalTime, ExtremeJitterIsClamped) {
  EXPECT_EQ(RenewalTime(kStart, kStart + absl::Hours(1), 5.0), kStart + absl::Minutes(33));
  EXPECT_EQ(RenewalTime(kStart, kStart + absl::Hours(1), -5.0), kStart + absl::Minutes(27));
}

TEST(RandomUnitJitter, SpreadsAcrossTheRange) {
  double lo = 1, hi = -1;
  for (int i = 0; i < 10000; ++i) {
    double j = RandomUnitJitter();
    ASSERT_GE(j, -1.0);
    ASSERT_LE(j, 1.0);
    lo = std::min(lo, j);
    hi = std::max(hi, j);
  }
  EXPECT_LT(lo, -0.9);
  EXPECT_GT(hi, 0.9);
}

TEST(NeedsRenewal, NotBeforeRenewalTime) {
  common::FakeClock clock(kStart);
  absl::Time renew_at = RenewalTime(kStart, kStart + absl::Hours(1), 0.0);
  clock.Advance(absl::Minutes(29));
  EXPECT_FALSE(NeedsRenewal(clock.Now(), renew_at, kStart + absl::Hours(1), 3, 3));
}

TEST(NeedsRenewal, AtRenewalTime) {
  common::FakeClock clock(kStart);
  absl::Time renew_at = RenewalTime(kStart, kStart + absl::Hours(1), 0.0);
  clock.Advance(absl::Minutes(30));
  EXPECT_TRUE(NeedsRenewal(clock.Now(), renew_at, kStart + absl::Hours(1), 3, 3));
}

TEST(NeedsRenewal, EntryRevisionChanged) {
  common::FakeClock clock(kStart);
  absl::Time renew_at = RenewalTime(kStart, kStart + absl::Hours(1), 0.0);
  EXPECT_TRUE(NeedsRenewal(clock.Now(), renew_at, kStart + absl::Hours(1), 3, 4));
}

TEST(NeedsRenewal, Expired) {
  common::FakeClock clock(kStart);
  clock.Advance(absl::Hours(2));
  EXPECT_TRUE(NeedsRenewal(clock.Now(), kStart + absl::Hours(3), kStart + absl::Hours(1), 3, 3));
}

TEST(Backoff, DoublesUpToTheCap) {
  EXPECT_EQ(Backoff(0), absl::Seconds(1));
  EXPECT_EQ(Backoff(1), absl::Seconds(2));
  EXPECT_EQ(Backoff(3), absl::Seconds(8));
  EXPECT_EQ(Backoff(10), absl::Seconds(30));
  EXPECT_EQ(Backoff(1000), absl::Seconds(30));
}

}  // namespace
}  // namespace trellis::agent
