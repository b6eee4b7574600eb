// What every trellis-server admin command shares: the connection to the admin socket, the
// -socketPath/-output flags, flag parsing with help, the exit codes and the output helpers.
#pragma once

#include <grpcpp/grpcpp.h>

#include <functional>
#include <memory>
#include <ostream>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "cmd/flag_set.h"
#include "cmd/server_cli.h"
#include "google/protobuf/message.h"
#include "trellis/server/v1/admin.grpc.pb.h"

namespace trellis::cmd {

namespace v1 = ::trellis::server::v1;
using Args = std::vector<std::string>;

inline constexpr int kUsageExit = 2;
inline constexpr int kFailExit = 1;

// Prints "Error: <msg>" on one line and returns kFailExit.
int Fail(std::ostream& err, const std::string& msg);

// Go's name for `code`; "Unknown" for a number outside the gRPC range.
const char* CodeName(grpc::StatusCode code);

// Shared by every admin command: where the server is and how to print.
struct ClientFlags {
  std::string socket_path = kDefaultServerSocketPath;
  std::string output = "pretty";
  void Add(FlagSet& fs, bool with_output);
};

// The Admin API stub on the server's Unix socket, with the per-call deadline and the error
// wording operators see.
class AdminClient {
 public:
  explicit AdminClient(const std::string& socket_path);
  v1::Admin::Stub* operator->() { return stub_.get(); }
  std::unique_ptr<grpc::ClientContext> Context() const;
  std::string Describe(const grpc::Status& st) const;

 private:
  std::string socket_path_;
  std::unique_ptr<v1::Admin::Stub> stub_;
};

// Runs the flag parser for one command; returns an exit code to stop with, or -1 to go on.
// `usage` follows "Usage: trellis-server " in the help text.
int ParseOrExit(FlagSet& fs, const Args& args, const std::string& usage, std::ostream& out,
                std::ostream& err);

// INVALID_ARGUMENT unless -output is pretty or json.
absl::Status CheckOutput(const std::string& output);

// ParseOrExit, then CheckOutput of `cf.output`: an exit code to stop with, or -1 to go on.
int ParseClientOrExit(FlagSet& fs, const ClientFlags& cf, const Args& args,
                      const std::string& usage, std::ostream& out, std::ostream& err);

// Parses each "type:value" of `texts` onto `out`; the first bad one is the error.
absl::Status AddSelectors(const std::vector<std::string>& texts,
                          google::protobuf::RepeatedPtrField<v1::Selector>* out);

// "Error: failed to <what>: <Go code name>: <message>" for one failed batch item; kFailExit.
int FailItem(std::ostream& err, const std::string& what, const v1::Status& item);

// `response` as JSON for -output json; otherwise what `pretty` prints.
void PrintResponse(const std::string& output, const google::protobuf::Message& response,
                   std::ostream& out, const std::function<void()>& pretty);

// `<group> count` (usage text `usage`): one count call, printed as JSON or "<count> <noun>".
template <typename Response, typename Call>
int CountCommand(const Args& args, const std::string& usage, const std::string& noun, Call call,
                 std::ostream& out, std::ostream& err) {
  FlagSet fs;
  ClientFlags cf;
  cf.Add(fs, true);
  if (int rc = ParseClientOrExit(fs, cf, args, usage, out, err); rc >= 0) return rc;
  AdminClient client(cf.socket_path);
  Response resp;
  auto ctx = client.Context();
  grpc::Status st = call(client, ctx.get(), &resp);
  if (!st.ok()) return Fail(err, client.Describe(st));
  PrintResponse(cf.output, resp, out, [&] { out << resp.count() << " " << noun << "\n"; });
  return 0;
}

// Proto3 JSON with proto field names and every primitive field printed.
std::string ToJson(const google::protobuf::Message& m);

// A Unix time in Go's time format.
std::string FormatUnix(int64_t seconds);

// `trellis-server <group> <command>`: dispatches to the named command, or prints the group's
// usage for -h and for a missing or unknown command.
using Handler = std::function<int(const Args&, std::ostream&, std::ostream&)>;
int Group(const std::string& group, const std::vector<std::pair<std::string, Handler>>& subs,
          const Args& args, std::ostream& out, std::ostream& err);

}  // namespace trellis::cmd
