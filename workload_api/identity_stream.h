// One Workload API server stream: waits for its call, attests the caller (off the queue's
// threads when attestation may block), then writes the caller's view of every new snapshot,
// skipping repeats. While a write is in flight only the newest snapshot waits behind it.
#pragma once

#include <grpcpp/grpcpp.h>

#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "common/log.h"
#include "common/openssl_util.h"
#include "transport/grpc_status.h"
#include "workload.grpc.pb.h"
#include "workload_api/async_call.h"
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

// What a call uses; all of it outlives every call.
struct CallDeps {
  SpiffeWorkloadAPI::AsyncService* service;
  CallQueue* calls;
  PeerListener* peers;
  IdentitySource* source;
  const CallerAttestation* attestation;
  WorkQueue* work;
  StreamRegistry* registry;
};

// INVALID_ARGUMENT unless the call carries exactly one `workload.spiffe.io: true` header.
absl::Status CheckHeader(const grpc::ServerContext& ctx);

// The caller's record, or INVALID_ARGUMENT without that header, or UNAVAILABLE for a
// connection the listener does not know.
absl::StatusOr<PeerRecord> CheckedCaller(const grpc::ServerContext& ctx, PeerListener* peers);

// "/SpiffeWorkloadAPI/<method>", the name gRPC gives the call.
std::string WorkloadApiMethod(std::string_view method);
// The log fields naming a caller: its pid and uid (none when the connection is unknown) and,
// once attested, the SPIFFE IDs it was served (comma-separated).
std::vector<common::LogField> CallerLogFields(const PeerRecord* caller,
                                              const std::vector<std::string>& spiffe_ids = {});
// The lines a call writes: refused (warn) or identities served (debug).
void LogCallRefused(const std::string& method, const PeerRecord* caller, const absl::Status& st);
void LogIdentitiesServed(const std::string& method, const PeerRecord& caller,
                         const std::vector<std::string>& spiffe_ids);

// The SHA-256 of a message's encoding, so repeats are told apart without keeping the last
// message (it holds private keys, and would cost its size per stream).
std::string DigestOf(const google::protobuf::MessageLite& msg);

template <typename Req, typename Resp>
class IdentityStream final : public AsyncCall {
 public:
  using Render = absl::StatusOr<Resp> (*)(const IdentitySnapshot&,
                                          const std::vector<std::string>&);
  // The generated Request<Method> member of the service.
  using Request = void (SpiffeWorkloadAPI::AsyncService::*)(
      grpc::ServerContext*, Req*, grpc::ServerAsyncWriter<Resp>*, grpc::CompletionQueue*,
      grpc::ServerCompletionQueue*, void*);
  struct Method {
    Request request;
    Render render;
    const char* name;  // the method's name in the proto, for the log
  };

  // Waits for the method's next call; the stream deletes itself when its call is over.
  static void Await(const CallDeps& deps, const Method& method) {
    auto* stream = new IdentityStream(deps, method);
    // New calls arrive on the queue that notifies of them.
    bool armed = deps.calls->Arm([stream](grpc::ServerCompletionQueue* cq) {
      (stream->deps_.service->*stream->method_.request)(&stream->ctx_, &stream->request_,
                                                        &stream->writer_, cq, cq,
                                                        &stream->request_tag_);
    });
    if (!armed) delete stream;  // the queue is stopping: no tag of the stream's will come
  }

  void Proceed(Op op, bool ok) override {
    // Past the locked part, only `state` is touched, and the stream itself only to begin a
    // call (no other thread can end it before `begun_` is set): with several queue threads,
    // another may end the call and delete the stream as soon as the lock is released.
    const std::shared_ptr<State> state = state_;
    bool begin = false;
    {
      absl::MutexLock lock(&state_->mu);
      switch (op) {
        case Op::kRequest:
          if (!ok) {  // the server is shutting down and no call came: no other tag will
            state_->stream = nullptr;
            break;
          }
          begin = true;
          break;
        case Op::kWrite:
          write_in_flight_ = false;
          if (!ok) {
            closed_ = true;  // the client is gone: the done tag follows
          } else if (closed_) {
            pending_.reset();
          } else if (finish_pending_) {
            finish_pending_ = false;
            StartFinishLocked();
          } else if (pending_) {
            std::shared_ptr<const IdentitySnapshot> next = std::move(pending_);
            OnSnapshotLocked(*next, /*first=*/false);
          }
          break;
        case Op::kFinish:
          finish_returned_ = true;
          break;
        case Op::kDone:
          done_ = true;
          closed_ = true;
          pending_.reset();
          break;
      }
    }
    if (op == Op::kRequest && !ok) {
      delete this;
      return;
    }
    if (begin) {
      // This call first: putting the method's next call on the queue can wait until its
      // first message is on its way. (Copies: once Begin is done, another queue thread may
      // end the call and delete the stream.)
      const CallDeps deps = deps_;
      const Method method = method_;
      Begin();
      Await(deps, method);
    }
    DestroyIfOver(state);
  }

 private:
  // Lives as long as anyone may call in (listeners, queued work, the registry); the stream
  // itself is deleted when its call is over, after which `stream` is null.
  struct State {
    absl::Mutex mu;
    IdentityStream* stream ABSL_GUARDED_BY(mu) = nullptr;
  };

  IdentityStream(const CallDeps& deps, const Method& method)
      : deps_(deps), method_(method), writer_(&ctx_), state_(std::make_shared<State>()) {
    absl::MutexLock lock(&state_->mu);
    state_->stream = this;
    ctx_.AsyncNotifyWhenDone(&done_tag_);
  }

  // The call has come: check the caller, attest it, subscribe and send the first message.
  void Begin() {
    std::weak_ptr<State> weak_state = state_;
    deps_.registry->Add(state_.get(), [weak_state] {
      if (auto s = weak_state.lock()) {
        Close(s, grpc::Status(grpc::StatusCode::UNAVAILABLE, "agent is shutting down"));
      }
    });
    registered_ = true;
    absl::StatusOr<PeerRecord> caller = CheckedCaller(ctx_, deps_.peers);
    if (!caller.ok()) {
      LogCallRefused(WorkloadApiMethod(method_.name), nullptr, caller.status());
      Close(state_, transport::ToGrpcStatus(caller.status()));
      absl::MutexLock lock(&state_->mu);
      begun_ = true;
      return;
    }
    auto attest_and_send = [state = state_, record = *caller, deps = deps_] {
      auto selectors = deps.attestation->Attest(record);
      absl::MutexLock lock(&state->mu);
      IdentityStream* self = state->stream;
      if (self == nullptr) return;
      self->state_->mu.AssertHeld();  // the same mutex: the stream's state is `state`
      if (self->closed_ || self->finish_called_ || self->finish_pending_) return;
      self->caller_ = record;
      if (!selectors.ok()) {
        LogCallRefused(WorkloadApiMethod(self->method_.name), &record, selectors.status());
        self->FinishLocked(transport::ToGrpcStatus(selectors.status()));
        return;
      }
      self->selectors_ = *std::move(selectors);
      std::weak_ptr<State> weak = state;
      self->listener_id_ =
          deps.source->Subscribe([weak](std::shared_ptr<const IdentitySnapshot> snap) {
            if (auto s = weak.lock()) Deliver(s, std::move(snap));
          });
      self->OnSnapshotLocked(*deps.source->Snapshot(), /*first=*/true);
    };
    // Handing a quick attestation to a worker costs more (two thread wake-ups) than the
    // attestation itself; only attestation that may block leaves the queue's thread.
    if (deps_.attestation->inline_ok()) {
      attest_and_send();
    } else {
      deps_.work->Post(std::move(attest_and_send));
    }
    absl::MutexLock lock(&state_->mu);
    begun_ = true;
  }

  // Deletes the stream once its call is over: begun, done, and no write or finish in flight.
  // Whichever thread sees that first deletes it; the others find `stream` null.
  static void DestroyIfOver(const std::shared_ptr<State>& state) {
    IdentityStream* self = nullptr;
    uint64_t listener = 0;
    {
      absl::MutexLock lock(&state->mu);
      self = state->stream;
      if (self == nullptr) return;
      self->state_->mu.AssertHeld();  // the same mutex: the stream's state is `state`
      bool over = self->begun_ && self->done_ && !self->write_in_flight_ &&
                  (!self->finish_called_ || self->finish_returned_);
      if (!over) return;
      state->stream = nullptr;
      listener = self->listener_id_;
    }
    if (listener != 0) self->deps_.source->Unsubscribe(listener);
    if (self->registered_) self->deps_.registry->Remove(state.get());
    delete self;
  }

  // Ends the stream from outside its call (server shutdown, a refused caller).
  static void Close(const std::shared_ptr<State>& state, grpc::Status status) {
    absl::MutexLock lock(&state->mu);
    IdentityStream* stream = state->stream;
    if (stream == nullptr) return;
    stream->state_->mu.AssertHeld();  // the same mutex: the stream's state is `state`
    stream->FinishLocked(std::move(status));
  }

  static void Deliver(const std::shared_ptr<State>& state,
                      std::shared_ptr<const IdentitySnapshot> snap) {
    absl::MutexLock lock(&state->mu);
    IdentityStream* stream = state->stream;
    if (stream == nullptr) return;
    stream->state_->mu.AssertHeld();  // the same mutex: the stream's state is `state`
    if (stream->write_in_flight_) {
      // Rendered when the write in flight is done, only if still the newest by then.
      if (!stream->pending_ || stream->pending_->version < snap->version) {
        stream->pending_ = std::move(snap);
      }
      return;
    }
    stream->OnSnapshotLocked(*snap, /*first=*/false);
  }

  void OnSnapshotLocked(const IdentitySnapshot& snap, bool first)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(state_->mu) {
    if (closed_ || finish_called_ || finish_pending_) return;
    if (!first && snap.version <= last_version_) return;
    last_version_ = std::max(last_version_, snap.version);
    absl::StatusOr<Resp> resp = method_.render(snap, selectors_);
    std::vector<std::string> served;  // for the log, on the first message only
    if (resp.ok() && first) {
      for (const Identity& id : snap.IdentitiesFor(selectors_)) {
        served.emplace_back(id.entry->spiffe_id());
      }
      // A caller with no identity is refused (PERMISSION_DENIED) rather than streamed nothing.
      if (served.empty()) {
        WipeSecrets(&*resp);
        resp = absl::PermissionDeniedError("no identity issued");
      }
    }
    if (!resp.ok()) {
      LogCallRefused(WorkloadApiMethod(method_.name), &caller_, resp.status());
      FinishLocked(transport::ToGrpcStatus(resp.status()));
      return;
    }
    if (first && common::LogEnabled(common::config::LogLevel::kDebug)) {
      LogIdentitiesServed(WorkloadApiMethod(method_.name), caller_, served);
    }
    std::string digest;
    if (!last_digest_.empty()) {  // something was sent: skip a repeat of it
      digest = DigestOf(*resp);
      if (digest == last_digest_) {
        WipeSecrets(&*resp);
        return;
      }
    }
    write_in_flight_ = true;
    // Write encodes the message before it returns; the copy here is wiped straight after.
    writer_.Write(*resp, &write_tag_);
    // The first message's digest after its write, so that write does not wait on it.
    last_digest_ = digest.empty() ? DigestOf(*resp) : std::move(digest);
    WipeSecrets(&*resp);
  }

  void FinishLocked(grpc::Status status) ABSL_EXCLUSIVE_LOCKS_REQUIRED(state_->mu) {
    if (closed_ || finish_called_ || finish_pending_) return;
    finish_status_ = std::move(status);
    if (write_in_flight_) {
      finish_pending_ = true;
      return;
    }
    StartFinishLocked();
  }

  void StartFinishLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(state_->mu) {
    pending_.reset();
    finish_called_ = true;
    writer_.Finish(finish_status_, &finish_tag_);
  }

  const CallDeps deps_;
  const Method method_;
  grpc::ServerContext ctx_;
  Req request_;
  grpc::ServerAsyncWriter<Resp> writer_;
  Tag request_tag_{this, Op::kRequest};
  Tag write_tag_{this, Op::kWrite};
  Tag finish_tag_{this, Op::kFinish};
  Tag done_tag_{this, Op::kDone};
  const std::shared_ptr<State> state_;
  // Set in Begin, before anything but the queue's thread can reach the stream.
  bool registered_ = false;

  // Begin has run to its end: only then may the stream be deleted.
  bool begun_ ABSL_GUARDED_BY(state_->mu) = false;
  PeerRecord caller_ ABSL_GUARDED_BY(state_->mu);  // set once the caller is known
  std::vector<std::string> selectors_ ABSL_GUARDED_BY(state_->mu);
  uint64_t listener_id_ ABSL_GUARDED_BY(state_->mu) = 0;
  uint64_t last_version_ ABSL_GUARDED_BY(state_->mu) = 0;
  std::string last_digest_ ABSL_GUARDED_BY(state_->mu);  // empty until a message is sent
  std::shared_ptr<const IdentitySnapshot> pending_ ABSL_GUARDED_BY(state_->mu);
  bool write_in_flight_ ABSL_GUARDED_BY(state_->mu) = false;
  // The call is over from the client's side (cancelled, or a write failed): nothing more is
  // written and Finish is not called.
  bool closed_ ABSL_GUARDED_BY(state_->mu) = false;
  bool done_ ABSL_GUARDED_BY(state_->mu) = false;
  bool finish_pending_ ABSL_GUARDED_BY(state_->mu) = false;
  bool finish_called_ ABSL_GUARDED_BY(state_->mu) = false;
  bool finish_returned_ ABSL_GUARDED_BY(state_->mu) = false;
  grpc::Status finish_status_ ABSL_GUARDED_BY(state_->mu);
};

}  // namespace trellis::workload_api
