// One mutex-serialised writer so concurrent lines never interleave.
#include "agent/agent_log.h"

#include <atomic>
#include <iostream>

#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"

namespace trellis::agent {
namespace {

absl::Mutex log_mu;
std::atomic<int> min_log_level{1};  // 0 debug, 1 info, 2 warning, 3 error

int LevelRank(const std::string& level) {
  if (level == "debug") return 0;
  if (level == "info") return 1;
  if (level == "warning") return 2;
  return 3;
}

}  // namespace

void SetLogLevel(common::config::LogLevel level) {
  switch (level) {
    case common::config::LogLevel::kDebug:
      min_log_level = 0;
      break;
    case common::config::LogLevel::kInfo:
      min_log_level = 1;
      break;
    case common::config::LogLevel::kWarn:
      min_log_level = 2;
      break;
    case common::config::LogLevel::kError:
      min_log_level = 3;
      break;
  }
}

void Log(const std::string& level, const std::string& msg) {
  if (LevelRank(level) < min_log_level.load()) return;
  absl::MutexLock lock(&log_mu);
  std::cerr << "time=\""
            << absl::FormatTime("%Y-%m-%dT%H:%M:%E3SZ", absl::Now(), absl::UTCTimeZone())
            << "\" level=" << level << " msg=\"" << msg << "\"" << std::endl;
}

}  // namespace trellis::agent
