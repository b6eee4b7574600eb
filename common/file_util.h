// Atomic, permission-tight file writes for keys and state (0600 files in 0700 dirs).
#pragma once

#include <sys/types.h>

#include <string>
#include <string_view>

#include "absl/status/statusor.h"

namespace trellis::common {

// Creates `dir` (and missing parents) with mode 0700; tightens an existing dir to 0700.
absl::Status EnsurePrivateDir(const std::string& dir);
// Writes `data` to a temporary file beside `path` with `mode`, fsyncs it, renames it over
// `path` and fsyncs the directory, so readers see the old or the new content, never a mix.
absl::Status WriteFileAtomic(const std::string& path, std::string_view data, mode_t mode = 0600);
// EnsurePrivateDir(parent of path) then WriteFileAtomic(path, data, 0600).
absl::Status WritePrivateFile(const std::string& path, std::string_view data);
absl::StatusOr<std::string> ReadFile(const std::string& path);

}  // namespace trellis::common
