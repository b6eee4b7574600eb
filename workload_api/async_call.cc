// Completion-queue threads: each tag goes to its call.
#include "workload_api/async_call.h"

namespace trellis::workload_api {

void CallQueue::Start(int threads) {
  for (int i = 0; i < threads; ++i) threads_.emplace_back([this] { Run(); });
}

bool CallQueue::Arm(absl::FunctionRef<void(grpc::ServerCompletionQueue*)> request) {
  absl::ReaderMutexLock lock(&mu_);
  if (closing_) return false;
  request(cq_.get());
  return true;
}

void CallQueue::ShutdownAndJoin() {
  if (shut_down_) return;
  shut_down_ = true;
  {
    absl::MutexLock lock(&mu_);
    closing_ = true;
  }
  cq_->Shutdown();
  for (auto& t : threads_) t.join();
  threads_.clear();
  // Without threads (never started), the queue still has to be drained before it goes;
  // after them, there is nothing left and this returns at once.
  Run();
}

void CallQueue::Run() {
  void* tag;
  bool ok;
  while (cq_->Next(&tag, &ok)) {
    auto* t = static_cast<AsyncCall::Tag*>(tag);
    t->call->Proceed(t->op, ok);
  }
}

}  // namespace trellis::workload_api
