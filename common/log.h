// The process log: one line per event on stderr, `time level msg key=value ...` or JSON.
#pragma once

#include <initializer_list>
#include <string>
#include <utility>

#include "common/config/shared_config.h"

namespace trellis::common {

using LogField = std::pair<const char*, std::string>;

// Process-wide settings; the runtime sets them from the configuration before starting.
void SetLogLevel(config::LogLevel level);
void SetLogFormat(config::LogFormat format);
bool LogEnabled(config::LogLevel level);
config::LogLevel CurrentLogLevel();
config::LogFormat CurrentLogFormat();

void Log(config::LogLevel level, const std::string& msg,
         std::initializer_list<LogField> fields = {});
inline void LogDebug(const std::string& msg, std::initializer_list<LogField> fields = {}) {
  Log(config::LogLevel::kDebug, msg, fields);
}
inline void LogInfo(const std::string& msg, std::initializer_list<LogField> fields = {}) {
  Log(config::LogLevel::kInfo, msg, fields);
}
inline void LogWarn(const std::string& msg, std::initializer_list<LogField> fields = {}) {
  Log(config::LogLevel::kWarn, msg, fields);
}
inline void LogError(const std::string& msg, std::initializer_list<LogField> fields = {}) {
  Log(config::LogLevel::kError, msg, fields);
}

}  // namespace trellis::common
