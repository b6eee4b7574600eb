// k8s_psat server and agent sides against the fake Kubernetes API.
#include "attestors/k8s/k8s_psat.h"

#include <nlohmann/json.hpp>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/attestors/k8s/fake_kube_api.h"
#include "tests/testutil/status_matchers.h"
#include "tests/testutil/temp_dir.h"

namespace trellis::attestors {
namespace {

using k8s::testing::FakeAnswer;
using k8s::testing::FakeKubeApi;
using k8s::testing::FakeNode;
using k8s::testing::FakePod;
using k8s::testing::FakeToken;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using testutil::IsOk;
using testutil::StatusIs;

using ChallengeFn = std::function<absl::StatusOr<std::string>(std::string)>;

const ChallengeFn kNoChallenge = [](std::string) -> absl::StatusOr<std::string> {
  ADD_FAILURE() << "k8s_psat must not challenge";
  return absl::InternalError("unexpected challenge");
};

common::TrustDomain Td() { return *common::TrustDomain::Parse("example.org"); }

std::string PayloadFor(const std::string& cluster, const std::string& token) {
  return nlohmann::json{{"cluster", cluster}, {"token", token}}.dump();
}

FakeToken AgentToken() {
  FakeToken t;
  t.namespace_name = "spire";
  t.service_account = "spire-agent";
  t.pod_name = "spire-agent-x7k2p";
  t.pod_uid = "4a6f1c2e-pod";
  t.audiences = {"spire-server"};
  return t;
}

class K8sPsatTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_THAT(api_.Start(), IsOk());
    api_.AddNode({"worker-1", "9b1d-node-uid", {{"zone", "eu-1a"}, {"pool", "blue"}}});
    api_.AddPod({"spire",
                 "spire-agent-x7k2p",
                 "4a6f1c2e-pod",
                 "worker-1",
                 "10.0.3.7",
                 {{"app", "spire-agent"}, {"rev", "3"}}});
    api_.AcceptToken("agent-token", AgentToken());
    common::config::K8sPsatClusterConfig cluster;
    cluster.service_account_allow_list = {"kube-system:other", "spire:spire-agent"};
    cluster.kube_config_file = api_.KubeconfigPath(dir_.path());
    cluster.allowed_node_label_keys = {"zone", "missing"};
    cluster.allowed_pod_label_keys = {"app"};
    config_.clusters["prod-eu"] = cluster;
  }

  std::unique_ptr<K8sPsatServerAttestor> Server() {
    auto server = K8sPsatServerAttestor::Create(Td(), config_);
    EXPECT_THAT(server, IsOk());
    return server.ok() ? std::move(*server) : nullptr;
  }

  absl::StatusOr<ServerNodeAttestor::Result> Attest(const std::string& token,
                                                    const std::string& cluster = "prod-eu") {
    auto server = Server();
    if (server == nullptr) return absl::InternalError("no server");
    return server->Attest(PayloadFor(cluster, token), kNoChallenge);
  }

  testutil::TempDir dir_{"k8s-psat"};
  FakeKubeApi api_;
  common::config::K8sPsatServerAttestorConfig config_;
};

std::vector<std::string> Values(const std::vector<datastore::Selector>& selectors) {
  std::vector<std::string> out;
  for (const auto& s : selectors) {
    EXPECT_EQ(s.type, "k8s_psat");
    out.push_back(s.value);
  }
  return out;
}

TEST_F(K8sPsatTest, ValidTokenYieldsNodeAgentIdAndSelectors) {
  absl::StatusOr<ServerNodeAttestor::Result> result = Attest("agent-token");
  ASSERT_THAT(result, IsOk());
  EXPECT_EQ(result->agent_id.String(),
            "spiffe://example.org/spire/agent/k8s_psat/prod-eu/9b1d-node-uid");
  EXPECT_TRUE(result->reattestable);
  EXPECT_THAT(Values(result->selectors),
              ElementsAre("cluster:prod-eu", "agent_ns:spire", "agent_sa:spire-agent",
                          "agent_pod_name:spire-agent-x7k2p", "agent_pod_uid:4a6f1c2e-pod",
                          "agent_node_ip:10.0.3.7", "agent_node_name:worker-1",
                          "agent_node_uid:9b1d-node-uid", "agent_node_label:zone:eu-1a",
                          "agent_pod_label:app:spire-agent"));
  // The review asked for the configured (default) audience.
  EXPECT_THAT(api_.LastReviewAudiences(), ElementsAre("spire-server"));
}

TEST_F(K8sPsatTest, AgentPayloadAttestsEndToEnd) {
  const std::string token_path = dir_.Write("agent-token", "agent-token\n");
  auto agent = K8sPsatAgentAttestor::Create({.cluster = "prod-eu", .token_path = token_path});
  ASSERT_THAT(agent, IsOk());
  EXPECT_EQ((*agent)->Name(), "k8s_psat");
  absl::StatusOr<std::string> payload = (*agent)->Payload();
  ASSERT_THAT(payload, IsOk());
  EXPECT_EQ(nlohmann::json::parse(*payload),
            (nlohmann::json{{"cluster", "prod-eu"}, {"token", "agent-token"}}));
  auto server = Server();
  ASSERT_NE(server, nullptr);
  EXPECT_EQ(server->Name(), "k8s_psat");
  EXPECT_THAT(server->Attest(*payload, kNoChallenge), IsOk());
}

TEST_F(K8sPsatTest, AgentReadsTheRotatedTokenFile) {
  const std::string token_path = dir_.Write("agent-token", "first");
  auto agent = K8sPsatAgentAttestor::Create({.cluster = "prod-eu", .token_path = token_path});
  ASSERT_THAT(agent, IsOk());
  ASSERT_THAT((*agent)->Payload(), IsOk());
  dir_.Write("agent-token", "  second\n");
  absl::StatusOr<std::string> payload = (*agent)->Payload();
  ASSERT_THAT(payload, IsOk());
  EXPECT_EQ(nlohmann::json::parse(*payload)["token"], "second");
}

TEST_F(K8sPsatTest, AgentWithoutTokenFileFails) {
  auto agent =
      K8sPsatAgentAttestor::Create({.cluster = "prod-eu", .token_path = dir_.Sub("absent")});
  ASSERT_THAT(agent, IsOk());
  EXPECT_THAT((*agent)->Payload(),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("k8s_psat")));
  dir_.Write("absent", " \n");
  EXPECT_THAT((*agent)->Payload(),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("is empty")));
}

TEST_F(K8sPsatTest, AgentNeedsACluster) {
  EXPECT_THAT(K8sPsatAgentAttestor::Create({.cluster = "", .token_path = "/t"}),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("cluster")));
}

TEST_F(K8sPsatTest, AgentRefusesAnyChallenge) {
  auto agent = K8sPsatAgentAttestor::Create({.cluster = "prod-eu", .token_path = "/t"});
  ASSERT_THAT(agent, IsOk());
  EXPECT_THAT((*agent)->Answer("nonce"),
              StatusIs(absl::StatusCode::kInvalidArgument, "k8s_psat: no challenge expected"));
}

TEST_F(K8sPsatTest, UnauthenticatedTokenIsDenied) {
  EXPECT_THAT(Attest("forged-token"),
              StatusIs(absl::StatusCode::kPermissionDenied,
                       HasSubstr("k8s_psat: token is not authenticated in cluster \"prod-eu\": "
                                 "[invalid bearer token")));
}

TEST_F(K8sPsatTest, ServiceAccountNotOnTheAllowListIsDenied) {
  FakeToken t = AgentToken();
  t.service_account = "default";
  api_.AcceptToken("default-sa", t);
  EXPECT_THAT(Attest("default-sa"),
              StatusIs(absl::StatusCode::kPermissionDenied,
                       HasSubstr("k8s_psat: service account \"spire:default\" is not allowed")));
}

TEST_F(K8sPsatTest, UserThatIsNotAServiceAccountIsDenied) {
  FakeToken t = AgentToken();
  t.username = "system:node:worker-1";
  api_.AcceptToken("node-token", t);
  EXPECT_THAT(Attest("node-token"),
              StatusIs(absl::StatusCode::kPermissionDenied, HasSubstr("is not a service account")));
}

TEST_F(K8sPsatTest, TokenForAnotherAudienceIsDenied) {
  FakeToken t = AgentToken();
  t.audiences = {"https://kubernetes.default.svc.cluster.local"};
  api_.AcceptToken("api-audience", t);
  EXPECT_THAT(Attest("api-audience"),
              StatusIs(absl::StatusCode::kPermissionDenied, HasSubstr("is invalid for the target "
                                                                      "audiences")));
}

TEST_F(K8sPsatTest, ConfiguredAudiencesAreSentAndHonoured) {
  config_.clusters["prod-eu"].audience = {"trellis", "spire-server"};
  FakeToken t = AgentToken();
  t.audiences = {"trellis"};
  api_.AcceptToken("trellis-token", t);
  EXPECT_THAT(Attest("trellis-token"), IsOk());
  EXPECT_THAT(api_.LastReviewAudiences(), ElementsAre("trellis", "spire-server"));
  config_.clusters["prod-eu"].audience = {"spire-server"};
  EXPECT_THAT(Attest("trellis-token"), StatusIs(absl::StatusCode::kPermissionDenied));
}

TEST_F(K8sPsatTest, AuthenticatedReviewWithoutOurAudienceIsDenied) {
  // An API server that ignores spec.audiences answers with its own audience (or none).
  api_.SetAnswer("/apis/authentication.k8s.io/v1/tokenreviews",
                 {201, R"({"kind":"TokenReview","apiVersion":"authentication.k8s.io/v1",
                  "status":{"authenticated":true,"user":{
                  "username":"system:serviceaccount:spire:spire-agent",
                  "extra":{"authentication.kubernetes.io/pod-name":["spire-agent-x7k2p"],
                           "authentication.kubernetes.io/pod-uid":["4a6f1c2e-pod"]}}}})"});
  EXPECT_THAT(Attest("agent-token"),
              StatusIs(absl::StatusCode::kPermissionDenied,
                       HasSubstr("token audiences [] do not include any of [spire-server]")));
}

TEST_F(K8sPsatTest, TokenNotBoundToAPodIsDenied) {
  FakeToken t = AgentToken();
  t.pod_name.clear();
  t.pod_uid.clear();
  api_.AcceptToken("secret-token", t);
  EXPECT_THAT(Attest("secret-token"),
              StatusIs(absl::StatusCode::kPermissionDenied, HasSubstr("is not bound to a pod")));
}

TEST_F(K8sPsatTest, TokenOfARecreatedPodIsDenied) {
  // Same pod name, new object: the token was issued for the old pod.
  api_.AddPod({"spire", "spire-agent-x7k2p", "new-pod-uid", "worker-1", "10.0.3.7", {}});
  EXPECT_THAT(Attest("agent-token"),
              StatusIs(absl::StatusCode::kPermissionDenied,
                       HasSubstr("was issued for UID 4a6f1c2e-pod (a stale or replayed token)")));
}

TEST_F(K8sPsatTest, DeletedPodIsDenied) {
  api_.RemovePod("spire", "spire-agent-x7k2p");
  EXPECT_THAT(Attest("agent-token"),
              StatusIs(absl::StatusCode::kPermissionDenied,
                       HasSubstr("pod spire/spire-agent-x7k2p does not exist")));
}

TEST_F(K8sPsatTest, MissingNodeIsDenied) {
  api_.RemoveNode("worker-1");
  EXPECT_THAT(Attest("agent-token"), StatusIs(absl::StatusCode::kPermissionDenied,
                                              HasSubstr("node worker-1 does not exist")));
}

TEST_F(K8sPsatTest, UnscheduledPodIsDenied) {
  api_.AddPod({"spire", "spire-agent-x7k2p", "4a6f1c2e-pod", "", "", {}});
  EXPECT_THAT(Attest("agent-token"),
              StatusIs(absl::StatusCode::kPermissionDenied, HasSubstr("not scheduled on a node")));
}

TEST_F(K8sPsatTest, TokenBoundToAnotherNodeIsDenied) {
  FakeToken t = AgentToken();
  t.node_name = "worker-2";
  api_.AcceptToken("node-bound", t);
  EXPECT_THAT(Attest("node-bound"),
              StatusIs(absl::StatusCode::kPermissionDenied, HasSubstr("bound to node worker-2")));
  t.node_name = "worker-1";
  api_.AcceptToken("node-bound", t);
  EXPECT_THAT(Attest("node-bound"), IsOk());
}

TEST_F(K8sPsatTest, NodeUidThatIsNotAPathSegmentIsDenied) {
  api_.AddNode({"worker-1", "uid/with/slashes", {}});
  EXPECT_THAT(Attest("agent-token"),
              StatusIs(absl::StatusCode::kPermissionDenied, HasSubstr("node UID")));
  api_.AddNode({"worker-1", "..", {}});
  EXPECT_THAT(Attest("agent-token"),
              StatusIs(absl::StatusCode::kPermissionDenied, HasSubstr("node UID")));
}

TEST_F(K8sPsatTest, ApiServerErrorIsUnavailableNamingThePlugin) {
  api_.SetAnswer("/apis/authentication.k8s.io/v1/tokenreviews",
                 {500, R"({"kind":"Status","message":"internal error","code":500})"});
  EXPECT_THAT(Attest("agent-token"),
              StatusIs(absl::StatusCode::kUnavailable,
                       HasSubstr("k8s_psat: cluster \"prod-eu\": Kubernetes API")));
}

TEST_F(K8sPsatTest, MalformedPodAnswerIsInternalNamingThePlugin) {
  api_.SetAnswer("/api/v1/namespaces/spire/pods/spire-agent-x7k2p",
                 {200, "<html>proxy error</html>", "text/html"});
  EXPECT_THAT(Attest("agent-token"),
              StatusIs(absl::StatusCode::kInternal, HasSubstr("k8s_psat: cluster \"prod-eu\"")));
}

TEST_F(K8sPsatTest, UnknownClusterIsDenied) {
  EXPECT_THAT(Attest("agent-token", "staging"),
              StatusIs(absl::StatusCode::kPermissionDenied,
                       "k8s_psat: cluster \"staging\" is not configured"));
  EXPECT_EQ(api_.RequestCount(), 0);
}

TEST_F(K8sPsatTest, MalformedPayloadsAreInvalidArgument) {
  auto server = Server();
  ASSERT_NE(server, nullptr);
  for (const std::string payload :
       {"", "not json", "[]", "{}", R"({"cluster":"prod-eu"})", R"({"token":"agent-token"})",
        R"({"cluster":"prod-eu","token":7})", R"({"cluster":"","token":"t"})"}) {
    EXPECT_THAT(server->Attest(payload, kNoChallenge),
                StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("k8s_psat")))
        << payload;
  }
  EXPECT_EQ(api_.RequestCount(), 0);
}

TEST_F(K8sPsatTest, OversizedPayloadIsInvalidArgument) {
  auto server = Server();
  ASSERT_NE(server, nullptr);
  EXPECT_THAT(server->Attest(PayloadFor("prod-eu", std::string(100000, 'a')), kNoChallenge),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("too large")));
}

TEST_F(K8sPsatTest, InClusterClientIsUsedWithoutKubeconfig) {
  common::config::K8sPsatServerAttestorConfig config = config_;
  config.clusters["prod-eu"].kube_config_file.clear();
  K8sPsatServerOptions options;
  options.in_cluster.service_host = "127.0.0.1";
  options.in_cluster.service_port = std::to_string(api_.Port());
  options.in_cluster.token_path = dir_.Write("sa-token", "trellis-server-sa-token");
  options.in_cluster.ca_path = dir_.Write("sa-ca.crt", api_.CaPem());
  auto server = K8sPsatServerAttestor::Create(Td(), config, options);
  ASSERT_THAT(server, IsOk());
  EXPECT_THAT((*server)->Attest(PayloadFor("prod-eu", "agent-token"), kNoChallenge), IsOk());
}

// ---- Configuration --------------------------------------------------------------------------

TEST_F(K8sPsatTest, ConfigWithoutClustersIsInvalid) {
  EXPECT_THAT(K8sPsatServerAttestor::Create(Td(), {}),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("at least one cluster")));
}

TEST_F(K8sPsatTest, ClusterWithoutAllowListIsInvalid) {
  config_.clusters["prod-eu"].service_account_allow_list.clear();
  EXPECT_THAT(K8sPsatServerAttestor::Create(Td(), config_),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("cluster \"prod-eu\" needs service_account_allow_list")));
}

TEST_F(K8sPsatTest, MalformedAllowListEntryIsInvalid) {
  config_.clusters["prod-eu"].service_account_allow_list = {"spire-agent"};
  EXPECT_THAT(K8sPsatServerAttestor::Create(Td(), config_),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("\"namespace:name\"")));
}

TEST_F(K8sPsatTest, UnreadableKubeconfigIsInvalid) {
  config_.clusters["prod-eu"].kube_config_file = dir_.Sub("no-kubeconfig");
  EXPECT_THAT(K8sPsatServerAttestor::Create(Td(), config_),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("no-kubeconfig")));
}

TEST_F(K8sPsatTest, ClusterNameThatIsNotAPathSegmentIsInvalid) {
  config_.clusters["a/b"] = config_.clusters["prod-eu"];
  EXPECT_THAT(K8sPsatServerAttestor::Create(Td(), config_),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("cluster name \"a/b\"")));
  config_.clusters.erase("a/b");
  config_.clusters["prod eu"] = config_.clusters["prod-eu"];
  EXPECT_THAT(K8sPsatServerAttestor::Create(Td(), config_),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("cluster name")));
}

}  // namespace
}  // namespace trellis::attestors
