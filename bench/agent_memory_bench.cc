// Resident memory of a real trellis-agent: idle (attested, serving one workload SVID), per
// cached SVID (1,000 more entries for the same workload, delta / 1,000), and per SVID beyond
// those (up to 10,000: each one more, once the one-time growth is paid). Targets: 15 MB idle,
// 1 KB per SVID. The floor printed next to it is this benchmark's own gRPC client process, measured
// in the same run: the cost of merely linking gRPC and OpenSSL. Most of an idle agent's RSS is
// shared library pages, so private memory (USS) and PSS are printed beside RSS, each against
// the same figure of the floor process; the private-memory target is 2x the floor's.
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>

#include "absl/strings/str_cat.h"
#include "bench/bench_deployment.h"
#include "grpcpp/grpcpp.h"
#include "trellis/server/v1/admin.grpc.pb.h"
#include "workload.grpc.pb.h"

namespace trellis::bench {
namespace {

constexpr int kEntries = 1000;
constexpr int kMoreEntries = 10000;  // then up to this many, for the cost of each one more
constexpr int kBatch = 100;
constexpr double kIdleTargetMiB = 15;
constexpr double kPerSvidTargetKiB = 1;

int SvidCount(SpiffeWorkloadAPI::Stub& stub) {
  grpc::ClientContext ctx;
  ctx.AddMetadata("workload.spiffe.io", "true");
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(20));
  auto reader = stub.FetchX509SVID(&ctx, X509SVIDRequest());
  X509SVIDResponse msg;
  int n = reader->Read(&msg) ? msg.svids_size() : -1;
  ctx.TryCancel();
  reader->Finish();
  return n;
}

// Median of a few readings a short while apart: RSS moves as allocator arenas settle.
long SettledRssKib(pid_t pid) {
  long readings[5];
  for (long& r : readings) {
    r = RssKib(pid);
    usleep(200 * 1000);
  }
  std::sort(std::begin(readings), std::end(readings));
  return readings[2];
}

int Main() {
  Deployment d("membench");
  d.StartServer();
  d.StartAgent();
  std::string selector = "unix:uid:" + std::to_string(getuid());
  d.ServerCli({"entry", "create", "-parentID", d.agent_id(), "-spiffeID",
               "spiffe://example.org/bench/idle", "-selector", selector});

  grpc::ChannelArguments args;
  args.SetMaxReceiveMessageSize(512 << 20);
  auto workload = SpiffeWorkloadAPI::NewStub(grpc::CreateCustomChannel(
      "unix:" + d.agent_socket(), grpc::InsecureChannelCredentials(), args));
  if (!WaitFor([&] { return SvidCount(*workload) == 1; }, absl::Seconds(60))) {
    Die("the agent never served the first SVID\n" + d.Logs());
  }
  long idle = SettledRssKib(d.agent_pid());
  long self = RssKib(getpid());
  SharedAwareMemory idle_mem = MemoryOf(d.agent_pid());
  SharedAwareMemory self_mem = MemoryOf(getpid());

  auto admin = trellis::server::v1::Admin::NewStub(
      grpc::CreateChannel("unix:" + d.admin_socket(), grpc::InsecureChannelCredentials()));
  // Wait on the agent's own "minted N workload SVID(s)" log lines rather than fetching: a
  // FetchX509SVID answer with thousands of SVIDs would itself grow the agent's heap.
  auto minted = [&] {
    std::string log = d.AgentLog();
    long total = 0;
    for (size_t pos = log.find("minted "); pos != std::string::npos;
         pos = log.find("minted ", pos + 1)) {
      total += std::strtol(log.c_str() + pos + 7, nullptr, 10);
    }
    return total;
  };
  // Entries [first, last) for this process's uid, then waits until every SVID is minted.
  auto add_and_mint = [&](int first, int last) {
    for (int begin = first; begin < last; begin += kBatch) {
      trellis::server::v1::BatchCreateEntryRequest req;
      for (int i = begin; i < begin + kBatch && i < last; ++i) {
        auto* e = req.add_entries();
        e->set_spiffe_id(absl::StrCat("spiffe://example.org/bench/svid-", i));
        e->set_parent_id(d.agent_id());
        auto* s = e->add_selectors();
        s->set_type("unix");
        s->set_value(selector.substr(5));
      }
      trellis::server::v1::BatchCreateEntryResponse resp;
      grpc::ClientContext ctx;
      grpc::Status st = admin->BatchCreateEntry(&ctx, req, &resp);
      if (!st.ok()) Die("BatchCreateEntry: " + st.error_message());
      for (const auto& r : resp.results()) {
        if (r.status().code() != 0) Die("BatchCreateEntry item: " + r.status().message());
      }
    }
    if (!WaitFor([&] { return minted() >= last + 1; }, absl::Seconds(300))) {
      Die(absl::StrCat("the agent minted ", minted(), " SVIDs, expected ", last + 1, "\n",
                       d.Logs()));
    }
  };
  auto start = absl::Now();
  add_and_mint(0, kEntries);
  double seconds = absl::ToDoubleSeconds(absl::Now() - start);
  long loaded = SettledRssKib(d.agent_pid());
  SharedAwareMemory loaded_mem = MemoryOf(d.agent_pid());
  // Then the cost of each SVID beyond those, with one-time growth (allocator arenas, gRPC
  // buffers sized by the first large messages) already paid.
  auto start_more = absl::Now();
  add_and_mint(kEntries, kMoreEntries);
  double seconds_more = absl::ToDoubleSeconds(absl::Now() - start_more);
  long loaded_more = SettledRssKib(d.agent_pid());
  SharedAwareMemory loaded_more_mem = MemoryOf(d.agent_pid());
  // Then check the workload really holds them all (this fetch may grow the heap further).
  int served = SvidCount(*workload);
  if (served != kMoreEntries + 1) {
    Die(absl::StrCat("the agent serves ", served, " SVIDs, expected ", kMoreEntries + 1));
  }
  long after_fetch = RssKib(d.agent_pid());

  double idle_mib = idle / 1024.0;
  double per_svid_kib = static_cast<double>(loaded - idle) / kEntries;
  std::printf("trellis-agent resident memory (VmRSS)\n");
  std::printf("  floor: this gRPC client process             %8.1f MiB\n", self / 1024.0);
  std::printf("  idle, one SVID cached                       %8.1f MiB (target %.0f MB) %s\n",
              idle_mib, kIdleTargetMiB, idle_mib <= kIdleTargetMiB ? "PASS" : "MISS");
  std::printf("  with %d more SVIDs cached                 %8.1f MiB\n", kEntries, loaded / 1024.0);
  std::printf("  per cached SVID                             %8.2f KiB (target %.0f KB) %s\n",
              per_svid_kib, kPerSvidTargetKiB, per_svid_kib <= kPerSvidTargetKiB ? "PASS" : "MISS");
  const double marginal_kib =
      static_cast<double>(loaded_more - loaded) / (kMoreEntries - kEntries);
  std::printf("  with %d SVIDs cached                     %8.1f MiB\n", kMoreEntries,
              loaded_more / 1024.0);
  std::printf("  each SVID from %d to %d                 %8.2f KiB (target %.0f KB) %s\n",
              kEntries, kMoreEntries, marginal_kib, kPerSvidTargetKiB,
              marginal_kib <= kPerSvidTargetKiB ? "PASS" : "MISS");
  std::printf("  after fetching all %d SVIDs once        %8.1f MiB\n", kMoreEntries + 1,
              after_fetch / 1024.0);
  std::printf(
      "  ratio idle agent / client floor: %.2f; %d SVIDs minted in %.1f s, %d more in %.1f s\n",
      static_cast<double>(idle) / self, kEntries, seconds, kMoreEntries - kEntries, seconds_more);
  const double uss_ratio =
      self_mem.uss_kib > 0 ? static_cast<double>(idle_mem.uss_kib) / self_mem.uss_kib : 0;
  const double per_svid_private_kib =
      static_cast<double>(loaded_mem.uss_kib - idle_mem.uss_kib) / kEntries;
  std::printf("private memory (USS) and PSS, from smaps_rollup\n");
  std::printf("  floor: this gRPC client process      USS %7.1f MiB  PSS %7.1f MiB\n",
              self_mem.uss_kib / 1024.0, self_mem.pss_kib / 1024.0);
  std::printf("  idle agent                           USS %7.1f MiB  PSS %7.1f MiB\n",
              idle_mem.uss_kib / 1024.0, idle_mem.pss_kib / 1024.0);
  std::printf("  ratio idle agent USS / floor USS: %.2f (target 2) %s\n", uss_ratio,
              uss_ratio <= 2 ? "PASS" : "MISS");
  std::printf("  per cached SVID, private: %.2f KiB (target %.0f KB) %s\n", per_svid_private_kib,
              kPerSvidTargetKiB, per_svid_private_kib <= kPerSvidTargetKiB ? "PASS" : "MISS");
  const double marginal_private_kib =
      static_cast<double>(loaded_more_mem.uss_kib - loaded_mem.uss_kib) / (kMoreEntries - kEntries);
  std::printf("  each SVID from %d to %d, private: %.2f KiB (target %.0f KB) %s\n", kEntries,
              kMoreEntries, marginal_private_kib, kPerSvidTargetKiB,
              marginal_private_kib <= kPerSvidTargetKiB ? "PASS" : "MISS");
  return idle_mib <= kIdleTargetMiB && per_svid_kib <= kPerSvidTargetKiB ? 0 : 2;
}

}  // namespace
}  // namespace trellis::bench

int main() { return trellis::bench::Main(); }
