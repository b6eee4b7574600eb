// Parsing of /proc/<pid>/cgroup and the container runtimes' and systemd's cgroup layouts.
#include "attestors/container/cgroups.h"

#include <algorithm>
#include <iterator>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/types/span.h"
#include "attestors/workload/workload_attestor.h"

namespace trellis::attestors::cgroups {
namespace {

constexpr size_t kContainerIdLength = 64;
constexpr char kIdToken[] = "<id>";
constexpr char kAnyToken[] = "*";

std::vector<absl::string_view> Elements(absl::string_view path) {
  return absl::StrSplit(path, '/', absl::SkipEmpty());
}

bool IsLowerHex(absl::string_view s) {
  return !s.empty() && std::all_of(s.begin(), s.end(), [](char c) {
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f');
  });
}

bool IsContainerId(absl::string_view s) { return s.size() == kContainerIdLength && IsLowerHex(s); }

// The pod UID as the kubelet writes it into a cgroup name: a UUID, with '_' for '-' in
// systemd unit names, or 32 hex digits for static pods. Returned with dashes, as the API
// spells it.
std::optional<std::string> PodUid(absl::string_view raw, char dash) {
  std::string out(raw);
  size_t hex = 0;
  for (char& c : out) {
    if (c == dash) {
      c = '-';
      continue;
    }
    if (!IsLowerHex(absl::string_view(&c, 1))) return std::nullopt;
    ++hex;
  }
  if (hex != 32) return std::nullopt;
  return out;
}

bool IsRuntime(absl::string_view name) {
  return name == "cri-containerd" || name == "crio" || name == "docker";
}

// The container ID in a container's cgroup element: "<id>" (cgroupfs driver) or
// "<runtime>-<id>.scope" (systemd driver); the runtime prefix may also appear without
// ".scope" (containerd's own layout).
std::optional<std::string> ContainerIdOf(absl::string_view element) {
  bool scope = absl::ConsumeSuffix(&element, ".scope");
  bool prefixed = false;
  for (absl::string_view prefix : {"cri-containerd-", "crio-", "docker-"}) {
    if (absl::ConsumePrefix(&element, prefix)) {
      prefixed = true;
      break;
    }
  }
  if (scope && !prefixed) return std::nullopt;
  if (!IsContainerId(element)) return std::nullopt;
  return std::string(element);
}

constexpr absl::string_view kQosClasses[] = {"besteffort", "burstable"};
// The slice names of the kubelet's systemd layout start with these: "kubepods", or
// "kubelet-kubepods" below the "kubelet.slice" cgroup root of nested nodes.
constexpr absl::string_view kSliceStems[] = {"kubepods", "kubelet-kubepods"};
// Runtime services below which containerd, given a systemd-style cgroup name while driving
// cgroupfs, creates the name literally (k3s and others).
constexpr absl::string_view kRuntimeServices[] = {"containerd.service", "k3s.service",
                                                  "k3s-agent.service"};

using Elems = std::vector<absl::string_view>;

// cgroupfs driver: "pod<uid>" at e[i], the container below it.
std::optional<PodContainer> CgroupfsPodAt(const Elems& e, size_t i) {
  if (i + 1 >= e.size()) return std::nullopt;  // no element, or the pod's own cgroup
  absl::string_view pod = e[i];
  if (!absl::ConsumePrefix(&pod, "pod")) return std::nullopt;
  std::optional<std::string> uid = PodUid(pod, '-');
  std::optional<std::string> id = ContainerIdOf(e[i + 1]);
  if (!uid || !id) return std::nullopt;  // e.g. CRI-O's conmon beside the containers
  return PodContainer{*std::move(uid), *std::move(id)};
}

// systemd driver: the pod slice "<one of pod_prefixes><uid>.slice" at e[i] with the
// container below it, or, when `colon_form`, the single element
// "<one of pod_prefixes><uid>.slice:<runtime>:<id>".
std::optional<PodContainer> SystemdPodAt(const Elems& e, size_t i,
                                         const std::vector<std::string>& pod_prefixes,
                                         bool slice_form, bool colon_form) {
  if (i >= e.size()) return std::nullopt;
  for (const std::string& prefix : pod_prefixes) {
    absl::string_view rest = e[i];
    if (!absl::ConsumePrefix(&rest, prefix)) continue;
    size_t colon = rest.find(':');
    if (colon == absl::string_view::npos) {
      if (!slice_form || !absl::ConsumeSuffix(&rest, ".slice")) return std::nullopt;
      if (i + 1 >= e.size()) return std::nullopt;  // the pod's own cgroup
      std::optional<std::string> uid = PodUid(rest, '_');
      std::optional<std::string> id = ContainerIdOf(e[i + 1]);
      if (!uid || !id) return std::nullopt;
      return PodContainer{*std::move(uid), *std::move(id)};
    }
    if (!colon_form) return std::nullopt;
    absl::string_view slice = rest.substr(0, colon);
    std::vector<absl::string_view> parts = absl::StrSplit(rest.substr(colon + 1), ':');
    if (!absl::ConsumeSuffix(&slice, ".slice") || parts.size() != 2 || !IsRuntime(parts[0]) ||
        !IsContainerId(parts[1])) {
      return std::nullopt;
    }
    std::optional<std::string> uid = PodUid(slice, '_');
    if (!uid) return std::nullopt;
    return PodContainer{*std::move(uid), std::string(parts[1])};
  }
  return std::nullopt;
}

// "<stem>-pod", "<stem>-besteffort-pod", "<stem>-burstable-pod" for every stem.
std::vector<std::string> AnyPodPrefix(absl::Span<const absl::string_view> stems) {
  std::vector<std::string> out;
  for (absl::string_view stem : stems) {
    out.push_back(absl::StrCat(stem, "-pod"));
    for (absl::string_view qos : kQosClasses) out.push_back(absl::StrCat(stem, "-", qos, "-pod"));
  }
  return out;
}

// Number of leading ".." elements: the kernel shows a cgroup outside the reader's cgroup
// namespace relative to the namespace's root.
size_t Parents(const Elems& e) {
  size_t i = 0;
  while (i < e.size() && e[i] == "..") ++i;
  return i;
}

std::optional<PodContainer> CgroupfsLayout(const Elems& e, size_t i, bool relative) {
  if (i < e.size() && e[i] == "kubelet") ++i;  // the cgroup root of nested kubelets
  if (i < e.size() && e[i] == "kubepods") {
    ++i;
  } else if (!relative || i > Parents(e)) {
    return std::nullopt;
  }
  if (i < e.size() &&
      std::find(std::begin(kQosClasses), std::end(kQosClasses), e[i]) != std::end(kQosClasses)) {
    ++i;
  }
  return CgroupfsPodAt(e, i);
}

std::optional<PodContainer> SystemdLayout(const Elems& e, size_t i, bool relative) {
  std::vector<absl::string_view> stems;
  bool rooted = true;
  if (i + 1 < e.size() && e[i] == "kubelet.slice" && e[i + 1] == "kubelet-kubepods.slice") {
    stems = {"kubelet-kubepods"};
    i += 2;
  } else if (i < e.size() && e[i] == "kubepods.slice") {
    stems = {"kubepods"};
    i += 1;
  } else {
    // The colon form at the top, or directly below a runtime's service.
    size_t j = i;
    if (j + 1 < e.size() && e[j] == "system.slice" &&
        std::find(std::begin(kRuntimeServices), std::end(kRuntimeServices), e[j + 1]) !=
            std::end(kRuntimeServices)) {
      j += 2;
    }
    if (std::optional<PodContainer> pc = SystemdPodAt(e, j, AnyPodPrefix(kSliceStems),
                                                      /*slice_form=*/false, /*colon_form=*/true)) {
      return pc;
    }
    if (!relative) return std::nullopt;
    stems.assign(std::begin(kSliceStems), std::end(kSliceStems));
    rooted = false;
  }
  // A QoS slice, then a pod slice of the same class.
  for (absl::string_view stem : stems) {
    for (absl::string_view qos : kQosClasses) {
      if (i < e.size() && e[i] == absl::StrCat(stem, "-", qos, ".slice")) {
        return SystemdPodAt(e, i + 1, {absl::StrCat(stem, "-", qos, "-pod")},
                            /*slice_form=*/true, /*colon_form=*/true);
      }
    }
  }
  // No QoS slice: a Guaranteed pod directly below the root; seen from a pod's cgroup
  // namespace, a pod of any class below the QoS slice the ".." passed over.
  std::vector<std::string> prefixes;
  if (rooted) {
    for (absl::string_view stem : stems) prefixes.push_back(absl::StrCat(stem, "-pod"));
  } else {
    prefixes = AnyPodPrefix(stems);
  }
  return SystemdPodAt(e, i, prefixes, /*slice_form=*/true, /*colon_form=*/true);
}

// The kubelet's layouts, anchored at the root of the hierarchy or right after the ".." that
// lead out of the reader's cgroup namespace; a layout further down is in a subtree someone
// else may own (a user's delegated systemd subtree) and proves nothing.
std::optional<PodContainer> PodContainerOfPath(absl::string_view path) {
  Elems e = Elements(path);
  const size_t start = Parents(e);
  const bool relative = start > 0;
  if (std::optional<PodContainer> pc = CgroupfsLayout(e, start, relative)) return pc;
  if (std::optional<PodContainer> pc = SystemdLayout(e, start, relative)) return pc;
  return std::nullopt;
}

// Docker's layouts, anchored the same way: "/docker/<id>" (cgroupfs driver) and
// "/system.slice/docker-<id>.scope" (systemd driver).
std::optional<std::string> DockerIdOfPath(absl::string_view path) {
  Elems e = Elements(path);
  const size_t i = Parents(e);
  if (i + 1 >= e.size()) return std::nullopt;
  if (e[i] == "docker" && IsContainerId(e[i + 1])) return std::string(e[i + 1]);
  absl::string_view scope = e[i + 1];
  if (e[i] == "system.slice" && absl::ConsumePrefix(&scope, "docker-") &&
      absl::ConsumeSuffix(&scope, ".scope") && IsContainerId(scope)) {
    return std::string(scope);
  }
  return std::nullopt;
}

// Characters systemd allows in unit names.
bool IsUnitName(absl::string_view name) {
  return std::all_of(name.begin(), name.end(), [](char c) {
    return absl::ascii_isalnum(static_cast<unsigned char>(c)) || c == ':' || c == '-' || c == '_' ||
           c == '.' || c == '\\' || c == '@';
  });
}

// Same value from every line that has one, else an error naming both.
template <typename T, typename Describe>
absl::StatusOr<std::optional<T>> Agree(const std::vector<CgroupEntry>& entries,
                                       std::optional<T> (*of)(absl::string_view),
                                       Describe describe) {
  std::optional<T> found;
  for (const CgroupEntry& entry : entries) {
    std::optional<T> got = of(entry.path);
    if (!got) continue;
    if (found && !(*found == *got)) {
      return absl::InvalidArgumentError(absl::StrCat("the process's cgroups name two containers, ",
                                                     describe(*found), " and ", describe(*got)));
    }
    found = std::move(got);
  }
  return found;
}

}  // namespace

absl::StatusOr<std::vector<CgroupEntry>> ParseCgroups(absl::string_view text) {
  std::vector<CgroupEntry> out;
  int number = 0;
  for (absl::string_view line : absl::StrSplit(text, '\n')) {
    ++number;
    if (line.empty()) continue;
    std::vector<absl::string_view> parts = absl::StrSplit(line, absl::MaxSplits(':', 2));
    auto bad = [&](absl::string_view why) {
      return absl::InvalidArgumentError(absl::StrCat("malformed cgroup line ", number, " (", why,
                                                     "): \"", line.substr(0, 200), "\""));
    };
    if (parts.size() != 3) return bad("expected <id>:<controllers>:<path>");
    CgroupEntry entry;
    if (!absl::SimpleAtoi(parts[0], &entry.hierarchy_id) || entry.hierarchy_id < 0 ||
        parts[0].empty() || !absl::ascii_isdigit(static_cast<unsigned char>(parts[0][0]))) {
      return bad("hierarchy id is not a number");
    }
    if (!absl::StartsWith(parts[2], "/")) return bad("path is not absolute");
    if (!parts[1].empty()) {
      for (absl::string_view c : absl::StrSplit(parts[1], ',')) {
        if (c.empty()) return bad("empty controller name");
        entry.controllers.emplace_back(c);
      }
    } else if (entry.hierarchy_id != 0) {
      return bad("only the unified hierarchy 0 has no controllers");
    }
    entry.path = std::string(parts[2]);
    out.push_back(std::move(entry));
  }
  if (out.empty()) return absl::InvalidArgumentError("the cgroup file has no lines");
  return out;
}

absl::StatusOr<std::vector<CgroupEntry>> ReadCgroups(const std::string& proc_root, pid_t pid) {
  const std::string path = absl::StrCat(proc_root, "/", pid, "/cgroup");
  absl::StatusOr<std::string> text = ReadProcFile(path);
  if (!text.ok()) return text.status();
  absl::StatusOr<std::vector<CgroupEntry>> entries = ParseCgroups(*text);
  if (!entries.ok()) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": ", entries.status().message()));
  }
  return entries;
}

absl::StatusOr<std::optional<PodContainer>> FindPodContainer(
    const std::vector<CgroupEntry>& entries) {
  return Agree<PodContainer>(entries, &PodContainerOfPath, [](const PodContainer& pc) {
    return absl::StrCat("container ", pc.container_id, " of pod ", pc.pod_uid);
  });
}

absl::StatusOr<ContainerIdMatcher> ContainerIdMatcher::Create(
    const std::vector<std::string>& patterns) {
  std::vector<std::vector<std::string>> parsed;
  for (const std::string& pattern : patterns) {
    auto bad = [&](absl::string_view why) {
      return absl::InvalidArgumentError(
          absl::StrCat("container ID cgroup matcher \"", pattern, "\" ", why));
    };
    if (!absl::StartsWith(pattern, "/")) return bad("must start with '/'");
    std::vector<std::string> elements = absl::StrSplit(pattern.substr(1), '/');
    int ids = 0;
    for (const std::string& e : elements) {
      if (e.empty()) return bad("has an empty element");
      if (e == kIdToken) {
        ++ids;
      } else if (absl::StrContains(e, kIdToken) || (absl::StrContains(e, '*') && e != kAnyToken)) {
        return bad("mixes a token with other characters in one element");
      }
    }
    if (ids != 1) return bad("must hold \"<id>\" exactly once");
    // Two patterns of one length are ambiguous when no element tells them apart: a literal
    // differs only from another literal.
    for (size_t k = 0; k < parsed.size(); ++k) {
      const std::vector<std::string>& other = parsed[k];
      if (other.size() != elements.size()) continue;
      bool distinct = false;
      for (size_t i = 0; i < elements.size() && !distinct; ++i) {
        auto literal = [](const std::string& s) { return s != kIdToken && s != kAnyToken; };
        distinct = literal(elements[i]) && literal(other[i]) && elements[i] != other[i];
      }
      if (!distinct) {
        return bad(
            absl::StrCat("can match the same cgroup as \"/", absl::StrJoin(other, "/"), "\""));
      }
    }
    parsed.push_back(std::move(elements));
  }
  return ContainerIdMatcher(std::move(parsed));
}

std::optional<std::string> ContainerIdMatcher::Match(absl::string_view path) const {
  std::vector<absl::string_view> elements = Elements(path);
  for (const std::vector<std::string>& pattern : patterns_) {
    if (pattern.size() != elements.size()) continue;
    std::optional<std::string> id;
    bool match = true;
    for (size_t i = 0; i < pattern.size() && match; ++i) {
      if (pattern[i] == kIdToken) {
        id = std::string(elements[i]);
      } else if (pattern[i] != kAnyToken) {
        match = pattern[i] == elements[i];
      }
    }
    if (match) return id;
  }
  return std::nullopt;
}

absl::StatusOr<std::optional<std::string>> FindDockerContainerId(
    const std::vector<CgroupEntry>& entries, const ContainerIdMatcher* matcher) {
  auto describe = [](const std::string& id) { return id; };
  if (matcher != nullptr && !matcher->empty()) {
    std::optional<std::string> found;
    for (const CgroupEntry& entry : entries) {
      std::optional<std::string> got = matcher->Match(entry.path);
      if (!got) continue;
      if (found && *found != *got) {
        return absl::InvalidArgumentError(
            absl::StrCat("the process's cgroups name two containers, ", *found, " and ", *got));
      }
      found = std::move(got);
    }
    return found;
  }
  return Agree<std::string>(entries, &DockerIdOfPath, describe);
}

absl::StatusOr<std::optional<std::string>> FindSystemdUnit(
    const std::vector<CgroupEntry>& entries) {
  const CgroupEntry* systemd = nullptr;
  for (const CgroupEntry& entry : entries) {
    if (std::find(entry.controllers.begin(), entry.controllers.end(), "name=systemd") !=
        entry.controllers.end()) {
      systemd = &entry;
      break;
    }
    if (entry.hierarchy_id == 0 && entry.controllers.empty() && systemd == nullptr) {
      systemd = &entry;
    }
  }
  if (systemd == nullptr) return std::nullopt;
  for (absl::string_view e : Elements(systemd->path)) {
    if (!absl::EndsWith(e, ".service") && !absl::EndsWith(e, ".scope")) continue;
    if (!IsUnitName(e)) {
      return absl::InvalidArgumentError(
          absl::StrCat("cgroup \"", systemd->path, "\" names a unit with invalid characters"));
    }
    return std::string(e);
  }
  return std::nullopt;
}

}  // namespace trellis::attestors::cgroups
