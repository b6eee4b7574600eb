// The "systemd" workload attestor: the unit a caller runs in, from its cgroup, and the unit
// file it was loaded from, from the unit search path. No D-Bus: the cgroup tree systemd keeps
// says the same as the manager's GetUnitByPID for every unit it started.
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "attestors/workload/workload_attestor.h"
#include "common/config/attestor_config.h"

namespace trellis::attestors {

class SystemdWorkloadAttestor final : public WorkloadAttestor {
 public:
  struct Options {
    // Where /<pid>/cgroup is read. The pin (ProcessPin) always reads the real /proc.
    std::string proc_root = "/proc";
    // The system manager's unit search path, highest precedence first, as systemd 252 on
    // Debian 12 builds it (`systemd-analyze unit-paths`), so that a unit's fragment_path is
    // the FragmentPath systemd reports for it.
    std::vector<std::string> unit_search_path = {
        "/etc/systemd/system.control", "/run/systemd/system.control",
        "/run/systemd/transient",      "/run/systemd/generator.early",
        "/etc/systemd/system",         "/etc/systemd/system.attached",
        "/run/systemd/system",         "/run/systemd/system.attached",
        "/run/systemd/generator",      "/usr/local/lib/systemd/system",
        "/lib/systemd/system",         "/usr/lib/systemd/system",
        "/run/systemd/generator.late"};
  };

  // INVALID_ARGUMENT for an empty proc root or a relative search path directory.
  static absl::StatusOr<std::unique_ptr<SystemdWorkloadAttestor>> Create(
      const common::config::SystemdWorkloadAttestorConfig& config);
  static absl::StatusOr<std::unique_ptr<SystemdWorkloadAttestor>> Create(
      const common::config::SystemdWorkloadAttestorConfig& config, Options options);

  std::string Name() const override { return "systemd"; }
  // "systemd:id:<unit>" and, when a unit file is found, "systemd:fragment_path:<path>"; no
  // selectors for a process in no service or scope.
  absl::StatusOr<std::vector<SelectorString>> Attest(const CallerCredentials& caller) override;
  absl::StatusOr<std::vector<SelectorString>> AttestPinned(const CallerCredentials& caller,
                                                           const ProcessPin& pin) override;
  // One /proc read and a few stat calls.
  bool NonBlocking() const override { return true; }

  // The file `unit` is loaded from: the first directory of the search path holding it as a
  // regular file (a unit masked by a link to /dev/null has none), then, for an instance
  // "name@instance.type", its template "name@.type" the same way. Transient units (scopes,
  // systemd-run services) have theirs in /run/systemd/transient while they exist. nullopt
  // when no directory holds the unit.
  std::optional<std::string> FragmentPath(const std::string& unit) const;

 private:
  explicit SystemdWorkloadAttestor(Options options) : options_(std::move(options)) {}
  absl::StatusOr<std::vector<SelectorString>> ReadSelectors(const ProcessPin& pin) const;

  const Options options_;
};

}  // namespace trellis::attestors
