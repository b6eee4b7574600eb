// Runs real trellis-server / trellis-agent processes for benchmarks: temp dirs, configs, free
// ports, child processes that are always stopped, and /proc readings (RSS, CPU time).
#pragma once

#include <sys/types.h>

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/time/time.h"

namespace trellis::bench {

[[noreturn]] void Die(const std::string& what);

// A fresh 0755 directory under /tmp, removed by RemoveTree.
std::string MakeTempDir(const std::string& prefix);
void RemoveTree(const std::string& path);
int FreePort();
void WriteText(const std::string& path, const std::string& text);

struct CommandResult {
  int status = -1;  // exit status, or -1 when it did not exit normally
  std::string out;  // stdout
};
// Runs argv to completion; stderr goes to /dev/null unless keep_stderr.
CommandResult RunCommand(const std::vector<std::string>& argv, bool keep_stderr = false);

// Polls `condition` until it is true or `timeout` passes. Never a fixed sleep.
bool WaitFor(const std::function<bool()>& condition, absl::Duration timeout);

// A child process whose stdout and stderr go to `log_path`; SIGTERM then SIGKILL on Stop or
// destruction.
class Child {
 public:
  Child(std::vector<std::string> argv, std::string log_path);
  ~Child();
  Child(const Child&) = delete;
  Child& operator=(const Child&) = delete;
  pid_t pid() const { return pid_; }
  bool Running();
  int Stop();  // exit status (or -signal)

 private:
  pid_t pid_ = -1;
  int status_ = 0;
  bool reaped_ = false;
};

// The number after "<key>:" in /proc/<pid>/status (0 when absent or unreadable).
long ProcStatusValue(pid_t pid, const std::string& key);
// VmRSS of `pid` in KiB (0 when unreadable).
long RssKib(pid_t pid);
// What a process holds beyond the shared library pages every process maps: USS (its private
// pages) and PSS (private plus its share of shared ones), from /proc/<pid>/smaps_rollup.
struct SharedAwareMemory {
  long rss_kib = 0;
  long pss_kib = 0;
  long uss_kib = 0;
};
SharedAwareMemory MemoryOf(pid_t pid);
// utime + stime of `pid` in seconds.
double ProcessCpuSeconds(pid_t pid);

std::string ServerBinary();
std::string AgentBinary();

// One server and, on request, one join-token agent on SQLite in a temp dir.
class Deployment {
 public:
  explicit Deployment(const std::string& name);
  ~Deployment();

  // Starts the server and waits until its healthcheck passes. `extra_server_config` goes
  // inside server { }, `extra_top_level` after it (e.g. a telemetry block).
  void StartServer(const std::string& extra_server_config = "",
                   const std::string& extra_top_level = "", const std::string& log_level = "WARN");
  void StopServer();
  // Generates a token, exports the bundle, starts an agent and waits until it is healthy.
  void StartAgent();
  void StopAgent();

  // trellis-server <args> -socketPath <admin socket>; dies on failure.
  std::string ServerCli(std::vector<std::string> args);

  const std::string& dir() const { return dir_; }
  int port() const { return port_; }
  const std::string& admin_socket() const { return admin_socket_; }
  const std::string& agent_socket() const { return agent_socket_; }
  const std::string& agent_id() const { return agent_id_; }
  const std::string& bundle_pem_path() const { return bundle_pem_; }
  pid_t server_pid() const { return server_ ? server_->pid() : -1; }
  pid_t agent_pid() const { return agent_ ? agent_->pid() : -1; }
  // Last lines of the logs, for failure messages.
  std::string Logs() const;
  // The whole agent log.
  std::string AgentLog() const;

 private:
  std::string dir_;
  int port_ = 0;
  std::string admin_socket_;
  std::string agent_socket_;
  std::string agent_id_;
  std::string bundle_pem_;
  std::unique_ptr<Child> server_;
  std::unique_ptr<Child> agent_;
};

}  // namespace trellis::bench
