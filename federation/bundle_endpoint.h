// The SPIFFE bundle endpoint: this trust domain's bundle document served over HTTPS to the
// servers of other trust domains that federate with it.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <thread>

#include "absl/status/statusor.h"
#include "federation/tls_files.h"

namespace httplib {
class SSLServer;
}

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
    std::shared_ptr<TlsFiles> identity;
  };

  // Binds and serves on two threads. UNAVAILABLE when the address cannot be bound,
  // INVALID_ARGUMENT when the identity cannot be read.
  static absl::StatusOr<std::unique_ptr<BundleEndpoint>> Start(Options options);
  ~BundleEndpoint();
  void Stop();
  int port() const { return port_; }

 private:
  explicit BundleEndpoint(Options options);

  Options options_;
  std::unique_ptr<httplib::SSLServer> server_;
  std::thread thread_;
  int port_ = 0;
};

}  // namespace trellis::federation
