// trellis-agent: the Trellis agent binary; all logic lives in cmd/cli and the libraries.
#include <malloc.h>

#include <iostream>
#include <string>
#include <vector>

#ifdef TRELLIS_AGENT_COMMANDS
#include "cmd/agent_commands.h"
#endif
#include "absl/synchronization/mutex.h"
#include "cmd/cli.h"

int main(int argc, char** argv) {
  // Abseil's lock-order cycle detection is a test aid; see trellis_server_main.cc.
  absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);
  // glibc gives every thread that allocates its own arena (up to 8 per core), and each keeps
  // freed memory resident. The agent's threads allocate little and rarely at the same time,
  // so two arenas are enough and keep its resident size down. Set before any thread starts.
  mallopt(M_ARENA_MAX, 1);
  std::vector<std::string> args(argv + 1, argv + argc);
#ifdef TRELLIS_AGENT_COMMANDS
  if (!args.empty() && trellis::cmd::IsAgentCommand(args[0])) {
    return trellis::cmd::RunAgentCommand(args, std::cout, std::cerr);
  }
#endif
  return trellis::cmd::AgentMain(args, std::cout, std::cerr);
}
