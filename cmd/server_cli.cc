// trellis-server's subcommands beyond validate, in the order its help lists them.
#include "cmd/server_cli.h"

#include "cmd/admin_commands.h"

namespace trellis::cmd {

std::vector<SubCommand> ServerCommands() {
  return {{"run", "Run the server", RunServerCommand},
          HealthcheckCommand(),
          TokenCommands(),
          EntryCommands(),
          BundleCommands(),
          FederationCommands(),
          AttestedAgentCommands(),
          LocalAuthorityCommands(),
          UpstreamAuthorityCommands(),
          LoggerCommands()};
}

}  // namespace trellis::cmd
