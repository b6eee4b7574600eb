// The "docker" workload attestor: the caller's container from its cgroups, then the container's
// labels, image and environment from the Docker Engine API on its Unix socket.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "attestors/container/cgroups.h"
#include "attestors/workload/workload_attestor.h"
#include "common/clock.h"
#include "common/config/attestor_config.h"

namespace trellis::attestors {

class DockerWorkloadAttestor final : public WorkloadAttestor {
 public:
  struct Options {
    // Where /<pid>/cgroup is read. The pin (ProcessPin) always reads the real /proc.
    std::string proc_root = "/proc";
    // Wall-clock limit of one inspect request, body included: a daemon that sends its answer
    // slowly is cut off once it has passed.
    absl::Duration query_deadline = absl::Seconds(30);
    // Time source of the deadline; the system clock when null. Not owned.
    const common::Clock* clock = nullptr;
  };

  // INVALID_ARGUMENT when docker_socket_path is not "unix://<absolute path>" (or an absolute
  // path), docker_version is not of the form "1.41", the cgroup matchers are invalid or
  // ambiguous, or the query deadline is not positive.
  static absl::StatusOr<std::unique_ptr<DockerWorkloadAttestor>> Create(
      const common::config::DockerWorkloadAttestorConfig& config);
  static absl::StatusOr<std::unique_ptr<DockerWorkloadAttestor>> Create(
      const common::config::DockerWorkloadAttestorConfig& config, Options options);

  std::string Name() const override { return "docker"; }
  // Pins the caller, reads its cgroups, checks the pin, then inspects the container. No
  // selectors for a process in no container; NOT_FOUND when Docker no longer knows the
  // container; UNAVAILABLE when Docker cannot be asked, or answers with more than 4 MiB or
  // not within the query deadline.
  absl::StatusOr<std::vector<SelectorString>> Attest(const CallerCredentials& caller) override;
  absl::StatusOr<std::vector<SelectorString>> AttestPinned(const CallerCredentials& caller,
                                                           const ProcessPin& pin) override;
  bool NonBlocking() const override { return false; }

 private:
  DockerWorkloadAttestor(std::string socket_path, std::string api_prefix,
                         cgroups::ContainerIdMatcher matcher, Options options)
      : socket_path_(std::move(socket_path)),
        api_prefix_(std::move(api_prefix)),
        matcher_(std::move(matcher)),
        options_(std::move(options)) {}

  absl::StatusOr<std::vector<SelectorString>> AttestCgroups(const ProcessPin& pin);
  absl::StatusOr<std::vector<SelectorString>> InspectContainer(const std::string& id) const;

  const std::string socket_path_;  // file system path of the daemon's socket
  const std::string api_prefix_;   // "/v1.41", or "" for the daemon's own version
  const cgroups::ContainerIdMatcher matcher_;
  const Options options_;
};

}  // namespace trellis::attestors
