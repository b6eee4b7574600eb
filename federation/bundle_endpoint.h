// The SPIFFE bundle endpoint: this trust domain's bundle document served over HTTPS to the
// servers of other trust domains that federate with it.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "web/http_listener.h"
#include "web/tls_files.h"

namespace trellis::federation {

class BundleEndpoint {
 public:
  struct Options {
    std::string address = "0.0.0.0";
    uint16_t port = 443;  // 0: any free port (see port())
    // The document to serve (SPIFFE bundle JSON); an error answers 503.
    std::function<absl::StatusOr<std::string>()> document;
    // The certificate chain and key presented in each handshake: the server's own SVID for
    // the https_spiffe profile, a Web PKI certificate for https_web.
    std::shared_ptr<web::TlsFiles> identity;
  };

  // Binds and serves GET / on two threads. UNAVAILABLE when the address cannot be bound,
  // INVALID_ARGUMENT when the identity cannot be read.
  static absl::StatusOr<std::unique_ptr<BundleEndpoint>> Start(Options options);
  void Stop() { listener_->Stop(); }
  int port() const { return listener_->port(); }

 private:
  explicit BundleEndpoint(std::unique_ptr<web::HttpListener> listener)
      : listener_(std::move(listener)) {}
  std::unique_ptr<web::HttpListener> listener_;
};

}  // namespace trellis::federation
