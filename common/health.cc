// A minimal HTTP/1.0 responder for liveness and readiness probes.
#include "common/health.h"

#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <nlohmann/json.hpp>

namespace trellis::common {

std::pair<int, std::string> RenderHealth(const HealthReport& report, bool live) {
  nlohmann::json subsystems = nlohmann::json::object();
  bool healthy = true;
  for (const auto& [name, s] : report.subsystems) {
    subsystems[name] = {{"healthy", s.healthy}, {"detail", s.detail}};
    if (!s.healthy && !(live && report.live_excludes.count(name))) healthy = false;
  }
  nlohmann::json body = {{live ? "live" : "ready", healthy}, {"subsystems", subsystems}};
  return {healthy ? 200 : 500, body.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace)};
}

absl::StatusOr<std::unique_ptr<HealthListener>> HealthListener::Start(
    const common::config::HealthChecksConfig& config, std::function<HealthReport()> report) {
  std::unique_ptr<HealthListener> l(new HealthListener());
  l->config_ = config;
  l->report_ = std::move(report);
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_PASSIVE;
  addrinfo* res = nullptr;
  std::string port = std::to_string(config.bind_port);
  int rc = getaddrinfo(config.bind_address.empty() ? nullptr : config.bind_address.c_str(),
                       port.c_str(), &hints, &res);
  if (rc != 0) {
    return absl::InvalidArgumentError("health_checks: cannot resolve bind_address \"" +
                                      config.bind_address + "\": " + gai_strerror(rc));
  }
  std::string last_error = "no address";
  for (addrinfo* ai = res; ai != nullptr; ai = ai->ai_next) {
    int fd = ::socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, ai->ai_protocol);
    if (fd < 0) continue;
    int one = 1;
    ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (::bind(fd, ai->ai_addr, ai->ai_addrlen) == 0 && ::listen(fd, 16) == 0) {
      l->listen_fd_ = fd;
      sockaddr_storage bound{};
      socklen_t len = sizeof bound;
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&bound), &len);
      l->port_ =
          ntohs(bound.ss_family == AF_INET6 ? reinterpret_cast<sockaddr_in6*>(&bound)->sin6_port
                                            : reinterpret_cast<sockaddr_in*>(&bound)->sin_port);
      break;
    }
    last_error = std::strerror(errno);
    ::close(fd);
  }
  freeaddrinfo(res);
  if (l->listen_fd_ < 0) {
    return absl::UnavailableError("health_checks: cannot listen on " + config.bind_address + ":" +
                                  port + ": " + last_error);
  }
  if (::pipe2(l->wake_fd_, O_CLOEXEC) != 0) {
    return absl::InternalError(std::string("pipe: ") + std::strerror(errno));
  }
  l->thread_ = std::thread([raw = l.get()] { raw->Serve(); });
  return l;
}

HealthListener::~HealthListener() {
  Stop();
  if (listen_fd_ >= 0) ::close(listen_fd_);
  for (int fd : wake_fd_) {
    if (fd >= 0) ::close(fd);
  }
}

void HealthListener::Stop() {
  if (stopped_.exchange(true)) return;
  if (wake_fd_[1] >= 0) {
    char c = 0;
    (void)!::write(wake_fd_[1], &c, 1);
  }
  if (thread_.joinable()) thread_.join();
}

void HealthListener::Serve() {
  while (!stopped_) {
    pollfd fds[2] = {{listen_fd_, POLLIN, 0}, {wake_fd_[0], POLLIN, 0}};
    int n = ::poll(fds, 2, -1);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 || (fds[1].revents & POLLIN)) return;
    if (fds[0].revents & POLLIN) {
      int fd = ::accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
      if (fd < 0) continue;
      Answer(fd);
      ::close(fd);
    }
  }
}

void HealthListener::Answer(int fd) {
  // A probe that stalls must not hold the listener for long.
  timeval tv{2, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  ::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
  std::string request;
  char buf[1024];
  while (request.find("\r\n") == std::string::npos && request.size() < 8192) {
    ssize_t got = ::recv(fd, buf, sizeof buf, 0);
    if (got <= 0) break;
    request.append(buf, static_cast<size_t>(got));
  }
  std::string line = request.substr(0, request.find("\r\n"));
  std::string method = line.substr(0, line.find(' '));
  std::string path;
  if (size_t sp = line.find(' '); sp != std::string::npos) {
    path = line.substr(sp + 1, line.find(' ', sp + 1) - sp - 1);
  }
  int code = 404;
  std::string body = "{\"error\":\"not found\"}";
  if (method == "GET" && (path == config_.live_path || path == config_.ready_path)) {
    std::tie(code, body) = RenderHealth(report_(), path == config_.live_path);
  }
  std::string reason = code == 200 ? "OK" : code == 404 ? "Not Found" : "Internal Server Error";
  std::string resp =
      "HTTP/1.0 " + std::to_string(code) + " " + reason +
      "\r\nContent-Type: application/json\r\nContent-Length: " + std::to_string(body.size()) +
      "\r\nConnection: close\r\n\r\n" + body;
  size_t off = 0;
  while (off < resp.size()) {
    ssize_t sent = ::send(fd, resp.data() + off, resp.size() - off, MSG_NOSIGNAL);
    if (sent <= 0) break;
    off += static_cast<size_t>(sent);
  }
}

}  // namespace trellis::common
