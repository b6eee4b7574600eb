// UpstreamAuthority: where a server's X.509 CA comes from when the server is not its own root,
// and, for a nested server, where its JWT keys are published and its bundle comes from.
#pragma once

#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "common/keys.h"
#include "common/spiffe_id.h"
#include "common/x509.h"
#include "datastore/types.h"

namespace trellis::server {

class UpstreamAuthority {
 public:
  struct MintResult {
    // The new CA first, then any intermediates above it; never the root.
    std::vector<common::Certificate> ca_chain;
    // The trust domain's roots (trust anchors for the bundle).
    std::vector<common::Certificate> roots;
  };
  virtual ~UpstreamAuthority() = default;

  // Signs a CA certificate for `ca_key` valid for at most `ttl` (capped by the upstream). The
  // private key is only used to sign a certificate request when the upstream is remote.
  virtual absl::StatusOr<MintResult> MintX509Ca(const common::PrivateKey& ca_key,
                                                const common::TrustDomain& td,
                                                absl::Duration ttl) = 0;

  // True when the trust domain's bundle is held upstream (a nested server): JWT keys must be
  // published there before use, and the upstream's bundle is the source of truth.
  virtual bool OwnsBundle() const { return false; }
  // Publishes a JWT public key; returns the upstream's bundle once it holds the key.
  virtual absl::StatusOr<datastore::Bundle> PublishJwtAuthority(const datastore::JwtAuthority&) {
    return absl::FailedPreconditionError("this upstream authority keeps no bundle");
  }
  // Delivers the upstream's bundle now and after every change, from a background thread,
  // until Stop(). Does nothing when the upstream keeps no bundle.
  virtual void WatchBundle(std::function<void(const datastore::Bundle&)> /*on_bundle*/) {}
  // Delivers every federated bundle the upstream holds, now and after every change, from a
  // background thread, until Stop(). Does nothing when the upstream keeps no bundles.
  virtual void WatchFederatedBundles(
      std::function<void(const std::vector<datastore::Bundle>&)> /*on_bundles*/) {}
  // The state of the link to the upstream, for health and metrics; nullopt when the upstream
  // is not a remote server (nothing can be down).
  struct LinkState {
    bool connected = false;
    std::string detail;  // the upstream's address, and the last error while disconnected
    absl::Time last_bundle_update = absl::InfinitePast();
  };
  virtual std::optional<LinkState> Link() const { return std::nullopt; }
  // Ends background work; no callback runs once it returns. Idempotent.
  virtual void Stop() {}
};

}  // namespace trellis::server
