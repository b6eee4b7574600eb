// gRPC's log lines through the process log: format, level, and the benign SNI line lowered.
#include "transport/grpc_log.h"

#include <grpc/grpc.h>
#include <grpc/support/log.h>

#include "common/log.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace trellis::transport {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

// gRPC prints nothing before it is initialised.
class RouteGrpcLogs : public ::testing::Test {
 protected:
  void SetUp() override {
    grpc_init();
    transport::RouteGrpcLogs();
    common::SetLogLevel(common::config::LogLevel::kInfo);
  }
  void TearDown() override { grpc_shutdown(); }
};

std::string LogOf(const char* line) {
  ::testing::internal::CaptureStderr();
  gpr_log(__FILE__, __LINE__, GPR_LOG_SEVERITY_ERROR, "%s", line);
  return ::testing::internal::GetCapturedStderr();
}

TEST_F(RouteGrpcLogs, GrpcErrorsGoThroughTheProcessLogNamingTheirSource) {
  std::string out = LogOf("handshake failed: something real");
  EXPECT_THAT(out, HasSubstr("handshake failed: something real"));
  EXPECT_THAT(out, HasSubstr("component=grpc"));
  EXPECT_THAT(out, HasSubstr("grpc_log_test.cc:"));
}

TEST_F(RouteGrpcLogs, TheUnmatchedServerNameLineIsDebugOnly) {
  EXPECT_THAT(LogOf("No match found for server name: 127.0.0.1."),
              Not(HasSubstr("No match found")));
  common::SetLogLevel(common::config::LogLevel::kDebug);
  EXPECT_THAT(LogOf("No match found for server name: 127.0.0.1."),
              HasSubstr("No match found for server name"));
  common::SetLogLevel(common::config::LogLevel::kInfo);
}

}  // namespace
}  // namespace trellis::transport
