// The unix workload attestor against the test process itself, and the pid-reuse defence.
#include "attestors/workload/unix_attestor.h"

#include <grp.h>
#include <openssl/sha.h>
#include <pwd.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <fstream>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"

namespace trellis::attestors {
namespace {

bool Has(const std::vector<std::string>& v, const std::string& s) {
  return std::find(v.begin(), v.end(), s) != v.end();
}

CallerCredentials Self() { return {getpid(), getuid(), getgid()}; }

TEST(UnixWorkloadAttestor, SelfHasUidAndGidSelectors) {
  UnixWorkloadAttestor attestor({});
  auto got = attestor.Attest(Self());
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_TRUE(Has(*got, absl::StrCat("unix:uid:", geteuid())));
  EXPECT_TRUE(Has(*got, absl::StrCat("unix:gid:", getegid())));
}

TEST(UnixWorkloadAttestor, SelfHasUserAndGroupNames) {
  UnixWorkloadAttestor attestor({});
  auto got = attestor.Attest(Self());
  ASSERT_TRUE(got.ok()) << got.status();
  struct passwd* pw = getpwuid(geteuid());
  ASSERT_NE(pw, nullptr);
  EXPECT_TRUE(Has(*got, std::string("unix:user:") + pw->pw_name));
  struct group* gr = getgrgid(getegid());
  ASSERT_NE(gr, nullptr);
  EXPECT_TRUE(Has(*got, std::string("unix:group:") + gr->gr_name));
}

TEST(UnixWorkloadAttestor, SupplementaryGroupsMatchGetgroups) {
  UnixWorkloadAttestor attestor({});
  auto got = attestor.Attest(Self());
  ASSERT_TRUE(got.ok()) << got.status();
  std::vector<gid_t> groups(static_cast<size_t>(getgroups(0, nullptr)));
  ASSERT_EQ(getgroups(static_cast<int>(groups.size()), groups.data()),
            static_cast<int>(groups.size()));
  for (gid_t g : groups) EXPECT_TRUE(Has(*got, absl::StrCat("unix:supplementary_gid:", g)));
}

TEST(UnixWorkloadAttestor, PathSelectorsOnlyWithDiscoverWorkloadPath) {
  UnixWorkloadAttestor plain({});
  auto got = plain.Attest(Self());
  ASSERT_TRUE(got.ok()) << got.status();
  for (const auto& s : *got) {
    EXPECT_NE(s.rfind("unix:path:", 0), 0u) << s;
    EXPECT_NE(s.rfind("unix:sha256:", 0), 0u) << s;
  }
}

TEST(UnixWorkloadAttestor, DiscoverWorkloadPathGivesExeAndItsSha256) {
  UnixWorkloadAttestor attestor({.discover_workload_path = true});
  auto got = attestor.Attest(Self());
  ASSERT_TRUE(got.ok()) << got.status();
  char buf[4096];
  ssize_t n = readlink("/proc/self/exe", buf, sizeof(buf) - 1);
  ASSERT_GT(n, 0);
  std::string exe(buf, static_cast<size_t>(n));
  EXPECT_TRUE(Has(*got, "unix:path:" + exe));
  std::ifstream in(exe, std::ios::binary);
  std::stringstream data;
  data << in.rdbuf();
  std::string bytes = data.str();
  unsigned char md[SHA256_DIGEST_LENGTH];
  SHA256(reinterpret_cast<const unsigned char*>(bytes.data()), bytes.size(), md);
  std::string hex;
  for (unsigned char c : md) absl::StrAppend(&hex, absl::Hex(c, absl::kZeroPad2));
  EXPECT_TRUE(Has(*got, "unix:sha256:" + hex));
}

TEST(UnixWorkloadAttestor, ExitedProcessIsUnauthenticated) {
  pid_t child = fork();
  ASSERT_GE(child, 0);
  if (child == 0) _exit(0);
  int status = 0;
  ASSERT_EQ(waitpid(child, &status, 0), child);
  UnixWorkloadAttestor attestor({});
  auto got = attestor.Attest({child, getuid(), getgid()});
  EXPECT_EQ(got.status().code(), absl::StatusCode::kUnauthenticated);
}

TEST(ProcessPin, SameProcessPasses) {
  auto pin = ProcessPin::Pin(getpid());
  ASSERT_TRUE(pin.ok()) << pin.status();
  EXPECT_TRUE(pin->Check().ok());
}

TEST(ProcessPin, OtherStartTimeMeansReusedPid) {
  auto start = ProcessStartTime(getpid());
  ASSERT_TRUE(start.ok());
  ProcessPin reused = ProcessPin::FromStartTime(getpid(), *start + 1);
  EXPECT_EQ(reused.Check().code(), absl::StatusCode::kUnauthenticated);
}

TEST(UnixWorkloadAttestor, NamesStayTheSameAcrossCalls) {
  UnixWorkloadAttestor attestor({});
  auto first = attestor.Attest(Self());
  ASSERT_TRUE(first.ok()) << first.status();
  for (int i = 0; i < 3; ++i) {
    auto again = attestor.Attest(Self());
    ASSERT_TRUE(again.ok()) << again.status();
    EXPECT_EQ(*again, *first);
  }
}

TEST(ProcessPin, AttestPinnedThroughTheInterfaceUsesTheGivenPin) {
  auto pin = ProcessPin::Pin(getpid());
  ASSERT_TRUE(pin.ok());
  UnixWorkloadAttestor unix_attestor({});
  WorkloadAttestor& attestor = unix_attestor;
  auto got = attestor.AttestPinned(Self(), *pin);
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_TRUE(Has(*got, absl::StrCat("unix:uid:", geteuid())));
}

TEST(UnixWorkloadAttestor, NonBlockingOnlyWithoutBinaryHashing) {
  EXPECT_TRUE(UnixWorkloadAttestor({}).NonBlocking());
  EXPECT_FALSE(UnixWorkloadAttestor({.discover_workload_path = true}).NonBlocking());
}

TEST(ReadProcFile, ReadsAFileLongerThanOneBuffer) {
  // /proc/self/maps of a test binary linked with gRPC is well over 4 KiB.
  auto got = ReadProcFile("/proc/self/maps");
  ASSERT_TRUE(got.ok()) << got.status();
  std::ifstream in("/proc/self/maps");
  std::string line;
  ASSERT_TRUE(std::getline(in, line));
  EXPECT_GT(got->size(), 4096u);
  EXPECT_EQ(got->substr(0, line.size()), line);
}

TEST(ReadProcFile, MissingFileIsNotFound) {
  EXPECT_EQ(ReadProcFile("/proc/0/stat").status().code(), absl::StatusCode::kNotFound);
}

TEST(ParseStatStartTime, CommandWithSpacesAndParentheses) {
  std::string stat = "42 (a b) (c)) S 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 987654 20 21";
  auto got = ParseStatStartTime(stat);
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(*got, 987654u);
}

TEST(ParseStatStartTime, TruncatedTextIsInvalidArgument) {
  EXPECT_EQ(ParseStatStartTime("42 (x) S 1 2").status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(SelectorsSubset, SubsetMatches) {
  EXPECT_TRUE(SelectorsSubset({"unix:uid:1"}, {"unix:uid:1", "unix:gid:2"}));
}

TEST(SelectorsSubset, MissingSelectorDoesNotMatch) {
  EXPECT_FALSE(SelectorsSubset({"unix:uid:1", "unix:gid:3"}, {"unix:uid:1", "unix:gid:2"}));
}

TEST(SelectorsSubset, EntryWithoutSelectorsMatchesNobody) {
  EXPECT_FALSE(SelectorsSubset({}, {"unix:uid:1"}));
}

}  // namespace
}  // namespace trellis::attestors
