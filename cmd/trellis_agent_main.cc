// trellis-agent: the Trellis agent binary; all logic lives in cmd/cli and the libraries.
#include <iostream>
#include <string>
#include <vector>

#ifdef TRELLIS_AGENT_COMMANDS
#include "cmd/agent_commands.h"
#endif
#include "cmd/cli.h"

int main(int argc, char** argv) {
  std::vector<std::string> args(argv + 1, argv + argc);
#ifdef TRELLIS_AGENT_COMMANDS
  if (!args.empty() && trellis::cmd::IsAgentCommand(args[0])) {
    return trellis::cmd::RunAgentCommand(args, std::cout, std::cerr);
  }
#endif
  return trellis::cmd::AgentMain(args, std::cout, std::cerr);
}
