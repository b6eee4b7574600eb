// Workload attestor factory: plugin configuration to attestor instances.
#include "attestors/workload/workload_attestor_factory.h"

#include "attestors/workload/unix_attestor.h"
#include "common/status.h"

namespace trellis::attestors {

absl::StatusOr<std::unique_ptr<WorkloadAttestor>> CreateWorkloadAttestor(
    const common::config::UnixWorkloadAttestorConfig& config) {
  return std::unique_ptr<WorkloadAttestor>(std::make_unique<UnixWorkloadAttestor>(
      UnixWorkloadAttestor::Options{config.discover_workload_path}));
}

absl::StatusOr<std::vector<std::unique_ptr<WorkloadAttestor>>> CreateWorkloadAttestors(
    const std::vector<common::config::UnixWorkloadAttestorConfig>& configs) {
  std::vector<std::unique_ptr<WorkloadAttestor>> out;
  if (configs.empty()) {
    TRELLIS_ASSIGN_OR_RETURN(auto unix_attestor,
                             CreateWorkloadAttestor(common::config::UnixWorkloadAttestorConfig{}));
    out.push_back(std::move(unix_attestor));
  }
  for (const auto& config : configs) {
    TRELLIS_ASSIGN_OR_RETURN(auto attestor, CreateWorkloadAttestor(config));
    out.push_back(std::move(attestor));
  }
  return out;
}

}  // namespace trellis::attestors
