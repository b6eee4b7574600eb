// Server configuration to CaManager options: TTLs, key types, CA subject, JWT issuer and the
// UpstreamAuthority "disk".
#pragma once

#include "absl/status/statusor.h"
#include "common/clock.h"
#include "common/config/server_config.h"
#include "server/ca_manager.h"

namespace trellis::runtime {

// Options from the server configuration: TTLs, key types, subject, JWT issuer and the
// UpstreamAuthority "disk" (read now, so a bad path fails start-up). For UpstreamAuthority
// "spire" `upstream` is left empty: the server runtime connects it.
absl::StatusOr<server::CaManager::Options> CaManagerOptionsFromConfig(
    const common::config::ServerConfig& config, const common::Clock& clock);

}  // namespace trellis::runtime
