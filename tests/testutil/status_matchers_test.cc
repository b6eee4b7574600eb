// The shared Status matchers accept what they name and refuse everything else.
#include "tests/testutil/status_matchers.h"

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace trellis::testutil {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

TEST(IsOk, MatchesOkStatusAndStatusOrWithValue) {
  EXPECT_THAT(absl::OkStatus(), IsOk());
  EXPECT_THAT(absl::StatusOr<int>(3), IsOk());
  EXPECT_THAT(absl::NotFoundError("x"), Not(IsOk()));
  EXPECT_THAT(absl::StatusOr<int>(absl::InternalError("x")), Not(IsOk()));
}

TEST(StatusIs, ComparesTheExactCode) {
  EXPECT_THAT(absl::NotFoundError("gone"), StatusIs(absl::StatusCode::kNotFound));
  EXPECT_THAT(absl::NotFoundError("gone"), Not(StatusIs(absl::StatusCode::kInternal)));
  EXPECT_THAT(absl::OkStatus(), Not(StatusIs(absl::StatusCode::kNotFound)));
  EXPECT_THAT(absl::StatusOr<int>(absl::InvalidArgumentError("bad")),
              StatusIs(absl::StatusCode::kInvalidArgument));
}

TEST(StatusIs, AppliesTheMessageMatcher) {
  const absl::Status s = absl::FailedPreconditionError("key file k.pem is loose");
  EXPECT_THAT(s, StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("k.pem")));
  EXPECT_THAT(s, Not(StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("other"))));
  EXPECT_THAT(s, Not(StatusIs(absl::StatusCode::kNotFound, HasSubstr("k.pem"))));
  EXPECT_THAT(s, StatusIs(absl::StatusCode::kFailedPrecondition, "key file k.pem is loose"));
}

TEST(StatusIs, ExplainsAMismatch) {
  ::testing::StringMatchResultListener listener;
  const auto matcher = ::testing::Matcher<absl::Status>(StatusIs(absl::StatusCode::kNotFound));
  EXPECT_FALSE(matcher.MatchAndExplain(absl::InternalError("boom"), &listener));
  EXPECT_THAT(listener.str(), HasSubstr("boom"));
}

}  // namespace
}  // namespace trellis::testutil
