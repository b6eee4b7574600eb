// Workload API latency: the agent's WorkloadApiServer (unix workload attestation included),
// in process with a pre-filled cache, against a plain gRPC service answering the same message
// on a Unix socket (the floor, same run). FetchX509SVID first-message latency idle and with
// 1,000 workload streams open, and the time from publishing a rotated SVID to its arrival on
// all 1,000 streams. Targets: p50 <= 1.3 x floor; p99 < 1 ms with 1,000 streams open;
// rotation pushed to 1,000 streams in < 50 ms.
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "attestors/workload/unix_attestor.h"
#include "bench/bench_deployment.h"
#include "common/bundle.h"
#include "common/clock.h"
#include "common/keys.h"
#include "common/x509.h"
#include "grpcpp/grpcpp.h"
#include "workload.grpc.pb.h"
#include "workload.pb.h"
#include "agent/svid_cache.h"
#include "workload_api/identity_snapshot.h"
#include "workload_api/server.h"

namespace trellis::bench {
namespace {

constexpr int kSamples = 2000;
constexpr int kWarmup = 500;
constexpr int kOpenStreams = 1000;
constexpr int kChannels = 25;  // 40 streams per connection, as if from 25 processes
constexpr double kRatioTarget = 1.3;
constexpr double kP99TargetUs = 1000;
constexpr double kFanoutTargetMs = 50;

using Clock = std::chrono::steady_clock;

double Micros(Clock::duration d) { return std::chrono::duration<double, std::micro>(d).count(); }

// A plain gRPC server-streaming method that answers with a fixed message: the floor.
class EchoService final : public SpiffeWorkloadAPI::Service {
 public:
  explicit EchoService(X509SVIDResponse response) : response_(std::move(response)) {}
  grpc::Status FetchX509SVID(grpc::ServerContext*, const X509SVIDRequest*,
                             grpc::ServerWriter<X509SVIDResponse>* writer) override {
    writer->Write(response_);
    return grpc::Status::OK;
  }

 private:
  X509SVIDResponse response_;
};

std::shared_ptr<grpc::Channel> UnixChannel(const std::string& path, int index = 0) {
  grpc::ChannelArguments args;
  args.SetMaxReceiveMessageSize(256 << 20);
  // Distinct arguments keep channels on distinct connections.
  args.SetInt("trellis.bench.channel", index);
  return grpc::CreateCustomChannel("unix:" + path, grpc::InsecureChannelCredentials(), args);
}

// Time to the first FetchX509SVID message; the stream is then cancelled.
bool FirstMessage(SpiffeWorkloadAPI::Stub& stub, bool header, X509SVIDResponse* out,
                  double* micros) {
  grpc::ClientContext ctx;
  if (header) ctx.AddMetadata("workload.spiffe.io", "true");
  auto start = Clock::now();
  auto reader = stub.FetchX509SVID(&ctx, X509SVIDRequest());
  bool ok = reader->Read(out);
  *micros = Micros(Clock::now() - start);
  ctx.TryCancel();
  reader->Finish();
  return ok;
}

struct Percentiles {
  double p50, p99;
};

// Samples the floor and the Workload API in alternating blocks of kBlock calls, so load from
// other processes on the machine weighs on both alike while each side stays warm.
constexpr int kBlock = 50;
std::pair<Percentiles, Percentiles> MeasurePair(SpiffeWorkloadAPI::Stub& floor_stub,
                                                SpiffeWorkloadAPI::Stub& workload_stub) {
  X509SVIDResponse msg;
  double us;
  std::vector<double> floor_samples, workload_samples;
  for (int block = 0; block < (kWarmup + kSamples) / kBlock; ++block) {
    bool keep = block >= kWarmup / kBlock;
    for (int i = 0; i < kBlock; ++i) {
      if (!FirstMessage(floor_stub, false, &msg, &us)) Die("floor: no first message");
      if (keep) floor_samples.push_back(us);
    }
    for (int i = 0; i < kBlock; ++i) {
      if (!FirstMessage(workload_stub, true, &msg, &us)) Die("Workload API: no first message");
      if (keep) workload_samples.push_back(us);
    }
  }
  auto percentiles = [](std::vector<double>& v) {
    std::sort(v.begin(), v.end());
    return Percentiles{v[v.size() / 2], v[v.size() * 99 / 100]};
  };
  return {percentiles(floor_samples), percentiles(workload_samples)};
}

// kOpenStreams FetchX509SVID streams on an async completion queue; records, per stream, when
// a leaf different from its first one arrives.
class OpenStreams {
 public:
  explicit OpenStreams(const std::string& socket) {
    for (int c = 0; c < kChannels; ++c) {
      stubs_.push_back(SpiffeWorkloadAPI::NewStub(UnixChannel(socket, 1000 + c)));
    }
    for (int i = 0; i < kOpenStreams; ++i) {
      streams_.push_back(std::make_unique<Stream>());
      Stream& s = *streams_[i];
      s.ctx.AddMetadata("workload.spiffe.io", "true");
      s.reader = stubs_[i % kChannels]->PrepareAsyncFetchX509SVID(&s.ctx, X509SVIDRequest(), &cq_);
      s.reader->StartCall(&s);
    }
    pump_ = std::thread([this] { Pump(); });
  }

  ~OpenStreams() {
    for (auto& s : streams_) s->ctx.TryCancel();
    pump_.join();
  }

  int WithFirstMessage() const { return with_first_.load(); }
  int Failed() const { return failed_.load(); }

  // When the first and the last stream received `leaf` as an update; nullopt until every
  // stream has.
  std::optional<std::pair<Clock::time_point, Clock::time_point>> Arrivals(const std::string& leaf) {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = updates_.find(leaf);
    if (it == updates_.end() || it->second.size() < static_cast<size_t>(kOpenStreams)) {
      return std::nullopt;
    }
    auto [lo, hi] = std::minmax_element(it->second.begin(), it->second.end());
    return std::make_pair(*lo, *hi);
  }

 private:
  struct Stream {
    grpc::ClientContext ctx;
    std::unique_ptr<grpc::ClientAsyncReader<X509SVIDResponse>> reader;
    X509SVIDResponse msg;
    std::string last_leaf;
    bool started = false;
    bool finishing = false;
    grpc::Status status;
  };

  void Pump() {
    void* tag;
    bool ok;
    int finished = 0;
    while (finished < kOpenStreams && cq_.Next(&tag, &ok)) {
      Stream& s = *static_cast<Stream*>(tag);
      auto now = Clock::now();
      if (s.finishing) {
        ++finished;
        continue;
      }
      if (!ok) {
        if (!s.started) failed_++;
        s.finishing = true;
        s.reader->Finish(&s.status, &s);
        continue;
      }
      if (s.started) {
        std::string leaf = s.msg.svids_size() > 0 ? s.msg.svids(0).x509_svid() : "";
        std::lock_guard<std::mutex> lock(mu_);
        if (s.last_leaf.empty()) {
          with_first_++;
        } else if (leaf != s.last_leaf) {
          updates_[leaf].push_back(now);
        }
        s.last_leaf = leaf;
      }
      s.started = true;
      s.reader->Read(&s.msg, &s);
    }
    cq_.Shutdown();
    while (cq_.Next(&tag, &ok)) {
    }
  }

  std::vector<std::unique_ptr<SpiffeWorkloadAPI::Stub>> stubs_;
  grpc::CompletionQueue cq_;
  std::vector<std::unique_ptr<Stream>> streams_;
  std::thread pump_;
  std::atomic<int> with_first_{0};
  std::atomic<int> failed_{0};
  std::mutex mu_;
  std::map<std::string, std::vector<Clock::time_point>> updates_;  // guarded by mu_
};

template <typename T>
T OrDie(absl::StatusOr<T> v, const std::string& what) {
  if (!v.ok()) Die(what + ": " + v.status().ToString());
  return *std::move(v);
}

// A snapshot holding one entry for this process's uid with a freshly issued SVID.
workload_api::IdentitySnapshot Snapshot(const common::X509SvidIssuer& issuer,
                                     std::shared_ptr<const common::Bundle> bundle,
                                     const workload_api::CachedEntry& entry) {
  auto key = OrDie(common::PrivateKey::Generate(common::KeyType::kEcP256), "SVID key");
  std::string leaf =
      OrDie(issuer.IssueForPublicKey(key.public_key(),
                                     OrDie(common::SpiffeId::Parse(entry.spiffe_id()), "SPIFFE ID"),
                                     absl::Hours(1)),
            "SVID");
  common::SecretBytes pkcs8 = OrDie(key.ToPkcs8Der(), "PKCS#8");
  workload_api::CachedSvid svid(entry.id(), {leaf}, pkcs8.view());
  svid.not_before = absl::Now() - absl::Seconds(10);
  svid.not_after = absl::Now() + absl::Hours(1);
  svid.entry_revision = entry.revision();
  workload_api::IdentitySnapshot snap;
  snap.ready = true;
  snap.bundle = workload_api::RenderedBundle::Of(std::move(bundle));
  snap.entries.Put(std::make_shared<const workload_api::CachedEntry>(entry));
  snap.svids.Put(std::make_shared<const workload_api::CachedSvid>(std::move(svid)));
  return snap;
}

int Main() {
  // As in the agent binary: lock-order graphs cost a stack walk per lock.
  absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);
  rlimit nofile;
  getrlimit(RLIMIT_NOFILE, &nofile);
  nofile.rlim_cur = nofile.rlim_max;
  setrlimit(RLIMIT_NOFILE, &nofile);

  const common::Clock& clock = common::SystemClock::Get();
  auto td = OrDie(common::TrustDomain::Parse("example.org"), "trust domain");
  auto ca_key = OrDie(common::PrivateKey::Generate(common::KeyType::kEcP256), "CA key");
  auto ca = OrDie(common::CreateRootCa(ca_key, td, absl::Hours(24), clock), "CA");
  auto issuer = OrDie(common::X509SvidIssuer::Create(ca, ca_key, clock), "issuer");
  auto bundle_value = common::Bundle(td);
  if (!bundle_value.AddX509Authority(ca).ok()) Die("bundle");
  auto bundle = std::make_shared<const common::Bundle>(std::move(bundle_value));
  workload_api::CachedEntry entry{
      "bench-entry",
      OrDie(common::SpiffeId::Parse("spiffe://example.org/bench/workload"), "id"),
      {"unix:uid:" + std::to_string(getuid())},
      {},
      "",
      1,
      0,
      0};

  std::string dir = MakeTempDir("trellis-wlbench-");
  std::string agent_socket = dir + "/agent.sock";
  std::string echo_socket = dir + "/echo.sock";
  agent::SvidCache cache;
  cache.Publish(Snapshot(*issuer, bundle, entry));
  attestors::UnixWorkloadAttestor unix_attestor({});
  auto server = OrDie(workload_api::WorkloadApiServer::Start(
                          {agent_socket}, &cache, {&unix_attestor},
                          [](const workload_api::CachedEntry&,
                             const std::vector<std::string>&) -> absl::StatusOr<std::string> {
                            return absl::UnimplementedError("no JWT here");
                          },
                          clock),
                      "Workload API server");

  auto agent_stub = SpiffeWorkloadAPI::NewStub(UnixChannel(agent_socket));
  X509SVIDResponse real;
  double us;
  if (!FirstMessage(*agent_stub, true, &real, &us) || real.svids_size() != 1) {
    Die("the Workload API server did not serve the cached SVID");
  }

  // The floor: the same message from a plain gRPC service on a Unix socket.
  EchoService echo(real);
  grpc::ServerBuilder builder;
  builder.AddListeningPort("unix:" + echo_socket, grpc::InsecureServerCredentials());
  builder.RegisterService(&echo);
  std::unique_ptr<grpc::Server> echo_server = builder.BuildAndStart();
  if (!echo_server) Die("cannot start the echo server");
  auto echo_stub = SpiffeWorkloadAPI::NewStub(UnixChannel(echo_socket));

  std::printf(
      "FetchX509SVID first message, %d samples each (alternating blocks of 50), message %zu "
      "bytes\n",
      kSamples, real.ByteSizeLong());
  auto [floor, idle] = MeasurePair(*echo_stub, *agent_stub);
  std::printf("  floor: plain gRPC stream, Unix socket:  p50 %7.1f us  p99 %7.1f us\n", floor.p50,
              floor.p99);
  std::printf("  Workload API, idle:                    p50 %7.1f us  p99 %7.1f us\n", idle.p50,
              idle.p99);
  std::printf("  ratio p50 workload/floor: %.2f (target <= %.1f) %s\n", idle.p50 / floor.p50,
              kRatioTarget, idle.p50 / floor.p50 <= kRatioTarget ? "PASS" : "MISS");

  int status = 0;
  {
    OpenStreams open(agent_socket);
    if (!WaitFor([&] { return open.WithFirstMessage() + open.Failed() >= kOpenStreams; },
                 absl::Seconds(120))) {
      Die(absl::StrCat("only ", open.WithFirstMessage(), " of ", kOpenStreams,
                       " streams got a first message"));
    }
    if (open.Failed() > 0) Die(absl::StrCat(open.Failed(), " streams failed to open"));
    auto [floor2, loaded] = MeasurePair(*echo_stub, *agent_stub);
    std::printf("  floor again, alongside:                p50 %7.1f us  p99 %7.1f us\n", floor2.p50,
                floor2.p99);
    std::printf("  Workload API, %d streams open:       p50 %7.1f us  p99 %7.1f us\n", kOpenStreams,
                loaded.p50, loaded.p99);
    std::printf("  ratio p50 workload/floor: %.2f; p99 %.1f us (target < %.0f us) %s\n",
                loaded.p50 / floor2.p50, loaded.p99, kP99TargetUs,
                loaded.p99 < kP99TargetUs ? "PASS" : "MISS");
    if (loaded.p99 >= kP99TargetUs) status = 2;

    // Rotation: publish a new SVID for the entry and time its arrival on every stream.
    workload_api::IdentitySnapshot rotated = Snapshot(*issuer, bundle, entry);
    std::string new_leaf = std::string((*rotated.svids.begin())->leaf());
    auto published = Clock::now();
    cache.Publish(std::move(rotated));
    std::optional<std::pair<Clock::time_point, Clock::time_point>> arrivals;
    if (!WaitFor([&] { return (arrivals = open.Arrivals(new_leaf)).has_value(); },
                 absl::Seconds(60))) {
      Die("the rotated SVID did not reach every open stream");
    }
    double total_ms = Micros(arrivals->second - published) / 1000.0;
    double first_ms = Micros(arrivals->first - published) / 1000.0;
    std::printf(
        "Rotation pushed to %d open streams: first after %.2f ms, all after %.2f ms "
        "(target < %.0f ms) %s\n",
        kOpenStreams, first_ms, total_ms, kFanoutTargetMs,
        total_ms < kFanoutTargetMs ? "PASS" : "MISS");
    if (total_ms >= kFanoutTargetMs) status = 2;
  }
  if (idle.p50 / floor.p50 > kRatioTarget) status = 2;
  echo_server->Shutdown();
  server->Stop();
  RemoveTree(dir);
  return status;
}

}  // namespace
}  // namespace trellis::bench

int main() { return trellis::bench::Main(); }
