// Every shipped example config loads, and every broken sample is refused with a located error.
#include <filesystem>
#include <fstream>
#include <map>
#include <string>
#include <vector>

#include "common/config/agent_config.h"
#include "common/config/server_config.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace trellis::common::config {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;

// TRELLIS_TESTDATA_DIR is <source>/tests/testdata.
const fs::path kSourceDir = fs::path(TRELLIS_TESTDATA_DIR).parent_path().parent_path();

std::vector<fs::path> ConfigFiles(const fs::path& dir) {
  std::vector<fs::path> files;
  for (const auto& entry : fs::recursive_directory_iterator(dir)) {
    std::string ext = entry.path().extension().string();
    // Dashboards are JSON too, but not configurations.
    if (entry.path().parent_path().filename() == "grafana") continue;
    if (entry.is_regular_file() && (ext == ".conf" || ext == ".json")) {
      files.push_back(entry.path());
    }
  }
  return files;
}

// "agent.conf", "agent_no_bootstrap.conf", "root-agent.conf": agents; the rest: servers.
bool IsAgentFile(const fs::path& p) {
  const std::string stem = p.stem().string();
  return stem.rfind("agent", 0) == 0 ||
         (stem.size() > 6 && stem.compare(stem.size() - 6, 6, "-agent") == 0);
}

// The nested example's configurations are templates read with -expandEnv; nested.env holds
// the defaults (KEY=VALUE lines).
void SetNestedDefaults() {
  std::ifstream in(kSourceDir / "examples/nested/nested.env");
  ASSERT_TRUE(in.good());
  std::string line;
  while (std::getline(in, line)) {
    if (line.empty() || line[0] == '#') continue;
    const size_t eq = line.find('=');
    ASSERT_NE(eq, std::string::npos) << line;
    setenv(line.substr(0, eq).c_str(), line.substr(eq + 1).c_str(), 1);
  }
}

TEST(ExampleConfigs, EveryExampleIsValid) {
  SetNestedDefaults();
  std::vector<fs::path> files = ConfigFiles(kSourceDir / "examples");
  ASSERT_GE(files.size(), 12u);
  for (const fs::path& file : files) {
    const bool expand = file.parent_path().filename() == "nested";
    absl::Status status = IsAgentFile(file) ? LoadAgentConfig(file.string(), expand).status()
                                            : LoadServerConfig(file.string(), expand).status();
    EXPECT_TRUE(status.ok()) << file << ": " << status;
  }
}

TEST(ExampleConfigs, HclAndJsonExamplesDescribeTheSameServer) {
  absl::StatusOr<ServerConfig> hcl =
      LoadServerConfig((kSourceDir / "examples/single/server.conf").string(), false);
  absl::StatusOr<ServerConfig> json =
      LoadServerConfig((kSourceDir / "examples/single/server.json").string(), false);
  ASSERT_TRUE(hcl.ok() && json.ok());
  EXPECT_EQ(hcl->trust_domain, json->trust_domain);
  EXPECT_EQ(hcl->bind_port, json->bind_port);
  EXPECT_EQ(hcl->ca_ttl, json->ca_ttl);
  EXPECT_EQ(hcl->node_attestors.size(), json->node_attestors.size());
  EXPECT_EQ(hcl->data_store.connection_string, json->data_store.connection_string);
  EXPECT_EQ(hcl->health_checks.bind_port, json->health_checks.bind_port);
}

TEST(ExampleConfigs, HaExampleExpandsEnvironment) {
  setenv("TRELLIS_BIND_ADDRESS", "10.0.0.11", 1);
  setenv("PGPASSWORD", "secret", 1);
  absl::StatusOr<ServerConfig> cfg =
      LoadServerConfig((kSourceDir / "examples/ha/server-upstream-ca.conf").string(), true);
  unsetenv("TRELLIS_BIND_ADDRESS");
  unsetenv("PGPASSWORD");
  ASSERT_TRUE(cfg.ok()) << cfg.status();
  EXPECT_EQ(cfg->bind_address, "10.0.0.11");
  EXPECT_EQ(cfg->data_store.database_type, DatabaseType::kPostgres);
  EXPECT_THAT(cfg->data_store.connection_string, HasSubstr("password=secret "));
}

// Each broken sample names its own expected error on its first line: "# expect: <text>" (or, for
// JSON, in a "<name>.json.expect" file beside it).
TEST(BrokenConfigs, EverySampleFailsWithItsExpectedMessage) {
  std::vector<fs::path> files = ConfigFiles(fs::path(TRELLIS_TESTDATA_DIR) / "config");
  ASSERT_FALSE(files.empty());
  for (const fs::path& file : files) {
    std::string text;
    {
      FILE* f = fopen(file.c_str(), "rb");
      ASSERT_NE(f, nullptr) << file;
      char buf[4096];
      size_t n;
      while ((n = fread(buf, 1, sizeof(buf), f)) > 0) text.append(buf, n);
      fclose(f);
    }
    // JSON has no comments, so a JSON sample keeps its expectation in "<name>.expect".
    if (file.extension() == ".json") {
      FILE* f = fopen((file.string() + ".expect").c_str(), "rb");
      ASSERT_NE(f, nullptr) << file << " lacks a .expect file";
      char buf[4096];
      size_t n = fread(buf, 1, sizeof(buf), f);
      fclose(f);
      text = "expect: " + std::string(buf, n);
    }
    std::string first_line = text.substr(0, text.find('\n'));
    const std::string marker = "expect: ";
    size_t at = first_line.find(marker);
    ASSERT_NE(at, std::string::npos) << file << " lacks an expect: line";
    std::string expected = first_line.substr(at + marker.size());
    absl::Status status = IsAgentFile(file) ? LoadAgentConfig(file.string(), false).status()
                                            : LoadServerConfig(file.string(), false).status();
    ASSERT_FALSE(status.ok()) << file;
    EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument) << file;
    EXPECT_THAT(std::string(status.message()), HasSubstr(expected)) << file;
  }
}

}  // namespace
}  // namespace trellis::common::config
