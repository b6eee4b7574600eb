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
#include "common/clock.h"
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
    // Wall-clock limit of one GET /pods, body included: a kubelet that sends its answer
    // slowly is cut off once it has passed.
    absl::Duration query_deadline = absl::Seconds(30);
    // Time source of the deadlines; the system clock when null. Not owned.
    const common::Clock* clock = nullptr;
  };

  // INVALID_ARGUMENT for a configuration that cannot work: no port, a client certificate
  // without its key (or the reverse), no CA path while verifying, a poll count below one, a
  // negative interval or a query deadline that is not positive. Files (token, CA, client
  // certificate) are read on every query, so rotated ones are picked up.
  static absl::StatusOr<std::unique_ptr<K8sWorkloadAttestor>> Create(
      const common::config::K8sWorkloadAttestorConfig& config);
  static absl::StatusOr<std::unique_ptr<K8sWorkloadAttestor>> Create(
      const common::config::K8sWorkloadAttestorConfig& config, Options options);

  std::string Name() const override { return "k8s"; }
  // Pins the caller, reads its cgroups, checks the pin, then asks the kubelet. No selectors
  // for a process in no pod. UNAVAILABLE when the kubelet cannot be asked, answers with more
  // than 64 MiB or not within the query deadline, or does not list the caller's container
  // (with disable_container_selectors: its pod) after max_poll_attempts polls; polling also
  // stops once max_poll_attempts x (poll_retry_interval + query deadline) has passed.
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
  // The body of GET /pods, within options_.query_deadline and the size limit.
  absl::StatusOr<std::string> FetchPods() const;
  const common::Clock& clock() const {
    return options_.clock != nullptr ? *options_.clock : common::SystemClock::Get();
  }

  const common::config::K8sWorkloadAttestorConfig config_;
  const Options options_;
  // The name the kubelet's certificate must carry: the node name when one is configured
  // (node_name, else the node_name_env variable), else kubelet_host.
  const std::string server_name_;
};

}  // namespace trellis::attestors
