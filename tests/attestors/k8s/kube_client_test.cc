// KubeClient against the fake API: kubeconfig and in-cluster set-up, TLS, calls and errors.
#include "attestors/k8s/kube_client.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

#include <fstream>

#include "absl/strings/escaping.h"
#include "absl/strings/str_replace.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/attestors/cloud/drip_server.h"
#include "tests/attestors/k8s/fake_kube_api.h"
#include "tests/testutil/status_matchers.h"
#include "tests/testutil/temp_dir.h"

namespace trellis::attestors::k8s {
namespace {

using ::testing::ElementsAre;
using testing::FakeAnswer;
using testing::FakeKubeApi;
using testing::FakeNode;
using testing::FakePod;
using testing::FakeToken;
using ::testing::HasSubstr;
using testing::KubeconfigOptions;
using ::testing::Pair;
using testutil::IsOk;
using testutil::StatusIs;

using Trust = KubeconfigOptions::Trust;
using Auth = KubeconfigOptions::Auth;

KubeconfigOptions Kc(Trust trust, Auth auth = Auth::kToken, const std::string& server = "") {
  KubeconfigOptions o;
  o.trust = trust;
  o.auth = auth;
  o.server = server;
  return o;
}

std::string ReadAll(const std::string& path) {
  std::ifstream f(path);
  return std::string(std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>());
}

class KubeClientTest : public ::testing::Test {
 protected:
  void SetUp() override { Serve(api_); }

  static void Serve(FakeKubeApi& api) {
    ASSERT_THAT(api.Start(), IsOk());
    api.AddNode({"node-a", "node-uid-a", {{"zone", "z1"}}});
    api.AddPod({"spire", "agent-1", "pod-uid-1", "node-a", "10.0.0.4", {{"app", "agent"}}});
  }

  std::unique_ptr<KubeClient> Client(const KubeconfigOptions& options = {}) {
    auto client = KubeClient::FromKubeconfig(api_.KubeconfigPath(dir_.path(), options));
    EXPECT_THAT(client, IsOk());
    return client.ok() ? std::move(*client) : nullptr;
  }

  // Writes `yaml` as a kubeconfig and returns the status of loading it.
  absl::Status Load(const std::string& yaml) {
    return KubeClient::FromKubeconfig(dir_.Write("custom-kubeconfig", yaml)).status();
  }

  testutil::TempDir dir_{"k8s-client"};
  FakeKubeApi api_;
};

TEST_F(KubeClientTest, TokenAndCaDataReadANode) {
  auto client = Client();
  ASSERT_NE(client, nullptr);
  absl::StatusOr<NodeInfo> node = client->GetNode("node-a");
  ASSERT_THAT(node, IsOk());
  EXPECT_EQ(node->name, "node-a");
  EXPECT_EQ(node->uid, "node-uid-a");
  EXPECT_THAT(node->labels, ElementsAre(Pair("zone", "z1")));
  EXPECT_EQ(api_.LastCallerToken(), "trellis-server-sa-token");
}

TEST_F(KubeClientTest, PodFieldsAreRead) {
  auto client = Client();
  ASSERT_NE(client, nullptr);
  absl::StatusOr<PodInfo> pod = client->GetPod("spire", "agent-1");
  ASSERT_THAT(pod, IsOk());
  EXPECT_EQ(pod->name, "agent-1");
  EXPECT_EQ(pod->namespace_name, "spire");
  EXPECT_EQ(pod->uid, "pod-uid-1");
  EXPECT_EQ(pod->node_name, "node-a");
  EXPECT_EQ(pod->host_ip, "10.0.0.4");
  EXPECT_THAT(pod->labels, ElementsAre(Pair("app", "agent")));
}

TEST_F(KubeClientTest, CaFileRelativeToTheKubeconfigIsUsed) {
  auto client = Client(Kc(Trust::kCaFile));
  ASSERT_NE(client, nullptr);
  EXPECT_THAT(client->GetNode("node-a"), IsOk());
}

TEST_F(KubeClientTest, InsecureSkipTlsVerifyConnectsWithoutACa) {
  auto client = Client(Kc(Trust::kInsecure));
  ASSERT_NE(client, nullptr);
  EXPECT_THAT(client->GetNode("node-a"), IsOk());
}

TEST_F(KubeClientTest, ServerCertificateFromAnotherCaIsRefused) {
  FakeKubeApi other;  // a different generated CA, never started
  const std::string other_path =
      other.KubeconfigPath(dir_.path(), Kc(Trust::kCaData, Auth::kToken, api_.Url()));
  auto client = KubeClient::FromKubeconfig(other_path);
  ASSERT_THAT(client, IsOk());
  EXPECT_THAT((*client)->GetNode("node-a"),
              StatusIs(absl::StatusCode::kUnavailable, HasSubstr("does not verify")));
  EXPECT_EQ(api_.RequestCount(), 0);
}

TEST_F(KubeClientTest, TlsServerNameIsCheckedAgainstTheCertificate) {
  std::string yaml = ReadAll(api_.KubeconfigPath(dir_.path()));
  const std::string server_line = "    server: " + api_.Url() + "\n";
  ASSERT_NE(yaml.find(server_line), std::string::npos);
  auto with_name = [&](const std::string& name) {
    return absl::StrReplaceAll(
        yaml, {{server_line, server_line + "    tls-server-name: " + name + "\n"}});
  };
  auto wrong = KubeClient::FromKubeconfig(dir_.Write("wrong-name", with_name("kube.example")));
  ASSERT_THAT(wrong, IsOk());
  EXPECT_THAT((*wrong)->GetNode("node-a"),
              StatusIs(absl::StatusCode::kUnavailable, HasSubstr("mismatch")));
  auto right = KubeClient::FromKubeconfig(dir_.Write("right-name", with_name("localhost")));
  ASSERT_THAT(right, IsOk());
  EXPECT_THAT((*right)->GetNode("node-a"), IsOk());
}

TEST(KubeClientTlsTest, ClientCertificateDataAuthenticates) {
  FakeKubeApi api({.tls = true, .require_client_certificate = true});
  ASSERT_THAT(api.Start(), IsOk());
  api.AddNode({"node-a", "node-uid-a", {}});
  testutil::TempDir dir("k8s-cert");
  auto client = KubeClient::FromKubeconfig(
      api.KubeconfigPath(dir.path(), Kc(Trust::kCaData, Auth::kClientCertData)));
  ASSERT_THAT(client, IsOk());
  EXPECT_THAT((*client)->GetNode("node-a"), IsOk());
  EXPECT_EQ(api.LastCallerToken(), "");  // no bearer token was sent
}

TEST(KubeClientTlsTest, ClientCertificateFilesAuthenticate) {
  FakeKubeApi api({.tls = true, .require_client_certificate = true});
  ASSERT_THAT(api.Start(), IsOk());
  api.AddNode({"node-a", "node-uid-a", {}});
  testutil::TempDir dir("k8s-cert");
  auto client = KubeClient::FromKubeconfig(
      api.KubeconfigPath(dir.path(), Kc(Trust::kCaFile, Auth::kClientCertFile)));
  ASSERT_THAT(client, IsOk());
  EXPECT_THAT((*client)->GetNode("node-a"), IsOk());
}

TEST(KubeClientTlsTest, WithoutTheRequiredClientCertificateTheHandshakeFails) {
  FakeKubeApi api({.tls = true, .require_client_certificate = true});
  ASSERT_THAT(api.Start(), IsOk());
  testutil::TempDir dir("k8s-cert");
  auto client = KubeClient::FromKubeconfig(api.KubeconfigPath(dir.path()));
  ASSERT_THAT(client, IsOk());
  EXPECT_THAT((*client)->GetNode("node-a"), StatusIs(absl::StatusCode::kUnavailable));
}

TEST(KubeClientHttpTest, PlainHttpServerIsReachable) {
  FakeKubeApi api({.tls = false});
  ASSERT_THAT(api.Start(), IsOk());
  api.AddNode({"node-a", "node-uid-a", {}});
  testutil::TempDir dir("k8s-http");
  auto client = KubeClient::FromKubeconfig(api.KubeconfigPath(dir.path(), Kc(Trust::kInsecure)));
  ASSERT_THAT(client, IsOk());
  EXPECT_EQ((*client)->ServerUrl(), api.Url());
  EXPECT_THAT((*client)->GetNode("node-a"), IsOk());
}

TEST_F(KubeClientTest, TokenFileIsReadAgainOnEachCall) {
  auto client = Client(Kc(Trust::kCaData, Auth::kTokenFile));
  ASSERT_NE(client, nullptr);
  ASSERT_THAT(client->GetNode("node-a"), IsOk());
  EXPECT_EQ(api_.LastCallerToken(), "trellis-server-sa-token");
  // The kubelet rotates the projected token; the API accepts only the new one.
  api_.SetCallerToken("rotated-token");
  EXPECT_THAT(client->GetNode("node-a"),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("HTTP 401")));
  dir_.Write("caller-token", "rotated-token\n");
  EXPECT_THAT(client->GetNode("node-a"), IsOk());
  EXPECT_EQ(api_.LastCallerToken(), "rotated-token");
}

TEST_F(KubeClientTest, InClusterUsesServiceAccountFiles) {
  InClusterOptions in;
  in.service_host = "127.0.0.1";
  in.service_port = std::to_string(api_.Port());
  in.token_path = dir_.Write("sa-token", "trellis-server-sa-token\n");
  in.ca_path = dir_.Write("sa-ca.crt", api_.CaPem());
  auto client = KubeClient::InCluster(in);
  ASSERT_THAT(client, IsOk());
  EXPECT_THAT((*client)->GetNode("node-a"), IsOk());
  // Rotation: the file is read again.
  api_.SetCallerToken("second-token");
  dir_.Write("sa-token", "second-token");
  EXPECT_THAT((*client)->GetNode("node-a"), IsOk());
  EXPECT_EQ(api_.LastCallerToken(), "second-token");
}

TEST_F(KubeClientTest, InClusterWithoutServiceHostIsInvalid) {
  unsetenv("KUBERNETES_SERVICE_HOST");
  InClusterOptions in;
  in.service_port = "443";
  in.ca_path = dir_.Write("sa-ca.crt", api_.CaPem());
  EXPECT_THAT(KubeClient::InCluster(in),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("KUBERNETES_SERVICE_HOST")));
}

TEST_F(KubeClientTest, InClusterWithoutCaFileIsInvalid) {
  InClusterOptions in;
  in.service_host = "127.0.0.1";
  in.service_port = "443";
  in.ca_path = dir_.Sub("missing-ca.crt");
  EXPECT_THAT(KubeClient::InCluster(in),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("missing-ca.crt")));
}

TEST_F(KubeClientTest, MissingTokenFileFailsTheCallNotAsNotFound) {
  InClusterOptions in;
  in.service_host = "127.0.0.1";
  in.service_port = std::to_string(api_.Port());
  in.token_path = dir_.Sub("no-token");
  in.ca_path = dir_.Write("sa-ca.crt", api_.CaPem());
  auto client = KubeClient::InCluster(in);
  ASSERT_THAT(client, IsOk());
  EXPECT_THAT((*client)->GetNode("node-a"),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("no-token")));
}

TEST_F(KubeClientTest, TokenReviewSendsAudiencesAndReadsTheStatus) {
  FakeToken token;
  token.namespace_name = "spire";
  token.service_account = "spire-agent";
  token.pod_name = "agent-1";
  token.pod_uid = "pod-uid-1";
  token.audiences = {"spire-server", "other"};
  api_.AcceptToken("agent-token", token);
  auto client = Client();
  ASSERT_NE(client, nullptr);
  absl::StatusOr<TokenReviewStatus> review =
      client->CreateTokenReview("agent-token", {"spire-server", "third"});
  ASSERT_THAT(review, IsOk());
  EXPECT_THAT(api_.LastReviewAudiences(), ElementsAre("spire-server", "third"));
  EXPECT_TRUE(review->authenticated);
  EXPECT_EQ(review->username, "system:serviceaccount:spire:spire-agent");
  EXPECT_EQ(review->uid, "sa-uid-spire-spire-agent");
  EXPECT_THAT(review->audiences, ElementsAre("spire-server"));
  EXPECT_THAT(review->groups, ::testing::Contains("system:authenticated"));
  EXPECT_THAT(review->extra,
              ElementsAre(Pair("authentication.kubernetes.io/pod-name", ElementsAre("agent-1")),
                          Pair("authentication.kubernetes.io/pod-uid", ElementsAre("pod-uid-1"))));
}

TEST_F(KubeClientTest, TokenReviewOfAnUnknownTokenIsNotAuthenticated) {
  auto client = Client();
  ASSERT_NE(client, nullptr);
  absl::StatusOr<TokenReviewStatus> review = client->CreateTokenReview("forged", {"x"});
  ASSERT_THAT(review, IsOk());
  EXPECT_FALSE(review->authenticated);
  EXPECT_THAT(review->error, HasSubstr("invalid bearer token"));
}

TEST_F(KubeClientTest, NotFoundCarriesPathStatusAndKubernetesMessage) {
  auto client = Client();
  ASSERT_NE(client, nullptr);
  absl::Status s = client->GetPod("spire", "gone").status();
  EXPECT_THAT(s, StatusIs(absl::StatusCode::kNotFound,
                          HasSubstr("GET /api/v1/namespaces/spire/pods/gone: HTTP 404: pods "
                                    "\"gone\" not found")));
  EXPECT_THAT(s, StatusIs(absl::StatusCode::kNotFound, HasSubstr(api_.Url())));
}

TEST_F(KubeClientTest, ServerErrorIsUnavailableWithTheStatusMessage) {
  api_.SetAnswer("/api/v1/nodes/node-a",
                 {500, R"({"kind":"Status","apiVersion":"v1","status":"Failure",)"
                       R"("message":"etcdserver: request timed out","code":500})"});
  auto client = Client();
  ASSERT_NE(client, nullptr);
  EXPECT_THAT(client->GetNode("node-a"),
              StatusIs(absl::StatusCode::kUnavailable,
                       HasSubstr("HTTP 500: etcdserver: request timed out")));
}

TEST_F(KubeClientTest, MalformedJsonIsInternal) {
  api_.SetAnswer("/api/v1/nodes/node-a", {200, "{\"kind\":\"Node\",\"metadata\":"});
  auto client = Client();
  ASSERT_NE(client, nullptr);
  EXPECT_THAT(client->GetNode("node-a"),
              StatusIs(absl::StatusCode::kInternal, HasSubstr("malformed JSON")));
}

TEST_F(KubeClientTest, WrongFieldTypesAreInternal) {
  api_.SetAnswer("/api/v1/nodes/node-a",
                 {200, R"({"kind":"Node","metadata":{"name":"node-a","uid":7}})"});
  api_.SetAnswer("/apis/authentication.k8s.io/v1/tokenreviews",
                 {201, R"({"kind":"TokenReview","status":{"authenticated":"yes"}})"});
  auto client = Client();
  ASSERT_NE(client, nullptr);
  EXPECT_THAT(client->GetNode("node-a"),
              StatusIs(absl::StatusCode::kInternal, HasSubstr("metadata.uid is not a string")));
  EXPECT_THAT(client->CreateTokenReview("t", {"a"}),
              StatusIs(absl::StatusCode::kInternal, HasSubstr("status.authenticated")));
}

TEST_F(KubeClientTest, AnswerForAnotherObjectIsInternal) {
  api_.SetAnswer("/api/v1/nodes/node-a",
                 {200, R"({"kind":"Node","metadata":{"name":"node-b","uid":"u"}})"});
  auto client = Client();
  ASSERT_NE(client, nullptr);
  EXPECT_THAT(client->GetNode("node-a"),
              StatusIs(absl::StatusCode::kInternal, HasSubstr("describes node node-b")));
}

TEST_F(KubeClientTest, RefusedCredentialsAreFailedPrecondition) {
  api_.SetCallerToken("some-other-token");
  auto client = Client({});
  ASSERT_NE(client, nullptr);
  api_.SetCallerToken("expected-token");
  EXPECT_THAT(client->GetNode("node-a"),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("HTTP 401: Unauthorized")));
}

TEST_F(KubeClientTest, StoppedServerIsUnavailable) {
  auto client = Client();
  ASSERT_NE(client, nullptr);
  api_.Stop();
  EXPECT_THAT(client->GetNode("node-a"),
              StatusIs(absl::StatusCode::kUnavailable, HasSubstr("/api/v1/nodes/node-a")));
}

TEST(KubeClientTimeoutTest, SilentServerTimesOut) {
  // A socket that listens but never answers: the connection completes, the answer never comes.
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  ASSERT_GE(fd, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
  ASSERT_EQ(listen(fd, 8), 0);
  socklen_t len = sizeof(addr);
  ASSERT_EQ(getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len), 0);
  KubeClient::Endpoint endpoint;
  endpoint.tls = false;
  endpoint.host = "127.0.0.1";
  endpoint.port = ntohs(addr.sin_port);
  KubeClient::Credentials creds;
  creds.token = "t";
  KubeClientOptions options;
  options.timeout = absl::Milliseconds(300);
  auto client = KubeClient::FromParts(endpoint, std::move(creds), options);
  const absl::Time start = absl::Now();
  EXPECT_THAT(client->GetNode("node-a"),
              StatusIs(absl::StatusCode::kUnavailable, HasSubstr("timed out")));
  EXPECT_LT(absl::Now() - start, absl::Seconds(30));
  close(fd);
}

// A client of a plain HTTP server on 127.0.0.1:`port` whose calls may last `deadline`; each
// read could wait ten seconds.
std::unique_ptr<KubeClient> DeadlineClient(int port, absl::Duration deadline) {
  KubeClient::Endpoint endpoint;
  endpoint.tls = false;
  endpoint.host = "127.0.0.1";
  endpoint.port = port;
  KubeClient::Credentials creds;
  creds.token = "t";
  KubeClientOptions options;
  options.timeout = absl::Seconds(10);
  options.deadline = deadline;
  return KubeClient::FromParts(endpoint, std::move(creds), options);
}

TEST(KubeClientDeadlineTest, ADrippedBodyStopsAtTheDeadline) {
  // 200 bytes at one per 50 ms: ten seconds in all, had the client waited.
  testdrip::DripServer server(testdrip::OkHead(200), std::string(200, ' '), absl::Milliseconds(50));
  auto client = DeadlineClient(server.port(), absl::Milliseconds(300));
  const absl::Time start = absl::Now();
  EXPECT_THAT(client->GetNode("node-a"),
              StatusIs(absl::StatusCode::kUnavailable,
                       HasSubstr("/api/v1/nodes/node-a: no complete answer within the call "
                                 "deadline of 300ms")));
  EXPECT_LT(absl::Now() - start, absl::Seconds(8));
  EXPECT_THAT(client->CreateTokenReview("token", {"spire-server"}),
              StatusIs(absl::StatusCode::kUnavailable, HasSubstr("deadline")));
}

TEST(KubeClientDeadlineTest, DrippedHeadersStopAtTheDeadline) {
  testdrip::DripServer server(
      "", testdrip::OkHead(54) + R"({"kind":"Node","metadata":{"name":"node-a","uid":"u"}})",
      absl::Milliseconds(50));
  auto client = DeadlineClient(server.port(), absl::Milliseconds(300));
  EXPECT_THAT(client->GetNode("node-a"),
              StatusIs(absl::StatusCode::kUnavailable, HasSubstr("call deadline")));
}

TEST(KubeClientDeadlineTest, ASlowButTimelyAnswerIsRead) {
  const std::string node = R"({"kind":"Node","metadata":{"name":"node-a","uid":"u"}})";
  testdrip::DripServer server(testdrip::OkHead(node.size()), node, absl::Milliseconds(1));
  auto client = DeadlineClient(server.port(), absl::Seconds(20));
  auto got = client->GetNode("node-a");
  ASSERT_THAT(got, IsOk());
  EXPECT_EQ(got->uid, "u");
}

TEST_F(KubeClientTest, NamesAreEscapedInThePath) {
  auto client = Client();
  ASSERT_NE(client, nullptr);
  // A name with '/' must not reach another path.
  EXPECT_THAT(client->GetPod("spire", "../../nodes/node-a"),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr("%2F")));
}

// ---- kubeconfig errors --------------------------------------------------------------------

constexpr char kClusterAndUser[] = R"(
clusters:
- name: c
  cluster:
    server: https://127.0.0.1:6443
    insecure-skip-tls-verify: true
users:
- name: u
  user:
    token: abc
)";

TEST_F(KubeClientTest, MissingFileNamesThePath) {
  EXPECT_THAT(KubeClient::FromKubeconfig(dir_.Sub("nope")).status(),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr(dir_.Sub("nope"))));
}

TEST_F(KubeClientTest, NotYamlIsInvalid) {
  EXPECT_THAT(Load("clusters: [unclosed"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("not valid YAML")));
  EXPECT_THAT(Load("just a string"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("expected a mapping")));
}

TEST_F(KubeClientTest, MissingCurrentContextIsInvalid) {
  EXPECT_THAT(Load(kClusterAndUser), StatusIs(absl::StatusCode::kInvalidArgument,
                                              HasSubstr("current-context is not set")));
}

TEST_F(KubeClientTest, UnknownContextIsInvalid) {
  EXPECT_THAT(
      Load(std::string("current-context: x\ncontexts:\n- name: y\n  context: {cluster: "
                       "c, user: u}\n") +
           kClusterAndUser),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("context \"x\" is not in contexts")));
}

TEST_F(KubeClientTest, ContextNamingAnUnknownClusterIsInvalid) {
  EXPECT_THAT(Load(std::string("current-context: x\ncontexts:\n- name: x\n  context: {cluster: "
                               "missing, user: u}\n") +
                   kClusterAndUser),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("cluster \"missing\" is not in clusters")));
}

TEST_F(KubeClientTest, ValidMinimalKubeconfigLoads) {
  EXPECT_THAT(Load(std::string("current-context: x\ncontexts:\n- name: x\n  context: {cluster: "
                               "c, user: u}\n") +
                   kClusterAndUser),
              IsOk());
}

class KubeconfigErrorTest : public KubeClientTest {
 protected:
  absl::Status With(const std::string& cluster_body, const std::string& user_body) {
    return Load(
        "current-context: x\ncontexts:\n- name: x\n  context: {cluster: c, user: u}\n"
        "clusters:\n- name: c\n  cluster:\n" +
        cluster_body + "users:\n- name: u\n  user:\n" + user_body);
  }
};

TEST_F(KubeconfigErrorTest, ClusterWithoutServerIsInvalid) {
  EXPECT_THAT(
      With("    insecure-skip-tls-verify: true\n", "    token: t\n"),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("cluster \"c\".server is not set")));
}

TEST_F(KubeconfigErrorTest, ServerThatIsNotAUrlIsInvalid) {
  EXPECT_THAT(With("    server: ftp://x\n", "    token: t\n"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("not an http")));
  EXPECT_THAT(With("    server: https://x:99999\n", "    token: t\n"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("invalid port")));
  EXPECT_THAT(With("    server: https://user:pw@x\n", "    token: t\n"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("without credentials")));
}

TEST_F(KubeconfigErrorTest, IPv6ServerWithPathIsAccepted) {
  EXPECT_THAT(With("    server: https://[::1]:6443/prefix/\n    insecure-skip-tls-verify: true\n",
                   "    token: t\n"),
              IsOk());
}

TEST_F(KubeconfigErrorTest, InvalidCaDataIsInvalid) {
  EXPECT_THAT(With("    server: https://x\n    certificate-authority-data: '!!notbase64'\n",
                   "    token: t\n"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("certificate-authority-data is not valid base64")));
  EXPECT_THAT(
      With("    server: https://x\n    certificate-authority-data: aGVsbG8=\n", "    token: t\n"),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("no PEM certificate")));
}

TEST_F(KubeconfigErrorTest, MissingCaFileIsInvalid) {
  EXPECT_THAT(
      With("    server: https://x\n    certificate-authority: nowhere.crt\n", "    token: t\n"),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("certificate-authority: ")));
}

TEST_F(KubeconfigErrorTest, CaWithInsecureIsInvalid) {
  EXPECT_THAT(With("    server: https://x\n    insecure-skip-tls-verify: true\n"
                   "    certificate-authority-data: " +
                       absl::Base64Escape(api_.CaPem()) + "\n",
                   "    token: t\n"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("insecure-skip-tls-verify")));
}

TEST_F(KubeconfigErrorTest, ExecUserIsNotSupported) {
  EXPECT_THAT(With("    server: https://x\n", "    exec:\n      command: aws\n"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("uses exec")));
}

TEST_F(KubeconfigErrorTest, ClientCertificateWithoutKeyIsInvalid) {
  EXPECT_THAT(With("    server: https://x\n", "    client-certificate-data: " +
                                                  absl::Base64Escape(api_.ClientCertPem()) + "\n"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("client-certificate without client-key")));
}

TEST_F(KubeconfigErrorTest, ClientKeyNotMatchingTheCertificateIsInvalid) {
  FakeKubeApi other;
  EXPECT_THAT(With("    server: https://x\n",
                   "    client-certificate-data: " + absl::Base64Escape(api_.ClientCertPem()) +
                       "\n    client-key-data: " + absl::Base64Escape(other.ClientKeyPem()) + "\n"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("client-key does not match client-certificate")));
}

TEST_F(KubeconfigErrorTest, MissingTokenFileIsInvalid) {
  EXPECT_THAT(With("    server: https://x\n", "    tokenFile: /nonexistent/token\n"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("tokenFile")));
}

TEST_F(KubeconfigErrorTest, WrongTypesAreInvalid) {
  EXPECT_THAT(With("    server: [a, b]\n", "    token: t\n"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("server is not a string")));
  EXPECT_THAT(
      With("    server: https://x\n    insecure-skip-tls-verify: maybe\n", "    token: t\n"),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("not true or false")));
}

}  // namespace
}  // namespace trellis::attestors::k8s
