// Admin socket connection, shared flags, parsing and output helpers of the admin commands.
#include "cmd/admin_client.h"

#include <google/protobuf/util/json_util.h>

#include <chrono>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "cmd/cli_text.h"
#include "transport/wire_convert.h"

namespace trellis::cmd {
namespace {

constexpr absl::Duration kRpcTimeout = absl::Seconds(30);

}  // namespace

int Fail(std::ostream& err, const std::string& msg) {
  err << "Error: " << OneLine(msg) << "\n";
  return kFailExit;
}

const char* CodeName(grpc::StatusCode code) {
  const char* name = GoCodeName(static_cast<int>(code));
  return name != nullptr ? name : "Unknown";
}

void ClientFlags::Add(FlagSet& fs, bool with_output) {
  fs.String("socketPath", &socket_path, "Path to the trellis-server admin API socket");
  if (with_output) fs.String("output", &output, "Desired output format (pretty, json)");
}

AdminClient::AdminClient(const std::string& socket_path) : socket_path_(socket_path) {
  stub_ = v1::Admin::NewStub(
      grpc::CreateChannel("unix:" + socket_path, grpc::InsecureChannelCredentials()));
}

std::unique_ptr<grpc::ClientContext> AdminClient::Context() const {
  auto ctx = std::make_unique<grpc::ClientContext>();
  ctx->set_deadline(std::chrono::system_clock::now() + absl::ToChronoMilliseconds(kRpcTimeout));
  return ctx;
}

std::string AdminClient::Describe(const grpc::Status& st) const {
  if (st.error_code() == grpc::StatusCode::UNAVAILABLE) {
    return "connection error: cannot reach the server at " + socket_path_ + ": " +
           st.error_message();
  }
  return std::string(CodeName(st.error_code())) + ": " + st.error_message();
}

int ParseOrExit(FlagSet& fs, const Args& args, const std::string& usage, std::ostream& out,
                std::ostream& err) {
  absl::Status st = fs.Parse(args);
  if (!st.ok()) {
    err << "Error: " << OneLine(std::string(st.message())) << "\n";
    return kUsageExit;
  }
  if (fs.help_requested()) {
    out << "Usage: trellis-server " << usage << "\n";
    fs.PrintDefaults(out);
    return 0;
  }
  return -1;
}

absl::Status CheckOutput(const std::string& output) {
  if (output != "pretty" && output != "json") {
    return absl::InvalidArgumentError("invalid value \"" + output +
                                      "\" for flag -output: want pretty or json");
  }
  return absl::OkStatus();
}

int ParseClientOrExit(FlagSet& fs, const ClientFlags& cf, const Args& args,
                      const std::string& usage, std::ostream& out, std::ostream& err) {
  if (int rc = ParseOrExit(fs, args, usage, out, err); rc >= 0) return rc;
  if (absl::Status st = CheckOutput(cf.output); !st.ok()) {
    return Fail(err, std::string(st.message()));
  }
  return -1;
}

absl::Status AddSelectors(const std::vector<std::string>& texts,
                          google::protobuf::RepeatedPtrField<v1::Selector>* out) {
  for (const std::string& text : texts) {
    absl::StatusOr<v1::Selector> sel = transport::SelectorFromText(text);
    if (!sel.ok()) return sel.status();
    *out->Add() = *std::move(sel);
  }
  return absl::OkStatus();
}

int FailItem(std::ostream& err, const std::string& what, const v1::Status& item) {
  return Fail(err, "failed to " + what + ": " +
                       CodeName(static_cast<grpc::StatusCode>(item.code())) + ": " +
                       item.message());
}

void PrintResponse(const std::string& output, const google::protobuf::Message& response,
                   std::ostream& out, const std::function<void()>& pretty) {
  if (output == "json") {
    out << ToJson(response) << "\n";
  } else {
    pretty();
  }
}

std::string ToJson(const google::protobuf::Message& m) {
  std::string json;
  google::protobuf::util::JsonPrintOptions options;
  options.preserve_proto_field_names = true;
  options.always_print_primitive_fields = true;
  (void)google::protobuf::util::MessageToJsonString(m, &json, options);
  return json;
}

std::string FormatUnix(int64_t seconds) { return GoTime(absl::FromUnixSeconds(seconds)); }

int Group(const std::string& group, const std::vector<std::pair<std::string, Handler>>& subs,
          const Args& args, std::ostream& out, std::ostream& err) {
  auto usage = [&](std::ostream& os) {
    os << "Usage: trellis-server " << group << " <command> [flags]\n\nCommands:\n";
    for (const auto& [name, h] : subs) os << "  " << name << "\n";
  };
  if (args.empty()) {
    err << "Error: missing " << group << " command\n";
    usage(err);
    return kUsageExit;
  }
  if (args[0] == "-h" || args[0] == "-help" || args[0] == "--help" || args[0] == "help") {
    usage(out);
    return 0;
  }
  Args rest(args.begin() + 1, args.end());
  for (const auto& [name, h] : subs) {
    if (name == args[0]) return h(rest, out, err);
  }
  err << "Error: unknown " << group << " command \"" << OneLine(args[0]) << "\"\n";
  return kUsageExit;
}

}  // namespace trellis::cmd
