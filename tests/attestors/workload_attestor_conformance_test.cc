// The workload attestor contract, run against every configuration the factory builds.
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <functional>
#include <memory>
#include <ostream>
#include <string>

#include "absl/strings/str_cat.h"
#include "attestors/container/docker_attestor.h"
#include "attestors/container/k8s_attestor.h"
#include "attestors/container/systemd_attestor.h"
#include "attestors/workload/workload_attestor_factory.h"
#include "gtest/gtest.h"
#include "tests/attestors/container/fake_docker.h"
#include "tests/attestors/container/fake_kubelet.h"
#include "tests/attestors/container/synthetic_proc.h"
#include "tests/testutil/temp_dir.h"

namespace trellis::attestors {
namespace {

// The calling process as each attestor sees it, with whatever the attestor asks (a kubelet,
// a Docker daemon, unit files) faked on loopback. The platform attestors read the caller's
// cgroup from a synthetic proc root holding this test process's pid; the pin still reads the
// real /proc, so an exited pid is still told apart.
class Environment {
 public:
  virtual ~Environment() = default;
  // The attestor; `inside`: the caller is in the platform's pod, container or unit.
  virtual std::unique_ptr<WorkloadAttestor> Make(bool inside) = 0;

 protected:
  testutil::TempDir dir_{"workload-conformance"};
};

template <typename T>
std::unique_ptr<WorkloadAttestor> MustMake(absl::StatusOr<std::unique_ptr<T>> attestor) {
  EXPECT_TRUE(attestor.ok()) << attestor.status();
  if (!attestor.ok()) return nullptr;
  return std::unique_ptr<WorkloadAttestor>(std::move(*attestor));
}

constexpr char kPodUid[] = "3f1d2c4b-5a69-4e8f-9a1b-2c3d4e5f6a7b";
constexpr char kContainerId[] = "9d2b6f4a1c3e5d7f9b0a2c4e6f8d0b2a4c6e8f0a2b4d6f8a0c2e4b6d8f0a2c4e";

class UnixEnvironment final : public Environment {
 public:
  explicit UnixEnvironment(bool discover) : discover_(discover) {}
  std::unique_ptr<WorkloadAttestor> Make(bool) override {
    return CreateWorkloadAttestor(common::config::UnixWorkloadAttestorConfig{discover_}).value();
  }

 private:
  bool discover_;
};

class K8sEnvironment final : public Environment {
 public:
  K8sEnvironment() : kubelet_(testing::FakeKubelet::StartHttp()) {
    testing::FakePod pod;
    pod.uid = kPodUid;
    pod.name = "web-0";
    pod.namespace_name = "prod";
    pod.service_account = "web";
    pod.containers = {{"web", "registry.example/web:1", "registry.example/web@sha256:aa",
                       std::string("containerd://") + kContainerId}};
    kubelet_->SetPods({pod});
  }
  std::unique_ptr<WorkloadAttestor> Make(bool inside) override {
    common::config::K8sWorkloadAttestorConfig config;
    config.kubelet_read_only_port = static_cast<uint16_t>(kubelet_->port());
    config.max_poll_attempts = 1;
    K8sWorkloadAttestor::Options options;
    options.proc_root = testing::WriteProcCgroup(
        dir_, getpid(),
        inside ? absl::StrCat("0::/kubepods.slice/kubepods-besteffort.slice/"
                              "kubepods-besteffort-pod3f1d2c4b_5a69_4e8f_9a1b_2c3d4e5f6a7b.slice/"
                              "cri-containerd-",
                              kContainerId, ".scope\n")
               : "0::/user.slice/user-1000.slice/session-1.scope\n");
    return MustMake(K8sWorkloadAttestor::Create(config, std::move(options)));
  }

 private:
  std::unique_ptr<testing::FakeKubelet> kubelet_;
};

class DockerEnvironment final : public Environment {
 public:
  DockerEnvironment() : docker_(testing::FakeDocker::Start(dir_.Sub("docker.sock"))) {
    testing::FakeDockerContainer c;
    c.id = kContainerId;
    c.labels = {{"team", "payments"}};
    c.env = {"MODE=prod"};
    docker_->AddContainer(c);
  }
  std::unique_ptr<WorkloadAttestor> Make(bool inside) override {
    common::config::DockerWorkloadAttestorConfig config;
    config.docker_socket_path = docker_->socket_url();
    DockerWorkloadAttestor::Options options;
    options.proc_root = testing::WriteProcCgroup(
        dir_, getpid(),
        inside ? absl::StrCat("12:pids:/docker/", kContainerId, "\n0::/docker/", kContainerId, "\n")
               : "0::/system.slice/ssh.service\n");
    return MustMake(DockerWorkloadAttestor::Create(config, std::move(options)));
  }

 private:
  std::unique_ptr<testing::FakeDocker> docker_;
};

class SystemdEnvironment final : public Environment {
 public:
  std::unique_ptr<WorkloadAttestor> Make(bool inside) override {
    std::filesystem::create_directories(dir_.Sub("units"));
    dir_.Write("units/billing.service", "[Service]\nExecStart=/usr/bin/billing\n");
    SystemdWorkloadAttestor::Options options;
    options.proc_root = testing::WriteProcCgroup(
        dir_, getpid(), inside ? "0::/system.slice/billing.service\n" : "0::/\n");
    options.unit_search_path = {dir_.Sub("units")};
    return MustMake(SystemdWorkloadAttestor::Create({}, std::move(options)));
  }
};

struct WorkloadCase {
  std::string label;
  std::function<std::unique_ptr<Environment>()> environment;
  std::string expected_name;
  // Selector type prefixes ("unix:uid:") the calling process must get.
  std::vector<std::string> required_prefixes;
  // Whether the attestor knows every process (unix) or only those of its platform.
  bool platform = false;
};

void PrintTo(const WorkloadCase& c, std::ostream* os) { *os << c.label; }

CallerCredentials Self() { return {getpid(), getuid(), getgid(), std::nullopt}; }

bool HasPrefix(const std::vector<SelectorString>& selectors, const std::string& prefix) {
  for (const auto& s : selectors) {
    if (s.rfind(prefix, 0) == 0 && s.size() > prefix.size()) return true;
  }
  return false;
}

// A pid that held a process which has exited and been reaped.
pid_t ExitedPid() {
  pid_t child = fork();
  if (child == 0) _exit(0);
  int status = 0;
  waitpid(child, &status, 0);
  return child;
}

class WorkloadAttestorConformanceTest : public ::testing::TestWithParam<WorkloadCase> {
 protected:
  void SetUp() override {
    env_ = GetParam().environment();
    attestor_ = env_->Make(/*inside=*/true);
    ASSERT_NE(attestor_, nullptr);
  }
  std::unique_ptr<Environment> env_;
  std::unique_ptr<WorkloadAttestor> attestor_;
};

TEST_P(WorkloadAttestorConformanceTest, NameIsThePluginName) {
  EXPECT_EQ(attestor_->Name(), GetParam().expected_name);
}

TEST_P(WorkloadAttestorConformanceTest, CurrentProcessGetsTheExpectedSelectorTypes) {
  auto got = attestor_->Attest(Self());
  ASSERT_TRUE(got.ok()) << got.status();
  for (const auto& prefix : GetParam().required_prefixes) {
    EXPECT_TRUE(HasPrefix(*got, prefix)) << prefix;
  }
  for (const auto& s : *got) {
    EXPECT_EQ(s.rfind(attestor_->Name() + ":", 0), 0u) << s;
  }
}

TEST_P(WorkloadAttestorConformanceTest, PinnedAttestationOfTheCurrentProcessMatches) {
  auto pin = ProcessPin::Pin(getpid());
  ASSERT_TRUE(pin.ok()) << pin.status();
  auto pinned = attestor_->AttestPinned(Self(), *pin);
  auto plain = attestor_->Attest(Self());
  ASSERT_TRUE(pinned.ok()) << pinned.status();
  ASSERT_TRUE(plain.ok()) << plain.status();
  EXPECT_EQ(*pinned, *plain);
}

TEST_P(WorkloadAttestorConformanceTest, NonexistentPidIsRefusedCleanly) {
  CallerCredentials gone = Self();
  gone.pid = ExitedPid();
  auto got = attestor_->Attest(gone);
  ASSERT_FALSE(got.ok());
  EXPECT_TRUE(absl::IsUnauthenticated(got.status()) || absl::IsNotFound(got.status()))
      << got.status();
  EXPECT_FALSE(got.status().message().empty());
}

TEST_P(WorkloadAttestorConformanceTest, ProcessOutsideThePlatformGetsNoSelectors) {
  if (!GetParam().platform) GTEST_SKIP() << GetParam().label << " attests every process";
  std::unique_ptr<WorkloadAttestor> outside = env_->Make(/*inside=*/false);
  ASSERT_NE(outside, nullptr);
  auto got = outside->Attest(Self());
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_TRUE(got->empty()) << got->front();
}

INSTANTIATE_TEST_SUITE_P(
    AllConfigurations, WorkloadAttestorConformanceTest,
    ::testing::Values(WorkloadCase{"unix",
                                   [] { return std::make_unique<UnixEnvironment>(false); },
                                   "unix",
                                   {"unix:uid:", "unix:gid:"}},
                      WorkloadCase{"unix_with_workload_path",
                                   [] { return std::make_unique<UnixEnvironment>(true); },
                                   "unix",
                                   {"unix:uid:", "unix:gid:", "unix:path:", "unix:sha256:"}},
                      WorkloadCase{
                          "k8s",
                          [] { return std::make_unique<K8sEnvironment>(); },
                          "k8s",
                          {"k8s:ns:", "k8s:sa:", "k8s:pod-uid:", "k8s:pod-name:",
                           "k8s:container-name:", "k8s:container-image:", "k8s:node-name:"},
                          true},
                      WorkloadCase{"docker",
                                   [] { return std::make_unique<DockerEnvironment>(); },
                                   "docker",
                                   {"docker:label:", "docker:image_id:", "docker:env:"},
                                   true},
                      WorkloadCase{"systemd",
                                   [] { return std::make_unique<SystemdEnvironment>(); },
                                   "systemd",
                                   {"systemd:id:", "systemd:fragment_path:"},
                                   true}),
    [](const auto& info) { return info.param.label; });

TEST(CreateWorkloadAttestors, NoConfigurationGivesOneUnixAttestor) {
  auto got = CreateWorkloadAttestors({});
  ASSERT_TRUE(got.ok()) << got.status();
  ASSERT_EQ(got->size(), 1u);
  EXPECT_EQ((*got)[0]->Name(), "unix");
  EXPECT_TRUE((*got)[0]->NonBlocking());
}

TEST(CreateWorkloadAttestors, OneAttestorPerConfigurationInOrder) {
  auto got = CreateWorkloadAttestors({common::config::UnixWorkloadAttestorConfig{false},
                                      common::config::UnixWorkloadAttestorConfig{true}});
  ASSERT_TRUE(got.ok()) << got.status();
  ASSERT_EQ(got->size(), 2u);
  EXPECT_TRUE((*got)[0]->NonBlocking());
  EXPECT_FALSE((*got)[1]->NonBlocking());
}

}  // namespace
}  // namespace trellis::attestors
