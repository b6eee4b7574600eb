// The process log: RPC fields from the thread's scope, the log file, and its reopening.
#include "common/log.h"

#include <sys/stat.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testutil/temp_dir.h"

namespace trellis::common {
namespace {

using config::LogFormat;
using config::LogLevel;
using ::testing::HasSubstr;
using ::testing::Not;

std::string ReadAll(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

class LogTest : public ::testing::Test {
 protected:
  void TearDown() override {
    LogToStderr();
    SetLogLevel(LogLevel::kInfo);
    SetLogFormat(LogFormat::kText);
  }
};

TEST_F(LogTest, ScopeAddsCallerAndMethodToEveryLine) {
  ::testing::internal::CaptureStderr();
  {
    RpcLogScope rpc("/trellis.server.v1.Agent/RenewAgent");
    SetRpcLogCaller({{"caller_id", "spiffe://example.org/spire/agent/x"}});
    LogInfo("Agent SVID renewed", {{"serial", "01"}});
  }
  LogInfo("after the call");
  std::string out = ::testing::internal::GetCapturedStderr();
  EXPECT_THAT(out, HasSubstr("Agent SVID renewed serial=01 caller_id=spiffe://example.org/spire/"
                             "agent/x method=/trellis.server.v1.Agent/RenewAgent\n"));
  std::string after = out.substr(out.find("after the call"));
  EXPECT_THAT(after, Not(HasSubstr("method=")));
}

TEST_F(LogTest, ScopeFieldsGoIntoJson) {
  SetLogFormat(LogFormat::kJson);
  ::testing::internal::CaptureStderr();
  {
    RpcLogScope rpc(GrpcMethodName("trellis.server.v1.Admin", "GetEntry"), {{"caller_uid", "0"}});
    LogWarn("lookup failed");
  }
  std::string out = ::testing::internal::GetCapturedStderr();
  EXPECT_THAT(out, HasSubstr("\"method\":\"/trellis.server.v1.Admin/GetEntry\""));
  EXPECT_THAT(out, HasSubstr("\"caller_uid\":\"0\""));
}

TEST_F(LogTest, LineFieldsWinOverScopeFields) {
  ::testing::internal::CaptureStderr();
  {
    RpcLogScope rpc("/s/M", {{"caller_id", "from-scope"}});
    LogInfo("x", {{"caller_id", "from-line"}});
  }
  std::string out = ::testing::internal::GetCapturedStderr();
  EXPECT_THAT(out, HasSubstr("caller_id=from-line method=/s/M\n"));
  EXPECT_THAT(out, Not(HasSubstr("from-scope")));
}

TEST_F(LogTest, InnermostScopeCountsAndOuterComesBack) {
  ::testing::internal::CaptureStderr();
  {
    RpcLogScope outer("/s/Outer");
    {
      RpcLogScope inner("/s/Inner");
      LogInfo("inner line");
    }
    LogInfo("outer line");
  }
  std::string out = ::testing::internal::GetCapturedStderr();
  EXPECT_THAT(out, HasSubstr("inner line method=/s/Inner\n"));
  EXPECT_THAT(out, HasSubstr("outer line method=/s/Outer\n"));
}

TEST_F(LogTest, ScopeIsPerThread) {
  ::testing::internal::CaptureStderr();
  RpcLogScope rpc("/s/Here");
  std::thread([] { LogInfo("other thread"); }).join();
  std::string out = ::testing::internal::GetCapturedStderr();
  EXPECT_THAT(out, HasSubstr("other thread\n"));
  EXPECT_THAT(out, Not(HasSubstr("/s/Here")));
}

TEST_F(LogTest, SetRpcLogCallerWithoutScopeDoesNothing) {
  ::testing::internal::CaptureStderr();
  SetRpcLogCaller({{"caller_id", "x"}});
  LogInfo("plain");
  std::string out = ::testing::internal::GetCapturedStderr();
  EXPECT_THAT(out, Not(HasSubstr("caller_id")));
}

TEST_F(LogTest, MissingLogFileIsCreatedPrivate) {
  testutil::TempDir dir;
  const std::string path = dir.Sub("trellis.log");
  ASSERT_TRUE(SetLogFile(path).ok());
  LogInfo("first");
  struct stat st;
  ASSERT_EQ(::stat(path.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  EXPECT_THAT(ReadAll(path), HasSubstr(" info first\n"));
}

TEST_F(LogTest, ExistingLogFileIsAppendedTo) {
  testutil::TempDir dir;
  const std::string path = dir.Write("trellis.log", "earlier line\n");
  ASSERT_TRUE(SetLogFile(path).ok());
  LogInfo("later line");
  std::string text = ReadAll(path);
  EXPECT_EQ(text.rfind("earlier line\n", 0), 0u) << text;
  EXPECT_THAT(text, HasSubstr(" info later line\n"));
}

TEST_F(LogTest, LinesGoToTheFileNotStderr) {
  testutil::TempDir dir;
  const std::string path = dir.Sub("trellis.log");
  ASSERT_TRUE(SetLogFile(path).ok());
  ::testing::internal::CaptureStderr();
  LogWarn("into the file");
  std::string err = ::testing::internal::GetCapturedStderr();
  EXPECT_THAT(err, Not(HasSubstr("into the file")));
  EXPECT_THAT(ReadAll(path), HasSubstr("into the file"));
}

TEST_F(LogTest, UnopenableFileIsFailedPreconditionAndKeepsTheOutput) {
  testutil::TempDir dir;
  absl::Status st = SetLogFile(dir.Sub("missing/trellis.log"));
  EXPECT_EQ(st.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(std::string(st.message()), HasSubstr(dir.Sub("missing/trellis.log")));
  ::testing::internal::CaptureStderr();
  LogInfo("still on stderr");
  EXPECT_THAT(::testing::internal::GetCapturedStderr(), HasSubstr("still on stderr"));
}

TEST_F(LogTest, ReopenAfterRenameStartsANewFile) {
  testutil::TempDir dir;
  const std::string path = dir.Sub("trellis.log");
  const std::string rotated = dir.Sub("trellis.log.1");
  ASSERT_TRUE(SetLogFile(path).ok());
  LogInfo("before rotation");
  ASSERT_EQ(std::rename(path.c_str(), rotated.c_str()), 0);
  LogInfo("renamed, not reopened");
  ASSERT_TRUE(ReopenLogFile().ok());
  LogInfo("after rotation");
  std::string old_text = ReadAll(rotated);
  std::string new_text = ReadAll(path);
  EXPECT_THAT(old_text, HasSubstr("before rotation"));
  EXPECT_THAT(old_text, HasSubstr("renamed, not reopened"));
  EXPECT_THAT(old_text, Not(HasSubstr("after rotation")));
  EXPECT_THAT(new_text, HasSubstr("Log file reopened"));
  EXPECT_THAT(new_text, HasSubstr("after rotation"));
  EXPECT_THAT(new_text, Not(HasSubstr("before rotation")));
}

TEST_F(LogTest, FailedReopenKeepsTheOldFileAndSaysWhy) {
  testutil::TempDir dir;
  const std::string sub = dir.Sub("logs");
  std::filesystem::create_directory(sub);
  const std::string path = sub + "/trellis.log";
  ASSERT_TRUE(SetLogFile(path).ok());
  // The directory goes away with the file in it: the path cannot be opened again.
  const std::string moved = dir.Sub("logs-moved");
  ASSERT_EQ(std::rename(sub.c_str(), moved.c_str()), 0);
  absl::Status st = ReopenLogFile();
  EXPECT_EQ(st.code(), absl::StatusCode::kFailedPrecondition);
  LogInfo("still logging");
  std::string text = ReadAll(moved + "/trellis.log");
  EXPECT_THAT(text, HasSubstr("Reopening the log file failed"));
  EXPECT_THAT(text, HasSubstr("still logging"));
}

TEST_F(LogTest, ReopenWithoutAFileIsANoOp) {
  ::testing::internal::CaptureStderr();
  EXPECT_TRUE(ReopenLogFile().ok());
  LogInfo("on stderr");
  std::string out = ::testing::internal::GetCapturedStderr();
  EXPECT_THAT(out, Not(HasSubstr("reopened")));
  EXPECT_THAT(out, HasSubstr("on stderr"));
}

}  // namespace
}  // namespace trellis::common
