// The completion queue's gate on new call requests around shutdown.
#include "workload_api/async_call.h"

#include <grpcpp/grpcpp.h>

#include "gtest/gtest.h"
#include "workload.grpc.pb.h"

namespace trellis::workload_api {
namespace {

class CallQueueTest : public ::testing::Test {
 protected:
  void SetUp() override {
    grpc::ServerBuilder builder;
    builder.RegisterService(&service_);
    queue_ = std::make_unique<CallQueue>(builder.AddCompletionQueue());
    server_ = builder.BuildAndStart();
    ASSERT_NE(server_, nullptr);
  }
  void TearDown() override {
    server_->Shutdown();
    queue_->ShutdownAndJoin();
  }

  SpiffeWorkloadAPI::AsyncService service_;
  std::unique_ptr<CallQueue> queue_;
  std::unique_ptr<grpc::Server> server_;
};

TEST_F(CallQueueTest, ArmRunsTheRequestWithItsQueueWhileOpen) {
  grpc::ServerCompletionQueue* seen = nullptr;
  EXPECT_TRUE(queue_->Arm([&](grpc::ServerCompletionQueue* cq) { seen = cq; }));
  EXPECT_NE(seen, nullptr);
}

TEST_F(CallQueueTest, ArmAfterShutdownRunsNothingAndSaysSo) {
  queue_->Start(2);
  server_->Shutdown();
  queue_->ShutdownAndJoin();
  bool ran = false;
  EXPECT_FALSE(queue_->Arm([&](grpc::ServerCompletionQueue*) { ran = true; }));
  EXPECT_FALSE(ran);
}

}  // namespace
}  // namespace trellis::workload_api
