// Load generator: N agents played against one real trellis-server through the real agent API
// over mTLS. Each agent is attested with its own join token (the server signs its SVID and
// stores its node), holds a WatchChanges stream and calls SyncAuthorizedEntries every 5 s; M
// entries are spread over the agents. Reports sync latency, minting throughput, server CPU,
// RSS and threads from /proc, datastore transactions per steady-state sync (from the server's
// metrics), the cost of a write with 0 and N agents connected, how one changed entry reaches
// its agent and no other, and the entry index rebuild at start. Ratios are against floors
// measured in the same run: a lone agent's sync latency, the server's own base RSS and the
// write cost with no agent connected.
//
//   agent_load_bench                      1,000 agents / 10,000 entries, then 10,000 / 100,000
//   agent_load_bench AGENTS ENTRIES [SECONDS]
#include <sys/resource.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "bench/bench_deployment.h"
#include "common/bundle.h"
#include "common/csr.h"
#include "common/keys.h"
#include "common/x509.h"
#include "grpcpp/grpcpp.h"
#include "tests/telemetry/scrape_util.h"
#include "transport/spiffe_tls.h"
#include "trellis/server/v1/admin.grpc.pb.h"
#include "trellis/server/v1/agent.grpc.pb.h"

namespace trellis::bench {
namespace {

namespace v1 = trellis::server::v1;

constexpr absl::Duration kSyncInterval = absl::Seconds(5);
constexpr int kWrites = 1000;

template <typename T>
T OrDie(absl::StatusOr<T> v, const std::string& what) {
  if (!v.ok()) Die(what + ": " + v.status().ToString());
  return *std::move(v);
}

// One value of the server's Prometheus text output (0 when absent).
// A metric's value; a missing series ends the run, so a renamed metric cannot read as zero.
double Metric(int port, const std::string& name) {
  std::optional<double> v =
      telemetry::testing::SampleValue(telemetry::testing::Scrape(port), name, {});
  if (!v) {
    std::fprintf(stderr, "metric %s is not exported on port %d\n", name.c_str(), port);
    std::exit(1);
  }
  return *v;
}

// Progress on stderr, so a profiler can be attached to a phase.
void Phase(const std::string& what, pid_t server) {
  std::fprintf(stderr, "phase: %s (server pid %d)\n", what.c_str(), static_cast<int>(server));
  std::fflush(stderr);
}

// Items 0..n-1 spread over four client threads; each thread asks `make_worker` once for the
// function it calls per item (so it can hold a channel of its own).
void ParallelFor(int n, const std::function<std::function<void(int)>()>& make_worker) {
  std::atomic<int> next{0};
  std::vector<std::thread> workers;
  for (int w = 0; w < 4; ++w) {
    workers.emplace_back([&] {
      std::function<void(int)> work = make_worker();
      for (int i = next.fetch_add(1); i < n; i = next.fetch_add(1)) work(i);
    });
  }
  for (auto& t : workers) t.join();
}

struct Percentiles {
  double p50 = 0, p99 = 0, max = 0;
  size_t n = 0;
};
Percentiles Summarize(std::vector<double> ms) {
  Percentiles p;
  p.n = ms.size();
  if (ms.empty()) return p;
  std::sort(ms.begin(), ms.end());
  p.p50 = ms[ms.size() / 2];
  p.p99 = ms[std::min(ms.size() - 1, ms.size() * 99 / 100)];
  p.max = ms.back();
  return p;
}

class SimAgent;

// Sync latencies and counts shared by every simulated agent.
struct Recorder {
  absl::Mutex mu;
  std::vector<double> sync_ms ABSL_GUARDED_BY(mu);
  std::atomic<int64_t> syncs_ok{0}, syncs_failed{0}, in_flight{0};
  void Add(double ms) {
    absl::MutexLock lock(&mu);
    sync_ms.push_back(ms);
  }
  std::vector<double> Take() {
    absl::MutexLock lock(&mu);
    return std::exchange(sync_ms, {});
  }
};

// One agent: its mTLS channel, its watch stream (callback API) and its sync state.
class SimAgent : public grpc::ClientReadReactor<v1::ChangeNotice> {
 public:
  SimAgent(std::string id, std::shared_ptr<grpc::Channel> channel)
      : id_(std::move(id)), stub_(v1::Agent::NewStub(channel)) {}

  const std::string& id() const { return id_; }
  v1::Agent::Stub* stub() { return stub_.get(); }
  int64_t notices() const { return notices_.load(); }
  int64_t last_notice_ns() const { return last_notice_ns_.load(); }
  bool done() const { return done_.load(); }

  void StartWatch() {
    stub_->async()->WatchChanges(&watch_ctx_, &watch_req_, this);
    StartRead(&notice_);
    StartCall();
  }
  void StopWatch() { watch_ctx_.TryCancel(); }
  void OnReadDone(bool ok) override {
    if (!ok) return;
    last_notice_ns_ = absl::GetCurrentTimeNanos();
    notices_.fetch_add(1);
    StartRead(&notice_);
  }
  void OnDone(const grpc::Status&) override { done_ = true; }

  // One SyncAuthorizedEntries with what this agent holds; skipped while one is in flight.
  void Sync(Recorder* rec) {
    if (syncing_.exchange(true)) return;
    struct Call {
      grpc::ClientContext ctx;
      v1::SyncAuthorizedEntriesRequest req;
      v1::SyncAuthorizedEntriesResponse resp;
      absl::Time start;
    };
    auto* call = new Call;
    call->ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
    {
      absl::MutexLock lock(&mu_);
      for (const auto& [id, rev] : known_) (*call->req.mutable_known_revisions())[id] = rev;
      call->req.set_bundle_sequence(bundle_sequence_);
    }
    call->start = absl::Now();
    rec->in_flight.fetch_add(1);
    stub_->async()->SyncAuthorizedEntries(
        &call->ctx, &call->req, &call->resp, [this, call, rec](grpc::Status st) {
          double ms = absl::ToDoubleMilliseconds(absl::Now() - call->start);
          if (st.ok()) {
            absl::MutexLock lock(&mu_);
            for (const auto& e : call->resp.changed()) known_[e.id()] = e.revision_number();
            for (const auto& id : call->resp.removed_ids()) known_.erase(id);
            if (call->resp.has_bundle()) bundle_sequence_ = call->resp.bundle().sequence_number();
          }
          rec->Add(ms);
          (st.ok() ? rec->syncs_ok : rec->syncs_failed).fetch_add(1);
          rec->in_flight.fetch_sub(1);
          delete call;
          syncing_ = false;
        });
  }
  std::vector<std::string> KnownIds() {
    absl::MutexLock lock(&mu_);
    std::vector<std::string> out;
    for (const auto& [id, rev] : known_) out.push_back(id);
    return out;
  }

 private:
  const std::string id_;
  std::unique_ptr<v1::Agent::Stub> stub_;
  grpc::ClientContext watch_ctx_;
  v1::WatchChangesRequest watch_req_;
  v1::ChangeNotice notice_;
  std::atomic<int64_t> notices_{0};
  std::atomic<int64_t> last_notice_ns_{0};
  std::atomic<bool> done_{false};
  std::atomic<bool> syncing_{false};
  absl::Mutex mu_;
  std::map<std::string, int64_t> known_ ABSL_GUARDED_BY(mu_);
  uint64_t bundle_sequence_ ABSL_GUARDED_BY(mu_) = 0;
};

struct Figures {
  int agents = 0, entries = 0;
  double attest_per_s = 0;
  double entries_per_s = 0;
  Percentiles idle_sync, loaded_sync;
  double svids_per_s = 0, svids_per_server_cpu_s = 0;
  double server_cores = 0;
  long rss_base_kib = 0, rss_attested_kib = 0, rss_connected_kib = 0, rss_loaded_kib = 0,
       rss_restart_kib = 0;
  long threads = 0;
  double ds_tx_per_sync = 0;
  double writes_per_s_0 = 0, cpu_ms_per_write_0 = 0;
  double writes_per_s_n = 0, cpu_ms_per_write_n = 0;
  double change_reach_ms = -1;
  int64_t unaffected_notices = -1;
  long index_load_ms = -1;
};

// kWrites single-entry creates through the admin API for a parent that is no agent: nobody's
// view changes, so the cost should not depend on who is connected.
std::pair<double, double> MeasureWrites(v1::Admin::Stub* admin, pid_t server,
                                        const std::string& tag) {
  double cpu0 = ProcessCpuSeconds(server);
  absl::Time start = absl::Now();
  for (int i = 0; i < kWrites; ++i) {
    v1::BatchCreateEntryRequest req;
    auto* e = req.add_entries();
    e->set_parent_id("spiffe://example.org/bench/nobody");
    e->set_spiffe_id(absl::StrCat("spiffe://example.org/bench/write-", tag, "-", i));
    auto* sel = e->add_selectors();
    sel->set_type("unix");
    sel->set_value("uid:1");
    v1::BatchCreateEntryResponse resp;
    grpc::ClientContext ctx;
    grpc::Status st = admin->BatchCreateEntry(&ctx, req, &resp);
    if (!st.ok() || resp.results(0).status().code() != 0) Die("single write failed");
  }
  double wall = absl::ToDoubleSeconds(absl::Now() - start);
  double cpu = ProcessCpuSeconds(server) - cpu0;
  return {kWrites / wall, cpu * 1000 / kWrites};
}

Figures Run(int n_agents, int n_entries, int steady_seconds) {
  Figures f;
  f.agents = n_agents;
  f.entries = n_entries;
  Deployment d(absl::StrCat("loadbench", n_agents));
  const int metrics_port = FreePort();
  d.StartServer("",
                absl::StrCat("telemetry {\n  Prometheus {\n    host = \"127.0.0.1\"\n"
                             "    port = ",
                             metrics_port, "\n  }\n}\n"),
                "INFO");
  f.rss_base_kib = RssKib(d.server_pid());
  auto admin = v1::Admin::NewStub(
      grpc::CreateChannel("unix:" + d.admin_socket(), grpc::InsecureChannelCredentials()));
  auto td = OrDie(common::TrustDomain::Parse("example.org"), "trust domain");
  auto server_id = OrDie(common::SpiffeId::Parse("spiffe://example.org/spire/server"), "id");
  auto bundle = std::make_shared<const common::Bundle>(OrDie(
      common::BundleFromPem(td, d.ServerCli({"bundle", "show", "-format", "pem"})), "bundle"));
  transport::BundleSource bundle_source = [bundle] { return bundle; };
  const std::string address = absl::StrCat("127.0.0.1:", d.port());

  // Join tokens first: an agent's ID is fixed by its token, so entries can name it now.
  std::vector<std::string> tokens;
  for (int i = 0; i < n_agents; ++i) {
    v1::CreateJoinTokenRequest req;
    req.set_ttl(3600);
    v1::CreateJoinTokenResponse resp;
    grpc::ClientContext ctx;
    grpc::Status st = admin->CreateJoinToken(&ctx, req, &resp);
    if (!st.ok()) Die("CreateJoinToken: " + st.error_message());
    tokens.push_back(resp.token());
  }
  auto agent_id = [&](int i) { return "spiffe://example.org/spire/agent/join_token/" + tokens[i]; };

  // Entries spread evenly over the agents, loaded in batches of 1,000.
  {
    absl::Time start = absl::Now();
    for (int base = 0; base < n_entries; base += 1000) {
      v1::BatchCreateEntryRequest req;
      for (int i = base; i < std::min(n_entries, base + 1000); ++i) {
        auto* e = req.add_entries();
        e->set_parent_id(agent_id(i % n_agents));
        e->set_spiffe_id(absl::StrCat("spiffe://example.org/workload/", i));
        auto* sel = e->add_selectors();
        sel->set_type("unix");
        sel->set_value(absl::StrCat("uid:", 1000 + i / n_agents));
      }
      v1::BatchCreateEntryResponse resp;
      grpc::ClientContext ctx;
      grpc::Status st = admin->BatchCreateEntry(&ctx, req, &resp);
      if (!st.ok()) Die("BatchCreateEntry: " + st.error_message());
      for (const auto& r : resp.results()) {
        if (r.status().code() != 0) Die("BatchCreateEntry item: " + r.status().message());
      }
    }
    f.entries_per_s = n_entries / absl::ToDoubleSeconds(absl::Now() - start);
  }

  auto [w0, c0] = MeasureWrites(admin.get(), d.server_pid(), "idle");
  f.writes_per_s_0 = w0;
  f.cpu_ms_per_write_0 = c0;

  Phase("attestation", d.server_pid());
  // Attestation: each agent its own key and join token, over a few anonymous channels.
  std::vector<std::unique_ptr<SimAgent>> agents(n_agents);
  {
    absl::Time start = absl::Now();
    ParallelFor(n_agents, [&]() -> std::function<void(int)> {
      std::shared_ptr<v1::Agent::Stub> anon = v1::Agent::NewStub(grpc::CreateChannel(
          address, transport::SpiffeClientCredentials(std::nullopt, bundle_source, server_id)));
      return [&, anon](int i) {
        auto key = OrDie(common::PrivateKey::Generate(common::KeyType::kEcP256), "key");
        grpc::ClientContext ctx;
        auto stream = anon->AttestAgent(&ctx);
        v1::AttestAgentRequest req;
        req.mutable_params()->mutable_data()->set_type("join_token");
        req.mutable_params()->mutable_data()->set_payload(tokens[i]);
        req.mutable_params()->set_csr(OrDie(common::BuildCsr(key), "CSR"));
        v1::AttestAgentResponse resp;
        if (!stream->Write(req)) Die("AttestAgent: write failed");
        stream->WritesDone();
        if (!stream->Read(&resp) || !resp.has_result()) Die("AttestAgent: no result");
        grpc::Status st = stream->Finish();
        if (!st.ok()) Die("AttestAgent: " + st.error_message());
        std::string chain;
        for (const auto& der : resp.result().svid().cert_chain()) {
          chain += OrDie(common::Certificate::FromDer(der), "SVID").ToPem();
        }
        transport::TlsIdentity identity{chain, std::string(OrDie(key.ToPem(), "key PEM").view())};
        grpc::ChannelArguments args;
        args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
        auto channel = grpc::CreateCustomChannel(
            address, transport::SpiffeClientCredentials(identity, bundle_source, server_id), args);
        agents[i] = std::make_unique<SimAgent>(agent_id(i), channel);
      };
    });
    f.attest_per_s = n_agents / absl::ToDoubleSeconds(absl::Now() - start);
  }

  f.rss_attested_kib = RssKib(d.server_pid());
  // Floor: one agent syncing alone, nothing else connected.
  Recorder rec;
  for (int i = 0; i < 200; ++i) {
    agents[0]->Sync(&rec);
    WaitFor([&] { return rec.in_flight.load() == 0; }, absl::Seconds(30));
  }
  f.idle_sync = Summarize(rec.Take());

  // Every agent opens its watch stream and receives its first notice.
  for (auto& a : agents) a->StartWatch();
  if (!WaitFor(
          [&] {
            for (auto& a : agents) {
              if (a->notices() == 0) return false;
            }
            return true;
          },
          absl::Seconds(300))) {
    Die("not every watch stream got its first notice\n" + d.Logs());
  }
  f.rss_connected_kib = RssKib(d.server_pid());
  // First sync: every agent downloads its entries.
  for (auto& a : agents) a->Sync(&rec);
  WaitFor([&] { return rec.in_flight.load() == 0; }, absl::Seconds(300));
  rec.Take();

  Phase("minting", d.server_pid());
  // Minting: each agent asks for an SVID per entry, one batch each (one CSR reused: the
  // server takes only its public key).
  {
    auto key = OrDie(common::PrivateKey::Generate(common::KeyType::kEcP256), "key");
    std::string csr = OrDie(common::BuildCsr(key), "CSR");
    std::atomic<int64_t> minted{0};
    double cpu0 = ProcessCpuSeconds(d.server_pid());
    absl::Time start = absl::Now();
    ParallelFor(n_agents, [&]() -> std::function<void(int)> {
      return [&](int i) {
        v1::BatchNewX509SVIDRequest req;
        for (const auto& id : agents[i]->KnownIds()) {
          auto* p = req.add_params();
          p->set_entry_id(id);
          p->set_csr(csr);
        }
        if (req.params_size() == 0) return;
        v1::BatchNewX509SVIDResponse resp;
        grpc::ClientContext ctx;
        grpc::Status st = agents[i]->stub()->BatchNewX509SVID(&ctx, req, &resp);
        if (!st.ok()) Die("BatchNewX509SVID: " + st.error_message());
        for (const auto& r : resp.results()) {
          if (r.code() == 0) minted.fetch_add(1);
        }
      };
    });
    double wall = absl::ToDoubleSeconds(absl::Now() - start);
    double cpu = ProcessCpuSeconds(d.server_pid()) - cpu0;
    if (minted.load() != n_entries) {
      Die(absl::StrCat("minted ", minted.load(), " SVIDs for ", n_entries, " entries"));
    }
    f.svids_per_s = minted.load() / wall;
    f.svids_per_server_cpu_s = cpu > 0 ? minted.load() / cpu : 0;
  }

  // Steady state: every agent syncs every 5 s, spread evenly over the interval.
  Phase("steady state", d.server_pid());
  {
    double tx0 = Metric(metrics_port, "trellis_server_datastore_transactions_total");
    int64_t ok0 = rec.syncs_ok.load();
    double cpu0 = ProcessCpuSeconds(d.server_pid());
    absl::Time start = absl::Now();
    absl::Time end = start + absl::Seconds(steady_seconds);
    int64_t issued = 0;
    while (absl::Now() < end) {
      double elapsed = absl::ToDoubleSeconds(absl::Now() - start);
      auto due = static_cast<int64_t>(elapsed / absl::ToDoubleSeconds(kSyncInterval) * n_agents);
      for (; issued < due; ++issued) agents[issued % n_agents]->Sync(&rec);
      absl::SleepFor(absl::Milliseconds(2));  // pacing of the generator, not a wait on a result
    }
    WaitFor([&] { return rec.in_flight.load() == 0; }, absl::Seconds(60));
    double wall = absl::ToDoubleSeconds(absl::Now() - start);
    f.server_cores = (ProcessCpuSeconds(d.server_pid()) - cpu0) / wall;
    f.rss_loaded_kib = RssKib(d.server_pid());
    f.threads = ProcStatusValue(d.server_pid(), "Threads");
    int64_t syncs = rec.syncs_ok.load() - ok0;
    double tx = Metric(metrics_port, "trellis_server_datastore_transactions_total") - tx0;
    f.ds_tx_per_sync = syncs > 0 ? tx / syncs : -1;
    f.loaded_sync = Summarize(rec.Take());
    if (rec.syncs_failed.load() > 0) {
      std::printf("  warning: %lld syncs failed\n",
                  static_cast<long long>(rec.syncs_failed.load()));
    }
  }

  Phase("writes with agents connected", d.server_pid());
  auto [wn, cn] = MeasureWrites(admin.get(), d.server_pid(), "connected");
  f.writes_per_s_n = wn;
  f.cpu_ms_per_write_n = cn;

  // One entry of one agent changes: that agent hears of it; no other agent hears anything.
  {
    const int target = n_agents / 2;
    std::vector<int64_t> before;
    for (auto& a : agents) before.push_back(a->notices());
    std::vector<std::string> ids = agents[target]->KnownIds();
    if (ids.empty()) Die("the target agent holds no entry");
    v1::GetEntryRequest get;
    get.set_id(ids.front());
    v1::Entry entry;
    {
      grpc::ClientContext ctx;
      if (!admin->GetEntry(&ctx, get, &entry).ok()) Die("GetEntry failed");
    }
    entry.set_x509_svid_ttl(1800);
    v1::BatchUpdateEntryRequest req;
    *req.add_entries() = entry;
    v1::BatchUpdateEntryResponse resp;
    absl::Time start = absl::Now();
    {
      grpc::ClientContext ctx;
      grpc::Status st = admin->BatchUpdateEntry(&ctx, req, &resp);
      if (!st.ok() || resp.results(0).status().code() != 0) Die("BatchUpdateEntry failed");
    }
    if (WaitFor([&] { return agents[target]->notices() > before[target]; }, absl::Seconds(30))) {
      f.change_reach_ms =
          static_cast<double>(agents[target]->last_notice_ns() - absl::ToUnixNanos(start)) / 1e6;
    }
    // Give any stray notice time to arrive, then count them.
    absl::SleepFor(absl::Seconds(2));
    f.unaffected_notices = 0;
    for (int i = 0; i < n_agents; ++i) {
      if (i != target) f.unaffected_notices += agents[i]->notices() - before[i];
    }
  }

  for (auto& a : agents) a->StopWatch();
  WaitFor(
      [&] {
        for (auto& a : agents) {
          if (!a->done()) return false;
        }
        return true;
      },
      absl::Seconds(60));
  agents.clear();

  // Cache rebuild: a restart loads every entry and node from the datastore.
  d.StopServer();
  d.StartServer("", "", "INFO");
  f.rss_restart_kib = RssKib(d.server_pid());
  std::ifstream log(d.dir() + "/server.log");
  std::string line;
  while (std::getline(log, line)) {
    if (line.find("Loaded the entry index") == std::string::npos) continue;
    size_t at = line.find("took_ms=");
    if (at != std::string::npos) f.index_load_ms = std::strtol(line.c_str() + at + 8, nullptr, 10);
  }
  d.StopServer();
  return f;
}

void Print(const Figures& f) {
  std::printf("\n%d agents, %d entries (one real trellis-server on SQLite, generator beside it)\n",
              f.agents, f.entries);
  std::printf("  entries loaded through BatchCreateEntry: %.0f entries/s\n", f.entries_per_s);
  std::printf("  attestation (join token, mTLS): %.0f agents/s\n", f.attest_per_s);
  std::printf("  sync latency, lone agent (floor): p50 %.2f ms  p99 %.2f ms\n", f.idle_sync.p50,
              f.idle_sync.p99);
  std::printf(
      "  sync latency, every agent every 5 s: p50 %.2f ms  p99 %.2f ms  max %.2f ms"
      "  (%zu syncs)\n",
      f.loaded_sync.p50, f.loaded_sync.p99, f.loaded_sync.max, f.loaded_sync.n);
  std::printf("  ratio loaded p99 / floor p50: %.2f   (target p99 < 50 ms)\n",
              f.idle_sync.p50 > 0 ? f.loaded_sync.p99 / f.idle_sync.p50 : 0);
  std::printf("  server CPU in steady state: %.3f cores   (target < 1)\n", f.server_cores);
  std::printf("  server threads: %ld\n", f.threads);
  std::printf("  datastore transactions per steady-state sync: %.4f   (target 0)\n",
              f.ds_tx_per_sync);
  std::printf("  minting: %.0f SVIDs/s wall, %.0f SVIDs per server CPU-second\n", f.svids_per_s,
              f.svids_per_server_cpu_s);
  std::printf(
      "  server RSS: base %.1f MiB, agents attested %.1f MiB, watches open %.1f MiB,"
      " loaded %.1f MiB, after restart %.1f MiB\n",
      f.rss_base_kib / 1024.0, f.rss_attested_kib / 1024.0, f.rss_connected_kib / 1024.0,
      f.rss_loaded_kib / 1024.0, f.rss_restart_kib / 1024.0);
  std::printf(
      "  per connected agent (watch open, before minting): %.1f KiB\n",
      f.agents > 0 ? static_cast<double>(f.rss_connected_kib - f.rss_attested_kib) / f.agents : 0);
  std::printf("  memory per entry after restart (nodes included): %.0f bytes   (target <= 1024)\n",
              f.entries > 0 ? (f.rss_restart_kib - f.rss_base_kib) * 1024.0 / f.entries : 0);
  std::printf("  entry index rebuild at start: %ld ms   (target < 1000)\n", f.index_load_ms);
  std::printf("  %d single writes, no agent connected: %.0f writes/s, %.3f ms server CPU each\n",
              kWrites, f.writes_per_s_0, f.cpu_ms_per_write_0);
  std::printf("  %d single writes, %d agents connected: %.0f writes/s, %.3f ms server CPU each\n",
              kWrites, f.agents, f.writes_per_s_n, f.cpu_ms_per_write_n);
  std::printf("  ratio CPU per write connected / none: %.2f   (target ~1)\n",
              f.cpu_ms_per_write_0 > 0 ? f.cpu_ms_per_write_n / f.cpu_ms_per_write_0 : 0);
  std::printf(
      "  one entry changed: its agent notified in %.1f ms (target < 1000); "
      "notices to the other %d agents: %lld (target 0)\n",
      f.change_reach_ms, f.agents - 1, static_cast<long long>(f.unaffected_notices));
}

int Main(int argc, char** argv) {
  // As in the binaries: Abseil's lock-order graph is a test aid, and costs CPU the server
  // shares with this generator.
  absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);
  // Every agent holds a connection: raise the descriptor limit for us and the server child.
  rlimit lim{};
  if (getrlimit(RLIMIT_NOFILE, &lim) == 0) {
    lim.rlim_cur = lim.rlim_max;
    setrlimit(RLIMIT_NOFILE, &lim);
  }
  std::vector<std::pair<int, int>> runs = {{1000, 10000}, {10000, 100000}};
  int seconds = 20;
  if (argc >= 3) runs = {{std::atoi(argv[1]), std::atoi(argv[2])}};
  if (argc >= 4) seconds = std::atoi(argv[3]);
  for (auto [n, m] : runs) {
    if (n <= 0 || m < n)
      Die("usage: agent_load_bench [AGENTS ENTRIES [SECONDS]], ENTRIES >= AGENTS");
    if (static_cast<rlim_t>(n) + 200 > lim.rlim_cur) {
      Die(absl::StrCat("open-file limit ", lim.rlim_cur, " is too low for ", n, " agents"));
    }
    Print(Run(n, m, seconds));
  }
  return 0;
}

}  // namespace
}  // namespace trellis::bench

int main(int argc, char** argv) { return trellis::bench::Main(argc, argv); }
