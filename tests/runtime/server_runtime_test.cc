// Server runtime: start from a configuration, the admin socket's permissions and stale-socket
// handling, the health listener, and a clean shutdown.
#include "runtime/server_runtime.h"

#include <grpcpp/grpcpp.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <atomic>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <memory>
#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testutil/temp_dir.h"
#include "common/health.h"
#include "tests/telemetry/scrape_util.h"
#include "trellis/server/v1/admin.grpc.pb.h"

namespace trellis::runtime {
namespace {

namespace v1 = ::trellis::server::v1;
using ::testing::HasSubstr;
using common::HealthListener;
using common::HealthReport;
using common::RenderHealth;

class RuntimeTest : public ::testing::Test {
 protected:
  void SetUp() override {
    tmp_ = std::make_unique<testutil::TempDir>("trellis-rt");
    dir_ = tmp_->path();
    socket_ = dir_ + "/private/api.sock";
  }
  void TearDown() override { tmp_.reset(); }

  common::config::ServerConfig Config(const std::string& extra = "") {
    std::string text =
        "server {\n  bind_address = \"127.0.0.1\"\n  bind_port = 0\n"
        "  socket_path = \"" +
        socket_ +
        "\"\n  trust_domain = \"example.org\"\n"
        "  data_dir = \"" +
        dir_ +
        "/data\"\n  log_level = \"ERROR\"\n}\n"
        "plugins {\n  DataStore \"sql\" { plugin_data { database_type = \"sqlite3\""
        "\n connection_string = \"" +
        dir_ +
        "/data/ds.sqlite3\" } }\n"
        "  KeyManager \"memory\" { plugin_data {} }\n"
        "  NodeAttestor \"join_token\" { plugin_data {} }\n}\n" +
        extra;
    auto cfg = common::config::ParseServerConfig(text, "server.conf");
    EXPECT_TRUE(cfg.ok()) << cfg.status();
    return *cfg;
  }

  bool AdminAnswers() {
    auto stub = v1::Admin::NewStub(
        grpc::CreateChannel("unix:" + socket_, grpc::InsecureChannelCredentials()));
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(5));
    v1::HealthResponse resp;
    return stub->Health(&ctx, {}, &resp).ok() && resp.healthy();
  }

  std::unique_ptr<testutil::TempDir> tmp_;
  std::string dir_;
  std::string socket_;
};

TEST_F(RuntimeTest, StartsServesAdminAndStopsCleanly) {
  auto server = Server::Create(Config());
  ASSERT_TRUE(server.ok()) << server.status();
  ASSERT_TRUE((*server)->Start().ok());
  EXPECT_GT((*server)->agent_port(), 0);
  EXPECT_TRUE(AdminAnswers());
  (*server)->Shutdown();
  EXPECT_FALSE(std::filesystem::exists(socket_));
}

TEST_F(RuntimeTest, SocketAndItsDirectoryAreGroupOnly) {
  auto server = Server::Create(Config());
  ASSERT_TRUE(server.ok()) << server.status();
  ASSERT_TRUE((*server)->Start().ok());
  struct stat st;
  ASSERT_EQ(stat(socket_.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0770u);
  ASSERT_EQ(stat((dir_ + "/private").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0770u);
}

TEST_F(RuntimeTest, StaleSocketFileIsReplaced) {
  std::filesystem::create_directories(dir_ + "/private");
  int fd = socket(AF_UNIX, SOCK_STREAM, 0);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::strncpy(addr.sun_path, socket_.c_str(), sizeof(addr.sun_path) - 1);
  ASSERT_EQ(bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
  close(fd);  // bound, never listening: what a crashed server leaves behind
  auto server = Server::Create(Config());
  ASSERT_TRUE(server.ok()) << server.status();
  ASSERT_TRUE((*server)->Start().ok());
  EXPECT_TRUE(AdminAnswers());
}

TEST_F(RuntimeTest, LiveSocketOfAnotherServerIsRefused) {
  auto first = Server::Create(Config());
  ASSERT_TRUE(first.ok()) << first.status();
  ASSERT_TRUE((*first)->Start().ok());
  common::config::ServerConfig cfg = Config();
  cfg.data_dir = dir_ + "/data2";
  cfg.data_store.connection_string = dir_ + "/data2/ds.sqlite3";
  auto second = Server::Create(cfg);
  ASSERT_TRUE(second.ok()) << second.status();
  absl::Status st = (*second)->Start();
  EXPECT_EQ(st.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(std::string(st.message()), HasSubstr("another server is listening"));
  EXPECT_TRUE(AdminAnswers());
}

TEST_F(RuntimeTest, NonSocketAtSocketPathIsRefused) {
  std::filesystem::create_directories(dir_ + "/private");
  std::ofstream(socket_) << "not a socket";
  auto server = Server::Create(Config());
  ASSERT_TRUE(server.ok()) << server.status();
  EXPECT_EQ((*server)->Start().code(), absl::StatusCode::kFailedPrecondition);
}

std::string FirstRoot(const std::string& socket) {
  auto stub =
      v1::Admin::NewStub(grpc::CreateChannel("unix:" + socket, grpc::InsecureChannelCredentials()));
  grpc::ClientContext ctx;
  v1::Bundle b;
  if (!stub->GetBundle(&ctx, {}, &b).ok() || b.x509_authorities_size() == 0) return "";
  return b.x509_authorities(0).asn1();
}

TEST_F(RuntimeTest, RestartWithDiskKeysReusesTheCa) {
  common::config::ServerConfig cfg = Config();
  cfg.key_manager = common::config::DiskKeyManagerConfig{dir_ + "/keys"};
  std::string before;
  {
    auto server = Server::Create(cfg);
    ASSERT_TRUE(server.ok()) << server.status();
    ASSERT_TRUE((*server)->Start().ok());
    before = FirstRoot(socket_);
  }
  ASSERT_FALSE(before.empty());
  auto again = Server::Create(cfg);
  ASSERT_TRUE(again.ok()) << again.status();
  ASSERT_TRUE((*again)->Start().ok());
  EXPECT_EQ(FirstRoot(socket_), before);
}

TEST_F(RuntimeTest, StartsWithTheHealthListenerEnabled) {
  common::config::ServerConfig cfg = Config();
  cfg.health_checks.listener_enabled = true;
  cfg.health_checks.bind_address = "127.0.0.1";
  cfg.health_checks.bind_port = 0;
  auto server = Server::Create(cfg);
  ASSERT_TRUE(server.ok()) << server.status();
  ASSERT_TRUE((*server)->Start().ok());
  EXPECT_TRUE(AdminAnswers());
}

TEST_F(RuntimeTest, TelemetryCountsAdminCallsByStatusCode) {
  auto server = Server::Create(
      Config("telemetry {\n  Prometheus {\n    host = \"127.0.0.1\"\n    port = 0\n  }\n}\n"));
  ASSERT_TRUE(server.ok()) << server.status();
  ASSERT_TRUE((*server)->Start().ok());
  ASSERT_GT((*server)->metrics_port(), 0);
  ASSERT_TRUE(AdminAnswers());
  auto stub = v1::Admin::NewStub(
      grpc::CreateChannel("unix:" + socket_, grpc::InsecureChannelCredentials()));
  grpc::ClientContext ctx;
  v1::GetEntryRequest req;
  req.set_id("no-such-entry");
  v1::Entry entry;
  ASSERT_EQ(stub->GetEntry(&ctx, req, &entry).error_code(), grpc::StatusCode::NOT_FOUND);

  std::string text = telemetry::testing::Scrape((*server)->metrics_port());
  EXPECT_THAT(telemetry::testing::SampleValue(text, "trellis_server_rpc_requests_total",
                                              {{"service", "trellis.server.v1.Admin"},
                                               {"method", "Health"},
                                               {"code", "OK"}}),
              ::testing::Optional(1.0));
  EXPECT_THAT(telemetry::testing::SampleValue(text, "trellis_server_rpc_requests_total",
                                              {{"method", "GetEntry"}, {"code", "NOT_FOUND"}}),
              ::testing::Optional(1.0));
  EXPECT_THAT(telemetry::testing::SampleValue(text, "trellis_server_entries", {}),
              ::testing::Optional(0.0));
  EXPECT_THAT(telemetry::testing::SampleValue(text, "trellis_server_agents_connected", {}),
              ::testing::Optional(0.0));
}

TEST_F(RuntimeTest, TelemetryReportsAuthoritiesDatastoreAndReadiness) {
  using telemetry::testing::SampleValue;
  auto server = Server::Create(
      Config("telemetry {\n  Prometheus {\n    host = \"127.0.0.1\"\n    port = 0\n  }\n}\n"));
  ASSERT_TRUE(server.ok()) << server.status();
  ASSERT_TRUE((*server)->Start().ok());
  std::string text = telemetry::testing::Scrape((*server)->metrics_port());

  // A new server activated its first CA and JWT key; neither is rotated yet.
  EXPECT_THAT(SampleValue(text, "trellis_server_authority_rotations_total", {{"kind", "x509"}}),
              ::testing::Optional(1.0));
  EXPECT_THAT(SampleValue(text, "trellis_server_authority_rotations_total", {{"kind", "jwt"}}),
              ::testing::Optional(1.0));
  for (const char* kind : {"x509", "jwt"}) {
    std::optional<double> active =
        SampleValue(text, "trellis_server_authority_remaining_lifetime_seconds",
                    {{"kind", kind}, {"state", "active"}});
    ASSERT_TRUE(active.has_value()) << kind;
    EXPECT_GT(*active, 0) << kind;
    EXPECT_EQ(SampleValue(text, "trellis_server_authority_remaining_lifetime_seconds",
                          {{"kind", kind}, {"state", "prepared"}}),
              std::nullopt)
        << kind;
  }
  // Start-up read the federated bundles; nothing failed.
  EXPECT_THAT(SampleValue(text, "trellis_server_datastore_call_duration_seconds_count",
                          {{"operation", "ListBundles"}}),
              ::testing::Optional(::testing::Ge(1.0)));
  EXPECT_THAT(
      SampleValue(text, "trellis_server_datastore_errors_total", {{"operation", "ListBundles"}}),
      ::testing::Optional(0.0));
  EXPECT_THAT(SampleValue(text, "trellis_server_rate_limited_total", {{"limiter", "signing"}}),
              ::testing::Optional(0.0));
  EXPECT_THAT(SampleValue(text, "trellis_server_ready", {}), ::testing::Optional(1.0));
  // A root server has no upstream link.
  EXPECT_EQ(SampleValue(text, "trellis_server_upstream_connected", {}), std::nullopt);
}

TEST_F(RuntimeTest, WithoutTelemetryNoMetricsPort) {
  auto server = Server::Create(Config());
  ASSERT_TRUE(server.ok()) << server.status();
  ASSERT_TRUE((*server)->Start().ok());
  EXPECT_EQ((*server)->metrics_port(), 0);
}

TEST(RenderHealth, DatastoreOutageFailsReadyButNotLive) {
  HealthReport r;
  r.subsystems["ca"] = {true, "ok"};
  r.subsystems["datastore"] = {false, "database is locked"};
  r.live_excludes = {"datastore"};
  auto live = RenderHealth(r, true);
  auto ready = RenderHealth(r, false);
  EXPECT_EQ(live.first, 200);
  EXPECT_EQ(ready.first, 500);
  EXPECT_THAT(ready.second, HasSubstr("database is locked"));
}

TEST(RenderHealth, FailedCaFailsLive) {
  HealthReport r;
  r.subsystems["ca"] = {false, "no active X.509 CA"};
  EXPECT_EQ(RenderHealth(r, true).first, 500);
}

// Sends one HTTP request to the listener and returns the raw response.
std::string HttpGet(int port, const std::string& path) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    close(fd);
    return "";
  }
  std::string req = "GET " + path + " HTTP/1.0\r\n\r\n";
  (void)!write(fd, req.data(), req.size());
  std::string resp;
  char buf[1024];
  ssize_t n;
  while ((n = read(fd, buf, sizeof buf)) > 0) resp.append(buf, static_cast<size_t>(n));
  close(fd);
  return resp;
}

TEST(HealthListener, ServesLiveReadyAndNotFound) {
  common::config::HealthChecksConfig cfg;
  cfg.listener_enabled = true;
  cfg.bind_address = "127.0.0.1";
  cfg.bind_port = 0;
  std::atomic<bool> ready{false};
  auto listener = HealthListener::Start(cfg, [&ready] {
    HealthReport r;
    bool up = ready.load();
    r.subsystems["datastore"] = {up, up ? "ok" : "down"};
    r.live_excludes = {"datastore"};
    return r;
  });
  ASSERT_TRUE(listener.ok()) << listener.status();
  int port = (*listener)->port();
  EXPECT_THAT(HttpGet(port, "/live"), HasSubstr("HTTP/1.0 200"));
  EXPECT_THAT(HttpGet(port, "/ready"), HasSubstr("HTTP/1.0 500"));
  ready = true;
  EXPECT_THAT(HttpGet(port, "/ready"), HasSubstr("HTTP/1.0 200"));
  EXPECT_THAT(HttpGet(port, "/other"), HasSubstr("HTTP/1.0 404"));
  (*listener)->Stop();
}

}  // namespace
}  // namespace trellis::runtime
