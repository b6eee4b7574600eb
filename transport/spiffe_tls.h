// gRPC transport security with SPIFFE identities: mTLS credentials whose peer checks use the
// current trust bundle (so bundle rotation needs no restart), and per-call peer
// authentication for servers.
#pragma once

#include <functional>
#include <memory>
#include <optional>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "common/spiffe_id.h"

namespace grpc {
class ChannelCredentials;
class ServerCredentials;
class ServerContextBase;
class Status;
}  // namespace grpc

namespace trellis::common {
class Bundle;
}

namespace trellis::transport {

// Returns the bundle to verify peers against at the moment of a handshake or call.
using BundleSource = std::function<std::shared_ptr<const common::Bundle>()>;

struct TlsIdentity {
  std::string cert_chain_pem;   // leaf first
  std::string private_key_pem;  // PKCS#8
};

// Client credentials (agent or downstream server calling a server). At every handshake the
// server's chain is verified as an X509-SVID against `bundle()` and its SPIFFE ID must equal
// `expected_server_id`. With `insecure_bootstrap` the chain is not checked, only the ID: the
// one-time bootstrap SPIRE offers when no trust bundle is configured. Without `identity` no
// client certificate is presented (attestation, bundle fetch).
std::shared_ptr<grpc::ChannelCredentials> SpiffeClientCredentials(
    std::optional<TlsIdentity> identity, BundleSource bundle, common::SpiffeId expected_server_id,
    bool insecure_bootstrap = false);

// Server credentials presenting the chain and key in two PEM files, re-read when they change
// (write them atomically). A client certificate is requested but not required at the TLS
// layer: each handler decides with AuthenticatePeer, against the bundle current at the call.
absl::StatusOr<std::shared_ptr<grpc::ServerCredentials>> SpiffeServerCredentials(
    const std::string& cert_chain_file, const std::string& key_file);

struct PeerIdentity {
  common::SpiffeId id;
  std::string serial_hex;
  absl::Time not_after;
};

// The caller's verified identity. UNAUTHENTICATED when it presented no certificate or its
// chain does not verify as an X509-SVID of the bundle's trust domain at `now`. Results are
// cached per (chain, bundle sequence) so repeated calls on one connection stay cheap.
absl::StatusOr<PeerIdentity> AuthenticatePeer(const grpc::ServerContextBase& ctx,
                                              const common::Bundle& bundle, absl::Time now);

// The caller's address without port ("127.0.0.1", "::1"), or "unix" for Unix sockets.
std::string PeerAddress(const grpc::ServerContextBase& ctx);

}  // namespace trellis::transport
