// A small HTTP or HTTPS listener for the server's public documents (the federation bundle
// endpoint, OIDC discovery): two threads, bounded timeouts and request sizes, and for HTTPS
// a certificate read from files at each handshake, so a renewed certificate is served
// without a restart.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <thread>

#include "absl/status/statusor.h"
#include "web/tls_files.h"

namespace httplib {
class Server;
}

namespace trellis::web {

class HttpListener {
 public:
  struct Options {
    // Names the listener in errors and logs ("federation.bundle_endpoint").
    std::string name;
    std::string address = "0.0.0.0";
    uint16_t port = 0;  // 0: any free port (see port())
    // HTTPS with this identity; plain HTTP when null.
    std::shared_ptr<TlsFiles> tls;
    // Adds the routes. Paths without a route answer 404, other methods 405, with a short
    // JSON body.
    std::function<void(httplib::Server&)> routes;
  };

  // UNAVAILABLE when the address cannot be bound, INVALID_ARGUMENT (naming the listener) when
  // the TLS identity cannot be read.
  static absl::StatusOr<std::unique_ptr<HttpListener>> Start(Options options);
  ~HttpListener();
  void Stop();
  int port() const { return port_; }

 private:
  HttpListener() = default;

  std::shared_ptr<TlsFiles> tls_;
  std::unique_ptr<httplib::Server> server_;
  std::thread thread_;
  int port_ = 0;
};

}  // namespace trellis::web
