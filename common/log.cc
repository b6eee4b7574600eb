// Log line formatting (text `time level msg key=value` or one JSON object per line), the
// output (stderr or a reopenable file) and the per-thread RPC fields.
#include "common/log.h"

#include <fcntl.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <nlohmann/json.hpp>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"

namespace trellis::common {
namespace {

using config::LogFormat;
using config::LogLevel;

std::atomic<int> g_level{static_cast<int>(LogLevel::kInfo)};
std::atomic<bool> g_json{false};
// One line at a time; also guards the output, so a reopen swaps it between two lines.
ABSL_CONST_INIT absl::Mutex g_write_mu(absl::kConstInit);
int g_fd ABSL_GUARDED_BY(g_write_mu) = -1;                                  // -1: stderr
ABSL_CONST_INIT std::string* g_path ABSL_GUARDED_BY(g_write_mu) = nullptr;  // set with g_fd
thread_local RpcLogScope* t_scope = nullptr;
// Set in a module's copy only (UseLogHooks).
std::atomic<bool (*)(LogLevel)> g_enabled_hook{nullptr};
std::atomic<void (*)(const std::string&)> g_write_hook{nullptr};

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

absl::StatusOr<int> OpenLogFile(const std::string& path) {
  int fd =
      ::open(path.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC | O_NOCTTY | O_NOFOLLOW, 0600);
  if (fd < 0) {
    return absl::FailedPreconditionError("cannot open log file " + path + ": " +
                                         std::strerror(errno));
  }
  return fd;
}

// Swaps the output under the lock; the previous file is closed after it.
void SwapOutput(int fd, std::string path) {
  int old = -1;
  {
    absl::MutexLock lock(&g_write_mu);
    old = g_fd;
    g_fd = fd;
    if (fd < 0) {
      delete g_path;
      g_path = nullptr;
    } else if (g_path == nullptr) {
      g_path = new std::string(std::move(path));
    } else {
      *g_path = std::move(path);
    }
  }
  if (old >= 0) ::close(old);
}

void WriteAll(int fd, const std::string& line) {
  size_t done = 0;
  while (done < line.size()) {
    ssize_t n = ::write(fd, line.data() + done, line.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return;  // a full disk must not stop the process; the line is lost
    done += static_cast<size_t>(n);
  }
}

}  // namespace

absl::Status SetLogFile(const std::string& path) {
  absl::StatusOr<int> fd = OpenLogFile(path);
  if (!fd.ok()) return fd.status();
  SwapOutput(*fd, path);
  return absl::OkStatus();
}

absl::Status ReopenLogFile() {
  std::string path;
  {
    absl::MutexLock lock(&g_write_mu);
    if (g_path == nullptr) return absl::OkStatus();
    path = *g_path;
  }
  absl::StatusOr<int> fd = OpenLogFile(path);
  if (!fd.ok()) {
    Log(LogLevel::kError, "Reopening the log file failed; still writing to the old one",
        {{"path", path}, {"error", std::string(fd.status().message())}});
    return fd.status();
  }
  SwapOutput(*fd, path);
  Log(LogLevel::kInfo, "Log file reopened", {{"path", path}});
  return absl::OkStatus();
}

void LogToStderr() { SwapOutput(-1, ""); }

namespace {

void WriteLine(const std::string& line) {
  if (auto hook = g_write_hook.load()) {
    hook(line);
    return;
  }
  absl::MutexLock lock(&g_write_mu);
  if (g_fd >= 0) {
    WriteAll(g_fd, line);
    return;
  }
  std::fwrite(line.data(), 1, line.size(), stderr);
  std::fflush(stderr);
}

}  // namespace

LogHooks ProcessLogHooks() { return {&LogEnabled, &WriteLine}; }

void UseLogHooks(LogHooks hooks) {
  g_enabled_hook = hooks.enabled;
  g_write_hook = hooks.write;
}

std::string GrpcMethodName(std::string_view service_full_name, std::string_view method) {
  std::string out;
  out.reserve(service_full_name.size() + method.size() + 2);
  out += '/';
  out += service_full_name;
  out += '/';
  out += method;
  return out;
}

RpcLogScope::RpcLogScope(std::string method, std::vector<LogField> caller)
    : method_(std::move(method)), caller_(std::move(caller)), outer_(t_scope) {
  t_scope = this;
}

RpcLogScope::~RpcLogScope() { t_scope = outer_; }

RpcLogScope* RpcLogScope::Current() { return t_scope; }

void SetRpcLogCaller(std::vector<LogField> caller) {
  if (t_scope != nullptr) t_scope->SetCaller(std::move(caller));
}

void SetLogLevel(LogLevel level) { g_level = static_cast<int>(level); }
void SetLogFormat(LogFormat format) { g_json = format == LogFormat::kJson; }
bool LogEnabled(LogLevel level) {
  if (auto hook = g_enabled_hook.load()) return hook(level);
  return static_cast<int>(level) >= g_level.load();
}
LogLevel CurrentLogLevel() { return static_cast<LogLevel>(g_level.load()); }
LogFormat CurrentLogFormat() { return g_json.load() ? LogFormat::kJson : LogFormat::kText; }

void Log(LogLevel level, const std::string& msg, std::initializer_list<LogField> fields) {
  if (!LogEnabled(level)) return;
  std::string time = absl::FormatTime("%Y-%m-%dT%H:%M:%E3SZ", absl::Now(), absl::UTCTimeZone());
  // The call's fields after the line's own, unless the line names them itself.
  std::vector<LogField> rpc;
  if (const RpcLogScope* scope = t_scope) {
    auto named = [&fields](const char* key) {
      for (const auto& f : fields) {
        if (std::strcmp(f.first, key) == 0) return true;
      }
      return false;
    };
    for (const LogField& f : scope->caller()) {
      if (!named(f.first)) rpc.push_back(f);
    }
    if (!named("method")) rpc.emplace_back("method", scope->method());
  }
  std::string line;
  if (g_json) {
    nlohmann::json j = {{"time", time}, {"level", LevelName(level)}, {"msg", msg}};
    for (const auto& [k, v] : fields) j[k] = v;
    for (const auto& [k, v] : rpc) j[k] = v;
    line = j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  } else {
    std::string one_line = msg;
    for (char& c : one_line) {
      if (c == '\n' || c == '\r') c = ' ';
    }
    line = time + " " + LevelName(level) + " " + one_line;
    for (const auto& [k, v] : fields) line += std::string(" ") + k + "=" + TextValue(v);
    for (const auto& [k, v] : rpc) line += std::string(" ") + k + "=" + TextValue(v);
  }
  line += '\n';
  WriteLine(line);
}

}  // namespace trellis::common
