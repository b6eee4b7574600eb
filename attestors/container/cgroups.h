// A process's cgroup membership (/proc/<pid>/cgroup) and what it tells about where the process
// runs: the Kubernetes pod and container, the Docker container, or the systemd unit.
#pragma once

#include <sys/types.h>

#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace trellis::attestors::cgroups {

// One line of /proc/<pid>/cgroup: "<hierarchy-id>:<controllers>:<path>". cgroup v2 has the
// single line "0::<path>"; v1 has one line per hierarchy, systemd's own as "N:name=systemd:".
struct CgroupEntry {
  int hierarchy_id = 0;
  std::vector<std::string> controllers;  // empty for the v2 unified hierarchy
  std::string path;
};

// Parses the text of /proc/<pid>/cgroup; INVALID_ARGUMENT naming the line when one is not of
// the form above or when there is no line at all.
absl::StatusOr<std::vector<CgroupEntry>> ParseCgroups(absl::string_view text);

// Reads and parses <proc_root>/<pid>/cgroup. NOT_FOUND when the file cannot be read (the
// process may have exited), INVALID_ARGUMENT when its content is malformed.
absl::StatusOr<std::vector<CgroupEntry>> ReadCgroups(const std::string& proc_root, pid_t pid);

// The Kubernetes pod (UID with dashes, as the API spells it) and the container ID (64 hex
// digits, without the runtime's prefix) a process runs in.
struct PodContainer {
  std::string pod_uid;
  std::string container_id;
  bool operator==(const PodContainer&) const = default;
};

// Finds the pod and container from the kubelet's cgroup layouts. Every layout is anchored
// at the root of the hierarchy: after any leading ".." elements (the reader's own cgroup
// namespace) the path must start with the layout's root, so that a kubepods tree built in a
// subtree someone else owns (a user's delegated "user@<uid>.service", a CI job's cgroup) is
// no container. The layouts, <qos> being "besteffort" or "burstable":
//   cgroupfs driver:  [/kubelet]/kubepods[/<qos>]/pod<uid>/<container>
//   systemd driver:   /kubepods.slice[/kubepods-<qos>.slice]/kubepods[-<qos>]-pod<uid_>.slice/
//                     <container>, or the same below "/kubelet.slice/kubelet-kubepods.slice"
//                     with every slice named "kubelet-kubepods..." (nested nodes such as kind)
//   relative (the agent in a pod's cgroup namespace): /../..[/<qos> or /<stem>-<qos>.slice]/
//                     pod<uid>/<container> or /<stem>[-<qos>]-pod<uid_>.slice/<container>
//   colon form (containerd given a systemd cgroup name while driving cgroupfs, e.g. k3s):
//                     <stem>[-<qos>]-pod<uid_>.slice:<runtime>:<id>, at the top, in place of
//                     the pod slice, or directly below /system.slice/containerd.service,
//                     k3s.service or k3s-agent.service
// where <container> is "<id>", "<runtime>-<id>" or "<runtime>-<id>.scope", <runtime> one of
// "cri-containerd", "crio", "docker", <uid_> the UID with '_' for '-', <stem> "kubepods" or
// "kubelet-kubepods". Cgroups below the container's belong to it.
// nullopt when the process is in no pod's container (a pod-level cgroup such as CRI-O's
// "crio-conmon-<id>.scope" included). INVALID_ARGUMENT when the lines name two containers.
absl::StatusOr<std::optional<PodContainer>> FindPodContainer(
    const std::vector<CgroupEntry>& entries);

// Patterns that say where a container ID sits in a cgroup path, in the form of SPIRE's
// container_id_cgroup_matchers: slash-separated elements, "<id>" (exactly once) marks the
// element that is the ID and "*" matches any one element; every other element matches itself.
// A pattern matches a whole path with the same number of elements, wherever in the hierarchy
// it sits: this is how layouts other than the built-in, root-anchored ones are supported, and
// its author vouches that nobody but the runtime can create cgroups of that shape.
class ContainerIdMatcher {
 public:
  // INVALID_ARGUMENT for a pattern that is not absolute, has an empty element, has no or two
  // "<id>", or for two patterns that can match the same path.
  static absl::StatusOr<ContainerIdMatcher> Create(const std::vector<std::string>& patterns);
  bool empty() const { return patterns_.empty(); }
  // The ID element of `path` when a pattern matches it.
  std::optional<std::string> Match(absl::string_view path) const;

 private:
  explicit ContainerIdMatcher(std::vector<std::vector<std::string>> patterns)
      : patterns_(std::move(patterns)) {}
  std::vector<std::vector<std::string>> patterns_;
};

// The Docker container a process runs in. With a non-empty `matcher` only its patterns are
// used; otherwise Docker's layouts, anchored at the root of the hierarchy like the pod
// layouts above (leading ".." allowed): "/docker/<id>" (cgroupfs driver) and
// "/system.slice/docker-<id>.scope" (systemd driver), <id> being 64 hex digits, cgroups below
// them included. A layout below a prefix ("/actions_job/docker/<id>", a user's delegated
// subtree) is no container; a custom matcher is the way to accept such a layout. nullopt
// when in no container; INVALID_ARGUMENT when the lines name two containers.
absl::StatusOr<std::optional<std::string>> FindDockerContainerId(
    const std::vector<CgroupEntry>& entries, const ContainerIdMatcher* matcher);

// The systemd unit (".service" or ".scope") a process belongs to, from systemd's hierarchy:
// the "name=systemd" line of cgroup v1, else the v2 line. The unit is the first element of
// the path that names a service or scope: below it the unit may have delegated sub-cgroups,
// whose names its own processes choose and which therefore prove nothing. nullopt when the
// process is in no service or scope; INVALID_ARGUMENT for a unit name with characters
// systemd does not allow.
absl::StatusOr<std::optional<std::string>> FindSystemdUnit(const std::vector<CgroupEntry>& entries);

}  // namespace trellis::attestors::cgroups
