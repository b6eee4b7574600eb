// The "unix" workload attestor: uid/gid/user/group/supplementary groups and, optionally, the
// executable's path and SHA-256, all read from /proc for the kernel-reported pid.
#pragma once

#include <map>
#include <string>
#include <tuple>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "attestors/workload/workload_attestor.h"

namespace trellis::attestors {

class UnixWorkloadAttestor final : public WorkloadAttestor {
 public:
  struct Options {
    bool discover_workload_path = false;
  };
  explicit UnixWorkloadAttestor(Options options) : options_(std::move(options)) {}

  std::string Name() const override { return "unix"; }
  absl::StatusOr<std::vector<SelectorString>> Attest(const CallerCredentials& caller) override;
  // Same, against a pin taken earlier (at accept time): the pid must still be that process
  // after the selectors were read.
  absl::StatusOr<std::vector<SelectorString>> AttestPinned(const ProcessPin& pin);
  absl::StatusOr<std::vector<SelectorString>> AttestPinned(const CallerCredentials& caller,
                                                           const ProcessPin& pin) override;
  // Hashing the binary may read many megabytes: only without it is attestation quick.
  bool NonBlocking() const override { return !options_.discover_workload_path; }

 private:
  absl::StatusOr<std::string> BinarySha256(const std::string& exe_link);

  Options options_;
  // (dev, inode, size, mtime ns) -> sha256 hex: hashing a large binary for every stream of
  // the same workload would dominate attestation.
  absl::Mutex hash_mu_;
  std::map<std::tuple<uint64_t, uint64_t, int64_t, int64_t>, std::string> hash_cache_
      ABSL_GUARDED_BY(hash_mu_);
};

}  // namespace trellis::attestors
