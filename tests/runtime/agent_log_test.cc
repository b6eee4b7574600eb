// The agent runtime's Create applies the configured log_level and log_format to the process
// log.
#include <nlohmann/json.hpp>
#include <string>

#include "common/clock.h"
#include "common/log.h"
#include "gtest/gtest.h"
#include "runtime/agent_runtime.h"

namespace trellis::runtime {
namespace {

using common::config::LogFormat;
using common::config::LogLevel;

class AgentLogTest : public ::testing::Test {
 protected:
  void TearDown() override {
    common::SetLogLevel(LogLevel::kInfo);
    common::SetLogFormat(LogFormat::kText);
  }

  void CreateAgent(LogLevel level, LogFormat format) {
    common::config::AgentConfig c(*common::TrustDomain::Parse("example.org"));
    c.server_address = "localhost";
    c.log_level = level;
    c.log_format = format;
    auto agent = Agent::Create(c, Agent::Options{}, common::SystemClock::Get());
    ASSERT_TRUE(agent.ok()) << agent.status();
  }

  static std::string Captured(const std::string& msg) {
    ::testing::internal::CaptureStderr();
    common::LogWarn(msg);
    common::LogInfo("below the configured level");
    return ::testing::internal::GetCapturedStderr();
  }
};

TEST_F(AgentLogTest, JsonFormatGivesOneObjectPerLine) {
  CreateAgent(LogLevel::kWarn, LogFormat::kJson);
  std::string out = Captured("sync with localhost:8081 failed: connection refused");
  ASSERT_FALSE(out.empty());
  EXPECT_EQ(out.find('\n'), out.size() - 1) << out;
  nlohmann::json line = nlohmann::json::parse(out, nullptr, /*allow_exceptions=*/false);
  ASSERT_TRUE(line.is_object()) << out;
  EXPECT_EQ(line.value("level", ""), "warn");
  EXPECT_EQ(line.value("msg", ""), "sync with localhost:8081 failed: connection refused");
  EXPECT_TRUE(line.contains("time"));
}

TEST_F(AgentLogTest, TextFormatKeepsTheMessageAndDropsLowerLevels) {
  CreateAgent(LogLevel::kWarn, LogFormat::kText);
  EXPECT_FALSE(common::LogEnabled(LogLevel::kInfo));
  std::string out = Captured("renewing the agent SVID failed: deadline exceeded");
  EXPECT_NE(out.find(" warn renewing the agent SVID failed: deadline exceeded\n"),
            std::string::npos)
      << out;
  EXPECT_EQ(out.find("below the configured level"), std::string::npos) << out;
}

}  // namespace
}  // namespace trellis::runtime
