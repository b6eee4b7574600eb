// trellis-server agent list|show|count|ban|evict: attested agents over the Admin API.
#include <ostream>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "cmd/admin_client.h"
#include "cmd/admin_commands.h"
#include "common/spiffe_id.h"

namespace trellis::cmd {
namespace {

void PrintAgent(const v1::AttestedNode& a, std::ostream& out) {
  out << "SPIFFE ID         : " << a.spiffe_id() << "\n";
  out << "Attestation type  : " << a.attestation_type() << "\n";
  out << "Expiration time   : " << FormatUnix(a.cert_not_after()) << "\n";
  out << "Serial number     : " << a.cert_serial_number() << "\n";
  out << "Can re-attest     : " << (a.can_reattest() ? "true" : "false") << "\n";
  if (a.banned()) out << "Banned            : true\n";
  for (const auto& s : a.selectors()) {
    out << "Selectors         : " << s.type() << ":" << s.value() << "\n";
  }
  out << "\n";
}

int AgentList(const Args& args, std::ostream& out, std::ostream& err) {
  FlagSet fs;
  ClientFlags cf;
  std::string attestation_type;
  std::vector<std::string> selectors;
  bool banned = false;
  cf.Add(fs, true);
  fs.String("attestationType", &attestation_type, "Filter by attestation type");
  fs.Strings("selector", &selectors,
             "A colon-delimited type:value selector. Can be used more than once");
  fs.Bool("banned", &banned, "Show only banned agents");
  if (int rc = ParseClientOrExit(fs, cf, args, "agent list [flags]", out, err); rc >= 0) return rc;
  AdminClient client(cf.socket_path);
  v1::ListAgentsRequest req;
  req.set_by_attestation_type(attestation_type);
  if (banned) req.set_by_banned(1);
  if (absl::Status st = AddSelectors(selectors, req.mutable_by_selectors()); !st.ok()) {
    return Fail(err, std::string(st.message()));
  }
  req.set_page_size(500);
  v1::ListAgentsResponse all;
  while (true) {
    v1::ListAgentsResponse page;
    auto ctx = client.Context();
    grpc::Status st = client->ListAgents(ctx.get(), req, &page);
    if (!st.ok()) return Fail(err, client.Describe(st));
    for (auto& a : *page.mutable_agents()) *all.add_agents() = std::move(a);
    if (page.next_page_token().empty()) break;
    req.set_page_token(page.next_page_token());
  }
  PrintResponse(cf.output, all, out, [&] {
    int n = all.agents_size();
    if (n == 0) {
      out << "No attested agents found\n";
      return;
    }
    out << "Found " << n << (n == 1 ? " attested agent" : " attested agents") << ":\n\n";
    for (const auto& a : all.agents()) PrintAgent(a, out);
  });
  return 0;
}

// show, ban and evict address one agent by SPIFFE ID.
int AgentById(const std::string& verb, const Args& args, std::ostream& out, std::ostream& err) {
  FlagSet fs;
  ClientFlags cf;
  std::string spiffe_id;
  cf.Add(fs, verb == "show");
  fs.String("spiffeID", &spiffe_id, "The SPIFFE ID of the agent");
  if (int rc = ParseClientOrExit(fs, cf, args, "agent " + verb + " -spiffeID ID", out, err);
      rc >= 0) {
    return rc;
  }
  if (spiffe_id.empty()) return Fail(err, "a SPIFFE ID is required");
  absl::StatusOr<common::SpiffeId> id = common::SpiffeId::Parse(spiffe_id);
  if (!id.ok()) return Fail(err, "invalid SPIFFE ID: " + std::string(id.status().message()));
  AdminClient client(cf.socket_path);
  v1::AgentIdRequest req;
  req.set_spiffe_id(spiffe_id);
  auto ctx = client.Context();
  if (verb == "show") {
    v1::AttestedNode resp;
    grpc::Status st = client->GetAgent(ctx.get(), req, &resp);
    if (!st.ok()) return Fail(err, client.Describe(st));
    PrintResponse(cf.output, resp, out, [&] {
      out << "Found an attested agent given its SPIFFE ID\n\n";
      PrintAgent(resp, out);
    });
    return 0;
  }
  v1::Empty resp;
  grpc::Status st = verb == "ban" ? client->BanAgent(ctx.get(), req, &resp)
                                  : client->EvictAgent(ctx.get(), req, &resp);
  if (!st.ok()) return Fail(err, client.Describe(st));
  out << (verb == "ban" ? "Agent banned successfully\n" : "Agent evicted successfully\n");
  return 0;
}

int AgentCount(const Args& args, std::ostream& out, std::ostream& err) {
  return CountCommand<v1::CountAgentsResponse>(
      args, "agent count", "attested agents",
      [](AdminClient& client, grpc::ClientContext* ctx, v1::CountAgentsResponse* resp) {
        return client->CountAgents(ctx, {}, resp);
      },
      out, err);
}

}  // namespace

SubCommand AttestedAgentCommands() {
  return {"agent", "Manage attested agents (list, show, count, ban, evict)",
          [](const Args& a, std::ostream& o, std::ostream& e) {
            auto by_id = [](const std::string& verb) {
              return [verb](const Args& x, std::ostream& y, std::ostream& z) {
                return AgentById(verb, x, y, z);
              };
            };
            return Group("agent",
                         {{"list", AgentList},
                          {"show", by_id("show")},
                          {"count", AgentCount},
                          {"ban", by_id("ban")},
                          {"evict", by_id("evict")}},
                         a, o, e);
          }};
}

}  // namespace trellis::cmd
