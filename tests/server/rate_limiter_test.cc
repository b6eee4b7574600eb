// RateLimiter: token buckets per key, driven by a FakeClock.
#include "server/rate_limiter.h"

#include "gtest/gtest.h"

namespace trellis::server {
namespace {

class RateLimiterTest : public ::testing::Test {
 protected:
  common::FakeClock clock_{absl::FromUnixSeconds(1800000000)};
};

TEST_F(RateLimiterTest, AllowsTheBurstThenRefuses) {
  RateLimiter limiter({1, 3, 100}, clock_);
  for (int i = 0; i < 3; ++i) EXPECT_TRUE(limiter.Take("10.0.0.1").ok());
  EXPECT_EQ(limiter.Take("10.0.0.1").code(), absl::StatusCode::kResourceExhausted);
}

TEST_F(RateLimiterTest, RefillsAtTheRate) {
  RateLimiter limiter({2, 2, 100}, clock_);
  ASSERT_TRUE(limiter.Take("a").ok());
  ASSERT_TRUE(limiter.Take("a").ok());
  ASSERT_FALSE(limiter.Take("a").ok());
  clock_.Advance(absl::Milliseconds(500));
  EXPECT_TRUE(limiter.Take("a").ok());
  EXPECT_EQ(limiter.Take("a").code(), absl::StatusCode::kResourceExhausted);
}

TEST_F(RateLimiterTest, NeverRefillsBeyondTheBurst) {
  RateLimiter limiter({1, 2, 100}, clock_);
  clock_.Advance(absl::Hours(1));
  EXPECT_TRUE(limiter.Take("a").ok());
  EXPECT_TRUE(limiter.Take("a").ok());
  EXPECT_EQ(limiter.Take("a").code(), absl::StatusCode::kResourceExhausted);
}

TEST_F(RateLimiterTest, KeysHaveSeparateBuckets) {
  RateLimiter limiter({1, 1, 100}, clock_);
  ASSERT_TRUE(limiter.Take("a").ok());
  EXPECT_FALSE(limiter.Take("a").ok());
  EXPECT_TRUE(limiter.Take("b").ok());
}

TEST_F(RateLimiterTest, RefusalTakesNothing) {
  RateLimiter limiter({1, 5, 100}, clock_);
  ASSERT_TRUE(limiter.Take("a", 4).ok());
  EXPECT_FALSE(limiter.Take("a", 3).ok());
  EXPECT_TRUE(limiter.Take("a", 1).ok());
}

TEST_F(RateLimiterTest, CostAboveBurstDrainsAFullBucket) {
  RateLimiter limiter({10, 10, 100}, clock_);
  EXPECT_TRUE(limiter.Take("a", 50).ok());
  EXPECT_EQ(limiter.Take("a", 1).code(), absl::StatusCode::kResourceExhausted);
}

TEST_F(RateLimiterTest, RefusalMessageNamesWhatWasLimited) {
  RateLimiter limiter({1, 1, 100}, clock_);
  ASSERT_TRUE(limiter.Take("a", 1, "attestation").ok());
  absl::Status st = limiter.Take("a", 1, "attestation");
  EXPECT_NE(std::string(st.message()).find("attestation"), std::string::npos);
}

TEST_F(RateLimiterTest, IdleBucketsArePrunedAtTheKeyLimit) {
  RateLimiter limiter({1, 1, 2}, clock_);
  ASSERT_TRUE(limiter.Take("a").ok());
  ASSERT_TRUE(limiter.Take("b").ok());
  clock_.Advance(absl::Seconds(5));
  ASSERT_TRUE(limiter.Take("c").ok());
  EXPECT_EQ(limiter.KeyCount(), 1u);
}

TEST_F(RateLimiterTest, BusyBucketsSurvivePruning) {
  RateLimiter limiter({1, 1, 2}, clock_);
  ASSERT_TRUE(limiter.Take("a").ok());
  ASSERT_TRUE(limiter.Take("b").ok());
  ASSERT_TRUE(limiter.Take("c").ok());
  EXPECT_EQ(limiter.KeyCount(), 3u);
  EXPECT_FALSE(limiter.Take("a").ok());
}

TEST_F(RateLimiterTest, TellsOfEveryRefusalAndNothingElse) {
  int refused = 0;
  RateLimiter::Options options{1, 2, 100};
  options.refused = [&refused] { ++refused; };
  RateLimiter limiter(options, clock_);
  ASSERT_TRUE(limiter.Take("a").ok());
  ASSERT_TRUE(limiter.Take("a").ok());
  EXPECT_EQ(refused, 0);
  EXPECT_FALSE(limiter.Take("a").ok());
  EXPECT_FALSE(limiter.Take("a").ok());
  EXPECT_EQ(refused, 2);
  clock_.Advance(absl::Seconds(1));
  EXPECT_TRUE(limiter.Take("a").ok());
  EXPECT_EQ(refused, 2);
}

}  // namespace
}  // namespace trellis::server
