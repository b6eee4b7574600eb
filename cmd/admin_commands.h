// The admin command groups of trellis-server, one factory per group; each returns the
// SubCommand that dispatches `trellis-server <group> <command> [flags]`.
#pragma once

#include "cmd/cli.h"

namespace trellis::cmd {

SubCommand HealthcheckCommand();         // token_health_commands.cc
SubCommand TokenCommands();              // token_health_commands.cc
SubCommand EntryCommands();              // entry_commands.cc
SubCommand BundleCommands();             // bundle_commands.cc
SubCommand FederationCommands();         // federation_commands.cc
SubCommand AttestedAgentCommands();      // attested_agent_commands.cc
SubCommand LocalAuthorityCommands();     // authority_commands.cc
SubCommand UpstreamAuthorityCommands();  // authority_commands.cc
SubCommand LoggerCommands();             // logger_commands.cc

}  // namespace trellis::cmd
