// The admin API's logger calls (GetLogger, SetLogLevel, ResetLogLevel), and its log lines
// naming the calling uid and the method, over a socket whose connections the listener accepts.
#include <grpcpp/grpcpp.h>
#include <unistd.h>

#include <memory>
#include <string>

#include "common/log.h"
#include "datastore/factory.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/admin_service.h"
#include "tests/testutil/temp_dir.h"
#include "transport/unix_peer_listener.h"

namespace trellis::server {
namespace {

using common::config::LogLevel;
using ::testing::HasSubstr;

class AdminLoggerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    common::SetLogLevel(LogLevel::kWarn);  // what log_level set at launch, below
    tmp_ = std::make_unique<testutil::TempDir>("trellis-admin-log");
    auto ds = datastore::CreateDataStore("sqlite3", tmp_->Sub("ds.sqlite3"));
    ASSERT_TRUE(ds.ok()) << ds.status();
    ds_ = std::move(*ds);
    const std::string socket = tmp_->Sub("api.sock");
    auto listener = transport::UnixPeerListener::Bind(socket, 0770);
    ASSERT_TRUE(listener.ok()) << listener.status();
    listener_ = std::move(*listener);
    AdminService::Options options(*common::TrustDomain::Parse("example.org"));
    options.launch_log_level = LogLevel::kWarn;
    transport::UnixPeerListener* l = listener_.get();
    options.caller_uid = [l](const grpc::ServerContext& ctx) -> std::optional<uint32_t> {
      auto creds = l->Lookup(ctx.peer());
      if (!creds) return std::nullopt;
      return static_cast<uint32_t>(creds->uid);
    };
    service_ = std::make_unique<AdminService>(ds_.get(), std::move(options));
    grpc::ServerBuilder builder;
    builder.RegisterService(service_.get());
    server_ = builder.BuildAndStart();
    ASSERT_NE(server_, nullptr);
    listener_->Start(server_.get());
    stub_ = v1::Admin::NewStub(
        grpc::CreateChannel("unix:" + socket, grpc::InsecureChannelCredentials()));
  }

  void TearDown() override {
    if (listener_) listener_->StopAccepting();
    if (server_) server_->Shutdown();
    if (listener_) listener_->Close();
    common::SetLogLevel(LogLevel::kInfo);
    tmp_.reset();
  }

  grpc::Status Set(v1::LogLevel level, v1::Logger* out) {
    v1::SetLogLevelRequest req;
    req.set_new_level(level);
    grpc::ClientContext ctx;
    return stub_->SetLogLevel(&ctx, req, out);
  }

  std::unique_ptr<testutil::TempDir> tmp_;
  std::unique_ptr<datastore::DataStore> ds_;
  std::unique_ptr<transport::UnixPeerListener> listener_;
  std::unique_ptr<AdminService> service_;
  std::unique_ptr<grpc::Server> server_;
  std::unique_ptr<v1::Admin::Stub> stub_;
};

TEST_F(AdminLoggerTest, GetReportsTheCurrentAndTheLaunchLevel) {
  v1::Logger logger;
  grpc::ClientContext ctx;
  ASSERT_TRUE(stub_->GetLogger(&ctx, {}, &logger).ok());
  EXPECT_EQ(logger.current_level(), v1::LOG_LEVEL_WARN);
  EXPECT_EQ(logger.launch_level(), v1::LOG_LEVEL_WARN);
}

TEST_F(AdminLoggerTest, SetChangesTheProcessLevel) {
  v1::Logger logger;
  ASSERT_TRUE(Set(v1::LOG_LEVEL_DEBUG, &logger).ok());
  EXPECT_EQ(logger.current_level(), v1::LOG_LEVEL_DEBUG);
  EXPECT_EQ(logger.launch_level(), v1::LOG_LEVEL_WARN);
  EXPECT_EQ(common::CurrentLogLevel(), LogLevel::kDebug);
  EXPECT_TRUE(common::LogEnabled(LogLevel::kDebug));
  ASSERT_TRUE(Set(v1::LOG_LEVEL_ERROR, &logger).ok());
  EXPECT_EQ(common::CurrentLogLevel(), LogLevel::kError);
  EXPECT_FALSE(common::LogEnabled(LogLevel::kWarn));
}

TEST_F(AdminLoggerTest, ResetReturnsToTheLaunchLevel) {
  v1::Logger logger;
  ASSERT_TRUE(Set(v1::LOG_LEVEL_DEBUG, &logger).ok());
  grpc::ClientContext ctx;
  ASSERT_TRUE(stub_->ResetLogLevel(&ctx, {}, &logger).ok());
  EXPECT_EQ(logger.current_level(), v1::LOG_LEVEL_WARN);
  EXPECT_EQ(common::CurrentLogLevel(), LogLevel::kWarn);
}

TEST_F(AdminLoggerTest, UnspecifiedLevelIsInvalidAndChangesNothing) {
  v1::Logger logger;
  grpc::Status st = Set(v1::LOG_LEVEL_UNSPECIFIED, &logger);
  EXPECT_EQ(st.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(st.error_message(), HasSubstr("new_level: is required"));
  EXPECT_EQ(common::CurrentLogLevel(), LogLevel::kWarn);
}

TEST_F(AdminLoggerTest, UnknownLevelNumberIsInvalid) {
  v1::Logger logger;
  grpc::Status st = Set(static_cast<v1::LogLevel>(42), &logger);
  EXPECT_EQ(st.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(st.error_message(), HasSubstr("unknown log level 42"));
  EXPECT_EQ(common::CurrentLogLevel(), LogLevel::kWarn);
}

TEST_F(AdminLoggerTest, LevelChangeIsLoggedEvenWhenItQuietsTheLog) {
  v1::Logger logger;
  ASSERT_TRUE(Set(v1::LOG_LEVEL_INFO, &logger).ok());
  ::testing::internal::CaptureStderr();
  ASSERT_TRUE(Set(v1::LOG_LEVEL_ERROR, &logger).ok());
  std::string out = ::testing::internal::GetCapturedStderr();
  EXPECT_THAT(out, HasSubstr("Log level set previous_level=INFO new_level=ERROR"));
}

TEST_F(AdminLoggerTest, CallLinesNameTheCallingUidAndTheMethod) {
  common::SetLogLevel(LogLevel::kInfo);
  v1::BatchCreateEntryRequest req;
  v1::Entry* e = req.add_entries();
  e->set_spiffe_id("spiffe://example.org/app");
  e->set_parent_id("spiffe://example.org/spire/agent/x");
  v1::Selector* sel = e->add_selectors();
  sel->set_type("unix");
  sel->set_value("uid:1000");
  v1::BatchCreateEntryResponse resp;
  grpc::ClientContext ctx;
  ::testing::internal::CaptureStderr();
  grpc::Status st = stub_->BatchCreateEntry(&ctx, req, &resp);
  std::string out = ::testing::internal::GetCapturedStderr();
  ASSERT_TRUE(st.ok()) << st.error_message();
  size_t at = out.find("Entry created");
  ASSERT_NE(at, std::string::npos) << out;
  std::string line = out.substr(at, out.find('\n', at) - at);
  EXPECT_THAT(line, HasSubstr(" caller_uid=" + std::to_string(::getuid())));
  EXPECT_THAT(line, HasSubstr(" method=/trellis.server.v1.Admin/BatchCreateEntry"));
}

}  // namespace
}  // namespace trellis::server
