// Tests of the "systemd" workload attestor: unit from a synthetic cgroup file, unit file from a
// search path made in the test.
#include "attestors/container/systemd_attestor.h"

#include <unistd.h>

#include <filesystem>
#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/attestors/container/synthetic_proc.h"
#include "tests/testutil/status_matchers.h"
#include "tests/testutil/temp_dir.h"

namespace trellis::attestors {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using testutil::IsOk;
using testutil::StatusIs;

class SystemdAttestorTest : public ::testing::Test {
 protected:
  SystemdAttestorTest() {
    for (const char* d : {"etc", "run", "lib"}) std::filesystem::create_directories(dir_.Sub(d));
  }
  std::unique_ptr<SystemdWorkloadAttestor> Make(const std::string& cgroup) {
    SystemdWorkloadAttestor::Options options;
    options.proc_root = testing::WriteProcCgroup(dir_, getpid(), cgroup);
    options.unit_search_path = {dir_.Sub("etc"), dir_.Sub("run"), dir_.Sub("lib")};
    auto attestor = SystemdWorkloadAttestor::Create({}, std::move(options));
    EXPECT_THAT(attestor, IsOk());
    return attestor.ok() ? *std::move(attestor) : nullptr;
  }

  testutil::TempDir dir_{"sysd-att"};
};

TEST_F(SystemdAttestorTest, UnitIdAndFragmentPath) {
  std::string fragment = dir_.Write("lib/nginx.service", "[Service]\nExecStart=/usr/sbin/nginx\n");
  auto attestor = Make("0::/system.slice/nginx.service\n");
  ASSERT_NE(attestor, nullptr);
  auto got = attestor->Attest(testing::SelfCaller());
  ASSERT_THAT(got, IsOk());
  EXPECT_THAT(*got, ElementsAre("systemd:id:nginx.service", "systemd:fragment_path:" + fragment));
}

TEST_F(SystemdAttestorTest, EarlierSearchPathDirectoryWins) {
  dir_.Write("lib/nginx.service", "[Service]\n");
  std::string override_path = dir_.Write("run/nginx.service", "[Service]\n");
  auto attestor = Make("1:name=systemd:/system.slice/nginx.service\n4:memory:/system.slice\n");
  ASSERT_NE(attestor, nullptr);
  auto got = attestor->Attest(testing::SelfCaller());
  ASSERT_THAT(got, IsOk());
  EXPECT_THAT(*got,
              ElementsAre("systemd:id:nginx.service", "systemd:fragment_path:" + override_path));
}

TEST_F(SystemdAttestorTest, MaskedCopyIsSkipped) {
  std::string real = dir_.Write("lib/nginx.service", "[Service]\n");
  std::filesystem::create_symlink("/dev/null", dir_.Sub("etc/nginx.service"));
  auto attestor = Make("0::/system.slice/nginx.service\n");
  ASSERT_NE(attestor, nullptr);
  EXPECT_EQ(attestor->FragmentPath("nginx.service"), real);
}

TEST_F(SystemdAttestorTest, TemplateInstanceUsesTheTemplateFile) {
  std::string tmpl = dir_.Write("lib/getty@.service", "[Service]\n");
  auto attestor = Make("0::/system.slice/system-getty.slice/getty@tty1.service\n");
  ASSERT_NE(attestor, nullptr);
  auto pin = ProcessPin::Pin(getpid());
  ASSERT_THAT(pin, IsOk());
  auto got = attestor->AttestPinned(testing::SelfCaller(), *pin);
  ASSERT_THAT(got, IsOk());
  EXPECT_THAT(*got, ElementsAre("systemd:id:getty@tty1.service", "systemd:fragment_path:" + tmpl));
  // An instance's own file comes first, even from a later directory.
  std::string own = dir_.Write("lib/getty@tty1.service", "[Service]\n");
  dir_.Write("etc/getty@.service", "[Service]\n");
  EXPECT_EQ(attestor->FragmentPath("getty@tty1.service"), own);
}

TEST_F(SystemdAttestorTest, TransientScopeHasOnlyItsId) {
  auto attestor = Make("0::/user.slice/user-1000.slice/session-7.scope\n");
  ASSERT_NE(attestor, nullptr);
  auto got = attestor->Attest(testing::SelfCaller());
  ASSERT_THAT(got, IsOk());
  EXPECT_THAT(*got, ElementsAre("systemd:id:session-7.scope"));
}

TEST_F(SystemdAttestorTest, ProcessInNoUnitGetsNoSelectors) {
  for (const char* cgroup :
       {"0::/\n", "0::/system.slice\n", "4:memory:/system.slice/a.service\n"}) {
    auto attestor = Make(cgroup);
    ASSERT_NE(attestor, nullptr);
    auto got = attestor->Attest(testing::SelfCaller());
    ASSERT_THAT(got, IsOk()) << cgroup;
    EXPECT_THAT(*got, IsEmpty()) << cgroup;
  }
}

TEST_F(SystemdAttestorTest, MalformedCgroupFileIsInvalidArgument) {
  auto attestor = Make("0:/system.slice/nginx.service\n");
  ASSERT_NE(attestor, nullptr);
  EXPECT_THAT(attestor->Attest(testing::SelfCaller()),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("systemd: ")));
}

TEST_F(SystemdAttestorTest, MissingCgroupFileIsUnavailable) {
  SystemdWorkloadAttestor::Options options;
  options.proc_root = dir_.Sub("empty-proc");
  auto attestor = SystemdWorkloadAttestor::Create({}, std::move(options));
  ASSERT_THAT(attestor, IsOk());
  EXPECT_THAT((*attestor)->Attest(testing::SelfCaller()),
              StatusIs(absl::StatusCode::kUnavailable, HasSubstr("cgroup")));
}

TEST_F(SystemdAttestorTest, VanishedCallerIsUnauthenticated) {
  auto attestor = Make("0::/system.slice/nginx.service\n");
  ASSERT_NE(attestor, nullptr);
  CallerCredentials gone = testing::SelfCaller();
  gone.pid = -1;
  EXPECT_THAT(attestor->Attest(gone), StatusIs(absl::StatusCode::kUnauthenticated));
}

TEST(SystemdAttestorOptions, DefaultSearchPathIsSystemdsOnDebian12) {
  EXPECT_THAT(
      SystemdWorkloadAttestor::Options{}.unit_search_path,
      ElementsAre("/etc/systemd/system.control", "/run/systemd/system.control",
                  "/run/systemd/transient", "/run/systemd/generator.early", "/etc/systemd/system",
                  "/etc/systemd/system.attached", "/run/systemd/system",
                  "/run/systemd/system.attached", "/run/systemd/generator",
                  "/usr/local/lib/systemd/system", "/lib/systemd/system", "/usr/lib/systemd/system",
                  "/run/systemd/generator.late"));
}

TEST(SystemdAttestorCreate, RejectsRelativeSearchPath) {
  SystemdWorkloadAttestor::Options options;
  options.unit_search_path = {"etc/systemd/system"};
  EXPECT_THAT(SystemdWorkloadAttestor::Create({}, std::move(options)),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("not absolute")));
  auto defaults = SystemdWorkloadAttestor::Create({});
  ASSERT_THAT(defaults, IsOk());
  EXPECT_EQ((*defaults)->Name(), "systemd");
  EXPECT_TRUE((*defaults)->NonBlocking());
}

}  // namespace
}  // namespace trellis::attestors
