// Subcommand dispatch and Go-style flag parsing shared by trellis-server and trellis-agent.
#pragma once

#include <ostream>
#include <string>
#include <vector>

namespace trellis::cmd {

// Entry points behind the two binaries' main(). `args` excludes the program name. Output goes
// to `out`, diagnostics to `err`; the result is the process exit code.
int ServerMain(const std::vector<std::string>& args, std::ostream& out, std::ostream& err);
int AgentMain(const std::vector<std::string>& args, std::ostream& out, std::ostream& err);

}  // namespace trellis::cmd
