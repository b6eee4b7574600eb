// The workload attestor contract, run against every configuration the factory builds.
#include <sys/wait.h>
#include <unistd.h>

#include <memory>
#include <string>

#include "attestors/workload/workload_attestor_factory.h"
#include "gtest/gtest.h"

namespace trellis::attestors {
namespace {

struct WorkloadCase {
  std::string label;
  common::config::UnixWorkloadAttestorConfig config;
  std::string expected_name;
  // Selector type prefixes ("unix:uid:") the calling process must get.
  std::vector<std::string> required_prefixes;
};

CallerCredentials Self() { return {getpid(), getuid(), getgid()}; }

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
    auto attestor = CreateWorkloadAttestor(GetParam().config);
    ASSERT_TRUE(attestor.ok()) << attestor.status();
    attestor_ = std::move(*attestor);
  }
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

INSTANTIATE_TEST_SUITE_P(
    AllConfigurations, WorkloadAttestorConformanceTest,
    ::testing::Values(
        WorkloadCase{"unix", {}, "unix", {"unix:uid:", "unix:gid:"}},
        WorkloadCase{"unix_with_workload_path",
                     {/*discover_workload_path=*/true},
                     "unix",
                     {"unix:uid:", "unix:gid:", "unix:path:", "unix:sha256:"}}),
    [](const auto& info) { return info.param.label; });

TEST(CreateWorkloadAttestors, NoConfigurationGivesOneUnixAttestor) {
  auto got = CreateWorkloadAttestors({});
  ASSERT_TRUE(got.ok()) << got.status();
  ASSERT_EQ(got->size(), 1u);
  EXPECT_EQ((*got)[0]->Name(), "unix");
  EXPECT_TRUE((*got)[0]->NonBlocking());
}

TEST(CreateWorkloadAttestors, OneAttestorPerConfigurationInOrder) {
  auto got = CreateWorkloadAttestors({{false}, {true}});
  ASSERT_TRUE(got.ok()) << got.status();
  ASSERT_EQ(got->size(), 2u);
  EXPECT_TRUE((*got)[0]->NonBlocking());
  EXPECT_FALSE((*got)[1]->NonBlocking());
}

}  // namespace
}  // namespace trellis::attestors
