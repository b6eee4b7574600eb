// Workload API latency against a real trellis-agent: FetchX509SVID first-message latency over
// the Unix socket next to a plain gRPC service on a Unix socket answering the same message
// (the floor, same run), again with 1,000 workload streams open, and the time a rotation takes
// to reach all 1,000 open streams. Targets: p50 <= 1.3 x floor; p99 < 1 ms with 1,000 streams
// open; rotation fan-out < 50 ms.
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
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "bench/bench_deployment.h"
#include "grpcpp/grpcpp.h"
#include "workload.grpc.pb.h"
#include "workload.pb.h"

namespace trellis::bench {
namespace {

constexpr int kSamples = 2000;
constexpr int kWarmup = 100;
constexpr int kOpenStreams = 1000;
constexpr int kChannels = 25;  // 40 streams per connection, as if from 25 processes
constexpr double kRatioTarget = 1.3;
constexpr double kP99TargetUs = 1000;
constexpr double kFanoutTargetMs = 50;
constexpr int kRotationTtlSeconds = 30;

using Clock = std::chrono::steady_clock;

double Micros(Clock::duration d) {
  return std::chrono::duration<double, std::micro>(d).count();
}

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

Percentiles Measure(SpiffeWorkloadAPI::Stub& stub, bool header, const char* what) {
  X509SVIDResponse msg;
  double us;
  for (int i = 0; i < kWarmup; ++i) {
    if (!FirstMessage(stub, header, &msg, &us)) Die(std::string(what) + ": no first message");
  }
  std::vector<double> samples;
  samples.reserve(kSamples);
  for (int i = 0; i < kSamples; ++i) {
    if (!FirstMessage(stub, header, &msg, &us)) Die(std::string(what) + ": no first message");
    samples.push_back(us);
  }
  std::sort(samples.begin(), samples.end());
  return {samples[samples.size() / 2], samples[samples.size() * 99 / 100]};
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

  // The spread between the first and the last stream receiving one rotated leaf, for a leaf
  // that every stream received as an update (not as its first message); nullopt until then.
  std::optional<double> RotationFanoutMs() {
    std::lock_guard<std::mutex> lock(mu_);
    for (const auto& [leaf, times] : updates_) {
      if (times.size() < static_cast<size_t>(kOpenStreams) || first_leaves_.count(leaf)) {
        continue;
      }
      auto [lo, hi] = std::minmax_element(times.begin(), times.end());
      return Micros(*hi - *lo) / 1000.0;
    }
    return std::nullopt;
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
          first_leaves_.insert(leaf);
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
  std::set<std::string> first_leaves_;                            // guarded by mu_
  std::map<std::string, std::vector<Clock::time_point>> updates_;  // guarded by mu_
};

int Main() {
  rlimit nofile;
  getrlimit(RLIMIT_NOFILE, &nofile);
  nofile.rlim_cur = nofile.rlim_max;
  setrlimit(RLIMIT_NOFILE, &nofile);

  Deployment d("wlbench");
  d.StartServer();
  d.StartAgent();
  std::string uid = std::to_string(getuid());
  d.ServerCli({"entry", "create", "-parentID", d.agent_id(), "-spiffeID",
               "spiffe://example.org/bench/workload", "-selector", "unix:uid:" + uid,
               "-x509SVIDTTL", std::to_string(kRotationTtlSeconds)});

  auto agent_stub = SpiffeWorkloadAPI::NewStub(UnixChannel(d.agent_socket()));
  X509SVIDResponse real;
  double us;
  if (!WaitFor([&] { return FirstMessage(*agent_stub, true, &real, &us) && real.svids_size(); },
               absl::Seconds(60))) {
    Die("the agent never served an SVID\n" + d.Logs());
  }

  // The floor: the same message from a plain gRPC service on a Unix socket.
  std::string echo_socket = d.dir() + "/echo.sock";
  EchoService echo(real);
  grpc::ServerBuilder builder;
  builder.AddListeningPort("unix:" + echo_socket, grpc::InsecureServerCredentials());
  builder.RegisterService(&echo);
  std::unique_ptr<grpc::Server> echo_server = builder.BuildAndStart();
  if (!echo_server) Die("cannot start the echo server");
  auto echo_stub = SpiffeWorkloadAPI::NewStub(UnixChannel(echo_socket));

  std::printf("FetchX509SVID first message, %d samples each, message %zu bytes\n", kSamples,
              real.ByteSizeLong());
  Percentiles floor = Measure(*echo_stub, false, "echo");
  Percentiles agent = Measure(*agent_stub, true, "agent");
  std::printf("  echo floor (plain gRPC, Unix socket):  p50 %7.1f us  p99 %7.1f us\n", floor.p50,
              floor.p99);
  std::printf("  trellis-agent, idle:                   p50 %7.1f us  p99 %7.1f us\n", agent.p50,
              agent.p99);
  std::printf("  ratio p50 agent/echo: %.2f (target <= %.1f) %s\n", agent.p50 / floor.p50,
              kRatioTarget, agent.p50 / floor.p50 <= kRatioTarget ? "PASS" : "MISS");

  OpenStreams open(d.agent_socket());
  if (!WaitFor([&] { return open.WithFirstMessage() + open.Failed() >= kOpenStreams; },
               absl::Seconds(120))) {
    Die(absl::StrCat("only ", open.WithFirstMessage(), " of ", kOpenStreams,
                     " streams got a first message"));
  }
  if (open.Failed() > 0) Die(absl::StrCat(open.Failed(), " streams failed to open"));
  Percentiles loaded = Measure(*agent_stub, true, "agent with open streams");
  std::printf("  trellis-agent, %d streams open:      p50 %7.1f us  p99 %7.1f us\n", kOpenStreams,
              loaded.p50, loaded.p99);
  std::printf("  ratio p50 agent/echo: %.2f; p99 %.1f us (target < %.0f us) %s\n",
              loaded.p50 / floor.p50, loaded.p99, kP99TargetUs,
              loaded.p99 < kP99TargetUs ? "PASS" : "MISS");

  // The SVID has a short TTL: the agent rotates it at about half-life and pushes the new one.
  std::optional<double> fanout;
  if (!WaitFor([&] { return (fanout = open.RotationFanoutMs()).has_value(); },
               absl::Seconds(3 * kRotationTtlSeconds))) {
    Die("no rotation reached every open stream\n" + d.Logs());
  }
  double fanout_ms = *fanout;
  std::printf("Rotation pushed to %d open streams: first to last %.2f ms (target < %.0f ms) %s\n",
              kOpenStreams, fanout_ms, kFanoutTargetMs,
              fanout_ms < kFanoutTargetMs ? "PASS" : "MISS");
  echo_server->Shutdown();
  return 0;
}

}  // namespace
}  // namespace trellis::bench

int main() { return trellis::bench::Main(); }
