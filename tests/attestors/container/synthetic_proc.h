// A synthetic proc root for the container attestors' tests: <root>/<pid>/cgroup with chosen
// content.
//
// The attestors read the cgroup file from their configurable proc root, but pin the caller
// (ProcessPin) through the REAL /proc/<pid>/stat. Tests therefore attest their own process:
// caller pid = getpid(), whose real stat file makes the pin hold, while the cgroup text comes
// from the synthetic root written here.
#pragma once

#include <unistd.h>

#include <filesystem>
#include <string>
#include <string_view>

#include "absl/strings/str_cat.h"
#include "attestors/workload/workload_attestor.h"
#include "tests/testutil/temp_dir.h"

namespace trellis::attestors::testing {

// Writes "<dir>/proc/<pid>/cgroup" and returns the proc root "<dir>/proc".
inline std::string WriteProcCgroup(const testutil::TempDir& dir, pid_t pid,
                                   std::string_view cgroup) {
  std::filesystem::create_directories(dir.Sub(absl::StrCat("proc/", pid)));
  dir.Write(absl::StrCat("proc/", pid, "/cgroup"), cgroup);
  return dir.Sub("proc");
}

// The test process as a Workload API caller.
inline CallerCredentials SelfCaller() {
  CallerCredentials c;
  c.pid = getpid();
  c.uid = getuid();
  c.gid = getgid();
  return c;
}

}  // namespace trellis::attestors::testing
