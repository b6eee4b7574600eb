// trellis-agent run / healthcheck / api ...: flag parsing and output in SPIRE's shapes.
#include "cmd/agent_commands.h"

#include <google/protobuf/util/json_util.h>
#include <grpcpp/grpcpp.h>
#include <sys/stat.h>

#include <chrono>
#include <cstdlib>

#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "cmd/cli_text.h"
#include "cmd/flag_set.h"
#include "common/bundle.h"
#include "common/config/agent_config.h"
#include "common/file_util.h"
#include "common/keys.h"
#include "common/x509.h"
#include "runtime/agent_runtime.h"
#include "workload.grpc.pb.h"

namespace trellis::cmd {
namespace {

constexpr char kDefaultSocket[] = "/tmp/spire-agent/public/api.sock";

// Parses `args` into `flags`; returns -1 to continue, else an exit code (help or error).
int Parse(const std::string& usage_line, FlagSet& flags, const std::vector<std::string>& args,
          std::ostream& out, std::ostream& err) {
  auto usage = [&](std::ostream& os) {
    os << "Usage: " << usage_line << "\n\n";
    flags.PrintTable(os);
  };
  if (absl::Status st = flags.Parse(args); !st.ok()) {
    err << "Error: " << OneLine(std::string(st.message())) << "\n";
    usage(err);
    return 2;
  }
  if (flags.help_requested()) {
    usage(out);
    return 0;
  }
  return -1;
}

// "rpc error: code = PermissionDenied desc = ..." as Go clients print it.
std::string RpcError(const grpc::Status& st) {
  int code = static_cast<int>(st.error_code());
  const char* known = GoCodeName(code);
  std::string name = known != nullptr ? known : absl::StrCat("Code(", code, ")");
  return absl::StrCat("rpc error: code = ", name, " desc = ", st.error_message());
}

int Fail(std::ostream& err, const std::string& message) {
  err << "Error: " << OneLine(message) << "\n";
  return 1;
}

// -socketPath wins, then SPIFFE_ENDPOINT_SOCKET (unix:///path or unix:/path), then SPIRE's
// default.
std::string ResolveSocket(const std::string& flag) {
  if (!flag.empty()) return flag;
  if (const char* env = std::getenv("SPIFFE_ENDPOINT_SOCKET"); env && *env) {
    std::string v(env);
    if (absl::StartsWith(v, "unix://")) return v.substr(7);
    if (absl::StartsWith(v, "unix:")) return v.substr(5);
    return v;
  }
  return kDefaultSocket;
}

std::unique_ptr<SpiffeWorkloadAPI::Stub> Connect(const std::string& socket) {
  return SpiffeWorkloadAPI::NewStub(
      grpc::CreateChannel("unix://" + socket, grpc::InsecureChannelCredentials()));
}

void PrepareContext(grpc::ClientContext* ctx, absl::Duration timeout) {
  ctx->AddMetadata("workload.spiffe.io", "true");
  if (timeout > absl::ZeroDuration()) ctx->set_deadline(absl::ToChronoTime(absl::Now() + timeout));
}

std::string ElapsedString(absl::Duration d) {
  return absl::StrCat(absl::ToDoubleMilliseconds(d), "ms");
}

// ---- run ----

int RunRun(const std::vector<std::string>& args, std::ostream& out, std::ostream& err) {
  FlagSet flags(FlagSet::Syntax::kLongOptions);
  std::string config_path = "conf/agent/agent.conf", join_token;
  bool expand_env = false;
  flags.String("config", &config_path, "Path to the agent configuration file");
  flags.String("joinToken", &join_token, "Join token to attest with (overrides agent.join_token)");
  flags.Bool("expandEnv", &expand_env, "Expand $VAR and ${VAR} in the configuration file");
  if (int rc = Parse("trellis-agent run [-config FILE] [-joinToken T] [-expandEnv]", flags, args,
                     out, err);
      rc >= 0) {
    return rc;
  }
  auto config = common::config::LoadAgentConfig(config_path, expand_env);
  if (!config.ok()) return Fail(err, std::string(config.status().message()));

  runtime::Agent::Options options;
  options.pipeline.join_token = join_token;
  absl::Status run =
      runtime::RunAgentUntilSignal(std::move(*config), options, [&](const runtime::Agent& agent) {
        out << "Agent is running; Workload API at " << agent.socket_path() << "\n" << std::flush;
      });
  if (!run.ok()) return Fail(err, std::string(run.message()));
  return 0;
}

// ---- healthcheck ----

int RunHealthcheck(const std::vector<std::string>& args, std::ostream& out, std::ostream& err) {
  FlagSet flags(FlagSet::Syntax::kLongOptions);
  std::string socket;
  bool shallow = false, verbose = false;
  flags.String("socketPath", &socket, "Path to the Workload API socket");
  flags.Bool("shallow", &shallow, "Only check that the socket accepts connections");
  flags.Bool("verbose", &verbose, "Print details");
  if (int rc = Parse("trellis-agent healthcheck [-socketPath P] [-shallow]", flags, args, out, err);
      rc >= 0) {
    return rc;
  }
  socket = ResolveSocket(socket);
  struct stat st;
  if (stat(socket.c_str(), &st) != 0 || !S_ISSOCK(st.st_mode)) {
    return Fail(err, "Agent is unhealthy: no Workload API socket at " + socket);
  }
  auto channel = grpc::CreateChannel("unix://" + socket, grpc::InsecureChannelCredentials());
  if (!channel->WaitForConnected(std::chrono::system_clock::now() + std::chrono::seconds(5))) {
    return Fail(err, "Agent is unhealthy: cannot connect to " + socket);
  }
  if (!shallow) {
    // Any answer from the Workload API (even "no identity for you") means it is serving.
    auto stub = SpiffeWorkloadAPI::NewStub(channel);
    grpc::ClientContext ctx;
    PrepareContext(&ctx, absl::Seconds(5));
    auto reader = stub->FetchX509Bundles(&ctx, X509BundlesRequest());
    X509BundlesResponse resp;
    bool got = reader->Read(&resp);
    ctx.TryCancel();
    grpc::Status st = reader->Finish();
    if (!got && (st.error_code() == grpc::StatusCode::UNAVAILABLE ||
                 st.error_code() == grpc::StatusCode::DEADLINE_EXCEEDED)) {
      return Fail(err, "Agent is unhealthy: " + st.error_message());
    }
  }
  out << "Agent is healthy.\n";
  return 0;
}

// ---- api ----

void PrintX509(const X509SVIDResponse& resp, absl::Duration elapsed, std::ostream& out) {
  out << "Received " << resp.svids_size() << " svid after " << ElapsedString(elapsed) << "\n";
  for (const auto& svid : resp.svids()) {
    out << "\nSPIFFE ID:\t\t" << svid.spiffe_id() << "\n";
    if (!svid.hint().empty()) out << "Hint:\t\t\t" << svid.hint() << "\n";
    auto chain = common::Certificate::ChainFromDer(svid.x509_svid());
    if (chain.ok() && !chain->empty()) {
      out << "SVID Valid After:\t" << GoTime(chain->front().not_before()) << "\n";
      out << "SVID Valid Until:\t" << GoTime(chain->front().not_after()) << "\n";
      for (size_t i = 1; i < chain->size(); ++i) {
        out << "Intermediate #" << i << " Valid After:\t" << GoTime((*chain)[i].not_before())
            << "\n";
        out << "Intermediate #" << i << " Valid Until:\t" << GoTime((*chain)[i].not_after())
            << "\n";
      }
    }
    auto cas = common::Certificate::ChainFromDer(svid.bundle());
    if (cas.ok()) {
      for (size_t i = 0; i < cas->size(); ++i) {
        out << "CA #" << i + 1 << " Valid After:\t" << GoTime((*cas)[i].not_before()) << "\n";
        out << "CA #" << i + 1 << " Valid Until:\t" << GoTime((*cas)[i].not_after()) << "\n";
      }
    }
  }
  out << std::flush;
}

absl::Status WriteX509(const X509SVIDResponse& resp, const std::string& dir) {
  if (mkdir(dir.c_str(), 0755) != 0 && errno != EEXIST) {
    return absl::FailedPreconditionError("cannot create " + dir);
  }
  for (int i = 0; i < resp.svids_size(); ++i) {
    const auto& svid = resp.svids(i);
    auto chain = common::Certificate::ChainFromDer(svid.x509_svid());
    if (!chain.ok()) return chain.status();
    auto key = common::PrivateKey::FromPkcs8Der(svid.x509_svid_key());
    if (!key.ok()) return key.status();
    auto key_pem = key->ToPem();
    if (!key_pem.ok()) return key_pem.status();
    auto bundle = common::Certificate::ChainFromDer(svid.bundle());
    if (!bundle.ok()) return bundle.status();
    std::string base = absl::StrCat(dir, "/");
    absl::Status s = common::WriteFileAtomic(absl::StrCat(base, "svid.", i, ".pem"),
                                             common::Certificate::ChainToPem(*chain), 0644);
    if (s.ok())
      s = common::WriteFileAtomic(absl::StrCat(base, "svid.", i, ".key"), key_pem->view(), 0600);
    if (s.ok()) {
      s = common::WriteFileAtomic(absl::StrCat(base, "bundle.", i, ".pem"),
                                  common::Certificate::ChainToPem(*bundle), 0644);
    }
    if (!s.ok()) return s;
    int j = 0;
    for (const auto& [td, der] : resp.federated_bundles()) {
      auto fed = common::Certificate::ChainFromDer(der);
      if (!fed.ok()) return fed.status();
      s = common::WriteFileAtomic(absl::StrCat(base, "federated_bundle.", i, ".", j++, ".pem"),
                                  common::Certificate::ChainToPem(*fed), 0644);
      if (!s.ok()) return s;
    }
  }
  return absl::OkStatus();
}

int RunFetchX509(const std::vector<std::string>& args, std::ostream& out, std::ostream& err) {
  FlagSet flags(FlagSet::Syntax::kLongOptions);
  std::string socket, write_dir;
  bool silent = false;
  int64_t timeout_s = 5;
  flags.String("socketPath", &socket, "Path to the Workload API socket");
  flags.String("write", &write_dir, "Write the SVIDs, keys and bundles to this directory");
  flags.Bool("silent", &silent, "Suppress stdout");
  flags.Int("timeout", &timeout_s, "Seconds to wait for a response");
  if (int rc = Parse("trellis-agent api fetch x509 [-socketPath P] [-write DIR] [-silent]", flags,
                     args, out, err);
      rc >= 0) {
    return rc;
  }
  auto stub = Connect(ResolveSocket(socket));
  grpc::ClientContext ctx;
  PrepareContext(&ctx, absl::Seconds(timeout_s));
  absl::Time start = absl::Now();
  auto reader = stub->FetchX509SVID(&ctx, X509SVIDRequest());
  X509SVIDResponse resp;
  if (!reader->Read(&resp)) {
    grpc::Status st = reader->Finish();
    return Fail(err, RpcError(st));
  }
  absl::Duration elapsed = absl::Now() - start;
  ctx.TryCancel();
  reader->Finish();
  if (!silent) PrintX509(resp, elapsed, out);
  if (!write_dir.empty()) {
    if (absl::Status s = WriteX509(resp, write_dir); !s.ok()) {
      return Fail(err, std::string(s.message()));
    }
    if (!silent) out << "Writing SVID #0 to file " << write_dir << "/svid.0.pem.\n";
  }
  return 0;
}

int RunFetchJwt(const std::vector<std::string>& args, std::ostream& out, std::ostream& err) {
  FlagSet flags(FlagSet::Syntax::kLongOptions);
  std::string socket, spiffe_id;
  std::vector<std::string> audience;
  int64_t timeout_s = 5;
  flags.String("socketPath", &socket, "Path to the Workload API socket");
  flags.Strings("audience", &audience, "Audience (repeatable, or comma-separated)");
  flags.String("spiffeID", &spiffe_id, "Only the JWT-SVID of this SPIFFE ID");
  flags.Int("timeout", &timeout_s, "Seconds to wait for a response");
  if (int rc = Parse("trellis-agent api fetch jwt -audience A [-spiffeID S] [-socketPath P]", flags,
                     args, out, err);
      rc >= 0) {
    return rc;
  }
  JWTSVIDRequest req;
  for (const auto& a : audience) {
    for (absl::string_view part : absl::StrSplit(a, ',', absl::SkipEmpty())) {
      req.add_audience(std::string(part));
    }
  }
  if (req.audience().empty()) return Fail(err, "audience must be specified");
  req.set_spiffe_id(spiffe_id);
  auto stub = Connect(ResolveSocket(socket));
  JWTSVIDResponse resp;
  {
    grpc::ClientContext ctx;
    PrepareContext(&ctx, absl::Seconds(timeout_s));
    grpc::Status st = stub->FetchJWTSVID(&ctx, req, &resp);
    if (!st.ok()) {
      return Fail(err, RpcError(st));
    }
  }
  for (const auto& svid : resp.svids()) {
    out << "token(" << svid.spiffe_id() << "):\n\t" << svid.svid() << "\n";
  }
  grpc::ClientContext bctx;
  PrepareContext(&bctx, absl::Seconds(timeout_s));
  auto reader = stub->FetchJWTBundles(&bctx, JWTBundlesRequest());
  JWTBundlesResponse bundles;
  if (reader->Read(&bundles)) {
    for (const auto& [td, jwks] : bundles.bundles()) {
      out << "bundle(" << td << "):\n\t" << jwks << "\n";
    }
  }
  bctx.TryCancel();
  reader->Finish();
  return 0;
}

int RunValidateJwt(const std::vector<std::string>& args, std::ostream& out, std::ostream& err) {
  FlagSet flags(FlagSet::Syntax::kLongOptions);
  std::string socket, audience, token;
  int64_t timeout_s = 5;
  flags.String("socketPath", &socket, "Path to the Workload API socket");
  flags.String("audience", &audience, "Expected audience");
  flags.String("svid", &token, "The JWT-SVID to validate");
  flags.Int("timeout", &timeout_s, "Seconds to wait for a response");
  if (int rc = Parse("trellis-agent api validate jwt -audience A -svid T [-socketPath P]", flags,
                     args, out, err);
      rc >= 0) {
    return rc;
  }
  if (audience.empty()) return Fail(err, "audience must be specified");
  if (token.empty()) return Fail(err, "svid must be specified");
  auto stub = Connect(ResolveSocket(socket));
  ValidateJWTSVIDRequest req;
  req.set_audience(audience);
  req.set_svid(token);
  ValidateJWTSVIDResponse resp;
  grpc::ClientContext ctx;
  PrepareContext(&ctx, absl::Seconds(timeout_s));
  grpc::Status st = stub->ValidateJWTSVID(&ctx, req, &resp);
  if (!st.ok()) {
    return Fail(err, RpcError(st));
  }
  std::string claims;
  google::protobuf::util::JsonPrintOptions opts;
  (void)google::protobuf::util::MessageToJsonString(resp.claims(), &claims, opts);
  out << "SVID is valid.\nSPIFFE ID : " << resp.spiffe_id() << "\nClaims    : " << claims << "\n";
  return 0;
}

int RunWatch(const std::vector<std::string>& args, std::ostream& out, std::ostream& err) {
  FlagSet flags(FlagSet::Syntax::kLongOptions);
  std::string socket;
  flags.String("socketPath", &socket, "Path to the Workload API socket");
  if (int rc = Parse("trellis-agent api watch [-socketPath P]", flags, args, out, err);
      rc >= 0) {
    return rc;
  }
  auto stub = Connect(ResolveSocket(socket));
  grpc::ClientContext ctx;
  PrepareContext(&ctx, absl::ZeroDuration());
  absl::Time start = absl::Now();
  auto reader = stub->FetchX509SVID(&ctx, X509SVIDRequest());
  X509SVIDResponse resp;
  while (reader->Read(&resp)) {
    PrintX509(resp, absl::Now() - start, out);
    out << "\n" << std::flush;
    start = absl::Now();
  }
  grpc::Status st = reader->Finish();
  return Fail(err, RpcError(st));
}

int RunApi(const std::vector<std::string>& args, std::ostream& out, std::ostream& err) {
  auto usage = [](std::ostream& os) {
    os << "Usage: trellis-agent api <fetch x509|fetch jwt|validate jwt|watch> [flags]\n";
  };
  if (args.empty()) {
    usage(err);
    return 2;
  }
  std::vector<std::string> rest(args.begin() + 1, args.end());
  if (args[0] == "watch") return RunWatch(rest, out, err);
  if ((args[0] == "fetch" || args[0] == "validate") && !rest.empty()) {
    std::string kind = rest[0];
    std::vector<std::string> flags(rest.begin() + 1, rest.end());
    if (args[0] == "fetch" && kind == "x509") return RunFetchX509(flags, out, err);
    if (args[0] == "fetch" && kind == "jwt") return RunFetchJwt(flags, out, err);
    if (args[0] == "validate" && kind == "jwt") return RunValidateJwt(flags, out, err);
  }
  if (args[0] == "fetch" && rest.empty()) return RunFetchX509({}, out, err);
  err << "Error: unknown api command \"" << OneLine(absl::StrJoin(args, " ")) << "\"\n";
  usage(err);
  return 2;
}

}  // namespace

bool IsAgentCommand(const std::string& command) {
  return command == "run" || command == "healthcheck" || command == "api" || command == "-h" ||
         command == "--help" || command == "-help" || command == "help";
}

int RunAgentCommand(const std::vector<std::string>& args, std::ostream& out, std::ostream& err) {
  std::vector<std::string> rest(args.begin() + 1, args.end());
  if (args[0] != "run" && args[0] != "healthcheck" && args[0] != "api") {
    out << "Usage: trellis-agent <command> [flags]\n\n"
        << "Commands:\n"
        << "  run                 Run the agent (-config FILE [-joinToken T] [-expandEnv])\n"
        << "  validate            Check an agent configuration file\n"
        << "  healthcheck         Check that the Workload API answers [-shallow]\n"
        << "  api fetch x509      Fetch X509-SVIDs [-write DIR] [-silent]\n"
        << "  api fetch jwt       Fetch JWT-SVIDs -audience A [-spiffeID S]\n"
        << "  api validate jwt    Validate a JWT-SVID -audience A -svid T\n"
        << "  api watch           Print every X509-SVID update\n\n"
        << "Every api command and healthcheck take -socketPath (default: SPIFFE_ENDPOINT_SOCKET,\n"
        << "then " << kDefaultSocket << ").\n";
    return 0;
  }
  if (args[0] == "run") return RunRun(rest, out, err);
  if (args[0] == "healthcheck") return RunHealthcheck(rest, out, err);
  return RunApi(rest, out, err);
}

}  // namespace trellis::cmd
