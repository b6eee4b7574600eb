// Workload attestation: turns a caller's kernel identity (pid, uid, gid) into selectors.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace trellis::attestors {

// What the kernel says about the peer of an accepted Unix socket: pid, effective uid and gid
// (SO_PEERCRED) and supplementary groups (SO_PEERGROUPS), as they were when the peer connected.
struct CallerCredentials {
  pid_t pid = 0;
  uid_t uid = 0;
  gid_t gid = 0;
  // Unset when the kernel did not say; attestors then read them from /proc/<pid>.
  std::optional<std::vector<gid_t>> groups;
};

// A selector in the "type:value" form entries use, e.g. "unix:uid:1000".
using SelectorString = std::string;

class ProcessPin;

class WorkloadAttestor {
 public:
  virtual ~WorkloadAttestor() = default;
  virtual std::string Name() const = 0;
  // Selectors for the process; UNAUTHENTICATED when the process vanished (or its pid was
  // reused) during attestation, UNAVAILABLE when attestation could not run.
  virtual absl::StatusOr<std::vector<SelectorString>> Attest(const CallerCredentials& caller) = 0;
  // Same, for a caller pinned earlier (at accept time). The caller of this method re-checks
  // `pin` after every attestor has run; an attestor that can use the pin itself saves pinning
  // the process again.
  virtual absl::StatusOr<std::vector<SelectorString>> AttestPinned(const CallerCredentials& caller,
                                                                   const ProcessPin& /*pin*/) {
    return Attest(caller);
  }
  // True when Attest never waits on anything slower than a few small /proc reads, so it may
  // run on a gRPC callback thread instead of being handed to a worker.
  virtual bool NonBlocking() const { return false; }
  // True when attesting `caller` reads /proc/<pid>: what was read stands only if the pin
  // still holds afterwards. False when every selector comes from the kernel's credentials.
  virtual bool ReadsProcess(const CallerCredentials& /*caller*/) const { return true; }
};

// A process pinned by pid and its start time (field 22 of /proc/<pid>/stat, clock ticks since
// boot): a later pid holder has another start time, so a reused pid is told apart.
class ProcessPin {
 public:
  // NOT_FOUND / UNAUTHENTICATED when the process is gone.
  static absl::StatusOr<ProcessPin> Pin(pid_t pid);
  // Build from a start time recorded earlier (e.g. when the connection was accepted).
  static ProcessPin FromStartTime(pid_t pid, uint64_t start_time) {
    return ProcessPin(pid, start_time);
  }
  pid_t pid() const { return pid_; }
  uint64_t start_time() const { return start_time_; }
  // OK while the same process still holds the pid; UNAUTHENTICATED otherwise.
  absl::Status Check() const;

 private:
  ProcessPin(pid_t pid, uint64_t start_time) : pid_(pid), start_time_(start_time) {}
  pid_t pid_;
  uint64_t start_time_;
};

// Start time of `pid` from /proc/<pid>/stat; UNAUTHENTICATED when the process does not exist.
absl::StatusOr<uint64_t> ProcessStartTime(pid_t pid);

// The whole of a small /proc file in one open/read loop (no iostreams: this is on the path of
// every Workload API call). NOT_FOUND when it cannot be opened or read.
absl::StatusOr<std::string> ReadProcFile(const std::string& path);

// Parses the start time out of the text of /proc/<pid>/stat (the command name may hold
// spaces and parentheses: fields are counted after the last ')'). INVALID_ARGUMENT if bad.
absl::StatusOr<uint64_t> ParseStatStartTime(const std::string& stat);

// True when every selector of `required` is in `have` (an empty `required` never matches:
// an entry without selectors identifies nobody).
bool SelectorsSubset(const std::vector<SelectorString>& required,
                     const std::vector<SelectorString>& have);

}  // namespace trellis::attestors
