// Subcommands of trellis-server and trellis-agent. Flags follow Go's style (-config FILE,
// -expandEnv); "--config" works too. Boost exceptions stop here and become one stderr line.
#include "cmd/cli.h"

#include <boost/program_options.hpp>
#include <functional>
#include <map>
#include <string>

#include "absl/status/status.h"
#include "common/config/agent_config.h"
#include "common/config/server_config.h"

namespace trellis::cmd {
namespace {

namespace po = boost::program_options;

// Long options only, written with one dash or two, no abbreviations: "-conf" is not "-config".
constexpr int kFlagStyle =
    po::command_line_style::allow_long | po::command_line_style::long_allow_adjacent |
    po::command_line_style::long_allow_next | po::command_line_style::allow_long_disguise;

struct Program {
  std::string name;            // "trellis-server"
  std::string kind;            // "server"
  std::string default_config;  // SPIRE's default location
  std::function<absl::Status(const std::string& path, bool expand_env)> validate;
  std::vector<SubCommand> extra = {};
};

// Keeps a diagnostic on one line whatever the message holds.
std::string OneLine(std::string text) {
  for (char& c : text) {
    if (c == '\n' || c == '\r') c = ' ';
  }
  return text;
}

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
  po::options_description flags("Flags");
  std::string config;
  bool expand_env = false;
  flags.add_options()("config", po::value<std::string>(&config)->default_value(p.default_config),
                      "Path to a Trellis configuration file (HCL, or JSON with the same shape)")(
      "expandEnv", po::value<bool>(&expand_env)->implicit_value(true)->default_value(false),
      "Expand $VAR and ${VAR} in the configuration file")("help", "Show this help")(
      "h", "Show this help");
  auto usage = [&](std::ostream& os) {
    os << "Usage: " << p.name << " validate [-config FILE] [-expandEnv]\n\n"
       << "Validates a " << p.kind << " configuration file.\n\n"
       << "  -config string    configuration file (default \"" << p.default_config << "\")\n"
       << "  -expandEnv        expand environment variables in the configuration file\n";
  };
  po::variables_map vm;
  try {
    po::parsed_options parsed =
        po::command_line_parser(args).options(flags).style(kFlagStyle).allow_unregistered().run();
    // Unknown flags and stray arguments both surface here; Boost would otherwise drop them.
    for (const std::string& extra :
         po::collect_unrecognized(parsed.options, po::include_positional)) {
      bool is_flag = extra.size() > 1 && extra[0] == '-';
      err << p.name << " validate: " << (is_flag ? "unknown flag " : "unexpected argument ")
          << OneLine(extra) << "\n";
      usage(err);
      return 2;
    }
    po::store(parsed, vm);
    po::notify(vm);
  } catch (const po::error& e) {
    err << p.name << " validate: " << OneLine(e.what()) << "\n";
    usage(err);
    return 2;
  }
  if (vm.count("help") || vm.count("h")) {
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
