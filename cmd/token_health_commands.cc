// trellis-server healthcheck and token generate: the two single-call admin commands.
#include <algorithm>
#include <chrono>
#include <cstdint>
#include <ostream>
#include <string>
#include <vector>

#include "absl/strings/str_join.h"
#include "cmd/admin_client.h"
#include "cmd/admin_commands.h"
#include "common/spiffe_id.h"

namespace trellis::cmd {
namespace {

int TokenGenerate(const Args& args, std::ostream& out, std::ostream& err) {
  FlagSet fs;
  ClientFlags cf;
  std::string spiffe_id;
  int64_t ttl = 600;
  cf.Add(fs, true);
  fs.String("spiffeID", &spiffe_id, "Additional SPIFFE ID to assign the token owner (optional)");
  fs.Int("ttl", &ttl, "Token TTL in seconds");
  if (int rc =
          ParseClientOrExit(fs, cf, args, "token generate [-spiffeID ID] [-ttl 600]", out, err);
      rc >= 0) {
    return rc;
  }
  if (ttl <= 0 || ttl > INT32_MAX) return Fail(err, "-ttl must be a positive number of seconds");
  if (!spiffe_id.empty()) {
    absl::StatusOr<common::SpiffeId> id = common::SpiffeId::Parse(spiffe_id);
    if (!id.ok()) return Fail(err, "invalid SPIFFE ID: " + std::string(id.status().message()));
  }
  AdminClient client(cf.socket_path);
  v1::CreateJoinTokenRequest req;
  req.set_ttl(static_cast<int32_t>(ttl));
  req.set_spiffe_id(spiffe_id);
  v1::CreateJoinTokenResponse resp;
  auto ctx = client.Context();
  grpc::Status st = client->CreateJoinToken(ctx.get(), req, &resp);
  if (!st.ok()) return Fail(err, client.Describe(st));
  PrintResponse(cf.output, resp, out, [&] { out << "Token: " << resp.token() << "\n"; });
  return 0;
}

int Healthcheck(const Args& args, std::ostream& out, std::ostream& err) {
  FlagSet fs;
  ClientFlags cf;
  bool shallow = false, verbose = false;
  cf.Add(fs, false);
  fs.Bool("shallow", &shallow,
          "Perform a less stringent health check (only that the server "
          "answers)");
  fs.Bool("verbose", &verbose, "Print verbose information");
  if (int rc = ParseOrExit(fs, args, "healthcheck [-shallow] [-socketPath PATH]", out, err);
      rc >= 0) {
    return rc;
  }
  AdminClient client(cf.socket_path);
  v1::HealthResponse resp;
  auto ctx = client.Context();
  ctx->set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(5));
  grpc::Status st = client->Health(ctx.get(), {}, &resp);
  if (!st.ok()) return Fail(err, "server is unhealthy: " + client.Describe(st));
  if (!shallow && !resp.healthy()) {
    std::vector<std::string> details;
    for (const auto& [k, v] : resp.details()) details.push_back(k + "=" + v);
    std::sort(details.begin(), details.end());
    return Fail(err, "server is unhealthy: " + absl::StrJoin(details, " "));
  }
  if (verbose) {
    std::vector<std::string> details;
    for (const auto& [k, v] : resp.details()) details.push_back(k + ": " + v);
    std::sort(details.begin(), details.end());
    for (const auto& d : details) out << d << "\n";
  }
  out << "Server is healthy.\n";
  return 0;
}

}  // namespace

SubCommand HealthcheckCommand() {
  return {"healthcheck", "Check the health of a running server", Healthcheck};
}

SubCommand TokenCommands() {
  return {"token", "Generate join tokens (token generate)",
          [](const Args& a, std::ostream& o, std::ostream& e) {
            return Group("token", {{"generate", TokenGenerate}}, a, o, e);
          }};
}

}  // namespace trellis::cmd
