// The Workload API runs on gRPC's completion-queue API, polled by threads of its own: a
// reply is written by the thread that learned of the call, with no hand-off between gRPC's
// internal threads (the callback API adds two per call, measured at about a quarter of the
// latency of a first FetchX509SVID message).
#pragma once

#include <grpcpp/grpcpp.h>

#include "absl/base/thread_annotations.h"
#include "absl/functional/function_ref.h"
#include "absl/synchronization/mutex.h"

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

  void Start(int threads);
  // Runs `request`, which asks gRPC for a method's next call on this queue, unless the queue
  // is shutting down; false then, and the caller drops its call object. gRPC aborts the
  // process on a request against a queue already shut down, and a queue thread may still be
  // answering the call before (it re-arms after answering) when the server stops.
  bool Arm(absl::FunctionRef<void(grpc::ServerCompletionQueue*)> request)
      ABSL_LOCKS_EXCLUDED(mu_);
  // After the server's Shutdown: shuts the queue down, joins its threads (which run every
  // tag left) and drains anything still queued if none ever ran.
  void ShutdownAndJoin();

 private:
  void Run();

  std::unique_ptr<grpc::ServerCompletionQueue> cq_;
  // Requests hold it shared; the shutdown takes it exclusively, so none is in progress when
  // the queue shuts down and none starts after.
  absl::Mutex mu_;
  bool closing_ ABSL_GUARDED_BY(mu_) = false;
  std::vector<std::thread> threads_;
  bool shut_down_ = false;
};

}  // namespace trellis::workload_api
