// trellis-server logger get|set|reset: the running server's log level, read and changed
// through the admin socket.
#include <map>
#include <nlohmann/json.hpp>
#include <ostream>
#include <string>

#include "absl/strings/ascii.h"
#include "cmd/admin_client.h"
#include "cmd/admin_commands.h"

namespace trellis::cmd {
namespace {

// Lowercase for the pretty output; JSON carries the uppercase names the configuration uses.
std::string LevelName(v1::LogLevel level) {
  switch (level) {
    case v1::LOG_LEVEL_DEBUG:
      return "debug";
    case v1::LOG_LEVEL_INFO:
      return "info";
    case v1::LOG_LEVEL_WARN:
      return "warn";
    case v1::LOG_LEVEL_ERROR:
      return "error";
    default:
      return "unspecified";
  }
}

void PrintLogger(const std::string& output, const v1::Logger& logger, std::ostream& out) {
  if (output == "json") {
    nlohmann::json j;
    j["current_level"] = absl::AsciiStrToUpper(LevelName(logger.current_level()));
    j["launch_level"] = absl::AsciiStrToUpper(LevelName(logger.launch_level()));
    out << j.dump() << "\n";
    return;
  }
  out << "Logger Level : " << LevelName(logger.current_level()) << "\n";
  out << "Launch Level : " << LevelName(logger.launch_level()) << "\n";
}

// `logger get|set|reset`: one call each, all answering with the logger's state.
int LoggerCommand(const std::string& verb, const Args& args, std::ostream& out, std::ostream& err) {
  FlagSet fs;
  ClientFlags cf;
  cf.Add(fs, true);
  std::string level_text;
  if (verb == "set") {
    fs.String("level", &level_text, "The new log level, one of (debug, info, warn, error)");
  }
  const std::string usage = verb == "set" ? "logger set -level <debug|info|warn|error> [flags]"
                                          : "logger " + verb + " [flags]";
  if (int rc = ParseClientOrExit(fs, cf, args, usage, out, err); rc >= 0) return rc;
  static const std::map<std::string, v1::LogLevel> kLevels = {{"debug", v1::LOG_LEVEL_DEBUG},
                                                              {"info", v1::LOG_LEVEL_INFO},
                                                              {"warn", v1::LOG_LEVEL_WARN},
                                                              {"error", v1::LOG_LEVEL_ERROR}};
  v1::SetLogLevelRequest set_req;
  if (verb == "set") {
    if (level_text.empty()) return Fail(err, "-level is required");
    auto it = kLevels.find(absl::AsciiStrToLower(level_text));
    if (it == kLevels.end()) {
      return Fail(err, "the value \"" + level_text +
                           "\" is not a valid log level (debug, info, warn, error)");
    }
    set_req.set_new_level(it->second);
  }
  AdminClient client(cf.socket_path);
  v1::Logger resp;
  auto ctx = client.Context();
  grpc::Status st;
  if (verb == "get") {
    st = client->GetLogger(ctx.get(), v1::GetLoggerRequest(), &resp);
  } else if (verb == "set") {
    st = client->SetLogLevel(ctx.get(), set_req, &resp);
  } else {
    st = client->ResetLogLevel(ctx.get(), v1::ResetLogLevelRequest(), &resp);
  }
  if (!st.ok()) return Fail(err, client.Describe(st));
  PrintLogger(cf.output, resp, out);
  return 0;
}

}  // namespace

SubCommand LoggerCommands() {
  return {"logger", "Read or change the running server's log level (get, set, reset)",
          [](const Args& a, std::ostream& o, std::ostream& e) {
            auto verb = [](const std::string& v) {
              return [v](const Args& x, std::ostream& y, std::ostream& z) {
                return LoggerCommand(v, x, y, z);
              };
            };
            return Group("logger",
                         {{"get", verb("get")}, {"set", verb("set")}, {"reset", verb("reset")}}, a,
                         o, e);
          }};
}

}  // namespace trellis::cmd
