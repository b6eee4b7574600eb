// Log line formatting: text `time level msg key=value` or one JSON object per line.
#include "common/log.h"

#include <atomic>
#include <cstdio>
#include <nlohmann/json.hpp>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"

namespace trellis::common {
namespace {

using config::LogFormat;
using config::LogLevel;

std::atomic<int> g_level{static_cast<int>(LogLevel::kInfo)};
std::atomic<bool> g_json{false};
ABSL_CONST_INIT absl::Mutex g_write_mu(absl::kConstInit);  // one line at a time on stderr

const char* LevelName(LogLevel level) {
  switch (level) {
    case LogLevel::kDebug:
      return "debug";
    case LogLevel::kInfo:
      return "info";
    case LogLevel::kWarn:
      return "warn";
    case LogLevel::kError:
      return "error";
  }
  return "info";
}

// Quotes a value when it would otherwise split the key=value stream.
std::string TextValue(const std::string& v) {
  bool plain = !v.empty();
  for (char c : v) {
    if (c == ' ' || c == '"' || c == '=' || c == '\n' || c == '\t' || c == '\r') plain = false;
  }
  if (plain) return v;
  std::string out = "\"";
  for (char c : v) {
    if (c == '"' || c == '\\') out += '\\';
    if (c == '\n' || c == '\r') {
      out += ' ';
      continue;
    }
    out += c;
  }
  return out + "\"";
}

}  // namespace

void SetLogLevel(LogLevel level) { g_level = static_cast<int>(level); }
void SetLogFormat(LogFormat format) { g_json = format == LogFormat::kJson; }
bool LogEnabled(LogLevel level) { return static_cast<int>(level) >= g_level.load(); }
LogLevel CurrentLogLevel() { return static_cast<LogLevel>(g_level.load()); }
LogFormat CurrentLogFormat() { return g_json.load() ? LogFormat::kJson : LogFormat::kText; }

void Log(LogLevel level, const std::string& msg, std::initializer_list<LogField> fields) {
  if (!LogEnabled(level)) return;
  std::string time = absl::FormatTime("%Y-%m-%dT%H:%M:%E3SZ", absl::Now(), absl::UTCTimeZone());
  std::string line;
  if (g_json) {
    nlohmann::json j = {{"time", time}, {"level", LevelName(level)}, {"msg", msg}};
    for (const auto& [k, v] : fields) j[k] = v;
    line = j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  } else {
    std::string one_line = msg;
    for (char& c : one_line) {
      if (c == '\n' || c == '\r') c = ' ';
    }
    line = time + " " + LevelName(level) + " " + one_line;
    for (const auto& [k, v] : fields) line += std::string(" ") + k + "=" + TextValue(v);
  }
  line += '\n';
  absl::MutexLock lock(&g_write_mu);
  std::fwrite(line.data(), 1, line.size(), stderr);
  std::fflush(stderr);
}

}  // namespace trellis::common
