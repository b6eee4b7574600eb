// The process log: one line per event on stderr or in a log file, `time level msg key=value ...`
// or JSON. Lines written for one RPC carry its caller and method (RpcLogScope).
#pragma once

#include <initializer_list>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "common/config/shared_config.h"

namespace trellis::common {

using LogField = std::pair<const char*, std::string>;

// Process-wide settings; the runtime sets them from the configuration before starting.
void SetLogLevel(config::LogLevel level);
void SetLogFormat(config::LogFormat format);
bool LogEnabled(config::LogLevel level);
config::LogLevel CurrentLogLevel();
config::LogFormat CurrentLogFormat();

// Writes lines to `path` (appended; created 0600 when missing) instead of stderr.
// FAILED_PRECONDITION naming the path when it cannot be opened; the output is then unchanged.
absl::Status SetLogFile(const std::string& path);
// Opens the log file's path afresh and swaps it in, so a file renamed away (logrotate) stops
// growing. When the new open fails, lines keep going to the old file and the failure is logged
// there. Either outcome is logged. A no-op while logging to stderr.
absl::Status ReopenLogFile();
// Back to stderr, closing any log file.
void LogToStderr();

// A copy of this library inside a loaded module (the PostgreSQL datastore) has settings and an
// output of its own; these hand the module the process's level and output instead.
struct LogHooks {
  bool (*enabled)(config::LogLevel level);
  void (*write)(const std::string& line);  // one formatted line, newline included
};
LogHooks ProcessLogHooks();
void UseLogHooks(LogHooks hooks);

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

// "/<service>/<method>", the name gRPC gives a call, e.g. "/trellis.server.v1.Admin/GetEntry".
std::string GrpcMethodName(std::string_view service_full_name, std::string_view method);

// While alive, every line this thread logs carries `method` and the caller's fields (the
// handler's explicit fields win on a clash). Handlers open one first thing and name the caller
// once it is known; code that logs about a call from another thread opens one there. Scopes
// nest: the innermost one counts.
class RpcLogScope {
 public:
  explicit RpcLogScope(std::string method, std::vector<LogField> caller = {});
  ~RpcLogScope();
  RpcLogScope(const RpcLogScope&) = delete;
  RpcLogScope& operator=(const RpcLogScope&) = delete;

  // Replaces the caller's fields, e.g. once the caller is authenticated.
  void SetCaller(std::vector<LogField> caller) { caller_ = std::move(caller); }
  const std::string& method() const { return method_; }
  const std::vector<LogField>& caller() const { return caller_; }

  // The innermost scope of this thread, or nullptr.
  static RpcLogScope* Current();

 private:
  std::string method_;
  std::vector<LogField> caller_;
  RpcLogScope* outer_;
};

// Names the caller on this thread's innermost RpcLogScope (nothing without one), for code
// below a handler that authenticates the caller.
void SetRpcLogCaller(std::vector<LogField> caller);

}  // namespace trellis::common
