// FlagSet: Go-style flag forms, repeatable lists and one-line errors.
#include "cmd/flag_set.h"

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace trellis::cmd {
namespace {

using ::testing::HasSubstr;

struct Flags {
  std::string name;
  int64_t ttl = 600;
  bool admin = false;
  std::vector<std::string> selectors;
  FlagSet fs;
  Flags() {
    fs.String("name", &name, "a name");
    fs.Int("ttl", &ttl, "seconds");
    fs.Bool("admin", &admin, "a switch");
    fs.Strings("selector", &selectors, "repeatable");
  }
};

TEST(FlagSet, AcceptsSingleDashDoubleDashAndEquals) {
  Flags f;
  ASSERT_TRUE(f.fs.Parse({"-name", "a", "--ttl", "5", "-selector=x:y"}).ok());
  EXPECT_EQ(f.name, "a");
  EXPECT_EQ(f.ttl, 5);
  EXPECT_EQ(f.selectors, std::vector<std::string>{"x:y"});
}

TEST(FlagSet, BoolTakesNoSeparateValue) {
  Flags f;
  ASSERT_TRUE(f.fs.Parse({"-admin", "-name", "n"}).ok());
  EXPECT_TRUE(f.admin);
  EXPECT_EQ(f.name, "n");
}

TEST(FlagSet, BoolAcceptsExplicitFalse) {
  Flags f;
  f.admin = true;
  ASSERT_TRUE(f.fs.Parse({"-admin=false"}).ok());
  EXPECT_FALSE(f.admin);
}

TEST(FlagSet, RepeatedListFlagAppends) {
  Flags f;
  ASSERT_TRUE(f.fs.Parse({"-selector", "unix:uid:1", "-selector", "unix:gid:2"}).ok());
  EXPECT_EQ(f.selectors, (std::vector<std::string>{"unix:uid:1", "unix:gid:2"}));
}

TEST(FlagSet, UnknownFlagIsInvalidAndNamed) {
  Flags f;
  absl::Status st = f.fs.Parse({"-bogus", "1"});
  EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(st.message()), HasSubstr("-bogus"));
}

TEST(FlagSet, MissingValueIsInvalid) {
  Flags f;
  absl::Status st = f.fs.Parse({"-name"});
  EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(st.message()), HasSubstr("needs an argument: -name"));
}

TEST(FlagSet, NonIntegerIsInvalid) {
  Flags f;
  absl::Status st = f.fs.Parse({"-ttl", "ten"});
  EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(st.message()), HasSubstr("-ttl"));
}

TEST(FlagSet, PositionalArgumentIsInvalid) {
  Flags f;
  EXPECT_EQ(f.fs.Parse({"stray"}).code(), absl::StatusCode::kInvalidArgument);
}

TEST(FlagSet, HelpIsReportedNotAnError) {
  Flags f;
  ASSERT_TRUE(f.fs.Parse({"-h"}).ok());
  EXPECT_TRUE(f.fs.help_requested());
}

TEST(FlagSet, RecordsWhichFlagsWereSet) {
  Flags f;
  ASSERT_TRUE(f.fs.Parse({"-name", "x"}).ok());
  EXPECT_TRUE(f.fs.IsSet("name"));
  EXPECT_FALSE(f.fs.IsSet("ttl"));
}

}  // namespace
}  // namespace trellis::cmd
