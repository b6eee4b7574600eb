// The accept loop recording SO_PEERCRED per connection, and the lookups by "fd:<n>".
#include "transport/unix_peer_listener.h"

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

#include "absl/strings/numbers.h"
#include "absl/strings/string_view.h"
#include "absl/strings/strip.h"
#include "absl/time/clock.h"
#include "common/log.h"

namespace trellis::transport {

absl::StatusOr<std::unique_ptr<UnixPeerListener>> UnixPeerListener::Bind(const std::string& path,
                                                                         mode_t mode) {
  std::unique_ptr<UnixPeerListener> l(new UnixPeerListener());
  sockaddr_un addr{};
  if (path.empty() || path.size() >= sizeof(addr.sun_path)) {
    return absl::InvalidArgumentError("socket path \"" + path + "\" is empty or too long");
  }
  l->listen_fd_ = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (l->listen_fd_ < 0) return absl::InternalError(std::string("socket: ") + strerror(errno));
  addr.sun_family = AF_UNIX;
  std::memcpy(addr.sun_path, path.c_str(), path.size());
  // Linux creates the socket file with the socket's own mode (less the umask): set it first so
  // the file is never more open than `mode`, even between bind and the chmod below.
  if (::fchmod(l->listen_fd_, mode) != 0) {
    return absl::InternalError(std::string("fchmod: ") + strerror(errno));
  }
  if (::bind(l->listen_fd_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    return absl::FailedPreconditionError("cannot bind " + path + ": " + strerror(errno));
  }
  struct stat bound;
  if (::stat(path.c_str(), &bound) != 0) {
    return absl::FailedPreconditionError("cannot stat " + path + ": " + strerror(errno));
  }
  l->socket_path_ = path;  // from here on Close() removes it, while it is still ours
  l->socket_inode_ = bound.st_ino;
  // The umask may have removed bits `mode` grants (group access to the admin socket).
  if (::chmod(path.c_str(), mode) != 0) {
    return absl::FailedPreconditionError("cannot chmod " + path + ": " + strerror(errno));
  }
  if (::listen(l->listen_fd_, 128) != 0) {
    return absl::InternalError(std::string("listen: ") + strerror(errno));
  }
  if (::pipe2(l->wake_pipe_, O_CLOEXEC | O_NONBLOCK) != 0) {
    return absl::InternalError(std::string("pipe: ") + strerror(errno));
  }
  return l;
}

UnixPeerListener::~UnixPeerListener() {
  Close();
  for (int fd : wake_pipe_) {
    if (fd >= 0) ::close(fd);
  }
}

void UnixPeerListener::Start(grpc::Server* server) {
  server_ = server;
  accept_thread_ = std::thread([this] { AcceptLoop(); });
}

void UnixPeerListener::StopAccepting() {
  if (stopped_.exchange(true)) return;
  if (wake_pipe_[1] >= 0) {
    char c = 'x';
    [[maybe_unused]] ssize_t n = ::write(wake_pipe_[1], &c, 1);
  }
  if (accept_thread_.joinable()) accept_thread_.join();
  // Refuse new connections at once rather than leave them queued until Close().
  if (listen_fd_ >= 0) {
    ::close(listen_fd_);
    listen_fd_ = -1;
  }
}

void UnixPeerListener::Close() {
  StopAccepting();
  if (listen_fd_ >= 0) {
    ::close(listen_fd_);
    listen_fd_ = -1;
  }
  if (!socket_path_.empty()) {
    // Only the socket this listener bound: a newer process may already have bound its own.
    struct stat st;
    if (::lstat(socket_path_.c_str(), &st) == 0 && st.st_ino == socket_inode_) {
      ::unlink(socket_path_.c_str());
    }
    socket_path_.clear();
  }
  absl::MutexLock lock(&mu_);
  peers_.clear();
}

void UnixPeerListener::AcceptLoop() {
  int accepted_since_sweep = 0;
  while (true) {
    pollfd fds[2] = {{listen_fd_, POLLIN, 0}, {wake_pipe_[0], POLLIN, 0}};
    int n = ::poll(fds, 2, 1000);
    if (n < 0 && errno != EINTR) {
      common::LogError("Admin socket accept loop ended", {{"error", strerror(errno)}});
      return;
    }
    if (fds[1].revents != 0) return;
    if (n <= 0) {
      absl::MutexLock lock(&mu_);
      SweepClosed();
      continue;
    }
    while (true) {
      int fd = ::accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK);
      if (fd < 0) {
        if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
          // The connection stays queued, so polling again at once would spin: wait a little
          // (or for the stop) and let descriptors free up.
          const absl::Time now = absl::Now();
          if (now - last_resource_warning_ >= absl::Minutes(1)) {
            last_resource_warning_ = now;
            common::LogWarn("Admin socket cannot accept a connection",
                            {{"error", strerror(errno)}});
          }
          pollfd wake = {wake_pipe_[0], POLLIN, 0};
          ::poll(&wake, 1, 100);
        }
        break;
      }
      ucred cred{};
      socklen_t len = sizeof(cred);
      struct stat st;
      if (::getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0 || ::fstat(fd, &st) != 0) {
        ::close(fd);
        continue;
      }
      {
        absl::MutexLock lock(&mu_);
        // Replaces any record of an earlier connection on this fd number.
        peers_[fd] = Record{{cred.pid, cred.uid, cred.gid}, st.st_ino};
        if (++accepted_since_sweep >= 64) {
          accepted_since_sweep = 0;
          SweepClosed();
        }
      }
      // gRPC owns the fd from here on and closes it when the connection ends.
      grpc::AddInsecureChannelFromFd(server_, fd);
    }
  }
}

void UnixPeerListener::SweepClosed() {
  for (auto it = peers_.begin(); it != peers_.end();) {
    struct stat st;
    if (::fstat(it->first, &st) != 0 || st.st_ino != it->second.socket_inode) {
      it = peers_.erase(it);
    } else {
      ++it;
    }
  }
}

std::optional<PeerCredentials> UnixPeerListener::Lookup(const std::string& peer) {
  absl::string_view view(peer);
  int fd = -1;
  if (!absl::ConsumePrefix(&view, "fd:") || !absl::SimpleAtoi(view, &fd)) return std::nullopt;
  absl::MutexLock lock(&mu_);
  auto it = peers_.find(fd);
  if (it == peers_.end()) return std::nullopt;
  struct stat st;
  if (::fstat(fd, &st) != 0 || st.st_ino != it->second.socket_inode) {
    peers_.erase(it);
    return std::nullopt;
  }
  return it->second.creds;
}

}  // namespace trellis::transport
