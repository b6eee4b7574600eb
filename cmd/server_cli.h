// trellis-server subcommands beyond `validate`: run, healthcheck, and the admin API clients
// (token, entry, bundle, agent) that talk to a running server over its Unix socket.
#pragma once

#include <vector>

#include "cmd/cli.h"

namespace trellis::cmd {

// SPIRE's default admin socket location, which operator scripts assume.
inline constexpr char kDefaultServerSocketPath[] = "/tmp/spire-server/private/api.sock";

std::vector<SubCommand> ServerCommands();

// `run`: loads the configuration, starts the server, and returns the exit code once it has
// stopped (SIGTERM/SIGINT: 0).
int RunServerCommand(const std::vector<std::string>& args, std::ostream& out, std::ostream& err);

}  // namespace trellis::cmd
