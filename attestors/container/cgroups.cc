// Parsing of /proc/<pid>/cgroup and the container runtimes' and systemd's cgroup layouts.
#include "attestors/container/cgroups.h"

#include <algorithm>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
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

// The pod UID in a pod's cgroup element: "pod<uid>" (cgroupfs driver) or
// "kubepods[-<qos>]-pod<uid>.slice" (systemd driver, '-' in the UID written as '_'). Pod UIDs
// are UUIDs, or 32 hex digits for static pods.
std::optional<std::string> PodUidOf(absl::string_view element) {
  absl::string_view uid;
  if (absl::ConsumeSuffix(&element, ".slice")) {
    if (!absl::StrContains(element, "kubepods")) return std::nullopt;
    size_t at = element.rfind("-pod");
    if (at == absl::string_view::npos) return std::nullopt;
    uid = element.substr(at + 4);
  } else if (absl::ConsumePrefix(&element, "pod")) {
    uid = element;
  } else {
    return std::nullopt;
  }
  std::string out(uid);
  std::replace(out.begin(), out.end(), '_', '-');
  size_t hex = 0;
  for (char c : out) {
    if (c == '-') continue;
    if (!IsLowerHex(absl::string_view(&c, 1))) return std::nullopt;
    ++hex;
  }
  if (hex != 32) return std::nullopt;
  return out;
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

std::optional<PodContainer> PodContainerOfPath(absl::string_view path) {
  std::vector<absl::string_view> elements = Elements(path);
  for (size_t i = 0; i < elements.size(); ++i) {
    if (!absl::StrContains(elements[i], "kubepods")) continue;
    // kubepods, then at most one QoS level, then the pod.
    for (size_t j = i; j < elements.size() && j <= i + 2; ++j) {
      std::optional<std::string> uid = PodUidOf(elements[j]);
      if (!uid) continue;
      if (j + 1 >= elements.size()) return std::nullopt;  // the pod's own cgroup
      std::optional<std::string> id = ContainerIdOf(elements[j + 1]);
      if (!id) return std::nullopt;  // e.g. CRI-O's conmon beside the containers
      return PodContainer{*std::move(uid), *std::move(id)};
    }
  }
  return std::nullopt;
}

std::optional<std::string> DockerIdOfPath(absl::string_view path) {
  std::vector<absl::string_view> elements = Elements(path);
  for (size_t i = 0; i < elements.size(); ++i) {
    absl::string_view e = elements[i];
    if (e == "docker" && i + 1 < elements.size() && IsContainerId(elements[i + 1])) {
      return std::string(elements[i + 1]);
    }
    if (absl::ConsumePrefix(&e, "docker-") && absl::ConsumeSuffix(&e, ".scope") &&
        IsContainerId(e)) {
      return std::string(e);
    }
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
