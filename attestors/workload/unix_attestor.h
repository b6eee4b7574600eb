// The "unix" workload attestor: uid/gid/user/group/supplementary groups from the socket's
// credentials (from /proc when the kernel gave no groups) and, optionally, the executable's
// path and SHA-256 from /proc for the kernel-reported pid.
#pragma once

#include <sys/stat.h>

#include <cstdint>
#include <map>
#include <optional>
#include <string>

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
  // Pins the process, reads its selectors, then checks the pin still holds.
  absl::StatusOr<std::vector<SelectorString>> Attest(const CallerCredentials& caller) override;
  // Reads the selectors of the pinned pid without re-checking the pin afterwards: that check
  // is the caller's (one /proc/<pid>/stat read after every attestor, not one per attestor).
  absl::StatusOr<std::vector<SelectorString>> AttestPinned(const CallerCredentials& caller,
                                                           const ProcessPin& pin) override;
  // Hashing the binary may read many megabytes: only without it is attestation quick.
  bool NonBlocking() const override { return !options_.discover_workload_path; }
  // uid, gid and groups come from the socket's credentials when the kernel gave the groups;
  // only the executable's path and hash need /proc.
  bool ReadsProcess(const CallerCredentials& caller) const override {
    return options_.discover_workload_path || !caller.groups.has_value();
  }

 private:
  // Which file, at which size and modification time: a cached result derived from a file
  // holds while its stamp is unchanged.
  struct FileStamp {
    uint64_t dev = 0, ino = 0;
    int64_t size = -1, mtime_ns = 0;
    auto operator<=>(const FileStamp&) const = default;
  };
  // A name looked up by id.
  static FileStamp StampOf(const struct stat& st);
  struct CachedName {
    std::optional<std::string> name;
    int64_t looked_up_ns = 0;  // steady clock
  };
  struct NameCache {
    FileStamp stamp;
    int64_t stamp_checked_ns = 0;
    std::map<uint32_t, CachedName> names;
  };

  absl::StatusOr<std::vector<SelectorString>> ReadSelectors(const CallerCredentials& caller,
                                                            const ProcessPin& pin);
  absl::StatusOr<std::string> BinarySha256(const std::string& exe_link);
  // The user (group) name of an id. Each lookup through NSS opens and parses /etc/passwd
  // (/etc/group), several times the cost of the rest of attestation, so names are kept while
  // that file is unchanged (looked at once a second), and for at most 30 s (NSS may answer
  // from elsewhere).
  std::optional<std::string> UserName(uint32_t uid);
  std::optional<std::string> GroupName(uint32_t gid);
  std::optional<std::string> CachedLookup(NameCache* cache, const char* database, uint32_t id,
                                          std::optional<std::string> (*lookup)(uint32_t))
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(names_mu_);

  Options options_;
  absl::Mutex names_mu_;
  NameCache users_ ABSL_GUARDED_BY(names_mu_);
  NameCache groups_ ABSL_GUARDED_BY(names_mu_);
  // Binary's stamp -> sha256 hex: hashing a large binary for every stream of the same
  // workload would dominate attestation.
  absl::Mutex hash_mu_;
  std::map<FileStamp, std::string> hash_cache_ ABSL_GUARDED_BY(hash_mu_);
};

}  // namespace trellis::attestors
