// Test helpers: fetch /metrics over a plain socket and read one sample from the text format.
#pragma once

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <map>
#include <optional>
#include <sstream>
#include <string>

namespace trellis::telemetry::testing {

// The whole HTTP/1.0 response to GET `path` from 127.0.0.1:port; empty when the request fails.
inline std::string HttpGet(int port, const std::string& path) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return "";
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  std::string response;
  if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0) {
    std::string request = "GET " + path + " HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n";
    if (write(fd, request.data(), request.size()) == static_cast<ssize_t>(request.size())) {
      char buf[4096];
      ssize_t n;
      while ((n = read(fd, buf, sizeof(buf))) > 0) response.append(buf, static_cast<size_t>(n));
    }
  }
  close(fd);
  return response;
}

// The body of GET /metrics from 127.0.0.1:port; empty when the request fails.
inline std::string Scrape(int port) {
  std::string response = HttpGet(port, "/metrics");
  size_t body = response.find("\r\n\r\n");
  return body == std::string::npos ? "" : response.substr(body + 4);
}

// The value of the sample `name{...}` whose labels include every pair in `labels`.
inline std::optional<double> SampleValue(const std::string& text, const std::string& name,
                                         const std::map<std::string, std::string>& labels) {
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind(name + "{", 0) != 0 && line.rfind(name + " ", 0) != 0) continue;
    size_t close = line.rfind('}');
    std::string label_text = close == std::string::npos ? "" : line.substr(0, close);
    bool all = true;
    for (const auto& [k, v] : labels) {
      if (label_text.find(k + "=\"" + v + "\"") == std::string::npos) all = false;
    }
    if (!all) continue;
    size_t space = line.rfind(' ');
    return std::stod(line.substr(space + 1));
  }
  return std::nullopt;
}

}  // namespace trellis::telemetry::testing
