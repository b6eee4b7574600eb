// trellis-agent subcommands beyond validate: run, healthcheck and the Workload API client
// commands (api fetch x509|jwt, api validate jwt, api watch).
#pragma once

#include <ostream>
#include <string>
#include <vector>

namespace trellis::cmd {

// True for the commands RunAgentCommand handles ("run", "healthcheck", "api").
bool IsAgentCommand(const std::string& command);

// `args` starts with the command name. Returns the process exit code.
int RunAgentCommand(const std::vector<std::string>& args, std::ostream& out, std::ostream& err);

}  // namespace trellis::cmd
