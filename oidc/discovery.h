// OpenID Connect discovery for the trust domain's JWT-SVIDs: resource servers and cloud
// providers that know nothing of SPIFFE find the issuer's keys at
// /.well-known/openid-configuration and verify JWT-SVIDs against /keys.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "datastore/types.h"
#include "web/http_listener.h"
#include "web/tls_files.h"

namespace trellis::oidc {

// At most this many keys are published (the latest to expire first); a trust domain holds
// two or three at a time, so only a runaway of published keys reaches it.
inline constexpr size_t kMaxKeys = 64;

// The discovery document for `issuer` and `jwks_uri`.
std::string DiscoveryDocument(const std::string& issuer, const std::string& jwks_uri);

// The JWKS of the usable JWT authorities at `now`: tainted and expired keys left out, each
// key with "use": "sig", its "kid" and its "alg". INVALID_ARGUMENT when a stored key cannot
// be read (it names the kid).
absl::StatusOr<std::string> KeysDocument(const std::vector<datastore::JwtAuthority>& authorities,
                                         absl::Time now);

class DiscoveryServer {
 public:
  struct Options {
    std::string address = "0.0.0.0";
    uint16_t port = 8008;                // 0: any free port
    std::shared_ptr<web::TlsFiles> tls;  // null: plain HTTP
    // The `iss` of the trust domain's JWT-SVIDs; empty: <scheme>://<request Host>.
    std::string issuer;
    // Empty: <scheme>://<request Host>/keys.
    std::string jwks_uri;
    // Host names (without port) a request may carry; empty: any.
    std::vector<std::string> domains;
    // The trust domain's JWT authorities now (the stored bundle's, with taint marks).
    std::function<absl::StatusOr<std::vector<datastore::JwtAuthority>>()> authorities;
    std::function<absl::Time()> now = [] { return absl::Now(); };
  };

  static absl::StatusOr<std::unique_ptr<DiscoveryServer>> Start(Options options);
  void Stop() { listener_->Stop(); }
  int port() const { return listener_->port(); }

 private:
  explicit DiscoveryServer(std::unique_ptr<web::HttpListener> listener)
      : listener_(std::move(listener)) {}
  std::unique_ptr<web::HttpListener> listener_;
};

}  // namespace trellis::oidc
