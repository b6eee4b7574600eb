// A local gRPC socket that accepts connections itself to learn each caller's kernel credentials
// (SO_PEERCRED), then hands the connection to a gRPC server (whose ServerContext::peer() is
// then "fd:<n>"). gRPC 1.51 reports no credentials for a Unix socket it accepts.
#pragma once

#include <sys/types.h>

#include <atomic>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <thread>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"

namespace grpc {
class Server;
}

namespace trellis::transport {

struct PeerCredentials {
  pid_t pid = 0;
  uid_t uid = 0;
  gid_t gid = 0;
};

class UnixPeerListener {
 public:
  // Binds `socket_path` (whose directory must exist and which must not exist itself) and sets
  // its permissions to `mode`.
  static absl::StatusOr<std::unique_ptr<UnixPeerListener>> Bind(const std::string& socket_path,
                                                                mode_t mode);
  // Close().
  ~UnixPeerListener();

  // Starts the accept loop; connections go to `server`, which must outlive StopAccepting().
  void Start(grpc::Server* server);
  // Stops accepting: joins the accept loop and closes the listening socket, so a client
  // connecting from then on is refused at once instead of waiting in the queue.
  void StopAccepting();
  // StopAccepting(), then removes the socket file (only the one this listener bound) and
  // forgets every record.
  void Close();

  // The credentials of the connection a call came on (`peer` is ServerContext::peer());
  // nullopt for a call that did not come through this listener.
  std::optional<PeerCredentials> Lookup(const std::string& peer);

 private:
  UnixPeerListener() = default;
  void AcceptLoop();
  void SweepClosed() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  struct Record {
    PeerCredentials creds;
    ino_t socket_inode = 0;  // tells a reused fd number from the connection recorded
  };

  std::string socket_path_;
  ino_t socket_inode_ = 0;  // of the file bind created, so Close() removes only that
  // When the accept loop last warned that it ran out of descriptors (its thread only).
  absl::Time last_resource_warning_ = absl::InfinitePast();
  int listen_fd_ = -1;
  int wake_pipe_[2] = {-1, -1};
  grpc::Server* server_ = nullptr;
  std::thread accept_thread_;
  std::atomic<bool> stopped_{false};
  absl::Mutex mu_;
  std::map<int, Record> peers_ ABSL_GUARDED_BY(mu_);  // keyed by the connection's fd
};

}  // namespace trellis::transport
