// One Workload API server stream: attests the caller (off gRPC's threads when attestation may
// block), then writes the caller's view of every new snapshot, skipping repeats.
#pragma once

#include <grpcpp/grpcpp.h>

#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "common/openssl_util.h"
#include "transport/grpc_status.h"
#include "transport/spiffe_tls.h"
#include "workload_api/caller_attestation.h"
#include "workload_api/identity_source.h"
#include "workload_api/peer_listener.h"
#include "workload_api/render.h"
#include "workload_api/work_queue.h"

namespace trellis::workload_api {

// The open streams, so shutdown can end each of them.
class StreamRegistry {
 public:
  void Add(const void* key, std::function<void()> closer);
  void Remove(const void* key);
  // Calls every closer (outside the lock: a closer may finish its stream and remove it).
  void CloseAll();

 private:
  absl::Mutex mu_;
  std::map<const void*, std::function<void()>> open_ ABSL_GUARDED_BY(mu_);
};

// What a stream calls into; all of it outlives every stream.
struct StreamDeps {
  IdentitySource* source;
  const CallerAttestation* attestation;
  WorkQueue* work;
  StreamRegistry* registry;
};

template <typename Resp>
class IdentityStream : public grpc::ServerWriteReactor<Resp> {
 public:
  using Render = absl::StatusOr<Resp> (*)(const IdentitySnapshot&,
                                          const std::vector<std::string>&);

  // Deletes itself in OnDone. `caller` is the checked caller (or why the call is refused).
  IdentityStream(const StreamDeps& deps, absl::StatusOr<PeerRecord> caller, Render render,
                 bool require_identity)
      : deps_(deps), render_(render), require_identity_(require_identity),
        state_(std::make_shared<State>()) {
    state_->reactor = this;
    // Registered before anything can finish the stream, so shutdown can reach it.
    std::weak_ptr<State> weak_state = state_;
    deps_.registry->Add(state_.get(), [weak_state] {
      if (auto s = weak_state.lock()) {
        Shutdown(s, grpc::Status(grpc::StatusCode::UNAVAILABLE, "agent is shutting down"));
      }
    });
    if (!caller.ok()) {
      absl::MutexLock lock(&state_->mu);
      FinishLocked(transport::ToGrpcStatus(caller.status()));
      return;
    }
    std::shared_ptr<State> state = state_;
    auto attest_and_send = [state, record = *caller, deps = deps_] {
      auto selectors = deps.attestation->Attest(record);
      absl::MutexLock lock(&state->mu);
      IdentityStream* self = state->reactor;
      if (self == nullptr) return;
      self->state_->mu.AssertHeld();  // the same mutex: the reactor's state is `state`
      if (self->finish_called_ || self->finish_pending_) return;
      if (!selectors.ok()) {
        self->FinishLocked(transport::ToGrpcStatus(selectors.status()));
        return;
      }
      self->selectors_ = *std::move(selectors);
      std::weak_ptr<State> weak = state;
      self->listener_id_ =
          deps.source->Subscribe([weak](std::shared_ptr<const IdentitySnapshot> snap) {
            if (auto s = weak.lock()) Deliver(s, *snap);
          });
      self->OnSnapshotLocked(*deps.source->Snapshot(), /*first=*/true);
    };
    // Handing a quick attestation to a worker costs more (two thread wake-ups) than the
    // attestation itself; only attestation that may block leaves the gRPC thread.
    if (deps_.attestation->inline_ok()) {
      attest_and_send();
    } else {
      deps_.work->Post(std::move(attest_and_send));
    }
  }

  void OnWriteDone(bool ok) override {
    absl::MutexLock lock(&state_->mu);
    write_in_flight_ = false;
    WipeSecrets(&current_);
    // A finish deferred behind this write (e.g. OnCancel during it) is due now, whether or
    // not the write went through; FinishLocked would skip it as already pending.
    if (!ok && !finish_pending_) {
      DropPendingLocked();
      FinishLocked(grpc::Status(grpc::StatusCode::CANCELLED, "stream closed by the client"));
      return;
    }
    if (finish_pending_) {
      DropPendingLocked();
      finish_pending_ = false;
      finish_called_ = true;
      this->Finish(finish_status_);
      return;
    }
    if (pending_) {
      current_ = std::move(*pending_);
      pending_.reset();
      write_in_flight_ = true;
      this->StartWrite(&current_);
    }
  }

  void OnCancel() override {
    absl::MutexLock lock(&state_->mu);
    FinishLocked(grpc::Status(grpc::StatusCode::CANCELLED, "cancelled"));
  }

  void OnDone() override {
    uint64_t listener = 0;
    {
      absl::MutexLock lock(&state_->mu);
      state_->reactor = nullptr;
      listener = listener_id_;
      WipeSecrets(&current_);
      DropPendingLocked();
      WipeString(&last_bytes_);
    }
    if (listener != 0) deps_.source->Unsubscribe(listener);
    deps_.registry->Remove(state_.get());
    delete this;
  }

 private:
  // Lives as long as anyone may call in (listeners, queued work); the reactor itself is
  // deleted in OnDone, after which `reactor` is null.
  struct State {
    absl::Mutex mu;
    IdentityStream* reactor ABSL_GUARDED_BY(mu) = nullptr;
  };

  // Ends the stream from outside (server shutdown).
  static void Shutdown(const std::shared_ptr<State>& state, grpc::Status status) {
    absl::MutexLock lock(&state->mu);
    IdentityStream* reactor = state->reactor;
    if (reactor == nullptr) return;
    reactor->state_->mu.AssertHeld();  // the same mutex: the reactor's state is `state`
    reactor->FinishLocked(std::move(status));
  }

  static void Deliver(const std::shared_ptr<State>& state, const IdentitySnapshot& snap) {
    absl::MutexLock lock(&state->mu);
    IdentityStream* reactor = state->reactor;
    if (reactor == nullptr) return;
    reactor->state_->mu.AssertHeld();  // the same mutex: the reactor's state is `state`
    reactor->OnSnapshotLocked(snap, /*first=*/false);
  }

  void DropPendingLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(state_->mu) {
    if (!pending_) return;
    WipeSecrets(&*pending_);
    pending_.reset();
  }

  void OnSnapshotLocked(const IdentitySnapshot& snap, bool first)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(state_->mu) {
    if (finish_called_ || finish_pending_) return;
    if (!first && snap.version <= last_version_) return;
    last_version_ = std::max(last_version_, snap.version);
    absl::StatusOr<Resp> resp = render_(snap, selectors_);
    if (resp.ok() && first && require_identity_ && snap.IdentitiesFor(selectors_).empty()) {
      WipeSecrets(&*resp);
      resp = absl::PermissionDeniedError("no identity issued");
    }
    if (!resp.ok()) {
      DropPendingLocked();
      FinishLocked(transport::ToGrpcStatus(resp.status()));
      return;
    }
    std::string bytes;
    resp->SerializeToString(&bytes);
    if (sent_any_ && bytes == last_bytes_) {
      WipeString(&bytes);
      WipeSecrets(&*resp);
      return;
    }
    sent_any_ = true;
    WipeString(&last_bytes_);
    last_bytes_.swap(bytes);
    if (write_in_flight_) {
      DropPendingLocked();
      pending_ = *std::move(resp);
      return;
    }
    current_ = *std::move(resp);
    write_in_flight_ = true;
    this->StartWrite(&current_);
  }

  void FinishLocked(grpc::Status status) ABSL_EXCLUSIVE_LOCKS_REQUIRED(state_->mu) {
    if (finish_called_ || finish_pending_) return;
    if (write_in_flight_) {
      finish_pending_ = true;
      finish_status_ = std::move(status);
      return;
    }
    finish_called_ = true;
    this->Finish(status);
  }

  const StreamDeps deps_;
  const Render render_;
  const bool require_identity_;
  const std::shared_ptr<State> state_;
  std::vector<std::string> selectors_ ABSL_GUARDED_BY(state_->mu);
  uint64_t listener_id_ ABSL_GUARDED_BY(state_->mu) = 0;
  uint64_t last_version_ ABSL_GUARDED_BY(state_->mu) = 0;
  bool sent_any_ ABSL_GUARDED_BY(state_->mu) = false;
  // The last message sent, serialised; it may hold private keys, so it is wiped on change.
  std::string last_bytes_ ABSL_GUARDED_BY(state_->mu);
  Resp current_ ABSL_GUARDED_BY(state_->mu);
  std::optional<Resp> pending_ ABSL_GUARDED_BY(state_->mu);
  bool write_in_flight_ ABSL_GUARDED_BY(state_->mu) = false;
  bool finish_called_ ABSL_GUARDED_BY(state_->mu) = false;
  bool finish_pending_ ABSL_GUARDED_BY(state_->mu) = false;
  grpc::Status finish_status_ ABSL_GUARDED_BY(state_->mu);
};

}  // namespace trellis::workload_api
