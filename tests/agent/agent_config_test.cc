// Agent helpers that read the configuration: server targets and node attestor choice.
#include <unistd.h>

#include <filesystem>

#include "absl/strings/str_cat.h"
#include "agent/agent.h"
#include "agent/bundle_url.h"
#include "attestors/node/node_attestor_factory.h"
#include "common/file_util.h"
#include "gtest/gtest.h"
#include "workload_api/identity_snapshot.h"

namespace trellis::agent {
namespace {

common::config::AgentConfig Config() {
  common::config::AgentConfig c(*common::TrustDomain::Parse("example.org"));
  c.server_address = "localhost";
  return c;
}

TEST(ServerTargets, SingleHostGetsServerPort) {
  auto got = ServerTargets("localhost", 8081);
  ASSERT_TRUE(got.ok());
  EXPECT_EQ(*got, std::vector<std::string>{"localhost:8081"});
}

TEST(ServerTargets, CommaSeparatedListKeepsExplicitPorts) {
  auto got = ServerTargets("a.example, b.example:9000 ,10.0.0.1", 8081);
  ASSERT_TRUE(got.ok());
  EXPECT_EQ(*got, (std::vector<std::string>{"a.example:8081", "b.example:9000", "10.0.0.1:8081"}));
}

TEST(ServerTargets, EmptyIsInvalidArgument) {
  EXPECT_EQ(ServerTargets(" , ", 8081).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(CreateNodeAttestor, JoinTokenWithoutTokenIsInvalidArgument) {
  EXPECT_EQ(attestors::CreateAgentNodeAttestor(Config(), "").status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(CreateNodeAttestor, FlagTokenOverridesConfig) {
  auto c = Config();
  c.join_token = "from-config";
  auto a = attestors::CreateAgentNodeAttestor(c, "from-flag");
  ASSERT_TRUE(a.ok()) << a.status();
  EXPECT_EQ((*a)->Name(), "join_token");
  EXPECT_EQ(*(*a)->Payload(), "from-flag");
}

TEST(CreateNodeAttestor, X509PopSignsTheChallengeWithTheLeafKey) {
  auto dir = std::filesystem::temp_directory_path() / absl::StrCat("trellis-pop-", getpid());
  std::filesystem::create_directories(dir);
  auto td = *common::TrustDomain::Parse("example.org");
  auto key = *common::PrivateKey::Generate();
  auto cert = *common::CreateRootCa(key, td, absl::Hours(1), common::SystemClock::Get());
  ASSERT_TRUE(common::WritePrivateFile((dir / "k.pem").string(), key.ToPem()->view()).ok());
  ASSERT_TRUE(common::WritePrivateFile((dir / "c.pem").string(), cert.ToPem()).ok());
  auto c = Config();
  c.node_attestor = common::config::X509PopAgentAttestorConfig{(dir / "k.pem").string(),
                                                               (dir / "c.pem").string(), ""};
  auto a = attestors::CreateAgentNodeAttestor(c, "");
  ASSERT_TRUE(a.ok()) << a.status();
  EXPECT_EQ((*a)->Name(), "x509pop");
  EXPECT_EQ(*(*a)->Payload(), cert.der());
  std::string challenge(32, 'c');
  auto sig = (*a)->Answer(challenge);
  ASSERT_TRUE(sig.ok());
  EXPECT_TRUE(cert.public_key()
                  .Verify("trellis-x509pop-v1" + challenge, *sig, common::HashAlg::kSha256)
                  .ok());
  std::filesystem::remove_all(dir);
}

TEST(IdentitySnapshot, EntryAppliesWhenItsSelectorsAreASubset) {
  workload_api::IdentitySnapshot snap;
  auto id = *common::SpiffeId::Parse("spiffe://example.org/a");
  snap.entries.Put(std::make_shared<const workload_api::CachedEntry>(
               workload_api::CachedEntry{"a", id, {"unix:uid:1"}, {}, "", 1, 1, 0}));
  snap.entries.Put(std::make_shared<const workload_api::CachedEntry>(
               workload_api::CachedEntry{"b", id, {"unix:uid:1", "unix:gid:9"}, {}, "", 1, 2, 0}));
  auto got = snap.EntriesFor({"unix:uid:1", "unix:gid:2"});
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0]->id(), "a");
}

}  // namespace
}  // namespace trellis::agent

namespace trellis::agent {
namespace {

TEST(ParseHttpsUrl, HostPortAndPath) {
  auto got = ParseHttpsUrl("https://bundle.example.org:8443/bundle.json");
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(got->host, "bundle.example.org");
  EXPECT_EQ(got->port, "8443");
  EXPECT_EQ(got->path, "/bundle.json");
}

TEST(ParseHttpsUrl, DefaultsToPort443AndRoot) {
  auto got = ParseHttpsUrl("https://bundle.example.org");
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(got->port, "443");
  EXPECT_EQ(got->path, "/");
}

TEST(ParseHttpsUrl, PlainHttpIsInvalidArgument) {
  EXPECT_EQ(ParseHttpsUrl("http://bundle.example.org/").status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(ParseHttpsUrl, BadPortIsInvalidArgument) {
  EXPECT_EQ(ParseHttpsUrl("https://h:99999/").status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(HttpsGet, UnreachableServerIsUnavailable) {
  // Port 1 on loopback: nothing listens there.
  EXPECT_EQ(HttpsGet("https://127.0.0.1:1/").status().code(), absl::StatusCode::kUnavailable);
}

}  // namespace
}  // namespace trellis::agent
