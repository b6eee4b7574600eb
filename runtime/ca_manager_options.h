// Server configuration to CaManager options: TTLs, key types, CA subject, JWT issuer and the
// UpstreamAuthority.
#pragma once

#include "absl/status/statusor.h"
#include "common/clock.h"
#include "common/config/server_config.h"
#include "server/ca_manager.h"

namespace trellis::runtime {

// Options from the server configuration: TTLs, key types, subject, JWT issuer and the
// UpstreamAuthority the configuration names, built by CreateUpstreamAuthority ("disk" files
// are read now, so a bad path fails start-up; "spire" starts following its Workload API).
absl::StatusOr<server::CaManager::Options> CaManagerOptionsFromConfig(
    const common::config::ServerConfig& config, const common::Clock& clock);

}  // namespace trellis::runtime
