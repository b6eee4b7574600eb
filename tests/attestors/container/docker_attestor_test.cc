// Tests of the "docker" workload attestor against a fake Docker Engine API on a Unix socket.
#include "attestors/container/docker_attestor.h"

#include <unistd.h>

#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/attestors/container/fake_docker.h"
#include "tests/attestors/container/streamed_bodies.h"
#include "tests/attestors/container/synthetic_proc.h"
#include "tests/testutil/status_matchers.h"
#include "tests/testutil/temp_dir.h"

namespace trellis::attestors {
namespace {

using ::testing::AllOf;
using ::testing::ElementsAre;
using testing::FakeDocker;
using testing::FakeDockerContainer;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::UnorderedElementsAre;
using testutil::IsOk;
using testutil::StatusIs;

constexpr char kId[] = "bc1eb339399eae78dd1115c765fda84b71ac6a954291b223820cfe775d8af778";

FakeDockerContainer Web() {
  FakeDockerContainer c;
  c.id = kId;
  c.image = "ghcr.io/acme/web:1.2";
  c.labels = {{"com.example.team", "payments"}, {"tier", "front:end"}};
  c.env = {"PATH=/usr/local/sbin:/usr/bin", "ENVIRONMENT=prod", "EMPTY="};
  return c;
}

class DockerAttestorTest : public ::testing::Test {
 protected:
  std::unique_ptr<DockerWorkloadAttestor> Make(common::config::DockerWorkloadAttestorConfig c,
                                               const std::string& cgroup,
                                               DockerWorkloadAttestor::Options options = {}) {
    options.proc_root = testing::WriteProcCgroup(dir_, getpid(), cgroup);
    auto attestor = DockerWorkloadAttestor::Create(c, std::move(options));
    EXPECT_THAT(attestor, IsOk());
    return attestor.ok() ? *std::move(attestor) : nullptr;
  }
  common::config::DockerWorkloadAttestorConfig ConfigFor(const FakeDocker& docker) {
    common::config::DockerWorkloadAttestorConfig c;
    c.docker_socket_path = docker.socket_url();
    return c;
  }

  testutil::TempDir dir_{"dock-att"};
};

TEST_F(DockerAttestorTest, LabelsImageAndEnvironmentOfTheCallersContainer) {
  auto docker = FakeDocker::Start(dir_.Sub("d.sock"));
  docker->AddContainer(Web());
  auto attestor =
      Make(ConfigFor(*docker), absl::StrCat("0::/system.slice/docker-", kId, ".scope\n"));
  ASSERT_NE(attestor, nullptr);
  auto got = attestor->Attest(testing::SelfCaller());
  ASSERT_THAT(got, IsOk());
  EXPECT_THAT(*got, UnorderedElementsAre("docker:label:com.example.team:payments",
                                         "docker:label:tier:front:end",
                                         "docker:image_id:ghcr.io/acme/web:1.2",
                                         "docker:env:PATH=/usr/local/sbin:/usr/bin",
                                         "docker:env:ENVIRONMENT=prod", "docker:env:EMPTY="));
  EXPECT_THAT(docker->paths(), ElementsAre(absl::StrCat("/v1.41/containers/", kId, "/json")));
}

TEST_F(DockerAttestorTest, CgroupfsLayoutOnCgroupV1AndAttestPinned) {
  auto docker = FakeDocker::Start(dir_.Sub("d.sock"));
  docker->AddContainer(Web());
  std::string path = absl::StrCat("/docker/", kId);
  auto attestor = Make(ConfigFor(*docker), absl::StrCat("9:pids:", path, "\n4:memory:", path,
                                                        "\n1:name=systemd:", path, "\n"));
  ASSERT_NE(attestor, nullptr);
  auto pin = ProcessPin::Pin(getpid());
  ASSERT_THAT(pin, IsOk());
  auto got = attestor->AttestPinned(testing::SelfCaller(), *pin);
  ASSERT_THAT(got, IsOk());
  EXPECT_THAT(*got, ::testing::Contains("docker:image_id:ghcr.io/acme/web:1.2"));
}

TEST_F(DockerAttestorTest, VanishedContainerIsNotFound) {
  auto docker = FakeDocker::Start(dir_.Sub("d.sock"));
  auto attestor = Make(ConfigFor(*docker), absl::StrCat("0::/docker/", kId, "\n"));
  ASSERT_NE(attestor, nullptr);
  EXPECT_THAT(attestor->Attest(testing::SelfCaller()),
              StatusIs(absl::StatusCode::kNotFound,
                       AllOf(HasSubstr("docker: "), HasSubstr("No such container"))));
}

TEST_F(DockerAttestorTest, MissingSocketIsUnavailable) {
  common::config::DockerWorkloadAttestorConfig config;
  config.docker_socket_path = "unix://" + dir_.Sub("absent.sock");
  auto attestor = Make(config, absl::StrCat("0::/docker/", kId, "\n"));
  ASSERT_NE(attestor, nullptr);
  EXPECT_THAT(attestor->Attest(testing::SelfCaller()),
              StatusIs(absl::StatusCode::kUnavailable,
                       AllOf(HasSubstr("docker: cannot reach"), HasSubstr("absent.sock"))));
}

TEST_F(DockerAttestorTest, ProcessInNoContainerGetsNoSelectors) {
  auto docker = FakeDocker::Start(dir_.Sub("d.sock"));
  docker->AddContainer(Web());
  auto attestor = Make(ConfigFor(*docker), "0::/user.slice/user-1000.slice/session-4.scope\n");
  ASSERT_NE(attestor, nullptr);
  auto got = attestor->Attest(testing::SelfCaller());
  ASSERT_THAT(got, IsOk());
  EXPECT_THAT(*got, IsEmpty());
  EXPECT_THAT(docker->paths(), IsEmpty());
}

TEST_F(DockerAttestorTest, CustomCgroupMatchersLocateTheContainer) {
  auto docker = FakeDocker::Start(dir_.Sub("d.sock"));
  docker->AddContainer(Web());
  auto config = ConfigFor(*docker);
  config.container_id_cgroup_matchers = {"/my.slice/*/<id>/*"};
  auto attestor = Make(config, absl::StrCat("0::/my.slice/runner/", kId, "/payload\n"));
  ASSERT_NE(attestor, nullptr);
  auto got = attestor->Attest(testing::SelfCaller());
  ASSERT_THAT(got, IsOk());
  EXPECT_THAT(*got, ::testing::Contains("docker:label:com.example.team:payments"));
}

TEST_F(DockerAttestorTest, UnversionedApiWhenNoVersionIsConfigured) {
  auto docker = FakeDocker::Start(dir_.Sub("d.sock"));
  docker->AddContainer(Web());
  auto config = ConfigFor(*docker);
  config.docker_version.clear();
  auto attestor = Make(config, absl::StrCat("0::/docker/", kId, "\n"));
  ASSERT_NE(attestor, nullptr);
  EXPECT_THAT(attestor->Attest(testing::SelfCaller()), IsOk());
  EXPECT_THAT(docker->paths(), ElementsAre(absl::StrCat("/containers/", kId, "/json")));
}

TEST_F(DockerAttestorTest, DaemonErrorsAreUnavailableWithDockersMessage) {
  auto docker = FakeDocker::Start(dir_.Sub("d.sock"), "1.40");
  docker->AddContainer(Web());
  auto attestor = Make(ConfigFor(*docker), absl::StrCat("0::/docker/", kId, "\n"));
  ASSERT_NE(attestor, nullptr);
  EXPECT_THAT(attestor->Attest(testing::SelfCaller()),
              StatusIs(absl::StatusCode::kUnavailable,
                       AllOf(HasSubstr("HTTP 400"), HasSubstr("client version 1.41"))));
}

TEST_F(DockerAttestorTest, MalformedInspectDocumentsAreReported) {
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"{oops", "not valid JSON"},
      {"[1]", "not an object"},
      {R"({"Id": "x"})", "no Config object"},
      {R"({"Config": {"Labels": []}})", "Config.Labels is not an object"},
      {R"({"Config": {"Labels": {"a": 1}}})", "Config.Labels.a is not a string"},
      {R"({"Config": {"Image": 5}})", "Config.Image is not a string"},
      {R"({"Config": {"Env": "A=B"}})", "Config.Env is not an array"},
      {R"({"Config": {"Env": [1]}})", "Config.Env holds a value that is not a string"},
  };
  auto docker = FakeDocker::Start(dir_.Sub("d.sock"));
  auto attestor = Make(ConfigFor(*docker), absl::StrCat("0::/docker/", kId, "\n"));
  ASSERT_NE(attestor, nullptr);
  for (const auto& [body, message] : cases) {
    docker->SetRawInspect(kId, body);
    EXPECT_THAT(attestor->Attest(testing::SelfCaller()),
                StatusIs(absl::StatusCode::kUnavailable, HasSubstr(message)))
        << body;
  }
  // Null and absent sections are empty, not malformed.
  docker->SetRawInspect(kId, R"({"Config": {"Labels": null, "Env": null, "Image": ""}})");
  auto got = attestor->Attest(testing::SelfCaller());
  ASSERT_THAT(got, IsOk());
  EXPECT_THAT(*got, IsEmpty());
}

TEST_F(DockerAttestorTest, ContainerLayoutInAUsersDelegatedCgroupGetsNoSelectors) {
  auto docker = FakeDocker::Start(dir_.Sub("d.sock"));
  docker->AddContainer(Web());
  const std::string user = "/user.slice/user-1000.slice/user@1000.service";
  for (const std::string& cgroup :
       {absl::StrCat("0::", user, "/docker/", kId, "\n"),
        absl::StrCat("0::", user, "/app.slice/docker-", kId, ".scope\n"),
        absl::StrCat("4:pids:", user, "\n1:name=systemd:", user, "/docker/", kId, "\n")}) {
    auto attestor = Make(ConfigFor(*docker), cgroup);
    ASSERT_NE(attestor, nullptr);
    auto got = attestor->Attest(testing::SelfCaller());
    ASSERT_THAT(got, IsOk()) << cgroup;
    EXPECT_THAT(*got, IsEmpty()) << cgroup;
  }
  EXPECT_THAT(docker->paths(), IsEmpty());
}

TEST_F(DockerAttestorTest, OversizedInspectDocumentIsRefused) {
  constexpr size_t kLimit = 4u << 20;
  auto docker = FakeDocker::Start(dir_.Sub("d.sock"));
  auto attestor = Make(ConfigFor(*docker), absl::StrCat("0::/docker/", kId, "\n"));
  ASSERT_NE(attestor, nullptr);
  for (bool declared : {true, false}) {
    docker->SetStreamer(kId, [declared](httplib::Response& res) {
      testing::StreamFiller(res, kLimit + 1, declared);
    });
    EXPECT_THAT(
        attestor->Attest(testing::SelfCaller()),
        StatusIs(absl::StatusCode::kUnavailable, AllOf(HasSubstr("docker: "), HasSubstr("4 MiB"))))
        << (declared ? "with Content-Length" : "chunked");
  }
  docker->SetStreamer(kId,
                      [](httplib::Response& res) { testing::StreamFiller(res, kLimit, true); });
  EXPECT_THAT(attestor->Attest(testing::SelfCaller()),
              StatusIs(absl::StatusCode::kUnavailable, HasSubstr("not valid JSON")));
}

TEST_F(DockerAttestorTest, DaemonDrippingItsAnswerIsCutOffAtTheQueryDeadline) {
  auto docker = FakeDocker::Start(dir_.Sub("d.sock"));
  // About 1 KB at 10 ms a byte: 10 s for the whole document.
  const std::string body = testing::InspectJson(Web()).dump();
  docker->SetStreamer(kId, [body](httplib::Response& res) {
    testing::StreamDrip(res, body, absl::Milliseconds(10));
  });
  DockerWorkloadAttestor::Options options;
  options.query_deadline = absl::Milliseconds(300);
  auto attestor =
      Make(ConfigFor(*docker), absl::StrCat("0::/docker/", kId, "\n"), std::move(options));
  ASSERT_NE(attestor, nullptr);
  const absl::Time start = absl::Now();
  EXPECT_THAT(attestor->Attest(testing::SelfCaller()),
              StatusIs(absl::StatusCode::kUnavailable,
                       AllOf(HasSubstr("docker: "), HasSubstr("deadline"), HasSubstr("300ms"))));
  EXPECT_LT(absl::Now() - start, absl::Milliseconds(10) * static_cast<double>(body.size()) / 2);
}

TEST_F(DockerAttestorTest, CapturedIdWithPathCharactersIsRefused) {
  auto docker = FakeDocker::Start(dir_.Sub("d.sock"));
  auto config = ConfigFor(*docker);
  config.container_id_cgroup_matchers = {"/x/<id>"};
  auto attestor = Make(config, "0::/x/..%2f\n");
  ASSERT_NE(attestor, nullptr);
  EXPECT_THAT(attestor->Attest(testing::SelfCaller()),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("container ID")));
  EXPECT_THAT(docker->paths(), IsEmpty());
}

TEST(DockerAttestorCreate, RejectsBadConfiguration) {
  auto with = [](auto change) {
    common::config::DockerWorkloadAttestorConfig c;
    change(c);
    return DockerWorkloadAttestor::Create(c);
  };
  using Config = common::config::DockerWorkloadAttestorConfig;
  EXPECT_THAT(with([](Config& c) { c.docker_socket_path = "tcp://127.0.0.1:2375"; }),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("unix://")));
  EXPECT_THAT(with([](Config& c) { c.docker_socket_path = "unix://relative.sock"; }),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("absolute")));
  EXPECT_THAT(with([](Config& c) { c.docker_version = "v1.41"; }),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("docker_version")));
  EXPECT_THAT(with([](Config& c) { c.docker_version = "1.41/../x"; }),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("docker_version")));
  EXPECT_THAT(with([](Config& c) {
                c.container_id_cgroup_matchers = {"/a/b/<id>", "/*/b/<id>"};
              }),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("same cgroup")));
  DockerWorkloadAttestor::Options no_deadline;
  no_deadline.query_deadline = absl::ZeroDuration();
  EXPECT_THAT(DockerWorkloadAttestor::Create(Config{}, std::move(no_deadline)),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("query deadline")));
  auto plain = with([](Config& c) { c.docker_socket_path = "/var/run/docker.sock"; });
  ASSERT_THAT(plain, IsOk());
  EXPECT_EQ((*plain)->Name(), "docker");
  EXPECT_THAT(with([](Config&) {}), IsOk());
}

}  // namespace
}  // namespace trellis::attestors
