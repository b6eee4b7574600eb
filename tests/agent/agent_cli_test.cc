// trellis-agent api commands against an in-process Workload API: output shapes, -write files,
// SPIFFE_ENDPOINT_SOCKET and -socketPath.
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <sstream>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "attestors/workload/unix_attestor.h"
#include "cmd/agent_commands.h"
#include "common/file_util.h"
#include "common/jwt.h"
#include "common/keys.h"
#include "common/x509.h"
#include "gtest/gtest.h"
#include "agent/svid_cache.h"
#include "workload_api/server.h"

namespace trellis::cmd {
namespace {

class AgentCliTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() /
           absl::StrCat("trellis-agent-cli-", getpid(), "-",
                        ::testing::UnitTest::GetInstance()->current_test_info()->name());
    std::filesystem::remove_all(dir_);
    std::filesystem::create_directories(dir_);
    socket_ = (dir_ / "api.sock").string();
    auto td = *common::TrustDomain::Parse("example.org");
    auto ca_key = *common::PrivateKey::Generate();
    ca_ = *common::CreateRootCa(ca_key, td, absl::Hours(24), common::SystemClock::Get());
    auto issuer = *common::X509SvidIssuer::Create(*ca_, ca_key, common::SystemClock::Get());
    auto key = *common::PrivateKey::Generate();
    auto id = *common::SpiffeId::Parse("spiffe://example.org/app");
    std::string leaf = *issuer->IssueForPublicKey(key.public_key(), id, absl::Hours(1));
    auto bundle = std::make_shared<common::Bundle>(td);
    ASSERT_TRUE(bundle->AddX509Authority(*ca_).ok());
    ASSERT_TRUE(bundle->AddJwtAuthority("k1", jwt_key_.public_key()).ok());
    workload_api::IdentitySnapshot snap;
    snap.ready = true;
    snap.bundle = workload_api::RenderedBundle::Of(bundle);
    snap.entries.Put(std::make_shared<const workload_api::CachedEntry>(workload_api::CachedEntry{
                  "e1", id, {absl::StrCat("unix:uid:", geteuid())}, {}, "", 1, 1, 0}));
    workload_api::CachedSvid svid("e1", {leaf}, key.ToPkcs8Der()->view());
    snap.svids.Put(std::make_shared<const workload_api::CachedSvid>(std::move(svid)));
    cache_.Publish(snap);
    auto server = workload_api::WorkloadApiServer::Start(
        {socket_, 2}, &cache_, {&attestor_},
        [this](const workload_api::CachedEntry& e,
               const std::vector<std::string>& aud) -> absl::StatusOr<std::string> {
          return common::SignJwtSvid(jwt_key_, "k1", *common::SpiffeId::Parse(e.spiffe_id()), aud,
                                     absl::Now(), absl::Now() + absl::Minutes(5));
        },
        common::SystemClock::Get());
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = std::move(*server);
  }
  void TearDown() override {
    unsetenv("SPIFFE_ENDPOINT_SOCKET");
    server_->Stop();
    std::filesystem::remove_all(dir_);
  }

  int Run(std::vector<std::string> args) {
    out_.str("");
    err_.str("");
    return RunAgentCommand(args, out_, err_);
  }

  std::filesystem::path dir_;
  std::string socket_;
  std::optional<common::Certificate> ca_;
  common::PrivateKey jwt_key_ = *common::PrivateKey::Generate();
  agent::SvidCache cache_;
  attestors::UnixWorkloadAttestor attestor_{{}};
  std::unique_ptr<workload_api::WorkloadApiServer> server_;
  std::ostringstream out_, err_;
};

TEST_F(AgentCliTest, FetchX509PrintsTheSvid) {
  ASSERT_EQ(Run({"api", "fetch", "x509", "-socketPath", socket_}), 0) << err_.str();
  EXPECT_TRUE(absl::StartsWith(out_.str(), "Received 1 svid after ")) << out_.str();
  EXPECT_TRUE(absl::StrContains(out_.str(), "SPIFFE ID:\t\tspiffe://example.org/app"));
  EXPECT_TRUE(absl::StrContains(out_.str(), "CA #1 Valid After:"));
}

TEST_F(AgentCliTest, FetchX509WriteCreatesSvidKeyAndBundleFiles) {
  std::string out_dir = (dir_ / "out").string();
  ASSERT_EQ(Run({"api", "fetch", "x509", "-socketPath", socket_, "-write", out_dir, "-silent"}), 0)
      << err_.str();
  EXPECT_EQ(out_.str(), "");
  struct stat st;
  ASSERT_EQ(stat((out_dir + "/svid.0.key").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  auto bundle = common::Certificate::ChainFromPem(*common::ReadFile(out_dir + "/bundle.0.pem"));
  ASSERT_TRUE(bundle.ok());
  EXPECT_EQ(bundle->front(), *ca_);
  EXPECT_TRUE(std::filesystem::exists(out_dir + "/svid.0.pem"));
}

TEST_F(AgentCliTest, SpiffeEndpointSocketIsHonoured) {
  setenv("SPIFFE_ENDPOINT_SOCKET", ("unix://" + socket_).c_str(), 1);
  EXPECT_EQ(Run({"api", "fetch", "x509", "-silent"}), 0) << err_.str();
  setenv("SPIFFE_ENDPOINT_SOCKET", ("unix:" + socket_).c_str(), 1);
  EXPECT_EQ(Run({"api", "fetch", "x509", "-silent"}), 0) << err_.str();
}

TEST_F(AgentCliTest, FetchJwtThenValidateIt) {
  ASSERT_EQ(Run({"api", "fetch", "jwt", "-audience", "svc", "-socketPath", socket_}), 0)
      << err_.str();
  std::string text = out_.str();
  ASSERT_TRUE(absl::StartsWith(text, "token(spiffe://example.org/app):\n\t")) << text;
  std::string token = text.substr(text.find('\t') + 1);
  token = token.substr(0, token.find('\n'));
  ASSERT_EQ(
      Run({"api", "validate", "jwt", "-audience", "svc", "-svid", token, "-socketPath", socket_}),
      0)
      << err_.str();
  EXPECT_TRUE(absl::StartsWith(out_.str(),
                               "SVID is valid.\nSPIFFE ID : spiffe://example.org/app\n"
                               "Claims    : "))
      << out_.str();
}

TEST_F(AgentCliTest, InvalidTokenIsOneErrorLineAndNonZeroExit) {
  EXPECT_NE(
      Run({"api", "validate", "jwt", "-audience", "svc", "-svid", "a.b.c", "-socketPath", socket_}),
      0);
  EXPECT_TRUE(absl::StartsWith(err_.str(), "Error: rpc error: code = InvalidArgument"))
      << err_.str();
  std::string err = err_.str();
  EXPECT_EQ(std::count(err.begin(), err.end(), '\n'), 1);
}

TEST_F(AgentCliTest, HealthcheckSaysHealthy) {
  ASSERT_EQ(Run({"healthcheck", "-socketPath", socket_}), 0) << err_.str();
  EXPECT_EQ(out_.str(), "Agent is healthy.\n");
}

TEST_F(AgentCliTest, HealthcheckOnAMissingSocketFails) {
  EXPECT_EQ(Run({"healthcheck", "-socketPath", (dir_ / "nope.sock").string()}), 1);
  EXPECT_TRUE(absl::StartsWith(err_.str(), "Error: ")) << err_.str();
}

}  // namespace
}  // namespace trellis::cmd
