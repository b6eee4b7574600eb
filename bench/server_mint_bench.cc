// Batched X509-SVID minting end to end: a real trellis-server, an agent identity obtained by
// join-token attestation, and BatchNewX509SVID calls of 100 CSRs over mTLS. Reports SVIDs per
// server CPU-second (utime + stime from /proc/<pid>/stat) and the ratio to the in-process
// issuance floor (common::X509SvidIssuer on the same CSRs, same run).
#include <time.h>
#include <unistd.h>

#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "bench/bench_deployment.h"
#include "common/bundle.h"
#include "common/clock.h"
#include "common/csr.h"
#include "common/keys.h"
#include "common/x509.h"
#include "grpcpp/grpcpp.h"
#include "transport/spiffe_tls.h"
#include "trellis/server/v1/admin.grpc.pb.h"
#include "trellis/server/v1/agent.grpc.pb.h"

namespace trellis::bench {
namespace {

namespace v1 = trellis::server::v1;

constexpr int kBatchSize = 100;
constexpr double kWallSeconds = 8;

double ThreadCpuSeconds() {
  timespec ts;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) * 1e-9;
}

template <typename T>
T OrDie(absl::StatusOr<T> v, const std::string& what) {
  if (!v.ok()) Die(what + ": " + v.status().ToString());
  return *std::move(v);
}

std::string ChainPem(const google::protobuf::RepeatedPtrField<std::string>& ders) {
  std::string pem;
  for (const std::string& der : ders) {
    pem += OrDie(common::Certificate::FromDer(der), "agent SVID certificate").ToPem();
  }
  return pem;
}

int Main() {
  Deployment d("mintbench");
  d.StartServer();
  auto td = OrDie(common::TrustDomain::Parse("example.org"), "trust domain");
  auto server_id = OrDie(common::SpiffeId::Parse("spiffe://example.org/spire/server"), "id");
  std::string bundle_pem = d.ServerCli({"bundle", "show", "-format", "pem"});
  auto bundle = std::make_shared<const common::Bundle>(
      OrDie(common::BundleFromPem(td, bundle_pem), "bundle"));
  transport::BundleSource bundle_source = [bundle] { return bundle; };
  std::string address = absl::StrCat("127.0.0.1:", d.port());

  // Attest as an agent with a join token to get an agent SVID for mTLS.
  std::string out = d.ServerCli({"token", "generate", "-ttl", "600"});
  std::string token = out.substr(out.find("Token:") + 6);
  token.erase(0, token.find_first_not_of(" \t"));
  token = token.substr(0, token.find_first_of(" \t\r\n"));
  std::string agent_id = "spiffe://example.org/spire/agent/join_token/" + token;
  auto agent_key = OrDie(common::PrivateKey::Generate(common::KeyType::kEcP256), "agent key");
  v1::AttestAgentResponse attested;
  {
    auto channel = grpc::CreateChannel(
        address, transport::SpiffeClientCredentials(std::nullopt, bundle_source, server_id));
    auto stub = v1::Agent::NewStub(channel);
    grpc::ClientContext ctx;
    auto stream = stub->AttestAgent(&ctx);
    v1::AttestAgentRequest req;
    req.mutable_params()->mutable_data()->set_type("join_token");
    req.mutable_params()->mutable_data()->set_payload(token);
    req.mutable_params()->set_csr(OrDie(common::BuildCsr(agent_key), "agent CSR"));
    if (!stream->Write(req)) Die("AttestAgent: write failed");
    stream->WritesDone();
    if (!stream->Read(&attested) || !attested.has_result()) Die("AttestAgent: no result");
    grpc::Status st = stream->Finish();
    if (!st.ok()) Die("AttestAgent: " + st.error_message());
  }
  transport::TlsIdentity identity{ChainPem(attested.result().svid().cert_chain()),
                                  std::string(OrDie(agent_key.ToPem(), "agent key PEM").view())};

  // kBatchSize entries for this agent, one CSR each.
  auto admin = v1::Admin::NewStub(
      grpc::CreateChannel("unix:" + d.admin_socket(), grpc::InsecureChannelCredentials()));
  v1::BatchCreateEntryRequest create;
  for (int i = 0; i < kBatchSize; ++i) {
    auto* e = create.add_entries();
    e->set_spiffe_id(absl::StrCat("spiffe://example.org/bench/mint-", i));
    e->set_parent_id(agent_id);
    auto* s = e->add_selectors();
    s->set_type("unix");
    s->set_value(absl::StrCat("uid:", 10000 + i));
  }
  v1::BatchCreateEntryResponse created;
  {
    grpc::ClientContext ctx;
    grpc::Status st = admin->BatchCreateEntry(&ctx, create, &created);
    if (!st.ok()) Die("BatchCreateEntry: " + st.error_message());
  }
  std::vector<std::string> entry_ids, csrs;
  std::vector<common::SpiffeId> ids;
  for (const auto& r : created.results()) {
    if (r.status().code() != 0) Die("BatchCreateEntry item: " + r.status().message());
    entry_ids.push_back(r.entry().id());
    ids.push_back(OrDie(common::SpiffeId::Parse(r.entry().spiffe_id()), "entry id"));
    auto key = OrDie(common::PrivateKey::Generate(common::KeyType::kEcP256), "key");
    csrs.push_back(OrDie(common::BuildCsr(key), "CSR"));
  }
  v1::BatchNewX509SVIDRequest batch;
  for (int i = 0; i < kBatchSize; ++i) {
    auto* p = batch.add_params();
    p->set_entry_id(entry_ids[i]);
    p->set_csr(csrs[i]);
  }

  auto channel = grpc::CreateChannel(
      address, transport::SpiffeClientCredentials(identity, bundle_source, server_id));
  auto stub = v1::Agent::NewStub(channel);
  auto call = [&](int* minted) {
    grpc::ClientContext ctx;
    v1::BatchNewX509SVIDResponse resp;
    grpc::Status st = stub->BatchNewX509SVID(&ctx, batch, &resp);
    if (!st.ok()) Die("BatchNewX509SVID: " + st.error_message() + "\n" + d.Logs());
    for (const auto& r : resp.results()) {
      if (r.code() != 0) Die("BatchNewX509SVID item: " + r.message());
      ++*minted;
    }
  };
  // The index may lag the new entries by a poll: wait until a batch succeeds entirely.
  if (!WaitFor(
          [&] {
            grpc::ClientContext ctx;
            v1::BatchNewX509SVIDResponse resp;
            if (!stub->BatchNewX509SVID(&ctx, batch, &resp).ok()) return false;
            for (const auto& r : resp.results()) {
              if (r.code() != 0) return false;
            }
            return resp.results_size() == kBatchSize;
          },
          absl::Seconds(60))) {
    Die("BatchNewX509SVID never succeeded for all entries\n" + d.Logs());
  }
  int warm = 0;
  for (int i = 0; i < 3; ++i) call(&warm);

  int minted = 0;
  double cpu0 = ProcessCpuSeconds(d.server_pid());
  absl::Time start = absl::Now();
  while (absl::Now() - start < absl::Seconds(kWallSeconds)) call(&minted);
  double wall = absl::ToDoubleSeconds(absl::Now() - start);
  double server_cpu = ProcessCpuSeconds(d.server_pid()) - cpu0;

  // Floor: the same CSRs through the in-process issuer, single thread, CPU time.
  const common::Clock& clock = common::SystemClock::Get();
  auto ca_key = OrDie(common::PrivateKey::Generate(common::KeyType::kEcP256), "CA key");
  auto ca = OrDie(common::CreateRootCa(ca_key, td, absl::Hours(24), clock), "CA");
  auto issuer = OrDie(common::X509SvidIssuer::Create(ca, ca_key, clock), "issuer");
  int floor_n = 0;
  double t0 = ThreadCpuSeconds();
  while (ThreadCpuSeconds() - t0 < 1.0) {
    for (int i = 0; i < kBatchSize; ++i) {
      OrDie(issuer->IssueFromCsr(csrs[i], ids[i], absl::Hours(1)), "floor issuance");
    }
    floor_n += kBatchSize;
  }
  double floor_rate = floor_n / (ThreadCpuSeconds() - t0);

  double per_cpu = server_cpu > 0 ? minted / server_cpu : 0;
  std::printf("BatchNewX509SVID, %d CSRs per batch, over mTLS to a real trellis-server\n",
              kBatchSize);
  std::printf("  minted %d SVIDs in %.1f s wall (%.0f SVIDs/s), server CPU %.2f s\n", minted, wall,
              minted / wall, server_cpu);
  std::printf("  server:  %9.0f SVIDs per server CPU-second\n", per_cpu);
  std::printf("  floor:   %9.0f SVIDs per CPU-second (in-process X509SvidIssuer)\n", floor_rate);
  std::printf("  ratio server/floor: %.3f\n", per_cpu / floor_rate);
  return 0;
}

}  // namespace
}  // namespace trellis::bench

int main() { return trellis::bench::Main(); }
