// CreateUpstreamAuthority: the UpstreamAuthority a server configuration names.
#pragma once

#include <memory>

#include "absl/status/statusor.h"
#include "common/clock.h"
#include "common/config/server_config.h"
#include "common/spiffe_id.h"
#include "server/upstream_authority.h"

namespace trellis::runtime {

// "disk" reads and checks the operator's CA files now, so a bad path fails start-up; "spire"
// starts following the Workload API at `workload_api_socket` at once. Plugin names are
// checked when the configuration is read (an unknown one is refused there, naming the known
// ones); each alternative of the configuration has its branch here, enforced at compile time.
absl::StatusOr<std::unique_ptr<server::UpstreamAuthority>> CreateUpstreamAuthority(
    const common::config::UpstreamAuthorityConfig& config, const common::TrustDomain& td,
    const common::Clock& clock);

}  // namespace trellis::runtime
