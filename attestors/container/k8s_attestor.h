// The "k8s" workload attestor: the caller's pod and container from its cgroups, then the pod's
// details from the kubelet's /pods, as SPIRE's selectors ("k8s:ns:...", "k8s:sa:...", ...).
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "attestors/workload/workload_attestor.h"
#include "common/config/attestor_config.h"

namespace trellis::attestors {

class K8sWorkloadAttestor final : public WorkloadAttestor {
 public:
  struct Options {
    // Where /<pid>/cgroup is read. The pin (ProcessPin) always reads the real /proc.
    std::string proc_root = "/proc";
    // Waits between two polls of the kubelet while the caller's container is not listed yet;
    // absl::SleepFor when unset.
    std::function<void(absl::Duration)> sleep;
  };

  // INVALID_ARGUMENT for a configuration that cannot work: no port, a client certificate
  // without its key (or the reverse), no CA path while verifying, a poll count below one or
  // a negative interval. Files (token, CA, client certificate) are read on every query, so
  // rotated ones are picked up.
  static absl::StatusOr<std::unique_ptr<K8sWorkloadAttestor>> Create(
      const common::config::K8sWorkloadAttestorConfig& config);
  static absl::StatusOr<std::unique_ptr<K8sWorkloadAttestor>> Create(
      const common::config::K8sWorkloadAttestorConfig& config, Options options);

  std::string Name() const override { return "k8s"; }
  // Pins the caller, reads its cgroups, checks the pin, then asks the kubelet. No selectors
  // for a process in no pod; UNAVAILABLE when the kubelet cannot be asked or does not list
  // the caller's container after max_poll_attempts.
  absl::StatusOr<std::vector<SelectorString>> Attest(const CallerCredentials& caller) override;
  absl::StatusOr<std::vector<SelectorString>> AttestPinned(const CallerCredentials& caller,
                                                           const ProcessPin& pin) override;
  bool NonBlocking() const override { return false; }

 private:
  K8sWorkloadAttestor(common::config::K8sWorkloadAttestorConfig config, Options options,
                      std::string server_name)
      : config_(std::move(config)),
        options_(std::move(options)),
        server_name_(std::move(server_name)) {}

  absl::StatusOr<std::vector<SelectorString>> AttestCgroups(const ProcessPin& pin);
  // The body of GET /pods.
  absl::StatusOr<std::string> FetchPods() const;

  const common::config::K8sWorkloadAttestorConfig config_;
  const Options options_;
  // The name the kubelet's certificate must carry: the node name when one is configured
  // (node_name, else the node_name_env variable), else kubelet_host.
  const std::string server_name_;
};

}  // namespace trellis::attestors
