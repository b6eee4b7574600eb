// Server streams that push a message whenever the state they stand for moves, on gRPC's
// callback API: an open stream holds no thread, and a change wakes only the streams filed
// under the keys it affects (an agent's ID, a downstream server's ID).
#pragma once

#include <grpcpp/grpcpp.h>

#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "transport/grpc_status.h"

namespace trellis::server {

// One notifier thread computes each woken stream's state and starts its write; gRPC's
// callback threads only finish writes. `State` needs operator==; `Msg` is what goes out.
template <typename Msg, typename State>
class PushStreams {
 public:
  struct Handlers {
    // The key's state now (nullopt: nothing to send yet), or why its streams must end
    // (e.g. the agent was banned).
    std::function<absl::StatusOr<std::optional<State>>(const std::string& key)> state;
    // The message for a state that differs from the last one sent on a stream.
    std::function<Msg(const std::string& key, const State& state)> render;
    // How a stream ends when the server shuts down.
    grpc::Status shutdown_status = grpc::Status::OK;
  };

  explicit PushStreams(Handlers handlers)
      : handlers_(std::move(handlers)), core_(std::make_shared<Core>()) {
    notifier_ = std::thread([this] { Run(); });
  }
  ~PushStreams() { Shutdown(); }
  PushStreams(const PushStreams&) = delete;
  PushStreams& operator=(const PushStreams&) = delete;

  // A reactor for a new, already authorised stream under `key`; its first message goes out
  // as soon as the notifier reaches it. After Shutdown() the stream ends at once.
  grpc::ServerWriteReactor<Msg>* Open(const std::string& key) {
    auto stream = std::make_shared<Stream>(core_, key);
    {
      absl::MutexLock lock(&stream->mu_);
      stream->self_ = stream;
    }
    bool closed = false;
    {
      absl::MutexLock lock(&core_->mu);
      closed = core_->shutdown;
      if (!closed) {
        core_->open.emplace(key, stream);
        core_->dirty.insert(key);
      }
    }
    core_->count.fetch_add(1);
    if (closed) stream->End(handlers_.shutdown_status);
    return stream.get();
  }
  // Another refusal: a reactor that ends at once with `status` (never registered).
  static grpc::ServerWriteReactor<Msg>* Refuse(grpc::Status status) {
    auto* r = new Refused();
    r->Finish(std::move(status));
    return r;
  }

  // Re-evaluates every open stream (a bundle or CA change concerns all of them).
  void NotifyAll() {
    absl::MutexLock lock(&core_->mu);
    core_->all_dirty = true;
  }
  // Re-evaluates the streams filed under these keys; other streams stay untouched.
  void Notify(const std::set<std::string>& keys) {
    if (keys.empty()) return;
    absl::MutexLock lock(&core_->mu);
    core_->dirty.insert(keys.begin(), keys.end());
  }
  // Ends every stream with the shutdown status and refuses new ones; joins the notifier.
  void Shutdown() {
    std::vector<std::shared_ptr<Stream>> all;
    {
      absl::MutexLock lock(&core_->mu);
      if (!core_->shutdown) {
        core_->shutdown = true;
        for (auto& [key, s] : core_->open) all.push_back(s);
      }
    }
    for (auto& s : all) s->End(handlers_.shutdown_status);
    absl::MutexLock join(&join_mu_);
    if (notifier_.joinable()) notifier_.join();
  }
  // Streams opened and not yet done.
  int64_t OpenCount() const { return core_->count.load(); }
  // Notifier passes so far (tests and benchmarks read how much work a change caused).
  int64_t Evaluations() const { return core_->evaluations.load(); }

 private:
  class Stream;
  // Shared with every stream, so a stream finishing after the owner is gone stays safe.
  struct Core {
    absl::Mutex mu;
    std::multimap<std::string, std::shared_ptr<Stream>> open ABSL_GUARDED_BY(mu);
    std::set<std::string> dirty ABSL_GUARDED_BY(mu);
    bool all_dirty ABSL_GUARDED_BY(mu) = false;
    bool shutdown ABSL_GUARDED_BY(mu) = false;
    std::atomic<int64_t> count{0};
    std::atomic<int64_t> evaluations{0};

    void Remove(const std::string& key, const Stream* stream) {
      absl::MutexLock lock(&mu);
      auto [first, last] = open.equal_range(key);
      for (auto it = first; it != last; ++it) {
        if (it->second.get() == stream) {
          open.erase(it);
          break;
        }
      }
    }
  };

  class Stream : public grpc::ServerWriteReactor<Msg> {
   public:
    Stream(std::shared_ptr<Core> core, std::string key)
        : core_(std::move(core)), key_(std::move(key)) {}
    const std::string& key() const { return key_; }

    // True when `state` differs from what this stream last sent or has queued.
    bool Wants(const State& state) {
      absl::MutexLock lock(&mu_);
      if (finish_called_ || finish_pending_) return false;
      if (queued_) return !(queued_->first == state);
      return !last_sent_ || !(*last_sent_ == state);
    }
    void Send(State state, Msg msg) {
      absl::MutexLock lock(&mu_);
      if (finish_called_ || finish_pending_) return;
      if (write_in_flight_) {
        queued_.emplace(std::move(state), std::move(msg));
        return;
      }
      WriteLocked(std::move(state), std::move(msg));
    }
    void End(grpc::Status status) {
      absl::MutexLock lock(&mu_);
      FinishLocked(std::move(status));
    }

    void OnWriteDone(bool ok) override {
      absl::MutexLock lock(&mu_);
      write_in_flight_ = false;
      if (finish_pending_) {
        // A finish deferred behind this write is due now, whether or not it went through.
        finish_pending_ = false;
        finish_called_ = true;
        this->Finish(finish_status_);
        return;
      }
      if (!ok) {
        FinishLocked(grpc::Status(grpc::StatusCode::CANCELLED, "stream closed by the client"));
        return;
      }
      if (queued_) {
        auto next = std::move(*queued_);
        queued_.reset();
        WriteLocked(std::move(next.first), std::move(next.second));
      }
    }
    void OnCancel() override {
      absl::MutexLock lock(&mu_);
      FinishLocked(grpc::Status(grpc::StatusCode::CANCELLED, "cancelled"));
    }
    void OnDone() override {
      core_->Remove(key_, this);
      core_->count.fetch_sub(1);
      // The last owner may be the notifier's copy; then it goes when the notifier drops it.
      std::shared_ptr<Stream> keep;
      {
        absl::MutexLock lock(&mu_);
        keep = std::move(self_);
      }
    }

   private:
    friend class PushStreams;
    void WriteLocked(State state, Msg msg) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      current_ = std::move(msg);
      last_sent_ = std::move(state);
      write_in_flight_ = true;
      this->StartWrite(&current_);
    }
    void FinishLocked(grpc::Status status) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      if (finish_called_ || finish_pending_) return;
      queued_.reset();
      if (write_in_flight_) {
        finish_pending_ = true;
        finish_status_ = std::move(status);
        return;
      }
      finish_called_ = true;
      this->Finish(std::move(status));
    }

    const std::shared_ptr<Core> core_;
    const std::string key_;
    absl::Mutex mu_;
    std::shared_ptr<Stream> self_ ABSL_GUARDED_BY(mu_);  // gRPC's reference, until OnDone
    std::optional<State> last_sent_ ABSL_GUARDED_BY(mu_);
    std::optional<std::pair<State, Msg>> queued_ ABSL_GUARDED_BY(mu_);
    Msg current_ ABSL_GUARDED_BY(mu_);
    bool write_in_flight_ ABSL_GUARDED_BY(mu_) = false;
    bool finish_called_ ABSL_GUARDED_BY(mu_) = false;
    bool finish_pending_ ABSL_GUARDED_BY(mu_) = false;
    grpc::Status finish_status_ ABSL_GUARDED_BY(mu_);
  };

  class Refused : public grpc::ServerWriteReactor<Msg> {
   public:
    void OnDone() override { delete this; }
  };

  void Run() {
    while (true) {
      std::vector<std::shared_ptr<Stream>> woken;
      {
        absl::MutexLock lock(&core_->mu);
        auto pending = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(core_->mu) {
          return core_->shutdown || core_->all_dirty || !core_->dirty.empty();
        };
        core_->mu.Await(absl::Condition(&pending));
        if (core_->shutdown) return;
        if (core_->all_dirty) {
          for (auto& [key, s] : core_->open) woken.push_back(s);
        } else {
          for (const auto& key : core_->dirty) {
            auto [first, last] = core_->open.equal_range(key);
            for (auto it = first; it != last; ++it) woken.push_back(it->second);
          }
        }
        core_->all_dirty = false;
        core_->dirty.clear();
      }
      for (auto& s : woken) {
        core_->evaluations.fetch_add(1);
        absl::StatusOr<std::optional<State>> state = handlers_.state(s->key());
        if (!state.ok()) {
          s->End(transport::ToGrpcStatus(state.status()));
          continue;
        }
        if (!state->has_value() || !s->Wants(**state)) continue;
        Msg msg = handlers_.render(s->key(), **state);
        s->Send(**std::move(state), std::move(msg));
      }
    }
  }

  const Handlers handlers_;
  const std::shared_ptr<Core> core_;
  absl::Mutex join_mu_;
  std::thread notifier_;
};

}  // namespace trellis::server
