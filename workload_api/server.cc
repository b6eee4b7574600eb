// Workload API: socket ownership, the accept loop that records kernel credentials per
// connection, and the five RPCs as callback-API reactors (cheap when thousands stream).
#include "workload_api/server.h"

#include <fcntl.h>
#include <google/protobuf/util/json_util.h>
#include <grpcpp/grpcpp.h>
#include <grpcpp/server_posix.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <set>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "common/jwt.h"
#include "common/status.h"
#include "common/x509.h"
#include "workload.grpc.pb.h"
#include "workload.pb.h"

namespace trellis::workload_api {

// A fixed pool of threads for blocking work (attestation, JWT minting).
class WorkQueue {
 public:
  explicit WorkQueue(int threads) {
    for (int i = 0; i < threads; ++i) threads_.emplace_back([this] { Run(); });
  }
  ~WorkQueue() { Stop(); }
  void Post(std::function<void()> fn) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (stopping_) return;
      queue_.push_back(std::move(fn));
    }
    cv_.notify_one();
  }
  // Runs what is queued, then joins.
  void Stop() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      stopping_ = true;
    }
    cv_.notify_all();
    for (auto& t : threads_) {
      if (t.joinable()) t.join();
    }
    threads_.clear();
  }

 private:
  void Run() {
    while (true) {
      std::function<void()> fn;
      {
        std::unique_lock<std::mutex> lock(mu_);
        cv_.wait(lock, [&] { return stopping_ || !queue_.empty(); });
        if (queue_.empty()) return;
        fn = std::move(queue_.front());
        queue_.pop_front();
      }
      fn();
    }
  }
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::function<void()>> queue_;  // guarded by mu_
  bool stopping_ = false;                    // guarded by mu_
  std::vector<std::thread> threads_;
};

namespace {

constexpr char kHeader[] = "workload.spiffe.io";

grpc::Status ToGrpc(const absl::Status& s) {
  return grpc::Status(static_cast<grpc::StatusCode>(s.code()), std::string(s.message()));
}

// INVALID_ARGUMENT unless the call carries exactly one workload.spiffe.io: true.
grpc::Status CheckHeader(const grpc::CallbackServerContext* ctx) {
  auto range = ctx->client_metadata().equal_range(kHeader);
  int count = 0;
  bool is_true = false;
  for (auto it = range.first; it != range.second; ++it) {
    ++count;
    is_true = std::string_view(it->second.data(), it->second.size()) == "true";
  }
  if (count != 1 || !is_true) {
    return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "security header missing from request");
  }
  return grpc::Status::OK;
}

std::string ConcatDer(const std::vector<std::string>& ders) {
  std::string out;
  for (const auto& d : ders) out += d;
  return out;
}

absl::StatusOr<X509SVIDResponse> RenderX509Svids(const CacheSnapshot& snap,
                                                 const std::vector<std::string>& selectors) {
  if (!snap.ready) return absl::UnavailableError("agent is not ready: no identities synced yet");
  std::vector<Identity> ids = snap.IdentitiesFor(selectors);
  if (ids.empty()) return absl::PermissionDeniedError("no identity issued");
  X509SVIDResponse resp;
  std::string own_bundle = snap.bundle ? common::BundleToDer(*snap.bundle) : std::string();
  for (const Identity& id : ids) {
    X509SVID* svid = resp.add_svids();
    svid->set_spiffe_id(id.entry->spiffe_id.String());
    svid->set_x509_svid(ConcatDer(id.svid->chain_der));
    svid->set_x509_svid_key(id.svid->key_pkcs8_der);
    svid->set_bundle(own_bundle);
    svid->set_hint(id.entry->hint);
  }
  for (const auto& [td, bundle] : snap.BundlesFor(ids, /*include_own=*/false)) {
    (*resp.mutable_federated_bundles())[td] = common::BundleToDer(*bundle);
  }
  return resp;
}

absl::StatusOr<X509BundlesResponse> RenderX509Bundles(const CacheSnapshot& snap,
                                                      const std::vector<std::string>& selectors) {
  if (!snap.ready) return absl::UnavailableError("agent is not ready: no identities synced yet");
  std::vector<Identity> ids = snap.IdentitiesFor(selectors);
  X509BundlesResponse resp;
  for (const auto& [td, bundle] : snap.BundlesFor(ids, /*include_own=*/true)) {
    (*resp.mutable_bundles())[td] = common::BundleToDer(*bundle);
  }
  return resp;
}

absl::StatusOr<JWTBundlesResponse> RenderJwtBundles(const CacheSnapshot& snap,
                                                    const std::vector<std::string>& selectors) {
  if (!snap.ready) return absl::UnavailableError("agent is not ready: no identities synced yet");
  std::vector<Identity> ids = snap.IdentitiesFor(selectors);
  JWTBundlesResponse resp;
  for (const auto& [td, bundle] : snap.BundlesFor(ids, /*include_own=*/true)) {
    auto jwks = common::JwksToJson(bundle->jwt_authorities());
    if (!jwks.ok()) return jwks.status();
    (*resp.mutable_bundles())[td] = *jwks;
  }
  return resp;
}

void RememberStream(WorkloadApiServer* server, const void* key, std::function<void()> closer);
void ForgetStream(WorkloadApiServer* server, const void* key);

}  // namespace

// One server stream: attests the caller off the gRPC threads, then writes the full state on
// every cache change, skipping a message identical to the previous one.
template <typename Resp>
class CacheStream : public grpc::ServerWriteReactor<Resp> {
 public:
  using Render = absl::StatusOr<Resp> (*)(const CacheSnapshot&, const std::vector<std::string>&);

  // Lives as long as anyone may call in (listeners, queued work); the reactor itself is
  // deleted in OnDone, after which `reactor` is null.
  struct State {
    std::mutex mu;
    CacheStream* reactor = nullptr;  // guarded by mu
  };

  CacheStream(WorkloadApiServer* server, Cache* cache, grpc::CallbackServerContext* ctx,
              Render render, bool require_identity)
      : server_(server),
        cache_(cache),
        render_(render),
        require_identity_(require_identity),
        state_(std::make_shared<State>()) {
    state_->reactor = this;
    // Registered before anything can finish the stream, so shutdown can reach it.
    std::weak_ptr<State> weak_state = state_;
    RememberStream(server, state_.get(), [weak_state] {
      if (auto s = weak_state.lock()) {
        Shutdown(s, grpc::Status(grpc::StatusCode::UNAVAILABLE, "agent is shutting down"));
      }
    });
    if (grpc::Status h = CheckHeader(ctx); !h.ok()) {
      FinishNow(h);
      return;
    }
    auto peer = server->LookupPeer(ctx->peer());
    if (!peer.ok()) {
      FinishNow(ToGrpc(peer.status()));
      return;
    }
    std::shared_ptr<State> state = state_;
    PeerRecord record = *peer;
    auto attest_and_send = [state, record, server, cache] {
      auto selectors = server->AttestCaller(record);
      std::lock_guard<std::mutex> lock(state->mu);
      CacheStream* self = state->reactor;
      if (self == nullptr || self->finish_called_ || self->finish_pending_) return;
      if (!selectors.ok()) {
        self->FinishLocked(ToGrpc(selectors.status()));
        return;
      }
      self->selectors_ = std::move(*selectors);
      std::weak_ptr<State> weak = state;
      self->listener_id_ = cache->AddListener([weak](std::shared_ptr<const CacheSnapshot> snap) {
        if (auto s = weak.lock()) Deliver(s, *snap);
      });
      self->OnSnapshotLocked(*cache->Snapshot(), /*first=*/true);
    };
    // Handing a quick attestation to a worker costs more (two thread wake-ups) than the
    // attestation itself; only attestation that may block leaves the gRPC thread.
    if (server->attest_inline()) {
      attest_and_send();
    } else {
      server->work()->Post(std::move(attest_and_send));
    }
  }

  // Ends the stream from outside (server shutdown).
  static void Shutdown(const std::shared_ptr<State>& state, grpc::Status status) {
    std::lock_guard<std::mutex> lock(state->mu);
    if (state->reactor) state->reactor->FinishLocked(std::move(status));
  }

  std::shared_ptr<State> state() const { return state_; }

  void OnWriteDone(bool ok) override {
    std::lock_guard<std::mutex> lock(state_->mu);
    write_in_flight_ = false;
    if (!ok) {
      pending_.reset();
      FinishLocked(grpc::Status(grpc::StatusCode::CANCELLED, "stream closed by the client"));
      return;
    }
    if (finish_pending_) {
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
    std::lock_guard<std::mutex> lock(state_->mu);
    FinishLocked(grpc::Status(grpc::StatusCode::CANCELLED, "cancelled"));
  }

  void OnDone() override {
    uint64_t listener = 0;
    {
      std::lock_guard<std::mutex> lock(state_->mu);
      state_->reactor = nullptr;
      listener = listener_id_;
    }
    if (listener != 0) cache_->RemoveListener(listener);
    ForgetStream(server_, state_.get());
    delete this;
  }

 private:
  static void Deliver(const std::shared_ptr<State>& state, const CacheSnapshot& snap) {
    std::lock_guard<std::mutex> lock(state->mu);
    if (state->reactor) state->reactor->OnSnapshotLocked(snap, /*first=*/false);
  }

  void FinishNow(const grpc::Status& status) {
    finish_called_ = true;
    this->Finish(status);
  }

  void OnSnapshotLocked(const CacheSnapshot& snap, bool first) {
    if (finish_called_ || finish_pending_) return;
    if (!first && snap.version <= last_version_) return;
    last_version_ = std::max(last_version_, snap.version);
    absl::StatusOr<Resp> resp = render_(snap, selectors_);
    if (resp.ok() && first && require_identity_ && snap.IdentitiesFor(selectors_).empty()) {
      resp = absl::PermissionDeniedError("no identity issued");
    }
    if (!resp.ok()) {
      pending_.reset();
      FinishLocked(ToGrpc(resp.status()));
      return;
    }
    std::string bytes;
    resp->SerializeToString(&bytes);
    if (sent_any_ && bytes == last_bytes_) return;
    sent_any_ = true;
    last_bytes_ = std::move(bytes);
    if (write_in_flight_) {
      pending_ = std::move(*resp);
      return;
    }
    current_ = std::move(*resp);
    write_in_flight_ = true;
    this->StartWrite(&current_);
  }

  void FinishLocked(grpc::Status status) {
    if (finish_called_ || finish_pending_) return;
    if (write_in_flight_) {
      finish_pending_ = true;
      finish_status_ = std::move(status);
      return;
    }
    finish_called_ = true;
    this->Finish(status);
  }

  WorkloadApiServer* server_;
  Cache* cache_;
  Render render_;
  bool require_identity_;
  std::shared_ptr<State> state_;
  // Everything below is guarded by state_->mu.
  std::vector<std::string> selectors_;
  uint64_t listener_id_ = 0;
  uint64_t last_version_ = 0;
  bool sent_any_ = false;
  std::string last_bytes_;
  Resp current_;
  std::optional<Resp> pending_;
  bool write_in_flight_ = false;
  bool finish_called_ = false;
  bool finish_pending_ = false;
  grpc::Status finish_status_;
  friend class WorkloadApiService;
};

class WorkloadApiService final : public SpiffeWorkloadAPI::CallbackService {
 public:
  WorkloadApiService(WorkloadApiServer* server, Cache* cache, WorkloadApiServer::JwtMinter minter,
                     const common::Clock& clock)
      : server_(server), cache_(cache), minter_(std::move(minter)), clock_(clock) {}

  grpc::ServerWriteReactor<X509SVIDResponse>* FetchX509SVID(grpc::CallbackServerContext* ctx,
                                                            const X509SVIDRequest*) override {
    return new CacheStream<X509SVIDResponse>(server_, cache_, ctx, &RenderX509Svids, true);
  }

  grpc::ServerWriteReactor<X509BundlesResponse>* FetchX509Bundles(
      grpc::CallbackServerContext* ctx, const X509BundlesRequest*) override {
    return new CacheStream<X509BundlesResponse>(server_, cache_, ctx, &RenderX509Bundles, true);
  }

  grpc::ServerWriteReactor<JWTBundlesResponse>* FetchJWTBundles(grpc::CallbackServerContext* ctx,
                                                                const JWTBundlesRequest*) override {
    return new CacheStream<JWTBundlesResponse>(server_, cache_, ctx, &RenderJwtBundles, true);
  }

  grpc::ServerUnaryReactor* FetchJWTSVID(grpc::CallbackServerContext* ctx,
                                         const JWTSVIDRequest* req,
                                         JWTSVIDResponse* resp) override {
    grpc::ServerUnaryReactor* reactor = ctx->DefaultReactor();
    if (grpc::Status h = CheckHeader(ctx); !h.ok()) {
      reactor->Finish(h);
      return reactor;
    }
    if (req->audience().empty()) {
      reactor->Finish(
          grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "audience must be specified"));
      return reactor;
    }
    for (const std::string& aud : req->audience()) {
      if (aud.empty()) {
        reactor->Finish(grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "audience is empty"));
        return reactor;
      }
    }
    if (!req->spiffe_id().empty()) {
      if (auto id = common::SpiffeId::Parse(req->spiffe_id()); !id.ok()) {
        reactor->Finish(
            grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                         "invalid requested SPIFFE ID: " + std::string(id.status().message())));
        return reactor;
      }
    }
    auto peer = server_->LookupPeer(ctx->peer());
    if (!peer.ok()) {
      reactor->Finish(ToGrpc(peer.status()));
      return reactor;
    }
    PeerRecord record = *peer;
    server_->work()->Post([this, reactor, req, resp, record] {
      reactor->Finish(ToGrpc(FetchJwt(record, *req, resp)));
    });
    return reactor;
  }

  grpc::ServerUnaryReactor* ValidateJWTSVID(grpc::CallbackServerContext* ctx,
                                            const ValidateJWTSVIDRequest* req,
                                            ValidateJWTSVIDResponse* resp) override {
    grpc::ServerUnaryReactor* reactor = ctx->DefaultReactor();
    if (grpc::Status h = CheckHeader(ctx); !h.ok()) {
      reactor->Finish(h);
      return reactor;
    }
    reactor->Finish(ToGrpc(Validate(*req, resp)));
    return reactor;
  }

  // Ends every open stream (server shutdown).
  void FinishAll() {
    std::vector<std::function<void()>> closers;
    {
      std::lock_guard<std::mutex> lock(mu_);
      for (auto& [key, fn] : open_) closers.push_back(fn);
    }
    for (auto& fn : closers) fn();
  }

  void Remember(const void* key, std::function<void()> closer) {
    std::lock_guard<std::mutex> lock(mu_);
    open_[key] = std::move(closer);
  }

  void Forget(const void* key) {
    std::lock_guard<std::mutex> lock(mu_);
    open_.erase(key);
  }

 private:
  absl::Status FetchJwt(const PeerRecord& record, const JWTSVIDRequest& req,
                        JWTSVIDResponse* resp) {
    TRELLIS_ASSIGN_OR_RETURN(auto selectors, server_->AttestCaller(record));
    std::shared_ptr<const CacheSnapshot> snap = cache_->Snapshot();
    if (!snap->ready) return absl::UnavailableError("agent is not ready: no identities synced yet");
    std::vector<std::string> audience(req.audience().begin(), req.audience().end());
    std::vector<const CachedEntry*> entries = snap->EntriesFor(selectors);
    bool any = false;
    for (const CachedEntry* entry : entries) {
      if (!req.spiffe_id().empty() && entry->spiffe_id.String() != req.spiffe_id()) continue;
      any = true;
      auto token = minter_ ? minter_(*entry, audience)
                           : absl::StatusOr<std::string>(absl::UnavailableError("no JWT minter"));
      if (!token.ok()) {
        return absl::Status(token.status().code(),
                            absl::StrCat("could not fetch JWT-SVID for ", entry->spiffe_id.String(),
                                         ": ", token.status().message()));
      }
      JWTSVID* svid = resp->add_svids();
      svid->set_spiffe_id(entry->spiffe_id.String());
      svid->set_svid(*token);
      svid->set_hint(entry->hint);
    }
    if (!any) return absl::PermissionDeniedError("no identity issued");
    return absl::OkStatus();
  }

  absl::Status Validate(const ValidateJWTSVIDRequest& req, ValidateJWTSVIDResponse* resp) {
    if (req.audience().empty()) return absl::InvalidArgumentError("audience must be specified");
    if (req.svid().empty()) return absl::InvalidArgumentError("svid must be specified");
    // The token names its trust domain in `sub`; its keys come from that domain's bundle.
    std::vector<absl::string_view> parts = absl::StrSplit(req.svid(), '.');
    if (parts.size() != 3) return absl::InvalidArgumentError("token is not a compact JWS");
    auto payload = common::Base64UrlDecode(std::string(parts[1]));
    if (!payload.ok()) return absl::InvalidArgumentError("token payload is not base64url");
    nlohmann::json claims = nlohmann::json::parse(*payload, nullptr, /*allow_exceptions=*/false);
    if (!claims.is_object() || !claims.contains("sub") || !claims["sub"].is_string()) {
      return absl::InvalidArgumentError("token has no sub claim");
    }
    auto sub = common::SpiffeId::Parse(claims["sub"].get<std::string>());
    if (!sub.ok()) {
      return absl::InvalidArgumentError("token sub is not a SPIFFE ID: " +
                                        std::string(sub.status().message()));
    }
    std::shared_ptr<const CacheSnapshot> snap = cache_->Snapshot();
    std::shared_ptr<const common::Bundle> bundle = snap->BundleOf(sub->trust_domain());
    if (!bundle) {
      return absl::InvalidArgumentError("no keys found for trust domain " +
                                        sub->trust_domain().name());
    }
    auto svid =
        common::VerifyJwtSvid(req.svid(), bundle->jwt_authorities(), req.audience(), clock_.Now());
    if (!svid.ok()) return absl::InvalidArgumentError(std::string(svid.status().message()));
    resp->set_spiffe_id(svid->subject.String());
    auto parsed =
        google::protobuf::util::JsonStringToMessage(svid->claims.dump(), resp->mutable_claims());
    if (!parsed.ok()) return absl::InternalError("cannot convert claims");
    return absl::OkStatus();
  }

  WorkloadApiServer* server_;
  Cache* cache_;
  WorkloadApiServer::JwtMinter minter_;
  const common::Clock& clock_;
  std::mutex mu_;
  std::map<const void*, std::function<void()>> open_;  // guarded by mu_
};

namespace {
void RememberStream(WorkloadApiServer* server, const void* key, std::function<void()> closer) {
  server->service()->Remember(key, std::move(closer));
}
void ForgetStream(WorkloadApiServer* server, const void* key) { server->service()->Forget(key); }
}  // namespace

absl::StatusOr<std::unique_ptr<WorkloadApiServer>> WorkloadApiServer::Start(
    Options options, Cache* cache, std::vector<attestors::WorkloadAttestor*> attestors,
    JwtMinter minter, const common::Clock& clock) {
  std::unique_ptr<WorkloadApiServer> s(new WorkloadApiServer());
  s->options_ = options;
  s->attestors_ = std::move(attestors);
  s->attest_inline_ = std::all_of(s->attestors_.begin(), s->attestors_.end(),
                                  [](attestors::WorkloadAttestor* a) { return a->NonBlocking(); });
  const std::string& path = options.socket_path;
  sockaddr_un addr{};
  if (path.empty() || path.size() >= sizeof(addr.sun_path)) {
    return absl::InvalidArgumentError("socket_path \"" + path + "\" is empty or too long");
  }
  std::filesystem::path parent = std::filesystem::path(path).parent_path();
  if (!parent.empty()) {
    std::error_code ec;
    bool created = std::filesystem::create_directories(parent, ec);
    if (ec) {
      return absl::FailedPreconditionError("cannot create socket directory " + parent.string() +
                                           ": " + ec.message());
    }
    if (created) chmod(parent.c_str(), 0755);
  }
  struct stat st;
  if (lstat(path.c_str(), &st) == 0) {
    if (!S_ISSOCK(st.st_mode)) {
      return absl::FailedPreconditionError("socket_path " + path + " exists and is not a socket");
    }
    // A socket someone still answers on belongs to a running agent: never take it over.
    int probe = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_un probe_addr{};
    probe_addr.sun_family = AF_UNIX;
    std::memcpy(probe_addr.sun_path, path.c_str(), path.size());
    bool live = probe >= 0 &&
                connect(probe, reinterpret_cast<sockaddr*>(&probe_addr), sizeof(probe_addr)) == 0;
    if (probe >= 0) close(probe);
    if (live) {
      return absl::FailedPreconditionError("socket_path " + path +
                                           " is in use by another running process");
    }
    unlink(path.c_str());
  }
  s->listen_fd_ = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (s->listen_fd_ < 0) return absl::InternalError(std::string("socket: ") + strerror(errno));
  addr.sun_family = AF_UNIX;
  std::memcpy(addr.sun_path, path.c_str(), path.size());
  if (bind(s->listen_fd_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    return absl::FailedPreconditionError("cannot bind " + path + ": " + strerror(errno));
  }
  // Any local user may call: the caller is identified by the kernel, not by file access.
  chmod(path.c_str(), 0777);
  if (listen(s->listen_fd_, 1024) != 0) {
    return absl::InternalError(std::string("listen: ") + strerror(errno));
  }
  if (pipe2(s->wake_pipe_, O_CLOEXEC | O_NONBLOCK) != 0) {
    return absl::InternalError(std::string("pipe: ") + strerror(errno));
  }
  s->work_ = std::make_unique<WorkQueue>(std::max(1, options.worker_threads));
  s->service_ = std::make_unique<WorkloadApiService>(s.get(), cache, std::move(minter), clock);
  grpc::ServerBuilder builder;
  builder.RegisterService(s->service_.get());
  if (options.configure_builder) options.configure_builder(builder);
  s->server_ = builder.BuildAndStart();
  if (!s->server_) return absl::InternalError("cannot start the Workload API gRPC server");
  s->accept_thread_ = std::thread([raw = s.get()] { raw->AcceptLoop(); });
  return s;
}

WorkloadApiServer::~WorkloadApiServer() {
  Stop();
  if (listen_fd_ >= 0) close(listen_fd_);
  for (int fd : wake_pipe_) {
    if (fd >= 0) close(fd);
  }
}

void WorkloadApiServer::Stop() {
  if (stopped_.exchange(true)) return;
  if (wake_pipe_[1] >= 0) {
    char c = 'x';
    [[maybe_unused]] ssize_t n = write(wake_pipe_[1], &c, 1);
  }
  if (accept_thread_.joinable()) accept_thread_.join();
  if (service_) service_->FinishAll();
  if (server_) server_->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(2));
  if (work_) work_->Stop();
  if (listen_fd_ >= 0) {
    close(listen_fd_);
    listen_fd_ = -1;
    unlink(options_.socket_path.c_str());
  }
  std::lock_guard<std::mutex> lock(peers_mu_);
  peers_.clear();
}

void WorkloadApiServer::AcceptLoop() {
  int accepted_since_sweep = 0;
  while (true) {
    pollfd fds[2] = {{listen_fd_, POLLIN, 0}, {wake_pipe_[0], POLLIN, 0}};
    int n = poll(fds, 2, 1000);
    if (n < 0 && errno != EINTR) return;
    if (fds[1].revents != 0) return;
    if (n <= 0) {
      std::lock_guard<std::mutex> lock(peers_mu_);
      SweepClosed();
      continue;
    }
    while (true) {
      int fd = accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK);
      if (fd < 0) break;
      ucred cred{};
      socklen_t len = sizeof(cred);
      struct stat st;
      if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0 || fstat(fd, &st) != 0) {
        close(fd);
        continue;
      }
      PeerRecord record;
      record.creds = {cred.pid, cred.uid, cred.gid};
      record.socket_inode = st.st_ino;
      // Pin the caller now: a pid reused after this point has another start time.
      auto start = attestors::ProcessStartTime(cred.pid);
      record.start_time = start.ok() ? *start : 0;
      {
        std::lock_guard<std::mutex> lock(peers_mu_);
        peers_[fd] = record;  // replaces any record of an earlier connection on this fd number
        if (++accepted_since_sweep >= 256) {
          accepted_since_sweep = 0;
          SweepClosed();
        }
      }
      // gRPC owns the fd from here on and closes it when the connection ends.
      grpc::AddInsecureChannelFromFd(server_.get(), fd);
    }
  }
}

void WorkloadApiServer::SweepClosed() {
  for (auto it = peers_.begin(); it != peers_.end();) {
    struct stat st;
    if (fstat(it->first, &st) != 0 || st.st_ino != it->second.socket_inode) {
      it = peers_.erase(it);
    } else {
      ++it;
    }
  }
}

size_t WorkloadApiServer::TrackedConnections() {
  std::lock_guard<std::mutex> lock(peers_mu_);
  SweepClosed();
  return peers_.size();
}

absl::StatusOr<PeerRecord> WorkloadApiServer::LookupPeer(const std::string& peer) {
  absl::string_view view(peer);
  int fd = -1;
  if (!absl::ConsumePrefix(&view, "fd:") || !absl::SimpleAtoi(view, &fd)) {
    return absl::UnavailableError("caller did not come through the Workload API socket");
  }
  std::lock_guard<std::mutex> lock(peers_mu_);
  auto it = peers_.find(fd);
  struct stat st;
  if (it == peers_.end()) return absl::UnavailableError("caller connection is unknown");
  if (fstat(fd, &st) != 0 || st.st_ino != it->second.socket_inode) {
    peers_.erase(it);
    return absl::UnavailableError("caller connection is unknown");
  }
  return it->second;
}

absl::StatusOr<std::vector<std::string>> WorkloadApiServer::AttestCaller(const PeerRecord& peer) {
  if (peer.start_time == 0) {
    return absl::UnauthenticatedError("calling process exited before it could be attested");
  }
  // The pin taken at accept time: whatever the attestors read is only trusted if the same
  // process still holds the pid after they are done (checked below, after all of them).
  attestors::ProcessPin pin = attestors::ProcessPin::FromStartTime(peer.creds.pid, peer.start_time);
  std::vector<std::string> selectors;
  for (attestors::WorkloadAttestor* attestor : attestors_) {
    auto got = attestor->AttestPinned(peer.creds, pin);
    if (!got.ok()) {
      if (absl::Status s = pin.Check(); !s.ok()) return s;
      if (got.status().code() == absl::StatusCode::kUnauthenticated) return got.status();
      return absl::UnavailableError("workload attestation failed: " +
                                    std::string(got.status().message()));
    }
    selectors.insert(selectors.end(), got->begin(), got->end());
  }
  if (absl::Status s = pin.Check(); !s.ok()) return s;
  return selectors;
}

}  // namespace trellis::workload_api
