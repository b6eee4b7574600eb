// log_file in server { } and agent { }: read as given, a missing directory or a directory as
// the file is a configuration error at the key.
#include <string>

#include "common/config/agent_config.h"
#include "common/config/server_config.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testutil/temp_dir.h"

namespace trellis::common::config {
namespace {

using ::testing::HasSubstr;

std::string ServerText(const std::string& log_file) {
  return "server {\n  trust_domain = \"example.org\"\n  log_file = \"" + log_file +
         "\"\n}\nplugins {\n  DataStore \"sql\" {\n    plugin_data {\n"
         "      database_type = \"sqlite3\"\n      connection_string = \"x.sqlite3\"\n    }\n"
         "  }\n  KeyManager \"memory\" {}\n}\n";
}

std::string AgentText(const std::string& log_file) {
  return "agent {\n  trust_domain = \"example.org\"\n  server_address = \"127.0.0.1\"\n"
         "  insecure_bootstrap = true\n  log_file = \"" +
         log_file +
         "\"\n}\nplugins {\n  NodeAttestor \"join_token\" { plugin_data {} }\n"
         "  KeyManager \"memory\" {}\n}\n";
}

TEST(LogFileConfig, ServerReadsLogFile) {
  testutil::TempDir dir;
  absl::StatusOr<ServerConfig> cfg =
      ParseServerConfig(ServerText(dir.Sub("server.log")), "server.conf");
  ASSERT_TRUE(cfg.ok()) << cfg.status();
  EXPECT_EQ(cfg->log_file, dir.Sub("server.log"));
}

TEST(LogFileConfig, AgentReadsLogFile) {
  testutil::TempDir dir;
  absl::StatusOr<AgentConfig> cfg = ParseAgentConfig(AgentText(dir.Sub("agent.log")), "a.conf");
  ASSERT_TRUE(cfg.ok()) << cfg.status();
  EXPECT_EQ(cfg->log_file, dir.Sub("agent.log"));
}

TEST(LogFileConfig, AbsentMeansStderr) {
  absl::StatusOr<ServerConfig> cfg = ParseServerConfig(
      "server {\n  trust_domain = \"example.org\"\n}\nplugins {\n  DataStore \"sql\" {\n"
      "    plugin_data {\n      database_type = \"sqlite3\"\n"
      "      connection_string = \"x.sqlite3\"\n    }\n  }\n  KeyManager \"memory\" {}\n}\n",
      "server.conf");
  ASSERT_TRUE(cfg.ok()) << cfg.status();
  EXPECT_EQ(cfg->log_file, "");
}

TEST(LogFileConfig, ServerMissingDirectoryIsAnErrorAtTheKey) {
  testutil::TempDir dir;
  const std::string missing = dir.Sub("no-such-dir");
  absl::StatusOr<ServerConfig> cfg =
      ParseServerConfig(ServerText(missing + "/server.log"), "server.conf");
  ASSERT_FALSE(cfg.ok());
  EXPECT_EQ(cfg.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(cfg.status().message()), HasSubstr("server.conf:3:"));
  EXPECT_THAT(std::string(cfg.status().message()),
              HasSubstr("server.log_file: directory \"" + missing + "\" does not exist"));
}

TEST(LogFileConfig, AgentMissingDirectoryIsAnError) {
  testutil::TempDir dir;
  const std::string missing = dir.Sub("gone");
  absl::StatusOr<AgentConfig> cfg = ParseAgentConfig(AgentText(missing + "/a.log"), "a.conf");
  ASSERT_FALSE(cfg.ok());
  EXPECT_EQ(cfg.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(cfg.status().message()),
              HasSubstr("agent.log_file: directory \"" + missing + "\" does not exist"));
}

TEST(LogFileConfig, DirectoryAsTheFileIsAnError) {
  testutil::TempDir dir;
  absl::StatusOr<ServerConfig> cfg = ParseServerConfig(ServerText(dir.path()), "server.conf");
  ASSERT_FALSE(cfg.ok());
  EXPECT_EQ(cfg.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(cfg.status().message()), HasSubstr("is a directory"));
}

TEST(LogFileConfig, EmptyValueIsAnError) {
  absl::StatusOr<ServerConfig> cfg = ParseServerConfig(ServerText(""), "server.conf");
  ASSERT_FALSE(cfg.ok());
  EXPECT_EQ(cfg.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(cfg.status().message()), HasSubstr("log_file"));
}

}  // namespace
}  // namespace trellis::common::config
