// Caller attestation: every attestor runs against the accept-time pin, and the pin is checked
// once after all of them, so a pid reused in between is refused.
#include "workload_api/caller_attestation.h"

#include <unistd.h>

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "attestors/workload/unix_attestor.h"
#include "gtest/gtest.h"

namespace trellis::workload_api {
namespace {

PeerRecord SelfRecord(uint64_t start_time) {
  PeerRecord record;
  record.creds = {getpid(), getuid(), getgid()};
  record.start_time = start_time;
  return record;
}

TEST(CallerAttestation, PinnedCallerGetsItsSelectors) {
  auto start = attestors::ProcessStartTime(getpid());
  ASSERT_TRUE(start.ok()) << start.status();
  attestors::UnixWorkloadAttestor unix_attestor({});
  CallerAttestation attestation({&unix_attestor});
  auto got = attestation.Attest(SelfRecord(*start));
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_NE(std::find(got->begin(), got->end(), absl::StrCat("unix:uid:", geteuid())),
            got->end());
}

TEST(CallerAttestation, ReusedPidIsRefused) {
  auto start = attestors::ProcessStartTime(getpid());
  ASSERT_TRUE(start.ok()) << start.status();
  attestors::UnixWorkloadAttestor unix_attestor({});
  CallerAttestation attestation({&unix_attestor});
  // Another start time than the one recorded at accept: the pid now holds another process.
  auto got = attestation.Attest(SelfRecord(*start + 1));
  EXPECT_EQ(got.status().code(), absl::StatusCode::kUnauthenticated) << got.status();
}

TEST(CallerAttestation, CallerNotPinnedAtAcceptIsRefused) {
  attestors::UnixWorkloadAttestor unix_attestor({});
  CallerAttestation attestation({&unix_attestor});
  auto got = attestation.Attest(SelfRecord(0));
  EXPECT_EQ(got.status().code(), absl::StatusCode::kUnauthenticated) << got.status();
}

}  // namespace
}  // namespace trellis::workload_api
