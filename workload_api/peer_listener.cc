// Socket set-up, the accept loop recording SO_PEERCRED per connection, and the lookups.
#include "workload_api/peer_listener.h"

#include <fcntl.h>
#include <grpcpp/grpcpp.h>
#include <grpcpp/server_posix.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <optional>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/string_view.h"
#include "absl/strings/strip.h"

namespace trellis::workload_api {
namespace {

// The peer's supplementary groups as the kernel recorded them at connect (Linux 4.13+);
// nullopt when the kernel does not say, and attestors read /proc instead.
std::optional<std::vector<gid_t>> PeerGroups(int fd) {
  std::vector<gid_t> groups(64);
  for (int attempt = 0; attempt < 2; ++attempt) {
    socklen_t len = static_cast<socklen_t>(groups.size() * sizeof(gid_t));
    if (getsockopt(fd, SOL_SOCKET, SO_PEERGROUPS, groups.data(), &len) == 0) {
      groups.resize(len / sizeof(gid_t));
      return groups;
    }
    if (errno != ERANGE) return std::nullopt;
    groups.resize(len / sizeof(gid_t) + 1);
  }
  return std::nullopt;
}

}  // namespace

absl::StatusOr<std::unique_ptr<PeerListener>> PeerListener::Bind(const std::string& path) {
  std::unique_ptr<PeerListener> l(new PeerListener());
  l->socket_path_ = path;
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
  l->listen_fd_ = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (l->listen_fd_ < 0) return absl::InternalError(std::string("socket: ") + strerror(errno));
  addr.sun_family = AF_UNIX;
  std::memcpy(addr.sun_path, path.c_str(), path.size());
  if (bind(l->listen_fd_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    return absl::FailedPreconditionError("cannot bind " + path + ": " + strerror(errno));
  }
  // Any local user may call: the caller is identified by the kernel, not by file access.
  chmod(path.c_str(), 0777);
  if (listen(l->listen_fd_, 1024) != 0) {
    return absl::InternalError(std::string("listen: ") + strerror(errno));
  }
  if (pipe2(l->wake_pipe_, O_CLOEXEC | O_NONBLOCK) != 0) {
    return absl::InternalError(std::string("pipe: ") + strerror(errno));
  }
  return l;
}

PeerListener::~PeerListener() {
  Close();
  if (listen_fd_ >= 0) close(listen_fd_);
  for (int fd : wake_pipe_) {
    if (fd >= 0) close(fd);
  }
}

void PeerListener::Start(grpc::Server* server) {
  server_ = server;
  accept_thread_ = std::thread([this] { AcceptLoop(); });
}

void PeerListener::StopAccepting() {
  if (stopped_.exchange(true)) return;
  if (wake_pipe_[1] >= 0) {
    char c = 'x';
    [[maybe_unused]] ssize_t n = write(wake_pipe_[1], &c, 1);
  }
  if (accept_thread_.joinable()) accept_thread_.join();
}

void PeerListener::Close() {
  StopAccepting();
  if (listen_fd_ >= 0) {
    close(listen_fd_);
    listen_fd_ = -1;
    unlink(socket_path_.c_str());
  }
  absl::MutexLock lock(&mu_);
  peers_.clear();
}

void PeerListener::AcceptLoop() {
  int accepted_since_sweep = 0;
  while (true) {
    pollfd fds[2] = {{listen_fd_, POLLIN, 0}, {wake_pipe_[0], POLLIN, 0}};
    int n = poll(fds, 2, 1000);
    if (n < 0 && errno != EINTR) return;
    if (fds[1].revents != 0) return;
    if (n <= 0) {
      absl::MutexLock lock(&mu_);
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
      record.creds = {cred.pid, cred.uid, cred.gid, PeerGroups(fd)};
      record.socket_inode = st.st_ino;
      // Pin the caller now: a pid reused after this point has another start time.
      auto start = attestors::ProcessStartTime(cred.pid);
      record.start_time = start.ok() ? *start : 0;
      {
        absl::MutexLock lock(&mu_);
        peers_[fd] = record;  // replaces any record of an earlier connection on this fd number
        if (++accepted_since_sweep >= 256) {
          accepted_since_sweep = 0;
          SweepClosed();
        }
      }
      // gRPC owns the fd from here on and closes it when the connection ends.
      grpc::AddInsecureChannelFromFd(server_, fd);
    }
  }
}

void PeerListener::SweepClosed() {
  for (auto it = peers_.begin(); it != peers_.end();) {
    struct stat st;
    if (fstat(it->first, &st) != 0 || st.st_ino != it->second.socket_inode) {
      it = peers_.erase(it);
    } else {
      ++it;
    }
  }
}

size_t PeerListener::TrackedConnections() {
  absl::MutexLock lock(&mu_);
  SweepClosed();
  return peers_.size();
}

absl::StatusOr<PeerRecord> PeerListener::Lookup(const std::string& peer) {
  absl::string_view view(peer);
  int fd = -1;
  if (!absl::ConsumePrefix(&view, "fd:") || !absl::SimpleAtoi(view, &fd)) {
    return absl::UnavailableError("caller did not come through the Workload API socket");
  }
  absl::MutexLock lock(&mu_);
  auto it = peers_.find(fd);
  struct stat st;
  if (it == peers_.end()) return absl::UnavailableError("caller connection is unknown");
  if (fstat(fd, &st) != 0 || st.st_ino != it->second.socket_inode) {
    peers_.erase(it);
    return absl::UnavailableError("caller connection is unknown");
  }
  return it->second;
}

}  // namespace trellis::workload_api
