// Duration strings as written in configs and flags.
#include "common/duration.h"

#include "gtest/gtest.h"

namespace trellis::common {
namespace {

TEST(ParseDuration, AcceptsSingleUnits) {
  EXPECT_EQ(*ParseDuration("90s"), absl::Seconds(90));
  EXPECT_EQ(*ParseDuration("5m"), absl::Minutes(5));
  EXPECT_EQ(*ParseDuration("24h"), absl::Hours(24));
  EXPECT_EQ(*ParseDuration("250ms"), absl::Milliseconds(250));
  EXPECT_EQ(*ParseDuration("7d"), absl::Hours(168));
  EXPECT_EQ(*ParseDuration("0"), absl::ZeroDuration());
}

TEST(ParseDuration, AcceptsCompoundAndFractions) {
  EXPECT_EQ(*ParseDuration("1h30m"), absl::Minutes(90));
  EXPECT_EQ(*ParseDuration("1.5h"), absl::Minutes(90));
  EXPECT_EQ(*ParseDuration("2h45m30s"), absl::Seconds(2 * 3600 + 45 * 60 + 30));
}

TEST(ParseDuration, RejectsMalformed) {
  for (const char* bad : {"", "h", "10", "10x", "-5m", "1h-5m", "m5", "1..5s", " 5m"}) {
    auto d = ParseDuration(bad);
    EXPECT_FALSE(d.ok()) << bad;
    if (!d.ok()) {
      EXPECT_EQ(d.status().code(), absl::StatusCode::kInvalidArgument) << bad;
    }
  }
}

TEST(ParseDuration, RejectsOverflow) {
  EXPECT_FALSE(ParseDuration("99999999999999999999h").ok());
  EXPECT_FALSE(ParseDuration("9000000000h").ok());
}

TEST(DurationToString, RoundTrips) {
  EXPECT_EQ(DurationToString(absl::Minutes(90)), "1h30m");
  EXPECT_EQ(DurationToString(absl::Seconds(45)), "45s");
  EXPECT_EQ(DurationToString(absl::ZeroDuration()), "0s");
  EXPECT_EQ(*ParseDuration(DurationToString(absl::Seconds(3725))), absl::Seconds(3725));
}

}  // namespace
}  // namespace trellis::common
