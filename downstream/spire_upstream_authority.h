// UpstreamAuthority "spire": the tier above, reached with this server's own SVID from the
// co-located agent's Workload API.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "common/spiffe_id.h"
#include "server/upstream_authority.h"

namespace trellis::downstream {

struct SpireUpstreamOptions {
  explicit SpireUpstreamOptions(common::TrustDomain td) : trust_domain(std::move(td)) {}
  common::TrustDomain trust_domain;
  std::string server_address;
  uint16_t server_port = 0;
  std::string workload_api_socket;
  // How long a call waits for the first SVID from the Workload API.
  absl::Duration svid_wait = absl::Seconds(60);
  absl::Duration mint_timeout = absl::Seconds(30);
  // SPIRE's publish timeout.
  absl::Duration publish_timeout = absl::Seconds(5);
};

// Starts following the Workload API at once. Calls authenticate with the latest SVID (a new
// channel whenever the agent rotates it) and verify that the upstream presents
// spiffe://<td>/spire/server chained to the bundle the agent gave us. Minted chains are checked
// against the returned roots by the CaManager before use.
absl::StatusOr<std::unique_ptr<server::UpstreamAuthority>> CreateSpireUpstreamAuthority(
    SpireUpstreamOptions options);

}  // namespace trellis::downstream
