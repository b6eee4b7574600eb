// Process pinning against pid reuse, and the selector subset rule.
#include "attestors/workload/workload_attestor.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <set>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"

namespace trellis::attestors {

absl::StatusOr<uint64_t> ParseStatStartTime(const std::string& stat) {
  size_t close = stat.rfind(')');
  if (close == std::string::npos) return absl::InvalidArgumentError("stat text has no ')'");
  // After ")": field 3 (state) onwards; start time is field 22, i.e. the 20th after ')'.
  absl::string_view rest = absl::string_view(stat).substr(close + 1);
  absl::string_view field;
  int index = 0;
  for (absl::string_view f : absl::StrSplit(rest, ' ', absl::SkipWhitespace())) {
    if (++index == 20) {
      field = f;
      break;
    }
  }
  if (index < 20) return absl::InvalidArgumentError("stat text has too few fields");
  uint64_t start = 0;
  if (!absl::SimpleAtoi(field, &start)) {
    return absl::InvalidArgumentError("stat start time is not a number");
  }
  return start;
}

absl::StatusOr<std::string> ReadProcFile(const std::string& path) {
  int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return absl::NotFoundError(absl::StrCat("cannot open ", path));
  std::string out;
  char buf[4096];
  while (true) {
    ssize_t n = read(fd, buf, sizeof(buf));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      close(fd);
      return absl::NotFoundError(absl::StrCat("cannot read ", path));
    }
    if (n == 0) break;
    out.append(buf, static_cast<size_t>(n));
  }
  close(fd);
  return out;
}

absl::StatusOr<uint64_t> ProcessStartTime(pid_t pid) {
  if (pid <= 0) return absl::UnauthenticatedError(absl::StrCat("invalid caller pid ", pid));
  auto text = ReadProcFile(absl::StrCat("/proc/", pid, "/stat"));
  if (!text.ok() || text->empty()) {
    return absl::UnauthenticatedError(absl::StrCat("process ", pid, " no longer exists"));
  }
  return ParseStatStartTime(*text);
}

absl::StatusOr<ProcessPin> ProcessPin::Pin(pid_t pid) {
  auto start = ProcessStartTime(pid);
  if (!start.ok()) return start.status();
  return ProcessPin(pid, *start);
}

absl::Status ProcessPin::Check() const {
  auto now = ProcessStartTime(pid_);
  if (!now.ok() || *now != start_time_) {
    return absl::UnauthenticatedError(
        absl::StrCat("calling process ", pid_, " exited or its pid was reused"));
  }
  return absl::OkStatus();
}

bool SelectorsSubset(const std::vector<SelectorString>& required,
                     const std::vector<SelectorString>& have) {
  if (required.empty()) return false;
  std::set<std::string> set(have.begin(), have.end());
  return std::all_of(required.begin(), required.end(),
                     [&](const std::string& s) { return set.count(s) > 0; });
}

}  // namespace trellis::attestors
