// systemd workload attestation: unit from the cgroup, unit file from the search path.
#include "attestors/container/systemd_attestor.h"

#include <sys/stat.h>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "attestors/container/cgroups.h"

namespace trellis::attestors {
namespace {

constexpr char kPrefix[] = "systemd: ";

}  // namespace

absl::StatusOr<std::unique_ptr<SystemdWorkloadAttestor>> SystemdWorkloadAttestor::Create(
    const common::config::SystemdWorkloadAttestorConfig& config) {
  return Create(config, Options{});
}

absl::StatusOr<std::unique_ptr<SystemdWorkloadAttestor>> SystemdWorkloadAttestor::Create(
    const common::config::SystemdWorkloadAttestorConfig& /*config*/, Options options) {
  if (options.proc_root.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(kPrefix, "the proc root is empty"));
  }
  for (const std::string& dir : options.unit_search_path) {
    if (!absl::StartsWith(dir, "/")) {
      return absl::InvalidArgumentError(
          absl::StrCat(kPrefix, "unit search path directory \"", dir, "\" is not absolute"));
    }
  }
  return std::unique_ptr<SystemdWorkloadAttestor>(new SystemdWorkloadAttestor(std::move(options)));
}

absl::StatusOr<std::vector<SelectorString>> SystemdWorkloadAttestor::Attest(
    const CallerCredentials& caller) {
  auto pin = ProcessPin::Pin(caller.pid);
  if (!pin.ok()) return pin.status();
  auto selectors = ReadSelectors(*pin);
  if (absl::Status s = pin->Check(); !s.ok()) return s;
  return selectors;
}

absl::StatusOr<std::vector<SelectorString>> SystemdWorkloadAttestor::AttestPinned(
    const CallerCredentials& /*caller*/, const ProcessPin& pin) {
  return ReadSelectors(pin);
}

absl::StatusOr<std::vector<SelectorString>> SystemdWorkloadAttestor::ReadSelectors(
    const ProcessPin& pin) const {
  auto entries = cgroups::ReadCgroups(options_.proc_root, pin.pid());
  if (!entries.ok()) {
    if (absl::Status s = pin.Check(); !s.ok()) return s;
    if (entries.status().code() == absl::StatusCode::kNotFound) {
      return absl::UnavailableError(kPrefix + std::string(entries.status().message()));
    }
    return absl::InvalidArgumentError(kPrefix + std::string(entries.status().message()));
  }
  auto unit = cgroups::FindSystemdUnit(*entries);
  if (!unit.ok()) {
    return absl::InvalidArgumentError(kPrefix + std::string(unit.status().message()));
  }
  if (!unit->has_value()) return std::vector<SelectorString>{};
  std::vector<SelectorString> out = {"systemd:id:" + **unit};
  if (auto fragment = FragmentPath(**unit)) out.push_back("systemd:fragment_path:" + *fragment);
  return out;
}

std::optional<std::string> SystemdWorkloadAttestor::FragmentPath(const std::string& unit) const {
  std::vector<std::string> names = {unit};
  // "name@instance.type" falls back to the template "name@.type".
  size_t at = unit.find('@');
  size_t dot = unit.rfind('.');
  if (at != std::string::npos && dot != std::string::npos && dot > at + 1) {
    names.push_back(unit.substr(0, at + 1) + unit.substr(dot));
  }
  for (const std::string& name : names) {
    for (const std::string& dir : options_.unit_search_path) {
      std::string path = absl::StrCat(dir, "/", name);
      struct stat st;
      if (stat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode)) return path;
    }
  }
  return std::nullopt;
}

}  // namespace trellis::attestors
