// `trellis-server run`: load the configuration and run the server until SIGTERM/SIGINT.
#include "cmd/flag_set.h"
#include "cmd/server_cli.h"
#include "common/config/server_config.h"
#include "runtime/server_runtime.h"

namespace trellis::cmd {

int RunServerCommand(const std::vector<std::string>& args, std::ostream& out, std::ostream& err) {
  FlagSet fs;
  std::string config = "conf/server/server.conf";
  bool expand_env = false;
  fs.String("config", &config, "Path to a Trellis server configuration file");
  fs.Bool("expandEnv", &expand_env, "Expand environment variables in the configuration file");
  absl::Status st = fs.Parse(args);
  if (!st.ok()) {
    err << "Error: " << st.message() << "\n";
    return 2;
  }
  if (fs.help_requested()) {
    out << "Usage: trellis-server run [-config FILE] [-expandEnv]\n";
    fs.PrintDefaults(out);
    return 0;
  }
  absl::StatusOr<common::config::ServerConfig> cfg =
      common::config::LoadServerConfig(config, expand_env);
  if (!cfg.ok()) {
    err << "Error: " << cfg.status().message() << "\n";
    return 1;
  }
  absl::Status run = runtime::RunServerUntilSignal(*cfg);
  if (!run.ok()) {
    std::string msg(run.message());
    for (char& c : msg) {
      if (c == '\n') c = ' ';
    }
    err << "Error: " << msg << " (" << absl::StatusCodeToString(run.code()) << ")\n";
    return 1;
  }
  return 0;
}

}  // namespace trellis::cmd
