// The Workload API runs on gRPC's completion-queue API, polled by threads of its own: a
// reply is written by the thread that learned of the call, with no hand-off between gRPC's
// internal threads (the callback API adds two per call, measured at about a quarter of the
// latency of a first FetchX509SVID message).
#pragma once

#include <grpcpp/grpcpp.h>

#include <memory>
#include <thread>
#include <vector>

namespace trellis::workload_api {

// One call in flight. Each of its operations completes with a tag naming the call and the
// operation; Proceed runs on a completion-queue thread.
class AsyncCall {
 public:
  enum class Op { kRequest, kWrite, kFinish, kDone };
  struct Tag {
    AsyncCall* call;
    Op op;
  };

  virtual ~AsyncCall() = default;
  virtual void Proceed(Op op, bool ok) = 0;
};

// The completion queue and the threads that poll it.
class CallQueue {
 public:
  explicit CallQueue(std::unique_ptr<grpc::ServerCompletionQueue> cq) : cq_(std::move(cq)) {}
  ~CallQueue() { ShutdownAndJoin(); }

  grpc::ServerCompletionQueue* cq() const { return cq_.get(); }
  void Start(int threads);
  // After the server's Shutdown: shuts the queue down, joins its threads (which run every
  // tag left) and drains anything still queued if none ever ran.
  void ShutdownAndJoin();

 private:
  void Run();

  std::unique_ptr<grpc::ServerCompletionQueue> cq_;
  std::vector<std::thread> threads_;
  bool shut_down_ = false;
};

}  // namespace trellis::workload_api
