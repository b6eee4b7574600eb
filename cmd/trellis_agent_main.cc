// trellis-agent: the Trellis agent binary; all logic lives in cmd/cli and the libraries.
#include <malloc.h>
#include <unistd.h>

#include <cstdlib>
#include <iostream>
#include <string>
#include <vector>

#ifdef TRELLIS_AGENT_COMMANDS
#include "cmd/agent_commands.h"
#endif
#include "absl/synchronization/mutex.h"
#include "cmd/cli.h"

namespace {

constexpr char kTunables[] = "GLIBC_TUNABLES";
constexpr char kNoThreadCache[] = "glibc.malloc.tcache_count=0";

// glibc also keeps, in every thread, a cache of freed blocks: up to seven of each size up to
// 1 KiB, which no trim returns. In an agent whose gRPC threads each parse and free messages of
// every size, those caches held about 200 KiB for good. glibc reads that setting only from the
// environment at exec, so a running agent sets it and execs itself once (same process id);
// an operator's own tcache_count in GLIBC_TUNABLES is left as it is.
void WithoutThreadCaches(char** argv) {
  const char* current = std::getenv(kTunables);
  std::string before = current ? current : "";
  if (before.find("glibc.malloc.tcache_count") != std::string::npos) return;
  std::string tunables = before.empty() ? kNoThreadCache : before + ":" + kNoThreadCache;
  if (setenv(kTunables, tunables.c_str(), 1) != 0) return;
  execv("/proc/self/exe", argv);
  // Not re-executed (no /proc, say): run as is, with the environment as it was.
  if (current) {
    setenv(kTunables, before.c_str(), 1);
  } else {
    unsetenv(kTunables);
  }
}

}  // namespace

int main(int argc, char** argv) {
  // Abseil's lock-order cycle detection is a test aid; see trellis_server_main.cc.
  absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);
  // glibc gives every thread that allocates its own arena (up to 8 per core), and each keeps
  // freed memory resident. The agent's threads allocate little and rarely at the same time,
  // so one arena serves them all and keeps its resident size down. Set before any thread.
  mallopt(M_ARENA_MAX, 1);
  std::vector<std::string> args(argv + 1, argv + argc);
  if (!args.empty() && args[0] == "run") WithoutThreadCaches(argv);
#ifdef TRELLIS_AGENT_COMMANDS
  if (!args.empty() && trellis::cmd::IsAgentCommand(args[0])) {
    return trellis::cmd::RunAgentCommand(args, std::cout, std::cerr);
  }
#endif
  return trellis::cmd::AgentMain(args, std::cout, std::cerr);
}
