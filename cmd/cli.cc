// Subcommand dispatch of trellis-server and trellis-agent, and their `validate`. Flags are
// long options written with one dash or two (-config FILE, --config=FILE, -expandEnv).
#include "cmd/cli.h"

#include <functional>
#include <string>

#include "absl/status/status.h"
#include "cmd/cli_text.h"
#include "cmd/flag_set.h"
#include "common/config/agent_config.h"
#include "common/config/server_config.h"

namespace trellis::cmd {
namespace {

struct Program {
  std::string name;            // "trellis-server"
  std::string kind;            // "server"
  std::string default_config;  // SPIRE's default location
  std::function<absl::Status(const std::string& path, bool expand_env)> validate;
  std::vector<SubCommand> extra = {};
};

void PrintUsage(const Program& p, std::ostream& os) {
  os << "Usage: " << p.name << " <command> [flags]\n\n"
     << "Commands:\n"
     << "  validate     Check a " << p.kind << " configuration file and report the first error\n";
  for (const SubCommand& c : p.extra) {
    os << "  " << c.name << std::string(c.name.size() < 13 ? 13 - c.name.size() : 1, ' ')
       << c.summary << "\n";
  }
  os << "\n"
     << "Run '" << p.name << " <command> -h' for the flags of a command.\n";
}

int RunValidate(const Program& p, const std::vector<std::string>& args, std::ostream& out,
                std::ostream& err) {
  FlagSet flags(FlagSet::Syntax::kLongOptions);
  std::string config = p.default_config;
  bool expand_env = false;
  flags.String("config", &config,
               "Path to a Trellis configuration file (HCL, or JSON with the same shape)");
  flags.Bool("expandEnv", &expand_env, "Expand $VAR and ${VAR} in the configuration file");
  auto usage = [&](std::ostream& os) {
    os << "Usage: " << p.name << " validate [-config FILE] [-expandEnv]\n\n"
       << "Validates a " << p.kind << " configuration file.\n\n"
       << "  -config string    configuration file (default \"" << p.default_config << "\")\n"
       << "  -expandEnv        expand environment variables in the configuration file\n";
  };
  if (absl::Status parsed = flags.Parse(args); !parsed.ok()) {
    err << p.name << " validate: " << OneLine(std::string(parsed.message())) << "\n";
    usage(err);
    return 2;
  }
  if (flags.help_requested()) {
    usage(out);
    return 0;
  }
  absl::Status status = p.validate(config, expand_env);
  if (!status.ok()) {
    err << "Error: " << OneLine(std::string(status.message())) << "\n";
    return 1;
  }
  out << "Configuration is valid.\n";
  return 0;
}

int Dispatch(const Program& p, const std::vector<std::string>& args, std::ostream& out,
             std::ostream& err) {
  if (args.empty()) {
    PrintUsage(p, err);
    return 2;
  }
  const std::string& command = args[0];
  std::vector<std::string> rest(args.begin() + 1, args.end());
  if (command == "-h" || command == "--help" || command == "-help" || command == "help") {
    PrintUsage(p, out);
    return 0;
  }
  if (command == "validate") return RunValidate(p, rest, out, err);
  for (const SubCommand& c : p.extra) {
    if (c.name == command) return c.run(rest, out, err);
  }
  err << p.name << ": unknown command \"" << OneLine(command) << "\"\n";
  PrintUsage(p, err);
  return 2;
}

}  // namespace

int ServerMain(const std::vector<std::string>& args, std::ostream& out, std::ostream& err,
               const std::vector<SubCommand>& extra) {
  Program p{"trellis-server", "server", "conf/server/server.conf",
            [](const std::string& path, bool expand_env) {
              return common::config::LoadServerConfig(path, expand_env).status();
            },
            extra};
  return Dispatch(p, args, out, err);
}

int AgentMain(const std::vector<std::string>& args, std::ostream& out, std::ostream& err) {
  Program p{"trellis-agent", "agent", "conf/agent/agent.conf",
            [](const std::string& path, bool expand_env) {
              return common::config::LoadAgentConfig(path, expand_env).status();
            }};
  return Dispatch(p, args, out, err);
}

}  // namespace trellis::cmd
