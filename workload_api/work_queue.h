// A fixed pool of threads for the Workload API's blocking work (attestation, JWT minting),
// so neither holds up the completion-queue threads.
#pragma once

#include <deque>
#include <functional>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"

namespace trellis::workload_api {

class WorkQueue {
 public:
  explicit WorkQueue(int threads);
  ~WorkQueue();

  // Queues `fn`; false (and `fn` dropped) once Stop() began.
  bool Post(std::function<void()> fn);
  // Runs what is queued, then joins.
  void Stop();

 private:
  void Run();

  absl::Mutex mu_;
  std::deque<std::function<void()>> queue_ ABSL_GUARDED_BY(mu_);
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  std::vector<std::thread> threads_;
};

}  // namespace trellis::workload_api
