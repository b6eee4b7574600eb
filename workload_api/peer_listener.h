// The Workload API socket: binds it open to every local user, accepts connections itself to
// record each caller's kernel credentials (SO_PEERCRED), then hands the fd to gRPC.
#pragma once

#include <sys/types.h>

#include <atomic>
#include <map>
#include <memory>
#include <string>
#include <thread>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "attestors/workload/workload_attestor.h"

namespace grpc {
class Server;
}

namespace trellis::workload_api {

// What was recorded about one accepted connection.
struct PeerRecord {
  attestors::CallerCredentials creds;
  uint64_t start_time = 0;  // of creds.pid when the connection was accepted
  uint64_t socket_inode = 0;
};

class PeerListener {
 public:
  // Binds `socket_path` (parent directory created 0755, socket 0777; a stale socket file is
  // replaced, one a running process answers on is FAILED_PRECONDITION).
  static absl::StatusOr<std::unique_ptr<PeerListener>> Bind(const std::string& socket_path);
  ~PeerListener();

  // Starts the accept loop; accepted connections go to `server`, which must outlive Stop().
  void Start(grpc::Server* server);
  // Stops accepting (joins the accept loop).
  void StopAccepting();
  // StopAccepting(), then closes and removes the socket and forgets every record.
  void Close();

  // The record of the connection a call came on (`peer` is ServerContext::peer(), "fd:<n>").
  absl::StatusOr<PeerRecord> Lookup(const std::string& peer);
  // Connections whose credentials are still recorded (for leak checks).
  size_t TrackedConnections();

 private:
  PeerListener() = default;
  void AcceptLoop();
  void SweepClosed() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  std::string socket_path_;
  int listen_fd_ = -1;
  int wake_pipe_[2] = {-1, -1};
  grpc::Server* server_ = nullptr;
  std::thread accept_thread_;
  std::atomic<bool> stopped_{false};
  absl::Mutex mu_;
  std::map<int, PeerRecord> peers_ ABSL_GUARDED_BY(mu_);  // keyed by the connection's fd
};

}  // namespace trellis::workload_api
