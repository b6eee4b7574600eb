// trellis-server / trellis-agent `validate`: flags, exit codes, and what reaches stdout/stderr.
#include "cmd/cli.h"

#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testutil/temp_dir.h"

namespace trellis::cmd {
namespace {

using ::testing::HasSubstr;
using ::testing::StartsWith;

const std::string kSource = TRELLIS_SOURCE_DIR;
const std::string kGoodServer = kSource + "/examples/single/server.conf";
const std::string kGoodAgent = kSource + "/examples/single/agent.conf";
const std::string kBrokenServer = kSource + "/tests/testdata/config/server_typo.conf";

struct Result {
  int code;
  std::string out;
  std::string err;
};

Result RunServer(const std::vector<std::string>& args) {
  std::ostringstream out, err;
  int code = ServerMain(args, out, err);
  return {code, out.str(), err.str()};
}

Result RunAgent(const std::vector<std::string>& args) {
  std::ostringstream out, err;
  int code = AgentMain(args, out, err);
  return {code, out.str(), err.str()};
}

// Runs a real binary with stdout and stderr captured to files in a private temp dir.
Result RunBinary(const std::string& binary, const std::vector<std::string>& args) {
  testutil::TempDir tmp("trellis-cli");
  const std::string& dir = tmp.path();
  std::string out_path = dir + "/out", err_path = dir + "/err";
  pid_t pid = fork();
  if (pid == 0) {
    FILE* out = freopen(out_path.c_str(), "w", stdout);
    FILE* err = freopen(err_path.c_str(), "w", stderr);
    if (out == nullptr || err == nullptr) _exit(127);
    std::vector<char*> argv;
    argv.push_back(const_cast<char*>(binary.c_str()));
    for (const std::string& a : args) argv.push_back(const_cast<char*>(a.c_str()));
    argv.push_back(nullptr);
    execv(binary.c_str(), argv.data());
    _exit(127);
  }
  int status = 0;
  waitpid(pid, &status, 0);
  auto slurp = [](const std::string& p) {
    std::ifstream f(p);
    std::stringstream ss;
    ss << f.rdbuf();
    return ss.str();
  };
  Result r{WIFEXITED(status) ? WEXITSTATUS(status) : -1, slurp(out_path), slurp(err_path)};
  return r;
}

TEST(ServerValidate, GoodConfigPrintsValid) {
  Result r = RunServer({"validate", "-config", kGoodServer});
  EXPECT_EQ(r.code, 0);
  EXPECT_EQ(r.out, "Configuration is valid.\n");
  EXPECT_EQ(r.err, "");
}

TEST(ServerValidate, AcceptsDoubleDashAndEqualsForms) {
  EXPECT_EQ(RunServer({"validate", "--config", kGoodServer}).code, 0);
  EXPECT_EQ(RunServer({"validate", "-config=" + kGoodServer}).code, 0);
  EXPECT_EQ(RunServer({"validate", "-config", kGoodServer, "-expandEnv"}).code, 0);
  EXPECT_EQ(RunServer({"validate", "-expandEnv=true", "-config", kGoodServer}).code, 0);
}

TEST(ServerValidate, BrokenConfigIsOneLineOnStderrAndExitOne) {
  Result r = RunServer({"validate", "-config", kBrokenServer});
  EXPECT_EQ(r.code, 1);
  EXPECT_EQ(r.out, "");
  EXPECT_THAT(r.err, StartsWith("Error: "));
  EXPECT_THAT(r.err, HasSubstr("server_typo.conf:5:3: unknown key \"bind_prot\" in server"));
  EXPECT_EQ(r.err.find('\n'), r.err.size() - 1) << r.err;
}

TEST(ServerValidate, MissingFileNamesThePath) {
  Result r = RunServer({"validate", "-config", "/nonexistent/server.conf"});
  EXPECT_EQ(r.code, 1);
  EXPECT_THAT(r.err, HasSubstr("/nonexistent/server.conf: cannot open configuration file"));
}

TEST(ServerValidate, ExpandEnvIsApplied) {
  setenv("TRELLIS_CLI_TEST_TD", "Bad Domain", 1);
  testutil::TempDir tmp("trellis-cli");
  const std::string& dir = tmp.path();
  std::string path = dir + "/server.conf";
  std::ofstream(path) << "server { trust_domain = \"$TRELLIS_CLI_TEST_TD\" }\n";
  Result plain = RunServer({"validate", "-config", path});
  Result expanded = RunServer({"validate", "-config", path, "-expandEnv"});
  unsetenv("TRELLIS_CLI_TEST_TD");
  // Unexpanded, "$TRELLIS_CLI_TEST_TD" is itself an invalid trust domain; expanded, the
  // error shows the variable's value was read.
  EXPECT_EQ(plain.code, 1);
  EXPECT_EQ(expanded.code, 1);
  EXPECT_THAT(plain.err, HasSubstr("server.trust_domain"));
  EXPECT_NE(plain.err, expanded.err);
}

TEST(ServerValidate, UnknownFlagIsUsageError) {
  Result r = RunServer({"validate", "-conf", kGoodServer});
  EXPECT_EQ(r.code, 2);
  EXPECT_THAT(r.err, HasSubstr("unknown flag -conf"));
  EXPECT_THAT(r.err, HasSubstr("Usage: trellis-server validate"));
}

TEST(ServerValidate, StrayArgumentIsUsageError) {
  Result r = RunServer({"validate", kGoodServer});
  EXPECT_EQ(r.code, 2);
  EXPECT_THAT(r.err, HasSubstr("unexpected argument"));
}

TEST(ServerValidate, FlagWithoutValueIsUsageError) {
  Result r = RunServer({"validate", "-config"});
  EXPECT_EQ(r.code, 2);
  EXPECT_THAT(r.err, HasSubstr("config"));
  EXPECT_THAT(r.err, HasSubstr("Usage:"));
}

TEST(ServerValidate, HelpGoesToStdout) {
  Result r = RunServer({"validate", "-h"});
  EXPECT_EQ(r.code, 0);
  EXPECT_THAT(r.out, HasSubstr("-expandEnv"));
}

TEST(ServerCli, UnknownCommandIsUsageError) {
  Result r = RunServer({"frobnicate"});
  EXPECT_EQ(r.code, 2);
  EXPECT_THAT(r.err, HasSubstr("unknown command \"frobnicate\""));
  EXPECT_THAT(r.err, HasSubstr("Usage: trellis-server <command>"));
}

TEST(ServerCli, NoCommandIsUsageError) {
  Result r = RunServer({});
  EXPECT_EQ(r.code, 2);
  EXPECT_THAT(r.err, HasSubstr("Usage:"));
}

TEST(AgentValidate, GoodConfigPrintsValid) {
  Result r = RunAgent({"validate", "-config", kGoodAgent});
  EXPECT_EQ(r.code, 0);
  EXPECT_EQ(r.out, "Configuration is valid.\n");
}

TEST(AgentValidate, ServerConfigIsRejected) {
  Result r = RunAgent({"validate", "-config", kGoodServer});
  EXPECT_EQ(r.code, 1);
  EXPECT_THAT(r.err, HasSubstr("unknown key \"server\" at top level"));
}

TEST(ServerBinary, ValidateGoodFileExitsZero) {
  Result r = RunBinary(TRELLIS_SERVER_BIN, {"validate", "-config", kGoodServer});
  EXPECT_EQ(r.code, 0);
  EXPECT_EQ(r.out, "Configuration is valid.\n");
  EXPECT_EQ(r.err, "");
}

TEST(ServerBinary, ValidateBrokenFileExitsOneWithLocatedError) {
  Result r = RunBinary(TRELLIS_SERVER_BIN, {"validate", "-config", kBrokenServer});
  EXPECT_EQ(r.code, 1);
  EXPECT_EQ(r.out, "");
  EXPECT_THAT(r.err, HasSubstr("server_typo.conf:5:3: unknown key \"bind_prot\" in server\n"));
}

TEST(ServerBinary, UnknownCommandExitsNonZero) {
  Result r = RunBinary(TRELLIS_SERVER_BIN, {"nope"});
  EXPECT_EQ(r.code, 2);
  EXPECT_THAT(r.err, HasSubstr("unknown command"));
}

TEST(AgentBinary, ValidateJsonFileExitsZero) {
  Result r = RunBinary(TRELLIS_AGENT_BIN,
                       {"validate", "-config", kSource + "/examples/single/agent.json"});
  EXPECT_EQ(r.code, 0);
  EXPECT_EQ(r.out, "Configuration is valid.\n");
}

}  // namespace
}  // namespace trellis::cmd
