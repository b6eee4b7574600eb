// A loopback HTTP server that answers slowly: after reading a request it sends `head` at once,
// then `drip` one byte at a time, one every `interval`. Each read of the client succeeds long
// before any read timeout, yet the whole answer takes drip.size() * interval: the peer that a
// per-read timeout cannot stop. One connection is served at a time.
#pragma once

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <string>
#include <thread>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/synchronization/notification.h"
#include "absl/time/time.h"
#include "gtest/gtest.h"

namespace trellis::attestors::testdrip {

class DripServer {
 public:
  DripServer(std::string head, std::string drip, absl::Duration interval)
      : head_(std::move(head)), drip_(std::move(drip)), interval_(interval) {
    listen_fd_ = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    EXPECT_GE(listen_fd_, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    EXPECT_EQ(bind(listen_fd_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
    EXPECT_EQ(listen(listen_fd_, 8), 0);
    socklen_t len = sizeof(addr);
    EXPECT_EQ(getsockname(listen_fd_, reinterpret_cast<sockaddr*>(&addr), &len), 0);
    port_ = ntohs(addr.sin_port);
    thread_ = std::thread([this] { Serve(); });
  }
  ~DripServer() {
    stop_.Notify();
    thread_.join();
    close(listen_fd_);
  }
  DripServer(const DripServer&) = delete;
  DripServer& operator=(const DripServer&) = delete;

  int port() const { return port_; }
  std::string url(const std::string& path = "/") const {
    return "http://127.0.0.1:" + std::to_string(port_) + path;
  }
  // Requests read so far.
  int requests() const { return requests_.load(); }

 private:
  void Serve() {
    while (!stop_.HasBeenNotified()) {
      pollfd p{listen_fd_, POLLIN, 0};
      if (poll(&p, 1, 20) <= 0) continue;
      int fd = accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
      if (fd < 0) continue;
      if (ReadRequest(fd)) {
        ++requests_;
        Answer(fd);
      }
      close(fd);
    }
  }

  // Reads the request head and, when it announces one, its body.
  bool ReadRequest(int fd) {
    std::string in;
    size_t head_end = std::string::npos;
    while ((head_end = in.find("\r\n\r\n")) == std::string::npos) {
      if (!ReadSome(fd, &in)) return false;
    }
    size_t body = 0;
    for (size_t pos = 0; pos < head_end;) {
      size_t eol = in.find("\r\n", pos);
      std::string line = absl::AsciiStrToLower(in.substr(pos, eol - pos));
      if (absl::StartsWith(line, "content-length:")) {
        std::string n(absl::StripAsciiWhitespace(line.substr(15)));
        if (!absl::SimpleAtoi(n, &body)) return false;
      }
      pos = eol + 2;
    }
    while (in.size() < head_end + 4 + body) {
      if (!ReadSome(fd, &in)) return false;
    }
    return true;
  }

  bool ReadSome(int fd, std::string* in) {
    if (stop_.HasBeenNotified() || in->size() > (1 << 20)) return false;
    pollfd p{fd, POLLIN, 0};
    if (poll(&p, 1, 20) <= 0) return true;  // nothing yet: look at stop_ again
    char buf[4096];
    ssize_t n = recv(fd, buf, sizeof(buf), 0);
    if (n <= 0) return false;
    in->append(buf, static_cast<size_t>(n));
    return true;
  }

  void Answer(int fd) {
    if (!head_.empty() && send(fd, head_.data(), head_.size(), MSG_NOSIGNAL) < 0) return;
    for (char c : drip_) {
      // The client gone (it gave up) ends the answer; so does the server stopping.
      if (send(fd, &c, 1, MSG_NOSIGNAL) != 1) return;
      if (stop_.WaitForNotificationWithTimeout(interval_)) return;
    }
  }

  const std::string head_;
  const std::string drip_;
  const absl::Duration interval_;
  int listen_fd_ = -1;
  int port_ = 0;
  std::atomic<int> requests_{0};
  absl::Notification stop_;
  std::thread thread_;
};

// An HTTP/1.1 200 head announcing a JSON body of `length` bytes.
inline std::string OkHead(size_t length) {
  return "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: " +
         std::to_string(length) + "\r\nConnection: close\r\n\r\n";
}

}  // namespace trellis::attestors::testdrip
