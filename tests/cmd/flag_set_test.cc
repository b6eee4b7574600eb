// FlagSet: both syntaxes' flag forms, repeatable lists, one-line errors and help layouts.
#include "cmd/flag_set.h"

#include <sstream>

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

TEST(FlagSetLongOptions, BooleanTakesNextPlainWordAndWordSpellings) {
  bool on = false, off = true;
  std::string name;
  FlagSet fs(FlagSet::Syntax::kLongOptions);
  fs.Bool("on", &on, "a switch");
  fs.Bool("off", &off, "a switch");
  fs.String("name", &name, "a name");
  ASSERT_TRUE(fs.Parse({"-on", "YES", "--off=no", "-name", "-x"}).ok());
  EXPECT_TRUE(on);
  EXPECT_FALSE(off);
  EXPECT_EQ(name, "-x");
}

TEST(FlagSetLongOptions, ErrorsNameTheOption) {
  std::string name;
  int64_t n = 5;
  auto parse = [&](const std::vector<std::string>& args) {
    FlagSet fs(FlagSet::Syntax::kLongOptions);
    fs.String("name", &name, "a name");
    fs.Int("n", &n, "a number");
    return std::string(fs.Parse(args).message());
  };
  EXPECT_EQ(parse({"-name", "a", "-name", "b"}),
            "option '--name' cannot be specified more than once");
  EXPECT_EQ(parse({"-name"}), "the required argument for option '--name' is missing");
  EXPECT_EQ(parse({"-n", "2147483648"}), "the argument ('2147483648') for option '--n' is invalid");
  EXPECT_EQ(parse({"-bogus", "x"}), "unknown flag -bogus");
  EXPECT_EQ(parse({"--", "-name"}), "unknown flag -name");
  EXPECT_EQ(parse({"stray"}), "unexpected argument stray");
}

TEST(FlagSetLongOptions, TableListsFlagsInDeclarationOrderThenHelp) {
  std::string config = "conf/agent/agent.conf";
  bool expand = false;
  FlagSet fs(FlagSet::Syntax::kLongOptions);
  fs.String("config", &config, "Path to the agent configuration file");
  fs.Bool("expandEnv", &expand, "Expand $VAR and ${VAR} in the configuration file");
  std::ostringstream os;
  fs.PrintTable(os);
  EXPECT_EQ(os.str(),
            "Flags:\n"
            "  --config arg (=conf/agent/agent.conf) Path to the agent configuration file\n"
            "  --expandEnv [=arg(=1)] (=0)           Expand $VAR and ${VAR} in the \n"
            "                                        configuration file\n"
            "  --help                                Show this help\n"
            "  --h                                   Show this help\n");
}

}  // namespace
}  // namespace trellis::cmd
