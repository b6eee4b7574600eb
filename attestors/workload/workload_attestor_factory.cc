// Workload attestor factory: plugin configuration to attestor instances.
#include "attestors/workload/workload_attestor_factory.h"

#include "attestors/container/docker_attestor.h"
#include "attestors/container/k8s_attestor.h"
#include "attestors/container/systemd_attestor.h"
#include "attestors/workload/unix_attestor.h"
#include "common/status.h"

namespace trellis::attestors {
namespace {

template <typename T>
absl::StatusOr<std::unique_ptr<WorkloadAttestor>> AsWorkload(
    absl::StatusOr<std::unique_ptr<T>> attestor) {
  if (!attestor.ok()) return attestor.status();
  return std::unique_ptr<WorkloadAttestor>(std::move(*attestor));
}

}  // namespace

absl::StatusOr<std::unique_ptr<WorkloadAttestor>> CreateWorkloadAttestor(
    const common::config::WorkloadAttestorConfig& config) {
  namespace cfg = common::config;
  if (const auto* u = std::get_if<cfg::UnixWorkloadAttestorConfig>(&config)) {
    return std::unique_ptr<WorkloadAttestor>(std::make_unique<UnixWorkloadAttestor>(
        UnixWorkloadAttestor::Options{u->discover_workload_path}));
  }
  if (const auto* k = std::get_if<cfg::K8sWorkloadAttestorConfig>(&config)) {
    return AsWorkload(K8sWorkloadAttestor::Create(*k));
  }
  if (const auto* d = std::get_if<cfg::DockerWorkloadAttestorConfig>(&config)) {
    return AsWorkload(DockerWorkloadAttestor::Create(*d));
  }
  return AsWorkload(
      SystemdWorkloadAttestor::Create(std::get<cfg::SystemdWorkloadAttestorConfig>(config)));
}

absl::StatusOr<std::vector<std::unique_ptr<WorkloadAttestor>>> CreateWorkloadAttestors(
    const std::vector<common::config::WorkloadAttestorConfig>& configs) {
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
