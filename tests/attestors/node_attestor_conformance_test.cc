// The node attestor contract, run against every mechanism's server and agent sides together.
#include <stdlib.h>

#include <algorithm>
#include <filesystem>
#include <memory>
#include <string>

#include "attestors/cloud/aws_iid.h"
#include "attestors/cloud/azure_msi.h"
#include "attestors/cloud/gcp_iit.h"
#include "attestors/k8s/k8s_psat.h"
#include "attestors/node/join_token.h"
#include "attestors/node/node_attestor_factory.h"
#include "attestors/node/x509pop.h"
#include "common/clock.h"
#include "common/file_util.h"
#include "datastore/factory.h"
#include "gtest/gtest.h"
#include "tests/attestors/cloud/fake_aws.h"
#include "tests/attestors/cloud/fake_cloud_identity.h"
#include "tests/attestors/k8s/fake_kube_api.h"
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
  // Whether attesting uses the proof up (a join token), so the attestor itself refuses it a
  // second time. Otherwise a non-reattestable agent is stopped by the server, which finds the
  // agent ID already attested (trust on first use).
  virtual bool ProofIsSpent() const { return false; }
  // Path segments after "/spire/agent/<plugin>/" in the agent ID.
  virtual int AgentIdSegments() const { return 1; }
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
    auto agent = CreateAgentNodeAttestor(common::config::JoinTokenAgentAttestorConfig{},
                                         "conformance-token");
    EXPECT_TRUE(agent.ok()) << agent.status();
    agent_ = std::move(*agent);
  }
  bool UsesChallenge() const override { return false; }
  bool Reattestable() const override { return false; }
  bool ProofIsSpent() const override { return true; }
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

// The agent's pod and node in a fake cluster; the server reviews the token there.
class K8sPsatMechanism final : public Mechanism {
 public:
  K8sPsatMechanism() {
    EXPECT_TRUE(api_.Start().ok());
    api_.AddNode({"node-c", "6b1f0c7e-5d1a-4a57-9a44-2f5e5b0c1d01", {}});
    api_.AddPod(
        {"trellis", "agent-c", "0d3c9f4e-7a51-4b6e-8e0a-91c2d7a4b602", "node-c", "10.0.0.7", {}});
    k8s::testing::FakeToken token;
    token.namespace_name = "trellis";
    token.service_account = "trellis-agent";
    token.pod_name = "agent-c";
    token.pod_uid = "0d3c9f4e-7a51-4b6e-8e0a-91c2d7a4b602";
    api_.AcceptToken("conformance-psat", token);
    common::config::K8sPsatServerAttestorConfig server_config;
    common::config::K8sPsatClusterConfig cluster;
    cluster.service_account_allow_list = {"trellis:trellis-agent"};
    cluster.kube_config_file = api_.KubeconfigPath(dir_.path());
    server_config.clusters["conformance"] = cluster;
    auto server = CreateServerNodeAttestor(server_config, Td(), nullptr, clock_);
    EXPECT_TRUE(server.ok()) << server.status();
    server_ = std::move(*server);
    common::config::K8sPsatAgentAttestorConfig agent_config;
    agent_config.cluster = "conformance";
    agent_config.token_path = dir_.path() + "/token";
    EXPECT_TRUE(common::WritePrivateFile(agent_config.token_path, "conformance-psat\n").ok());
    auto agent = CreateAgentNodeAttestor(agent_config, "");
    EXPECT_TRUE(agent.ok()) << agent.status();
    agent_ = std::move(*agent);
  }
  bool UsesChallenge() const override { return false; }
  bool Reattestable() const override { return true; }
  int AgentIdSegments() const override { return 2; }  // <cluster>/<node uid>
  std::string ErrorSubject() const override { return "k8s_psat"; }

 private:
  TempDir dir_;
  k8s::testing::FakeKubeApi api_;
};

// A signed identity token from a fake metadata service; the server reads the issuer's keys
// from a file.
class GcpIitMechanism final : public Mechanism {
 public:
  GcpIitMechanism() {
    clock_.Set(absl::Now());
    const absl::Time now = clock_.Now();
    metadata_.SetToken(google_.Sign(
        {{"iss", "https://accounts.google.com"},
         {"aud", kGcpIitAudience},
         {"sub", "1234"},
         {"iat", absl::ToUnixSeconds(now)},
         {"exp", absl::ToUnixSeconds(now + absl::Hours(1))},
         {"google",
          {{"compute_engine",
            {{"project_id", "conformance-project"},
             {"project_number", 42},
             {"zone", "europe-west1-b"},
             {"instance_id", "4242"},
             {"instance_name", "node-c"},
             {"instance_creation_timestamp", absl::ToUnixSeconds(now - absl::Hours(1))}}}}}}));
    common::config::GcpIitServerAttestorConfig server_config;
    server_config.projectid_allow_list = {"conformance-project"};
    server_config.google_certs_url = dir_.path() + "/google-certs.json";
    EXPECT_TRUE(
        common::WritePrivateFile(server_config.google_certs_url, cloudtest::Jwks({&google_})).ok());
    auto server = CreateServerNodeAttestor(server_config, Td(), nullptr, clock_);
    EXPECT_TRUE(server.ok()) << server.status();
    server_ = std::move(*server);
    common::config::GcpIitAgentAttestorConfig agent_config;
    agent_config.identity_token_host = metadata_.host();
    auto agent = CreateAgentNodeAttestor(agent_config, "");
    EXPECT_TRUE(agent.ok()) << agent.status();
    agent_ = std::move(*agent);
  }
  bool UsesChallenge() const override { return false; }
  bool Reattestable() const override { return false; }
  int AgentIdSegments() const override { return 2; }  // <project>/<instance id>
  std::string ErrorSubject() const override { return "gcp_iit"; }

 private:
  TempDir dir_;
  cloudtest::SigningKey google_{"conformance-google", cloudtest::RsaKey(1)};
  cloudtest::FakeGcpMetadataServer metadata_;
};

class AzureMsiMechanism final : public Mechanism {
 public:
  static constexpr char kTenant[] = "5f1c2d3e-0000-4000-8000-00000000c0fe";
  AzureMsiMechanism() {
    clock_.Set(absl::Now());
    const absl::Time now = clock_.Now();
    imds_.SetToken(tenant_key_.Sign(
        {{"iss", std::string("https://sts.windows.net/") + kTenant + "/"},
         {"aud", "https://management.azure.com/"},
         {"tid", kTenant},
         {"sub", "7d6b5a4c-0000-4000-8000-0000000000aa"},
         {"iat", absl::ToUnixSeconds(now)},
         {"nbf", absl::ToUnixSeconds(now)},
         {"exp", absl::ToUnixSeconds(now + absl::Hours(1))},
         {"xms_mirid", cloudtest::SystemAssignedMirid("0c0ffee0-0000-4000-8000-000000000001",
                                                      "conformance", "node-c")}}));
    common::config::AzureMsiServerAttestorConfig server_config;
    server_config.tenants[kTenant] = {};
    server_config.jwks_url = dir_.path() + "/{tenant}.json";
    EXPECT_TRUE(common::WritePrivateFile(dir_.path() + "/" + kTenant + ".json",
                                         cloudtest::Jwks({&tenant_key_}))
                    .ok());
    auto server = CreateServerNodeAttestor(server_config, Td(), nullptr, clock_);
    EXPECT_TRUE(server.ok()) << server.status();
    server_ = std::move(*server);
    common::config::AzureMsiAgentAttestorConfig agent_config;
    agent_config.metadata_endpoint = imds_.base_url();
    auto agent = CreateAgentNodeAttestor(agent_config, "");
    EXPECT_TRUE(agent.ok()) << agent.status();
    agent_ = std::move(*agent);
  }
  bool UsesChallenge() const override { return false; }
  bool Reattestable() const override { return false; }
  int AgentIdSegments() const override { return 2; }  // <tenant>/<principal>
  std::string ErrorSubject() const override { return "azure_msi"; }

 private:
  TempDir dir_;
  cloudtest::SigningKey tenant_key_{"conformance-tenant", cloudtest::RsaKey(2)};
  cloudtest::FakeAzureImds imds_;
};

// An instance identity document signed by a certificate standing in for AWS's, served by a
// fake IMDSv2.
class AwsIidMechanism final : public Mechanism {
 public:
  AwsIidMechanism() {
    imds_.ServeSigned(fakeaws::Document{}.ToJson(), signer_);
    common::config::AwsIidServerAttestorConfig server_config;
    server_config.aws_ca_cert_paths = {"us-east-1=" + dir_.path() + "/aws.pem"};
    EXPECT_TRUE(common::WritePrivateFile(dir_.path() + "/aws.pem", signer_.CertPem()).ok());
    auto server = CreateServerNodeAttestor(server_config, Td(), nullptr, clock_);
    EXPECT_TRUE(server.ok()) << server.status();
    server_ = std::move(*server);
    common::config::AwsIidAgentAttestorConfig agent_config;
    agent_config.ec2_metadata_endpoint = imds_.endpoint();
    auto agent = CreateAgentNodeAttestor(agent_config, "");
    EXPECT_TRUE(agent.ok()) << agent.status();
    agent_ = std::move(*agent);
  }
  bool UsesChallenge() const override { return false; }
  bool Reattestable() const override { return false; }
  int AgentIdSegments() const override { return 3; }  // <account>/<region>/<instance>
  std::string ErrorSubject() const override { return "aws_iid"; }

 private:
  TempDir dir_;
  fakeaws::Signer signer_;
  fakeaws::FakeImds imds_;
};

std::unique_ptr<Mechanism> MakeMechanism(const std::string& name) {
  if (name == kAwsIidName) return std::make_unique<AwsIidMechanism>();
  if (name == kJoinTokenName) return std::make_unique<JoinTokenMechanism>();
  if (name == kX509PopName) return std::make_unique<X509PopMechanism>();
  if (name == kK8sPsatName) return std::make_unique<K8sPsatMechanism>();
  if (name == kGcpIitName) return std::make_unique<GcpIitMechanism>();
  if (name == kAzureMsiName) return std::make_unique<AzureMsiMechanism>();
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
  const std::string rest = id.substr(prefix.size());
  EXPECT_EQ(static_cast<int>(std::count(rest.begin(), rest.end(), '/')) + 1, m_->AgentIdSegments())
      << id;
  EXPECT_EQ(rest.find("//"), std::string::npos) << id;
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
  for (const std::string& garbage : {std::string("\x30\x82\xff\xff garbage", 13),
                                     std::string(5000, '\x01'), std::string("../../etc/passwd")}) {
    auto result = m_->server().Attest(garbage, HonestAgent());
    ASSERT_FALSE(result.ok());
    ExpectRefusal(result.status());
  }
}

TEST_P(NodeAttestorConformanceTest, AgentRefusesMalformedChallenge) {
  for (const std::string& challenge :
       {std::string(), std::string(3, 'c'), std::string(4096, 'c')}) {
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
  if (m_->ProofIsSpent()) {
    ASSERT_FALSE(second.ok());
    EXPECT_TRUE(absl::IsPermissionDenied(second.status())) << second.status();
  } else {
    // The same proof names the same agent; the server decides from reattestable.
    ASSERT_TRUE(second.ok()) << second.status();
    EXPECT_EQ(second->agent_id, first->agent_id);
    EXPECT_EQ(second->reattestable, m_->Reattestable());
  }
}

INSTANTIATE_TEST_SUITE_P(AllMechanisms, NodeAttestorConformanceTest,
                         ::testing::Values(std::string(kJoinTokenName), std::string(kX509PopName),
                                           std::string(kK8sPsatName), std::string(kAwsIidName),
                                           std::string(kGcpIitName), std::string(kAzureMsiName)),
                         [](const auto& info) { return info.param; });

}  // namespace
}  // namespace trellis::attestors
