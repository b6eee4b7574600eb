// Tests of the "k8s" workload attestor against a fake kubelet on the read-only and secure ports.
#include "attestors/container/k8s_attestor.h"

#include <unistd.h>

#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "common/clock.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/attestors/container/fake_kubelet.h"
#include "tests/attestors/container/streamed_bodies.h"
#include "tests/attestors/container/synthetic_proc.h"
#include "tests/testutil/status_matchers.h"
#include "tests/testutil/temp_dir.h"

namespace trellis::attestors {
namespace {

using ::testing::AllOf;
using ::testing::ElementsAre;
using testing::FakeContainer;
using testing::FakeKubelet;
using testing::FakePod;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::Not;
using ::testing::UnorderedElementsAreArray;
using testutil::IsOk;
using testutil::StatusIs;

constexpr char kUid[] = "2ece296c-c5ec-11e7-858e-fa163e451acc";
constexpr char kUidUnderscores[] = "2ece296c_c5ec_11e7_858e_fa163e451acc";
constexpr char kWebId[] = "bc1eb339399eae78dd1115c765fda84b71ac6a954291b223820cfe775d8af778";
constexpr char kSidecarId[] = "0f1e2d3c4b5a69788796a5b4c3d2e1f00f1e2d3c4b5a69788796a5b4c3d2e1f0";
constexpr char kInitId[] = "aaaa2d3c4b5a69788796a5b4c3d2e1f00f1e2d3c4b5a69788796a5b4c3d2aaaa";
constexpr char kDebugId[] = "dddd2d3c4b5a69788796a5b4c3d2e1f00f1e2d3c4b5a69788796a5b4c3d2dddd";

std::string CgroupfsV1(const std::string& id) {
  std::string path = absl::StrCat("/kubepods/besteffort/pod", kUid, "/", id);
  return absl::StrCat("11:memory:", path, "\n4:pids:", path, "\n1:name=systemd:", path, "\n");
}

std::string SystemdV2(const std::string& runtime, const std::string& id) {
  return absl::StrCat("0::/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod",
                      kUidUnderscores, ".slice/", runtime, "-", id, ".scope\n");
}

FakePod WebPod() {
  FakePod pod;
  pod.uid = kUid;
  pod.name = "web-7d9c7b8d5f-x2x7q";
  pod.namespace_name = "shop";
  pod.service_account = "web";
  pod.node_name = "node-1";
  pod.labels = {{"app", "web"}, {"pod-template-hash", "7d9c7b8d5f"}};
  pod.owners = {{"ReplicaSet", "web-7d9c7b8d5f", "5b0a6c1e-0d3e-4c7a-9a61-1f2b3c4d5e6f"}};
  pod.containers = {
      {"web", "ghcr.io/acme/web:1.2", "ghcr.io/acme/web@sha256:1111",
       absl::StrCat("containerd://", kWebId)},
      {"envoy", "envoyproxy/envoy:v1.31", "docker.io/envoyproxy/envoy@sha256:2222",
       absl::StrCat("containerd://", kSidecarId)},
  };
  pod.init_containers = {{"migrate", "ghcr.io/acme/migrate:1.2", "ghcr.io/acme/migrate@sha256:3333",
                          absl::StrCat("containerd://", kInitId)}};
  return pod;
}

FakePod OtherPod() {
  FakePod pod;
  pod.uid = "99999999-8888-7777-6666-555555555555";
  pod.name = "other";
  pod.containers = {
      {"other", "busybox:1.36", "docker.io/library/busybox@sha256:4444",
       "containerd://eeee2d3c4b5a69788796a5b4c3d2e1f00f1e2d3c4b5a69788796a5b4c3d2eeee"}};
  return pod;
}

const std::vector<std::string>& WebSelectors() {
  static const std::vector<std::string> kSelectors = {
      "k8s:sa:web",
      "k8s:ns:shop",
      "k8s:node-name:node-1",
      absl::StrCat("k8s:pod-uid:", kUid),
      "k8s:pod-name:web-7d9c7b8d5f-x2x7q",
      "k8s:pod-label:app:web",
      "k8s:pod-label:pod-template-hash:7d9c7b8d5f",
      "k8s:pod-owner:ReplicaSet:web-7d9c7b8d5f",
      "k8s:pod-owner-uid:ReplicaSet:5b0a6c1e-0d3e-4c7a-9a61-1f2b3c4d5e6f",
      "k8s:pod-image:ghcr.io/acme/web:1.2",
      "k8s:pod-image:ghcr.io/acme/web@sha256:1111",
      "k8s:pod-image:envoyproxy/envoy:v1.31",
      "k8s:pod-image:docker.io/envoyproxy/envoy@sha256:2222",
      "k8s:pod-image-count:2",
      "k8s:pod-init-image:ghcr.io/acme/migrate:1.2",
      "k8s:pod-init-image:ghcr.io/acme/migrate@sha256:3333",
      "k8s:pod-init-image-count:1",
      "k8s:container-image:ghcr.io/acme/web:1.2",
      "k8s:container-image:ghcr.io/acme/web@sha256:1111",
      "k8s:container-name:web",
  };
  return kSelectors;
}

FakeKubelet::TlsOptions TokenTls(const std::string& token, const std::string& node = "node-1") {
  FakeKubelet::TlsOptions o;
  o.node_name = node;
  o.bearer_token = token;
  return o;
}

FakeKubelet::TlsOptions ClientCertTls() {
  FakeKubelet::TlsOptions o;
  o.require_client_cert = true;
  return o;
}

// Records the waits between polls instead of sleeping.
struct RecordingSleeper {
  absl::Mutex mu;
  std::vector<absl::Duration> waits ABSL_GUARDED_BY(mu);
  std::function<void(absl::Duration)> Fn() {
    return [this](absl::Duration d) {
      absl::MutexLock lock(&mu);
      waits.push_back(d);
    };
  }
  std::vector<absl::Duration> Waits() {
    absl::MutexLock lock(&mu);
    return waits;
  }
};

class K8sAttestorTest : public ::testing::Test {
 protected:
  // Config for the read-only port of `kubelet`; node name from nowhere (no environment).
  common::config::K8sWorkloadAttestorConfig ReadOnlyConfig(const FakeKubelet& kubelet) {
    common::config::K8sWorkloadAttestorConfig c;
    c.kubelet_read_only_port = static_cast<uint16_t>(kubelet.port());
    c.node_name_env = "";
    c.max_poll_attempts = 3;
    c.poll_retry_interval = absl::Milliseconds(250);
    return c;
  }
  common::config::K8sWorkloadAttestorConfig SecureConfig(const FakeKubelet& kubelet,
                                                         const std::string& token) {
    common::config::K8sWorkloadAttestorConfig c;
    c.kubelet_secure_port = static_cast<uint16_t>(kubelet.port());
    c.kubelet_ca_path = kubelet.pki().ca_path;
    c.token_path = dir_.Write("token", token);
    c.node_name_env = "";
    c.max_poll_attempts = 1;
    return c;
  }
  std::unique_ptr<K8sWorkloadAttestor> Make(const common::config::K8sWorkloadAttestorConfig& c,
                                            const std::string& cgroup) {
    K8sWorkloadAttestor::Options options;
    options.sleep = sleeper_.Fn();
    return Make(c, cgroup, std::move(options));
  }
  std::unique_ptr<K8sWorkloadAttestor> Make(const common::config::K8sWorkloadAttestorConfig& c,
                                            const std::string& cgroup,
                                            K8sWorkloadAttestor::Options options) {
    options.proc_root = testing::WriteProcCgroup(dir_, getpid(), cgroup);
    auto attestor = K8sWorkloadAttestor::Create(c, std::move(options));
    EXPECT_THAT(attestor, IsOk());
    return attestor.ok() ? *std::move(attestor) : nullptr;
  }

  testutil::TempDir dir_{"k8s-att"};
  RecordingSleeper sleeper_;
};

TEST_F(K8sAttestorTest, ReadOnlyPortGivesSpiresSelectors) {
  auto kubelet = FakeKubelet::StartHttp();
  kubelet->SetPods({OtherPod(), WebPod()});
  auto attestor = Make(ReadOnlyConfig(*kubelet), CgroupfsV1(kWebId));
  ASSERT_NE(attestor, nullptr);
  auto got = attestor->Attest(testing::SelfCaller());
  ASSERT_THAT(got, IsOk());
  EXPECT_THAT(*got, UnorderedElementsAreArray(WebSelectors()));
  EXPECT_EQ(got->size(), WebSelectors().size());  // no duplicates
  EXPECT_EQ(kubelet->requests(), 1);
  EXPECT_THAT(sleeper_.Waits(), IsEmpty());
}

TEST_F(K8sAttestorTest, AttestPinnedReadsTheSameSelectors) {
  auto kubelet = FakeKubelet::StartHttp();
  kubelet->SetPods({WebPod()});
  auto attestor = Make(ReadOnlyConfig(*kubelet), CgroupfsV1(kWebId));
  ASSERT_NE(attestor, nullptr);
  auto pin = ProcessPin::Pin(getpid());
  ASSERT_THAT(pin, IsOk());
  auto got = attestor->AttestPinned(testing::SelfCaller(), *pin);
  ASSERT_THAT(got, IsOk());
  EXPECT_THAT(*got, UnorderedElementsAreArray(WebSelectors()));
}

TEST_F(K8sAttestorTest, SecurePortWithBearerTokenVerifiedAgainstTheCa) {
  auto kubelet = FakeKubelet::StartHttps(dir_, TokenTls("sa-token-1"));
  FakePod pod = WebPod();
  pod.containers[1].container_id = absl::StrCat("cri-o://", kSidecarId);
  kubelet->SetPods({pod});
  // The systemd driver's layout on cgroup v2, CRI-O naming, token file with a newline.
  auto attestor = Make(SecureConfig(*kubelet, "sa-token-1\n"), SystemdV2("crio", kSidecarId));
  ASSERT_NE(attestor, nullptr);
  auto got = attestor->Attest(testing::SelfCaller());
  ASSERT_THAT(got, IsOk());
  std::vector<std::string> want(WebSelectors().begin(), WebSelectors().end() - 3);
  want.push_back("k8s:container-image:envoyproxy/envoy:v1.31");
  want.push_back("k8s:container-image:docker.io/envoyproxy/envoy@sha256:2222");
  want.push_back("k8s:container-name:envoy");
  EXPECT_THAT(*got, UnorderedElementsAreArray(want));
}

TEST_F(K8sAttestorTest, SecurePortChecksTheCertificateForTheNodeName) {
  auto kubelet = FakeKubelet::StartHttps(dir_, TokenTls("t", "node-1"));
  kubelet->SetPods({WebPod()});
  auto config = SecureConfig(*kubelet, "t");
  config.node_name = "node-1";
  auto attestor = Make(config, CgroupfsV1(kWebId));
  ASSERT_NE(attestor, nullptr);
  EXPECT_THAT(attestor->Attest(testing::SelfCaller()), IsOk());

  config.node_name = "node-2";
  auto stranger = Make(config, CgroupfsV1(kWebId));
  ASSERT_NE(stranger, nullptr);
  EXPECT_THAT(stranger->Attest(testing::SelfCaller()),
              StatusIs(absl::StatusCode::kUnavailable, HasSubstr("node-2")));
}

TEST_F(K8sAttestorTest, NodeNameComesFromTheConfiguredEnvironmentVariable) {
  auto kubelet = FakeKubelet::StartHttps(dir_, TokenTls("t", "node-env"));
  kubelet->SetPods({WebPod()});
  auto config = SecureConfig(*kubelet, "t");
  config.node_name_env = "TRELLIS_K8S_ATTESTOR_TEST_NODE";
  ASSERT_EQ(setenv(config.node_name_env.c_str(), "node-other", 1), 0);
  auto wrong = Make(config, CgroupfsV1(kWebId));
  ASSERT_EQ(setenv(config.node_name_env.c_str(), "node-env", 1), 0);
  auto right = Make(config, CgroupfsV1(kWebId));
  unsetenv(config.node_name_env.c_str());
  ASSERT_NE(wrong, nullptr);
  ASSERT_NE(right, nullptr);
  EXPECT_THAT(wrong->Attest(testing::SelfCaller()), StatusIs(absl::StatusCode::kUnavailable));
  EXPECT_THAT(right->Attest(testing::SelfCaller()), IsOk());
}

TEST_F(K8sAttestorTest, WrongTokenIsRefusedByTheKubelet) {
  auto kubelet = FakeKubelet::StartHttps(dir_, TokenTls("right"));
  kubelet->SetPods({WebPod()});
  auto attestor = Make(SecureConfig(*kubelet, "wrong"), CgroupfsV1(kWebId));
  ASSERT_NE(attestor, nullptr);
  EXPECT_THAT(attestor->Attest(testing::SelfCaller()),
              StatusIs(absl::StatusCode::kUnavailable,
                       AllOf(HasSubstr("k8s: "), HasSubstr("refused"), HasSubstr("401"))));
}

TEST_F(K8sAttestorTest, TokenIsReReadOnEveryQuery) {
  auto kubelet = FakeKubelet::StartHttps(dir_, TokenTls("rotated"));
  kubelet->SetPods({WebPod()});
  auto config = SecureConfig(*kubelet, "expired");
  auto attestor = Make(config, CgroupfsV1(kWebId));
  ASSERT_NE(attestor, nullptr);
  EXPECT_THAT(attestor->Attest(testing::SelfCaller()), StatusIs(absl::StatusCode::kUnavailable));
  dir_.Write("token", "rotated");
  EXPECT_THAT(attestor->Attest(testing::SelfCaller()), IsOk());
}

TEST_F(K8sAttestorTest, MissingOrEmptyTokenFileIsReported) {
  auto kubelet = FakeKubelet::StartHttps(dir_, TokenTls("t"));
  auto config = SecureConfig(*kubelet, " \n");
  auto empty = Make(config, CgroupfsV1(kWebId));
  ASSERT_NE(empty, nullptr);
  EXPECT_THAT(empty->Attest(testing::SelfCaller()),
              StatusIs(absl::StatusCode::kUnavailable, HasSubstr("is empty")));
  config.token_path = dir_.Sub("no-such-token");
  auto missing = Make(config, CgroupfsV1(kWebId));
  ASSERT_NE(missing, nullptr);
  EXPECT_THAT(missing->Attest(testing::SelfCaller()),
              StatusIs(absl::StatusCode::kUnavailable, HasSubstr("no-such-token")));
  EXPECT_EQ(kubelet->requests(), 0);
}

TEST_F(K8sAttestorTest, ClientCertificateAuthenticates) {
  auto kubelet = FakeKubelet::StartHttps(dir_, ClientCertTls());
  kubelet->SetPods({WebPod()});
  auto config = SecureConfig(*kubelet, "unused");
  config.certificate_path = kubelet->pki().client_cert_path;
  config.private_key_path = kubelet->pki().client_key_path;
  auto attestor = Make(config, CgroupfsV1(kWebId));
  ASSERT_NE(attestor, nullptr);
  auto got = attestor->Attest(testing::SelfCaller());
  ASSERT_THAT(got, IsOk());
  EXPECT_THAT(*got, UnorderedElementsAreArray(WebSelectors()));

  // Without a certificate the kubelet ends the handshake.
  config.certificate_path.clear();
  config.private_key_path.clear();
  config.use_anonymous_authentication = true;
  auto anonymous = Make(config, CgroupfsV1(kWebId));
  ASSERT_NE(anonymous, nullptr);
  EXPECT_THAT(anonymous->Attest(testing::SelfCaller()), StatusIs(absl::StatusCode::kUnavailable));
}

TEST_F(K8sAttestorTest, ClientKeyNotMatchingTheCertificateIsReported) {
  auto kubelet = FakeKubelet::StartHttps(dir_, ClientCertTls());
  auto config = SecureConfig(*kubelet, "unused");
  config.certificate_path = kubelet->pki().client_cert_path;
  config.private_key_path = kubelet->pki().server_key_path;
  auto attestor = Make(config, CgroupfsV1(kWebId));
  ASSERT_NE(attestor, nullptr);
  EXPECT_THAT(attestor->Attest(testing::SelfCaller()),
              StatusIs(absl::StatusCode::kUnavailable, HasSubstr("private_key_path")));
}

TEST_F(K8sAttestorTest, KubeletCertificateFromAnotherCaIsRefused) {
  auto kubelet = FakeKubelet::StartHttps(dir_, TokenTls("t"));
  kubelet->SetPods({WebPod()});
  auto config = SecureConfig(*kubelet, "t");
  config.kubelet_ca_path = kubelet->pki().other_ca_path;
  auto attestor = Make(config, CgroupfsV1(kWebId));
  ASSERT_NE(attestor, nullptr);
  EXPECT_THAT(attestor->Attest(testing::SelfCaller()),
              StatusIs(absl::StatusCode::kUnavailable, HasSubstr("TLS handshake failed")));
  EXPECT_EQ(kubelet->requests(), 0);
}

TEST_F(K8sAttestorTest, SkipKubeletVerificationAcceptsAnyCertificate) {
  auto kubelet = FakeKubelet::StartHttps(dir_, TokenTls("t"));
  kubelet->SetPods({WebPod()});
  auto config = SecureConfig(*kubelet, "t");
  config.kubelet_ca_path = kubelet->pki().other_ca_path;
  config.skip_kubelet_verification = true;
  auto attestor = Make(config, CgroupfsV1(kWebId));
  ASSERT_NE(attestor, nullptr);
  EXPECT_THAT(attestor->Attest(testing::SelfCaller()), IsOk());
}

TEST_F(K8sAttestorTest, StartingContainerIsFoundAfterSomePolls) {
  auto kubelet = FakeKubelet::StartHttp();
  FakePod creating = WebPod();
  creating.containers[0].container_id.clear();  // not created yet
  std::string early = testing::PodListJson({creating});
  std::string ready = testing::PodListJson({WebPod()});
  std::string absent = testing::PodListJson({OtherPod()});
  kubelet->SetResponder([=](int n) -> std::pair<int, std::string> {
    if (n == 1) return {200, absent};  // the kubelet has not seen the pod yet
    return {200, n < 4 ? early : ready};
  });
  auto config = ReadOnlyConfig(*kubelet);
  config.max_poll_attempts = 10;
  auto attestor = Make(config, CgroupfsV1(kWebId));
  ASSERT_NE(attestor, nullptr);
  auto got = attestor->Attest(testing::SelfCaller());
  ASSERT_THAT(got, IsOk());
  EXPECT_THAT(*got, UnorderedElementsAreArray(WebSelectors()));
  EXPECT_EQ(kubelet->requests(), 4);
  EXPECT_THAT(sleeper_.Waits(), ElementsAre(absl::Milliseconds(250), absl::Milliseconds(250),
                                            absl::Milliseconds(250)));
}

TEST_F(K8sAttestorTest, GivesUpAfterMaxPollAttemptsWhenTheContainerNeverAppears) {
  auto kubelet = FakeKubelet::StartHttp();
  FakePod creating = WebPod();
  creating.containers[0].container_id.clear();
  kubelet->SetPods({creating});
  auto config = ReadOnlyConfig(*kubelet);
  config.max_poll_attempts = 4;
  auto attestor = Make(config, CgroupfsV1(kWebId));
  ASSERT_NE(attestor, nullptr);
  EXPECT_THAT(attestor->Attest(testing::SelfCaller()),
              StatusIs(absl::StatusCode::kUnavailable,
                       AllOf(HasSubstr("k8s: "), HasSubstr(kWebId), HasSubstr("4 attempts"))));
  EXPECT_EQ(kubelet->requests(), 4);
  EXPECT_EQ(sleeper_.Waits().size(), 3u);
}

TEST_F(K8sAttestorTest, GivesUpAfterMaxPollAttemptsWhenThePodIsNotListed) {
  auto kubelet = FakeKubelet::StartHttp();
  kubelet->SetPods({OtherPod()});
  auto attestor = Make(ReadOnlyConfig(*kubelet), CgroupfsV1(kWebId));
  ASSERT_NE(attestor, nullptr);
  EXPECT_THAT(attestor->Attest(testing::SelfCaller()),
              StatusIs(absl::StatusCode::kUnavailable,
                       AllOf(HasSubstr("does not list pod"), HasSubstr(kUid))));
  EXPECT_EQ(kubelet->requests(), 3);
}

TEST_F(K8sAttestorTest, KubeletServerErrorFailsWithoutRetrying) {
  auto kubelet = FakeKubelet::StartHttp();
  kubelet->SetResponder([](int) { return std::make_pair(500, std::string("boom")); });
  auto attestor = Make(ReadOnlyConfig(*kubelet), CgroupfsV1(kWebId));
  ASSERT_NE(attestor, nullptr);
  EXPECT_THAT(
      attestor->Attest(testing::SelfCaller()),
      StatusIs(absl::StatusCode::kUnavailable, AllOf(HasSubstr("HTTP 500"), HasSubstr("boom"))));
  EXPECT_EQ(kubelet->requests(), 1);
}

TEST_F(K8sAttestorTest, MalformedPodListsAreReported) {
  const std::string uid = kUid;
  const std::string id = kWebId;
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"{not json", "not valid JSON"},
      {"[]", "is not an object"},
      {R"({"items": {}})", "PodList.items is not an array"},
      {R"({"items": [3]})", "items[0] is not an object"},
      {R"({"items": [{"spec": {}}]})", "items[0] has no metadata"},
      {R"({"items": [{"metadata": {"uid": 7}}]})", "items[0].metadata.uid is not a string"},
      {R"({"items": [{"metadata": {"uid": ")" + uid +
           R"("}, "status": {"containerStatuses": [{"containerID": ")" + id + R"("}]}}]})",
       "is not of the form <runtime>://<id>"},
      {R"({"items": [{"metadata": {"uid": ")" + uid +
           R"(", "labels": {"a": 1}}, "status": )"
           R"({"containerStatuses": [{"containerID": "containerd://)" +
           id + R"("}]}}]})",
       "metadata.labels.a is not a string"},
  };
  for (const auto& [body, message] : cases) {
    auto kubelet = FakeKubelet::StartHttp();
    kubelet->SetResponder([body = body](int) { return std::make_pair(200, body); });
    auto attestor = Make(ReadOnlyConfig(*kubelet), CgroupfsV1(kWebId));
    ASSERT_NE(attestor, nullptr);
    EXPECT_THAT(attestor->Attest(testing::SelfCaller()),
                StatusIs(absl::StatusCode::kUnavailable, HasSubstr(message)))
        << body;
    EXPECT_EQ(kubelet->requests(), 1) << body;
  }
}

TEST_F(K8sAttestorTest, ProcessInNoPodGetsNoSelectorsWithoutAskingTheKubelet) {
  auto kubelet = FakeKubelet::StartHttp();
  kubelet->SetPods({WebPod()});
  auto attestor =
      Make(ReadOnlyConfig(*kubelet), "0::/user.slice/user-1000.slice/session-2.scope\n");
  ASSERT_NE(attestor, nullptr);
  auto got = attestor->Attest(testing::SelfCaller());
  ASSERT_THAT(got, IsOk());
  EXPECT_THAT(*got, IsEmpty());
  EXPECT_EQ(kubelet->requests(), 0);
}

TEST_F(K8sAttestorTest, DisableContainerSelectorsDropsTheContainerOnes) {
  auto kubelet = FakeKubelet::StartHttp();
  kubelet->SetPods({WebPod()});
  auto config = ReadOnlyConfig(*kubelet);
  config.disable_container_selectors = true;
  auto attestor = Make(config, CgroupfsV1(kWebId));
  ASSERT_NE(attestor, nullptr);
  auto got = attestor->Attest(testing::SelfCaller());
  ASSERT_THAT(got, IsOk());
  std::vector<std::string> want(WebSelectors().begin(), WebSelectors().end() - 3);
  EXPECT_THAT(*got, UnorderedElementsAreArray(want));
}

TEST_F(K8sAttestorTest, DisableContainerSelectorsAttestsThePodBeforeItsContainerIsListed) {
  auto kubelet = FakeKubelet::StartHttp();
  FakePod creating = WebPod();
  creating.containers[0].container_id.clear();  // not created yet
  kubelet->SetPods({creating});
  auto config = ReadOnlyConfig(*kubelet);
  config.disable_container_selectors = true;
  auto attestor = Make(config, CgroupfsV1(kWebId));
  ASSERT_NE(attestor, nullptr);
  auto got = attestor->Attest(testing::SelfCaller());
  ASSERT_THAT(got, IsOk());
  EXPECT_THAT(*got, ::testing::IsSupersetOf(std::vector<std::string>{
                        "k8s:ns:shop", "k8s:sa:web", absl::StrCat("k8s:pod-uid:", kUid)}));
  EXPECT_THAT(*got, Not(::testing::Contains(HasSubstr("k8s:container-"))));
  EXPECT_EQ(kubelet->requests(), 1);
  EXPECT_THAT(sleeper_.Waits(), IsEmpty());

  // A pod the kubelet does not list yet is still waited for.
  kubelet->SetPods({OtherPod()});
  EXPECT_THAT(attestor->Attest(testing::SelfCaller()),
              StatusIs(absl::StatusCode::kUnavailable, HasSubstr("does not list pod")));
  EXPECT_EQ(kubelet->requests(), 4);
}

TEST_F(K8sAttestorTest, PodLayoutInAUsersDelegatedCgroupGetsNoSelectors) {
  auto kubelet = FakeKubelet::StartHttp();
  kubelet->SetPods({WebPod()});
  const std::string user = "/user.slice/user-1000.slice/user@1000.service";
  const std::string v2 =
      absl::StrCat("0::", user, "/kubepods/besteffort/pod", kUid, "/", kWebId, "\n");
  const std::string v1 =
      absl::StrCat("11:memory:", user, "\n4:pids:", user, "\n1:name=systemd:", user,
                   "/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod",
                   kUidUnderscores, ".slice/cri-containerd-", kWebId, ".scope\n");
  for (const std::string& cgroup : {v2, v1}) {
    auto attestor = Make(ReadOnlyConfig(*kubelet), cgroup);
    ASSERT_NE(attestor, nullptr);
    auto got = attestor->Attest(testing::SelfCaller());
    ASSERT_THAT(got, IsOk()) << cgroup;
    EXPECT_THAT(*got, IsEmpty()) << cgroup;
  }
  EXPECT_EQ(kubelet->requests(), 0);
}

TEST_F(K8sAttestorTest, OversizedPodListIsRefused) {
  constexpr size_t kLimit = 64u << 20;
  for (bool declared : {true, false}) {
    auto kubelet = FakeKubelet::StartHttp();
    kubelet->SetStreamer(
        [declared](httplib::Response& res) { testing::StreamFiller(res, kLimit + 1, declared); });
    auto config = ReadOnlyConfig(*kubelet);
    config.max_poll_attempts = 1;
    auto attestor = Make(config, CgroupfsV1(kWebId));
    ASSERT_NE(attestor, nullptr);
    EXPECT_THAT(
        attestor->Attest(testing::SelfCaller()),
        StatusIs(absl::StatusCode::kUnavailable, AllOf(HasSubstr("k8s: "), HasSubstr("64 MiB"))))
        << (declared ? "with Content-Length" : "chunked");
  }
  // Just below the limit is read (and here not JSON).
  auto kubelet = FakeKubelet::StartHttp();
  kubelet->SetStreamer([](httplib::Response& res) { testing::StreamFiller(res, kLimit, false); });
  auto config = ReadOnlyConfig(*kubelet);
  config.max_poll_attempts = 1;
  auto attestor = Make(config, CgroupfsV1(kWebId));
  ASSERT_NE(attestor, nullptr);
  EXPECT_THAT(attestor->Attest(testing::SelfCaller()),
              StatusIs(absl::StatusCode::kUnavailable, HasSubstr("not valid JSON")));
}

TEST_F(K8sAttestorTest, KubeletDrippingItsAnswerIsCutOffAtTheQueryDeadline) {
  auto kubelet = FakeKubelet::StartHttp();
  // About 1.5 KB at 10 ms a byte: 15 s for the whole list.
  const std::string body = testing::PodListJson({WebPod()});
  kubelet->SetStreamer(
      [body](httplib::Response& res) { testing::StreamDrip(res, body, absl::Milliseconds(10)); });
  auto config = ReadOnlyConfig(*kubelet);
  config.max_poll_attempts = 1;
  K8sWorkloadAttestor::Options options;
  options.sleep = sleeper_.Fn();
  options.query_deadline = absl::Milliseconds(300);
  auto attestor = Make(config, CgroupfsV1(kWebId), std::move(options));
  ASSERT_NE(attestor, nullptr);
  const absl::Time start = absl::Now();
  EXPECT_THAT(attestor->Attest(testing::SelfCaller()),
              StatusIs(absl::StatusCode::kUnavailable,
                       AllOf(HasSubstr("k8s: "), HasSubstr("deadline"), HasSubstr("300ms"))));
  EXPECT_LT(absl::Now() - start, absl::Milliseconds(10) * static_cast<double>(body.size()) / 2);
  EXPECT_EQ(kubelet->requests(), 1);
}

TEST_F(K8sAttestorTest, PollingStopsOnceItsTotalTimeIsSpent) {
  auto kubelet = FakeKubelet::StartHttp();
  FakePod creating = WebPod();
  creating.containers[0].container_id.clear();
  kubelet->SetPods({creating});
  auto config = ReadOnlyConfig(*kubelet);
  config.max_poll_attempts = 10;
  config.poll_retry_interval = absl::Seconds(1);
  // Limit: 10 x (1 s + 1 s) = 20 s. Every wait between polls takes 10 s (a loaded machine).
  common::FakeClock clock(absl::FromUnixSeconds(1700000000));
  K8sWorkloadAttestor::Options options;
  options.clock = &clock;
  options.query_deadline = absl::Seconds(1);
  options.sleep = [&clock](absl::Duration) { clock.Advance(absl::Seconds(10)); };
  auto attestor = Make(config, CgroupfsV1(kWebId), std::move(options));
  ASSERT_NE(attestor, nullptr);
  EXPECT_THAT(attestor->Attest(testing::SelfCaller()),
              StatusIs(absl::StatusCode::kUnavailable,
                       AllOf(HasSubstr("k8s: "), HasSubstr("2 attempts"), HasSubstr("20s"))));
  EXPECT_EQ(kubelet->requests(), 2);
}

TEST_F(K8sAttestorTest, InitAndEphemeralContainersAreFound) {
  auto kubelet = FakeKubelet::StartHttp();
  FakePod pod = WebPod();
  pod.ephemeral_containers = {{"debugger", "busybox:1.36", "docker.io/library/busybox@sha256:5555",
                               absl::StrCat("containerd://", kDebugId)}};
  kubelet->SetPods({pod});
  auto debug = Make(ReadOnlyConfig(*kubelet), SystemdV2("cri-containerd", kDebugId));
  ASSERT_NE(debug, nullptr);
  auto got = debug->Attest(testing::SelfCaller());
  ASSERT_THAT(got, IsOk());
  EXPECT_THAT(
      *got, ::testing::IsSupersetOf({"k8s:container-name:debugger",
                                     "k8s:container-image:busybox:1.36", "k8s:pod-image-count:2"}));
  EXPECT_THAT(*got, Not(::testing::Contains("k8s:pod-image:busybox:1.36")));

  auto init = Make(ReadOnlyConfig(*kubelet), CgroupfsV1(kInitId));
  ASSERT_NE(init, nullptr);
  got = init->Attest(testing::SelfCaller());
  ASSERT_THAT(got, IsOk());
  EXPECT_THAT(*got, ::testing::Contains("k8s:container-name:migrate"));
}

TEST_F(K8sAttestorTest, MalformedCgroupFileIsInvalidArgument) {
  auto kubelet = FakeKubelet::StartHttp();
  auto attestor = Make(ReadOnlyConfig(*kubelet), "this is not a cgroup file\n");
  ASSERT_NE(attestor, nullptr);
  EXPECT_THAT(attestor->Attest(testing::SelfCaller()),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       AllOf(HasSubstr("k8s: "), HasSubstr("malformed cgroup line 1"))));
  EXPECT_EQ(kubelet->requests(), 0);
}

TEST_F(K8sAttestorTest, VanishedCallerIsUnauthenticated) {
  auto kubelet = FakeKubelet::StartHttp();
  auto attestor = Make(ReadOnlyConfig(*kubelet), CgroupfsV1(kWebId));
  ASSERT_NE(attestor, nullptr);
  CallerCredentials gone = testing::SelfCaller();
  gone.pid = 0;
  EXPECT_THAT(attestor->Attest(gone), StatusIs(absl::StatusCode::kUnauthenticated));
  auto pin = ProcessPin::Pin(getpid());
  ASSERT_THAT(pin, IsOk());
  auto stale = ProcessPin::FromStartTime(getpid(), pin->start_time() + 1);
  EXPECT_THAT(attestor->AttestPinned(testing::SelfCaller(), stale),
              StatusIs(absl::StatusCode::kUnauthenticated));
  EXPECT_EQ(kubelet->requests(), 0);
}

TEST_F(K8sAttestorTest, UnreachableKubeletIsUnavailable) {
  int port = 0;
  {
    auto kubelet = FakeKubelet::StartHttp();
    port = kubelet->port();
  }  // stopped: nothing listens on the port any more
  common::config::K8sWorkloadAttestorConfig config;
  config.kubelet_read_only_port = static_cast<uint16_t>(port);
  config.node_name_env = "";
  config.max_poll_attempts = 1;
  auto attestor = Make(config, CgroupfsV1(kWebId));
  ASSERT_NE(attestor, nullptr);
  EXPECT_THAT(attestor->Attest(testing::SelfCaller()),
              StatusIs(absl::StatusCode::kUnavailable, HasSubstr("cannot GET http://127.0.0.1")));
}

TEST(K8sAttestorCreate, RejectsConfigurationsThatCannotWork) {
  auto with = [](auto change) {
    common::config::K8sWorkloadAttestorConfig c;
    change(c);
    return K8sWorkloadAttestor::Create(c);
  };
  using Config = common::config::K8sWorkloadAttestorConfig;
  EXPECT_THAT(with([](Config& c) { c.kubelet_secure_port = 0; }),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("port")));
  EXPECT_THAT(with([](Config& c) { c.certificate_path = "/c.pem"; }),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("private_key_path")));
  EXPECT_THAT(with([](Config& c) { c.max_poll_attempts = 0; }),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("max_poll_attempts")));
  EXPECT_THAT(with([](Config& c) { c.poll_retry_interval = absl::Seconds(-1); }),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("poll_retry_interval")));
  EXPECT_THAT(with([](Config& c) { c.kubelet_ca_path.clear(); }),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("kubelet_ca_path")));
  EXPECT_THAT(with([](Config& c) { c.token_path.clear(); }),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("credentials")));
  EXPECT_THAT(with([](Config& c) { c.kubelet_host.clear(); }),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("kubelet_host")));
  EXPECT_THAT(with([](Config&) {}), IsOk());
  K8sWorkloadAttestor::Options no_deadline;
  no_deadline.query_deadline = absl::ZeroDuration();
  EXPECT_THAT(K8sWorkloadAttestor::Create(Config{}, std::move(no_deadline)),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("query deadline")));
  auto attestor = with([](Config&) {});
  ASSERT_THAT(attestor, IsOk());
  EXPECT_EQ((*attestor)->Name(), "k8s");
  EXPECT_FALSE((*attestor)->NonBlocking());
}

}  // namespace
}  // namespace trellis::attestors
