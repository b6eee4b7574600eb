// Workload attestor factory: the agent's WorkloadAttestor plugin configuration to attestors.
#pragma once

#include <memory>
#include <vector>

#include "absl/status/statusor.h"
#include "attestors/workload/workload_attestor.h"
#include "common/config/agent_config.h"

namespace trellis::attestors {

// One attestor ("unix", "k8s", "docker" or "systemd") with its plugin_data. INVALID_ARGUMENT
// when the configuration cannot work (see each attestor's Create).
absl::StatusOr<std::unique_ptr<WorkloadAttestor>> CreateWorkloadAttestor(
    const common::config::WorkloadAttestorConfig& config);

// One attestor per configured WorkloadAttestor, in order; a plain "unix" attestor when none
// is configured, so a workload always gets its uid/gid selectors.
absl::StatusOr<std::vector<std::unique_ptr<WorkloadAttestor>>> CreateWorkloadAttestors(
    const std::vector<common::config::WorkloadAttestorConfig>& configs);

}  // namespace trellis::attestors
