// Subcommand dispatch shared by trellis-server and trellis-agent, and their `validate`.
#pragma once

#include <functional>
#include <ostream>
#include <string>
#include <vector>

namespace trellis::cmd {

// Entry points behind the two binaries' main(). `args` excludes the program name. Output goes
// to `out`, diagnostics to `err`; the result is the process exit code.
// A subcommand beyond `validate`, provided by a library the binary links (so the validate-only
// library stays free of the server and agent runtimes).
struct SubCommand {
  std::string name;
  std::string summary;
  std::function<int(const std::vector<std::string>& args, std::ostream& out, std::ostream& err)>
      run;
};

int ServerMain(const std::vector<std::string>& args, std::ostream& out, std::ostream& err,
               const std::vector<SubCommand>& extra = {});
int AgentMain(const std::vector<std::string>& args, std::ostream& out, std::ostream& err);

}  // namespace trellis::cmd
