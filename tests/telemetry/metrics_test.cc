// Telemetry: /metrics served on the configured address, per-RPC counters and histograms for
// sync, callback and streaming calls labelled by status code name, domain metrics, and the
// errors for unusable addresses.
#include "telemetry/metrics.h"

#include <dirent.h>
#include <grpcpp/grpcpp.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <memory>
#include <string>
#include <thread>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/telemetry/scrape_util.h"
#include "trellis/server/v1/admin.grpc.pb.h"
#include "workload.grpc.pb.h"

namespace trellis::telemetry {
namespace {

using ::testing::HasSubstr;
using ::testing::Optional;
using testing::SampleValue;
using testing::Scrape;
namespace v1 = ::trellis::server::v1;

common::config::TelemetryConfig LoopbackConfig(uint16_t port = 0) {
  common::config::TelemetryConfig config;
  config.prometheus = common::config::PrometheusConfig{"127.0.0.1", port};
  return config;
}

// Sync-API service: one method succeeds, one is refused.
class SyncAdmin : public v1::Admin::Service {
  grpc::Status CountEntries(grpc::ServerContext*, const v1::CountEntriesRequest*,
                            v1::CountEntriesResponse* resp) override {
    resp->set_count(3);
    return grpc::Status::OK;
  }
  grpc::Status CountAgents(grpc::ServerContext*, const v1::CountAgentsRequest*,
                           v1::CountAgentsResponse*) override {
    return grpc::Status(grpc::StatusCode::PERMISSION_DENIED, "not an admin");
  }
};

// Callback-API service: a failing unary call, a stream that ends at once and one that stays
// open until the client cancels it.
class CallbackWorkload : public SpiffeWorkloadAPI::CallbackService {
  grpc::ServerWriteReactor<JWTBundlesResponse>* FetchJWTBundles(grpc::CallbackServerContext*,
                                                                const JWTBundlesRequest*) override {
    class Reactor : public grpc::ServerWriteReactor<JWTBundlesResponse> {
     public:
      void OnCancel() override { Finish(grpc::Status::CANCELLED); }
      void OnDone() override { delete this; }
    };
    return new Reactor;
  }
  grpc::ServerUnaryReactor* FetchJWTSVID(grpc::CallbackServerContext* ctx, const JWTSVIDRequest*,
                                         JWTSVIDResponse*) override {
    auto* reactor = ctx->DefaultReactor();
    reactor->Finish(grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "audience required"));
    return reactor;
  }
  grpc::ServerWriteReactor<X509SVIDResponse>* FetchX509SVID(grpc::CallbackServerContext*,
                                                            const X509SVIDRequest*) override {
    class Reactor : public grpc::ServerWriteReactor<X509SVIDResponse> {
     public:
      Reactor() { Finish(grpc::Status::OK); }
      void OnDone() override { delete this; }
    };
    return new Reactor;
  }
};

class MetricsRpcTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto metrics = Metrics::Create(LoopbackConfig());
    ASSERT_TRUE(metrics.ok()) << metrics.status();
    metrics_ = std::move(*metrics);
    ASSERT_GT(metrics_->port(), 0);
    grpc::ServerBuilder builder;
    int port = 0;
    builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port);
    builder.RegisterService(&admin_);
    builder.RegisterService(&workload_);
    metrics_->Instrument(builder);
    server_ = builder.BuildAndStart();
    ASSERT_NE(server_, nullptr);
    auto channel = grpc::CreateChannel("127.0.0.1:" + std::to_string(port),
                                       grpc::InsecureChannelCredentials());
    admin_stub_ = v1::Admin::NewStub(channel);
    workload_stub_ = SpiffeWorkloadAPI::NewStub(channel);
  }
  void TearDown() override {
    if (server_) server_->Shutdown();
  }

  std::unique_ptr<Metrics> metrics_;  // outlives the server it instruments
  SyncAdmin admin_;
  CallbackWorkload workload_;
  std::unique_ptr<grpc::Server> server_;
  std::unique_ptr<v1::Admin::Stub> admin_stub_;
  std::unique_ptr<SpiffeWorkloadAPI::Stub> workload_stub_;
};

TEST_F(MetricsRpcTest, CountsSyncCallsByMethodAndStatusCodeName) {
  for (int i = 0; i < 2; ++i) {
    grpc::ClientContext ctx;
    v1::CountEntriesResponse resp;
    ASSERT_TRUE(admin_stub_->CountEntries(&ctx, {}, &resp).ok());
  }
  grpc::ClientContext ctx;
  v1::CountAgentsResponse resp;
  ASSERT_EQ(admin_stub_->CountAgents(&ctx, {}, &resp).error_code(),
            grpc::StatusCode::PERMISSION_DENIED);

  std::string text = Scrape(metrics_->port());
  EXPECT_THAT(
      SampleValue(
          text, "trellis_rpc_requests_total",
          {{"service", "trellis.server.v1.Admin"}, {"method", "CountEntries"}, {"code", "OK"}}),
      Optional(2.0));
  EXPECT_THAT(SampleValue(text, "trellis_rpc_requests_total",
                          {{"service", "trellis.server.v1.Admin"},
                           {"method", "CountAgents"},
                           {"code", "PERMISSION_DENIED"}}),
              Optional(1.0));
  EXPECT_EQ(
      SampleValue(text, "trellis_rpc_requests_total", {{"method", "CountAgents"}, {"code", "OK"}}),
      std::nullopt);
}

TEST_F(MetricsRpcTest, RecordsUnaryLatencyHistogram) {
  grpc::ClientContext ctx;
  v1::CountEntriesResponse resp;
  ASSERT_TRUE(admin_stub_->CountEntries(&ctx, {}, &resp).ok());

  std::string text = Scrape(metrics_->port());
  EXPECT_THAT(SampleValue(text, "trellis_rpc_duration_seconds_count",
                          {{"method", "CountEntries"}, {"code", "OK"}}),
              Optional(1.0));
  EXPECT_THAT(SampleValue(text, "trellis_rpc_duration_seconds_bucket",
                          {{"method", "CountEntries"}, {"code", "OK"}, {"le", "+Inf"}}),
              Optional(1.0));
}

TEST_F(MetricsRpcTest, CountsCallbackApiUnaryCalls) {
  grpc::ClientContext ctx;
  JWTSVIDRequest req;
  JWTSVIDResponse resp;
  ASSERT_EQ(workload_stub_->FetchJWTSVID(&ctx, req, &resp).error_code(),
            grpc::StatusCode::INVALID_ARGUMENT);

  std::string text = Scrape(metrics_->port());
  EXPECT_THAT(SampleValue(text, "trellis_rpc_requests_total",
                          {{"service", "SpiffeWorkloadAPI"},
                           {"method", "FetchJWTSVID"},
                           {"code", "INVALID_ARGUMENT"}}),
              Optional(1.0));
}

TEST_F(MetricsRpcTest, TimesStreamsInTheirOwnHistogram) {
  grpc::ClientContext ctx;
  auto reader = workload_stub_->FetchX509SVID(&ctx, X509SVIDRequest());
  X509SVIDResponse msg;
  while (reader->Read(&msg)) {
  }
  ASSERT_TRUE(reader->Finish().ok());

  std::string text = Scrape(metrics_->port());
  EXPECT_THAT(SampleValue(text, "trellis_rpc_requests_total",
                          {{"method", "FetchX509SVID"}, {"code", "OK"}}),
              Optional(1.0));
  EXPECT_THAT(SampleValue(text, "trellis_rpc_stream_duration_seconds_count",
                          {{"method", "FetchX509SVID"}, {"code", "OK"}}),
              Optional(1.0));
  EXPECT_EQ(SampleValue(text, "trellis_rpc_duration_seconds_count", {{"method", "FetchX509SVID"}}),
            std::nullopt);
}

// Scrapes until `name{labels}` reads `want` (the server records a call's end on its own
// threads), or gives up after 20 s; returns the last value read.
std::optional<double> AwaitSample(int port, const std::string& name,
                                  const std::map<std::string, std::string>& labels, double want) {
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
  std::optional<double> value;
  while (true) {
    value = SampleValue(Scrape(port), name, labels);
    if ((value && *value == want) || std::chrono::steady_clock::now() > deadline) return value;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
}

TEST_F(MetricsRpcTest, CountsOpenStreamsByMethodWhileTheyAreOpen) {
  grpc::ClientContext ctx;
  auto reader = workload_stub_->FetchJWTBundles(&ctx, JWTBundlesRequest());
  const std::map<std::string, std::string> labels = {{"service", "SpiffeWorkloadAPI"},
                                                     {"method", "FetchJWTBundles"}};
  EXPECT_THAT(AwaitSample(metrics_->port(), "trellis_rpc_open_streams", labels, 1), Optional(1.0));
  ctx.TryCancel();
  JWTBundlesResponse msg;
  while (reader->Read(&msg)) {
  }
  EXPECT_EQ(reader->Finish().error_code(), grpc::StatusCode::CANCELLED);
  EXPECT_THAT(AwaitSample(metrics_->port(), "trellis_rpc_open_streams", labels, 0), Optional(0.0));
  // Unary calls never count as open streams.
  grpc::ClientContext unary;
  v1::CountEntriesResponse resp;
  ASSERT_TRUE(admin_stub_->CountEntries(&unary, {}, &resp).ok());
  EXPECT_EQ(SampleValue(Scrape(metrics_->port()), "trellis_rpc_open_streams",
                        {{"method", "CountEntries"}}),
            std::nullopt);
}

TEST(Metrics, NamesRpcMetricsWithThePrefix) {
  auto metrics = Metrics::Create(LoopbackConfig(), "trellis_server");
  ASSERT_TRUE(metrics.ok()) << metrics.status();
  SyncAdmin admin;
  grpc::ServerBuilder builder;
  int port = 0;
  builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port);
  builder.RegisterService(&admin);
  (*metrics)->Instrument(builder);
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  ASSERT_NE(server, nullptr);
  auto stub = v1::Admin::NewStub(
      grpc::CreateChannel("127.0.0.1:" + std::to_string(port), grpc::InsecureChannelCredentials()));
  grpc::ClientContext ctx;
  v1::CountEntriesResponse resp;
  ASSERT_TRUE(stub->CountEntries(&ctx, {}, &resp).ok());

  std::string text = Scrape((*metrics)->port());
  EXPECT_THAT(SampleValue(text, "trellis_server_rpc_requests_total",
                          {{"method", "CountEntries"}, {"code", "OK"}}),
              Optional(1.0));
  EXPECT_THAT(
      SampleValue(text, "trellis_server_rpc_duration_seconds_count", {{"method", "CountEntries"}}),
      Optional(1.0));
  EXPECT_EQ(SampleValue(text, "trellis_rpc_requests_total", {}), std::nullopt);
  server->Shutdown();
}

TEST(Metrics, HistogramsCountObservationsIntoLatencyBuckets) {
  auto metrics = Metrics::Create(LoopbackConfig());
  ASSERT_TRUE(metrics.ok()) << metrics.status();
  Histogram read = (*metrics)->AddHistogram("trellis_test_seconds", "test", {{"op", "read"}});
  Histogram write = (*metrics)->AddHistogram("trellis_test_seconds", "test", {{"op", "write"}});
  read.Observe(0.002);
  read.Observe(20);
  write.Observe(0.0001);

  std::string text = Scrape((*metrics)->port());
  EXPECT_THAT(SampleValue(text, "trellis_test_seconds_count", {{"op", "read"}}), Optional(2.0));
  EXPECT_THAT(SampleValue(text, "trellis_test_seconds_sum", {{"op", "read"}}), Optional(20.002));
  EXPECT_THAT(SampleValue(text, "trellis_test_seconds_bucket", {{"op", "read"}, {"le", "0.0025"}}),
              Optional(1.0));
  EXPECT_THAT(SampleValue(text, "trellis_test_seconds_bucket", {{"op", "read"}, {"le", "10"}}),
              Optional(1.0));
  EXPECT_THAT(SampleValue(text, "trellis_test_seconds_bucket", {{"op", "read"}, {"le", "+Inf"}}),
              Optional(2.0));
  EXPECT_THAT(SampleValue(text, "trellis_test_seconds_bucket", {{"op", "write"}, {"le", "0.0005"}}),
              Optional(1.0));
}

TEST(Metrics, LatencyBucketsSpanHalfAMillisecondToTenSeconds) {
  const std::vector<double>& buckets = Metrics::LatencyBuckets();
  ASSERT_FALSE(buckets.empty());
  EXPECT_EQ(buckets.front(), 0.0005);
  EXPECT_EQ(buckets.back(), 10);
  EXPECT_TRUE(std::is_sorted(buckets.begin(), buckets.end()));
}

TEST(Metrics, DefaultHandlesDoNothing) {
  Counter counter;
  counter.Increment();
  Histogram histogram;
  histogram.Observe(1);
}

// The lines of `text` that start with `prefix`.
int CountLines(const std::string& text, const std::string& prefix) {
  int n = 0;
  for (size_t at = 0; at < text.size();) {
    size_t end = text.find('\n', at);
    if (end == std::string::npos) end = text.size();
    if (text.compare(at, prefix.size(), prefix) == 0) ++n;
    at = end + 1;
  }
  return n;
}

TEST(Metrics, LabelledGaugeCallbacksShareOneFamilyAndSkipAbsentValues) {
  auto metrics = Metrics::Create(LoopbackConfig());
  ASSERT_TRUE(metrics.ok()) << metrics.status();
  (*metrics)->AddGaugeCallback("trellis_test_lifetime", "test",
                               {{"kind", "x509"}, {"state", "active"}},
                               []() -> std::optional<double> { return 3600; });
  (*metrics)->AddGaugeCallback("trellis_test_lifetime", "test",
                               {{"kind", "x509"}, {"state", "prepared"}},
                               []() -> std::optional<double> { return std::nullopt; });
  (*metrics)->AddGaugeCallback("trellis_test_lifetime", "test",
                               {{"kind", "jwt"}, {"state", "active"}},
                               []() -> std::optional<double> { return -5; });

  std::string text = Scrape((*metrics)->port());
  EXPECT_EQ(CountLines(text, "# TYPE trellis_test_lifetime gauge"), 1);
  EXPECT_THAT(SampleValue(text, "trellis_test_lifetime", {{"kind", "x509"}, {"state", "active"}}),
              Optional(3600.0));
  EXPECT_THAT(SampleValue(text, "trellis_test_lifetime", {{"kind", "jwt"}, {"state", "active"}}),
              Optional(-5.0));
  EXPECT_EQ(SampleValue(text, "trellis_test_lifetime", {{"state", "prepared"}}), std::nullopt);
  EXPECT_EQ(CountLines(text, "trellis_test_lifetime{"), 2);
}

TEST(Metrics, CounterCallbacksAreExportedAsCounters) {
  auto metrics = Metrics::Create(LoopbackConfig());
  ASSERT_TRUE(metrics.ok()) << metrics.status();
  double total = 4;
  (*metrics)->AddCounterCallback("trellis_test_minted_total", "test", {},
                                 [&total] { return total; });
  std::string text = Scrape((*metrics)->port());
  EXPECT_EQ(CountLines(text, "# TYPE trellis_test_minted_total counter"), 1);
  EXPECT_THAT(SampleValue(text, "trellis_test_minted_total", {}), Optional(4.0));
  total = 9;
  EXPECT_THAT(SampleValue(Scrape((*metrics)->port()), "trellis_test_minted_total", {}),
              Optional(9.0));
  (*metrics)->ClearCallbacks();
}

TEST(Metrics, ServesDomainCountersAndGaugeCallbacks) {
  auto metrics = Metrics::Create(LoopbackConfig());
  ASSERT_TRUE(metrics.ok()) << metrics.status();
  Counter ok = (*metrics)->AddCounter("trellis_test_total", "test", {{"result", "ok"}});
  Counter failed = (*metrics)->AddCounter("trellis_test_total", "test", {{"result", "error"}});
  ok.Increment();
  ok.Increment();
  failed.Increment();
  (*metrics)->AddGaugeCallback("trellis_test_gauge", "test", [] { return 7.0; });

  std::string text = Scrape((*metrics)->port());
  EXPECT_THAT(SampleValue(text, "trellis_test_total", {{"result", "ok"}}), Optional(2.0));
  EXPECT_THAT(SampleValue(text, "trellis_test_total", {{"result", "error"}}), Optional(1.0));
  EXPECT_THAT(SampleValue(text, "trellis_test_gauge", {}), Optional(7.0));
}

TEST(Metrics, ClearedGaugeCallbacksAreNoLongerScraped) {
  auto metrics = Metrics::Create(LoopbackConfig());
  ASSERT_TRUE(metrics.ok()) << metrics.status();
  (*metrics)->AddGaugeCallback("trellis_test_gauge", "test", [] { return 7.0; });
  (*metrics)->ClearCallbacks();

  EXPECT_EQ(SampleValue(Scrape((*metrics)->port()), "trellis_test_gauge", {}), std::nullopt);
}

// Sockets open in this process, from /proc/self/fd.
int OpenSockets() {
  int count = 0;
  DIR* dir = opendir("/proc/self/fd");
  if (dir == nullptr) return -1;
  while (dirent* e = readdir(dir)) {
    struct stat st;
    if (fstatat(dirfd(dir), e->d_name, &st, 0) == 0 && S_ISSOCK(st.st_mode)) ++count;
  }
  closedir(dir);
  return count;
}

TEST(Metrics, WithoutPrometheusOpensNoListener) {
  int before = OpenSockets();
  ASSERT_GE(before, 0);
  auto metrics = Metrics::Create(common::config::TelemetryConfig{});
  ASSERT_TRUE(metrics.ok()) << metrics.status();
  EXPECT_EQ((*metrics)->port(), 0);
  EXPECT_EQ(OpenSockets(), before);
  // Metrics still work in memory.
  (*metrics)->AddCounter("trellis_test_total", "test").Increment();
}

TEST(Metrics, PortInUseIsAClearError) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  ASSERT_GE(fd, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
  ASSERT_EQ(listen(fd, 1), 0);
  socklen_t len = sizeof(addr);
  ASSERT_EQ(getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len), 0);
  uint16_t port = ntohs(addr.sin_port);

  auto metrics = Metrics::Create(LoopbackConfig(port));
  close(fd);
  ASSERT_FALSE(metrics.ok());
  EXPECT_EQ(metrics.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(std::string(metrics.status().message()),
              HasSubstr("127.0.0.1:" + std::to_string(port)));
}

TEST(Metrics, UnresolvableHostIsInvalidArgument) {
  common::config::TelemetryConfig config;
  config.prometheus = common::config::PrometheusConfig{"no-such-host.invalid", 0};
  auto metrics = Metrics::Create(config);
  ASSERT_FALSE(metrics.ok());
  EXPECT_EQ(metrics.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(metrics.status().message()), HasSubstr("no-such-host.invalid"));
}

}  // namespace
}  // namespace trellis::telemetry
