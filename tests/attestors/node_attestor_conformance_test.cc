// The node attestor contract, run against every mechanism's server and agent sides together.
#include <stdlib.h>

#include <filesystem>
#include <memory>
#include <string>

#include "attestors/node/join_token.h"
#include "attestors/node/node_attestor_factory.h"
#include "attestors/node/x509pop.h"
#include "common/clock.h"
#include "common/file_util.h"
#include "datastore/factory.h"
#include "gtest/gtest.h"
#include "tests/attestors/x509_test_certs.h"

namespace trellis::attestors {
namespace {

using ChallengeFn = std::function<absl::StatusOr<std::string>(std::string)>;

common::TrustDomain Td() { return *common::TrustDomain::Parse("example.org"); }

// One mechanism set up end to end: a server side, the agent side that matches it, and what
// the contract expects of them.
class Mechanism {
 public:
  virtual ~Mechanism() = default;
  ServerNodeAttestor& server() { return *server_; }
  AgentNodeAttestor& agent() { return *agent_; }
  // Whether the server challenges the agent, and whether the same agent may attest again.
  virtual bool UsesChallenge() const = 0;
  virtual bool Reattestable() const = 0;
  // Text every refusal from this mechanism names.
  virtual std::string ErrorSubject() const = 0;

 protected:
  common::FakeClock clock_{testcerts::kStart};
  std::unique_ptr<ServerNodeAttestor> server_;
  std::unique_ptr<AgentNodeAttestor> agent_;
};

class TempDir {
 public:
  TempDir() {
    std::string tmpl = "/tmp/trellis-attestor-conformance-XXXXXX";
    char* p = mkdtemp(tmpl.data());
    path_ = p ? p : "";
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

class JoinTokenMechanism final : public Mechanism {
 public:
  JoinTokenMechanism() {
    datastore::DataStoreOptions options;
    options.clock = &clock_;
    auto ds = datastore::CreateDataStore("sqlite3", dir_.path() + "/ds.sqlite3", options);
    EXPECT_TRUE(ds.ok()) << ds.status();
    ds_ = std::move(*ds);
    EXPECT_TRUE(
        ds_->CreateJoinToken({"conformance-token", testcerts::kStart + absl::Minutes(10)}).ok());
    auto server = CreateServerNodeAttestor(common::config::JoinTokenServerAttestorConfig{}, Td(),
                                           ds_.get(), clock_);
    EXPECT_TRUE(server.ok()) << server.status();
    server_ = std::move(*server);
    auto agent =
        CreateAgentNodeAttestor(common::config::JoinTokenAgentAttestorConfig{}, "conformance-token");
    EXPECT_TRUE(agent.ok()) << agent.status();
    agent_ = std::move(*agent);
  }
  bool UsesChallenge() const override { return false; }
  bool Reattestable() const override { return false; }
  std::string ErrorSubject() const override { return "join token"; }

 private:
  TempDir dir_;
  std::unique_ptr<datastore::DataStore> ds_;
};

class X509PopMechanism final : public Mechanism {
 public:
  X509PopMechanism() {
    using testcerts::MakeCert;
    ca_ = MakeCert("Conformance Root", root_key_.p, nullptr, root_key_.p, /*ca=*/true);
    leaf_ = MakeCert("node-c", leaf_key_.p, &ca_, root_key_.p, /*ca=*/false, "DNS:node-c.example",
                     "critical,digitalSignature");
    const std::string ca_path = Write("ca.pem", common::Certificate::FromDer(ca_.der)->ToPem());
    common::config::X509PopServerAttestorConfig server_config;
    server_config.ca_bundle_paths = {ca_path};
    auto server = CreateServerNodeAttestor(server_config, Td(), nullptr, clock_);
    EXPECT_TRUE(server.ok()) << server.status();
    server_ = std::move(*server);
    common::config::X509PopAgentAttestorConfig agent_config{
        Write("node.key", testcerts::PemOfKey(leaf_key_.p)),
        Write("node.pem", common::Certificate::FromDer(leaf_.der)->ToPem()), ""};
    auto agent = CreateAgentNodeAttestor(agent_config, "");
    EXPECT_TRUE(agent.ok()) << agent.status();
    agent_ = std::move(*agent);
  }
  bool UsesChallenge() const override { return true; }
  bool Reattestable() const override { return true; }
  std::string ErrorSubject() const override { return "x509pop"; }

 private:
  std::string Write(const std::string& name, const std::string& data) {
    std::string path = dir_.path() + "/" + name;
    EXPECT_TRUE(common::WritePrivateFile(path, data).ok());
    return path;
  }
  TempDir dir_;
  testcerts::Pkey root_key_ = testcerts::EcKey(), leaf_key_ = testcerts::EcKey();
  testcerts::Issued ca_, leaf_;
};

std::unique_ptr<Mechanism> MakeMechanism(const std::string& name) {
  if (name == kJoinTokenName) return std::make_unique<JoinTokenMechanism>();
  if (name == kX509PopName) return std::make_unique<X509PopMechanism>();
  ADD_FAILURE() << "no conformance setup for node attestor " << name;
  return nullptr;
}

class NodeAttestorConformanceTest : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    m_ = MakeMechanism(GetParam());
    ASSERT_NE(m_, nullptr);
  }
  ChallengeFn HonestAgent() {
    return [this](std::string c) { return m_->agent().Answer(c); };
  }
  void ExpectRefusal(const absl::Status& status) {
    EXPECT_TRUE(absl::IsInvalidArgument(status) || absl::IsPermissionDenied(status)) << status;
    EXPECT_NE(status.message().find(m_->ErrorSubject()), std::string::npos) << status;
  }
  std::unique_ptr<Mechanism> m_;
};

TEST_P(NodeAttestorConformanceTest, BothSidesCarryThePluginName) {
  EXPECT_EQ(m_->server().Name(), GetParam());
  EXPECT_EQ(m_->agent().Name(), GetParam());
}

TEST_P(NodeAttestorConformanceTest, AgentPayloadIsAcceptedWithDocumentedAgentIdAndSelectors) {
  auto payload = m_->agent().Payload();
  ASSERT_TRUE(payload.ok()) << payload.status();
  auto result = m_->server().Attest(*payload, HonestAgent());
  ASSERT_TRUE(result.ok()) << result.status();
  const std::string prefix = "spiffe://example.org/spire/agent/" + GetParam() + "/";
  const std::string id = result->agent_id.String();
  ASSERT_EQ(id.rfind(prefix, 0), 0u) << id;
  EXPECT_GT(id.size(), prefix.size()) << id;
  EXPECT_EQ(id.find('/', prefix.size()), std::string::npos) << id;
  for (const auto& s : result->selectors) {
    EXPECT_EQ(s.type, GetParam());
    EXPECT_FALSE(s.value.empty());
  }
  EXPECT_EQ(result->reattestable, m_->Reattestable());
}

TEST_P(NodeAttestorConformanceTest, ServerChallengesOnlyWhenTheMechanismDoes) {
  auto payload = m_->agent().Payload();
  ASSERT_TRUE(payload.ok());
  int calls = 0;
  auto result = m_->server().Attest(*payload, [&](std::string c) {
    ++calls;
    return m_->agent().Answer(c);
  });
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_EQ(calls, m_->UsesChallenge() ? 1 : 0);
}

TEST_P(NodeAttestorConformanceTest, WrongChallengeAnswerIsPermissionDenied) {
  if (!m_->UsesChallenge()) GTEST_SKIP() << GetParam() << " has no challenge";
  auto payload = m_->agent().Payload();
  ASSERT_TRUE(payload.ok());
  auto result = m_->server().Attest(
      *payload, [](std::string) -> absl::StatusOr<std::string> { return std::string(64, 'x'); });
  ASSERT_FALSE(result.ok());
  EXPECT_TRUE(absl::IsPermissionDenied(result.status())) << result.status();
  EXPECT_NE(result.status().message().find(m_->ErrorSubject()), std::string::npos);
}

TEST_P(NodeAttestorConformanceTest, FailedChallengeRoundTripFailsAttestation) {
  if (!m_->UsesChallenge()) GTEST_SKIP() << GetParam() << " has no challenge";
  auto payload = m_->agent().Payload();
  ASSERT_TRUE(payload.ok());
  auto result = m_->server().Attest(*payload, [](std::string) -> absl::StatusOr<std::string> {
    return absl::UnavailableError("agent went away");
  });
  ASSERT_FALSE(result.ok());
  EXPECT_NE(result.status().message().find("agent went away"), std::string::npos);
}

TEST_P(NodeAttestorConformanceTest, EmptyPayloadIsInvalidArgument) {
  auto result = m_->server().Attest("", HonestAgent());
  ASSERT_FALSE(result.ok());
  EXPECT_TRUE(absl::IsInvalidArgument(result.status())) << result.status();
  EXPECT_NE(result.status().message().find(m_->ErrorSubject()), std::string::npos);
}

TEST_P(NodeAttestorConformanceTest, GarbagePayloadIsRefusedNamingTheMechanism) {
  for (const std::string& garbage :
       {std::string("\x30\x82\xff\xff garbage", 13), std::string(5000, '\x01'),
        std::string("../../etc/passwd")}) {
    auto result = m_->server().Attest(garbage, HonestAgent());
    ASSERT_FALSE(result.ok());
    ExpectRefusal(result.status());
  }
}

TEST_P(NodeAttestorConformanceTest, AgentRefusesMalformedChallenge) {
  for (const std::string& challenge : {std::string(), std::string(3, 'c'), std::string(4096, 'c')}) {
    auto answer = m_->agent().Answer(challenge);
    ASSERT_FALSE(answer.ok());
    EXPECT_TRUE(absl::IsInvalidArgument(answer.status())) << answer.status();
  }
}

TEST_P(NodeAttestorConformanceTest, RepeatAttestationFollowsReattestability) {
  auto payload = m_->agent().Payload();
  ASSERT_TRUE(payload.ok());
  auto first = m_->server().Attest(*payload, HonestAgent());
  ASSERT_TRUE(first.ok()) << first.status();
  auto second = m_->server().Attest(*payload, HonestAgent());
  if (m_->Reattestable()) {
    ASSERT_TRUE(second.ok()) << second.status();
    EXPECT_EQ(second->agent_id, first->agent_id);
  } else {
    ASSERT_FALSE(second.ok());
    EXPECT_TRUE(absl::IsPermissionDenied(second.status())) << second.status();
  }
}

INSTANTIATE_TEST_SUITE_P(AllMechanisms, NodeAttestorConformanceTest,
                         ::testing::Values(std::string(kJoinTokenName), std::string(kX509PopName)),
                         [](const auto& info) { return info.param; });

}  // namespace
}  // namespace trellis::attestors
