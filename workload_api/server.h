// The SPIFFE Workload API server: a Unix socket open to every local user, callers identified
// by the kernel (SO_PEERCRED on each accepted connection), answers from the agent's Cache.
#pragma once

#include <sys/types.h>

#include <atomic>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/statusor.h"
#include "attestors/workload/workload_attestor.h"
#include "common/clock.h"
#include "workload_api/cache.h"

namespace grpc {
class Server;
class ServerBuilder;
}

namespace trellis::workload_api {

class WorkQueue;
class WorkloadApiService;

// What was recorded about one accepted connection.
struct PeerRecord {
  attestors::CallerCredentials creds;
  uint64_t start_time = 0;  // of creds.pid when the connection was accepted
  uint64_t socket_inode = 0;
};

class WorkloadApiServer {
 public:
  // Mints a JWT-SVID for `entry` and `audience` (the agent caches and calls the server).
  using JwtMinter = std::function<absl::StatusOr<std::string>(
      const CachedEntry& entry, const std::vector<std::string>& audience)>;

  struct Options {
    std::string socket_path;
    // Threads for attestation and JWT minting, so neither blocks gRPC's callback threads.
    int worker_threads = 4;
    // Adjusts the gRPC server before it starts (e.g. adds metrics interceptors).
    std::function<void(grpc::ServerBuilder&)> configure_builder = nullptr;
  };

  // Binds the socket (parent directory created 0755, socket 0777; a stale socket file is
  // replaced), starts the accept loop and the gRPC server.
  static absl::StatusOr<std::unique_ptr<WorkloadApiServer>> Start(
      Options options, Cache* cache, std::vector<attestors::WorkloadAttestor*> attestors,
      JwtMinter minter, const common::Clock& clock);
  ~WorkloadApiServer();

  // Ends every stream (UNAVAILABLE), stops accepting, shuts gRPC down, removes the socket.
  void Stop();

  // Connections whose credentials are still recorded (for leak checks).
  size_t TrackedConnections();

  // Internal, used by the service.
  absl::StatusOr<PeerRecord> LookupPeer(const std::string& peer);
  absl::StatusOr<std::vector<std::string>> AttestCaller(const PeerRecord& peer);
  WorkQueue* work() { return work_.get(); }
  // True when every attestor is quick enough to run on the gRPC thread that took the call.
  bool attest_inline() const { return attest_inline_; }
  WorkloadApiService* service() { return service_.get(); }

 private:
  WorkloadApiServer() = default;
  void AcceptLoop();
  void SweepClosed();  // requires peers_mu_

  Options options_;
  int listen_fd_ = -1;
  int wake_pipe_[2] = {-1, -1};
  std::thread accept_thread_;
  std::unique_ptr<WorkQueue> work_;
  std::unique_ptr<WorkloadApiService> service_;
  std::unique_ptr<grpc::Server> server_;
  std::vector<attestors::WorkloadAttestor*> attestors_;
  bool attest_inline_ = false;
  std::mutex peers_mu_;
  std::map<int, PeerRecord> peers_;  // guarded by peers_mu_; keyed by the connection's fd
  std::atomic<bool> stopped_{false};
  friend class WorkloadApiService;
};

}  // namespace trellis::workload_api
