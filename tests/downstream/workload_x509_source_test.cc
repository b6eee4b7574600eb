// WorkloadX509Source against a real Workload API on a Unix socket: the SVID and bundle it
// receives, rotation, reconnection, and the errors it reports.
#include "downstream/workload_x509_source.h"

#include <atomic>
#include <memory>
#include <string>
#include <thread>

#include "absl/time/clock.h"
#include "common/keys.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testutil/status_matchers.h"
#include "tests/testutil/temp_dir.h"
#include "tests/upstream/upstream_tier.h"

namespace trellis::downstream {
namespace {

using ::testing::HasSubstr;
using testutil::IsOk;
using testutil::StatusIs;
using upstream::testing::kDownstreamId;
using upstream::testing::UpstreamTier;

common::TrustDomain Td() { return *common::TrustDomain::Parse("example.org"); }

constexpr absl::Duration kPatience = absl::Seconds(20);

class WorkloadX509SourceTest : public upstream::testing::UpstreamTierTest {
 protected:
  void TearDown() override {
    // The client first, so its stream ends before the server it reads from.
    if (source_) source_->Stop();
  }

  // Polls until the source holds the SVID whose leaf is `leaf`.
  bool WaitForLeaf(const common::Certificate& leaf) {
    const absl::Time deadline = absl::Now() + kPatience;
    while (absl::Now() < deadline) {
      auto current = source_->Current();
      if (current && current->chain.front() == leaf) return true;
      absl::SleepFor(absl::Milliseconds(20));
    }
    return false;
  }

  std::unique_ptr<WorkloadX509Source> source_;
};

TEST_F(WorkloadX509SourceTest, ReceivesTheSvidAndBundleFromTheWorkloadApi) {
  auto leaf = tier_->PublishSvid(kDownstreamId);
  ASSERT_THAT(leaf, IsOk());
  source_ = WorkloadX509Source::Start(tier_->workload_api_socket(), Td());
  auto svid = source_->Wait(kPatience);
  ASSERT_THAT(svid, IsOk());
  EXPECT_EQ((*svid)->id.String(), kDownstreamId);
  ASSERT_EQ((*svid)->chain.size(), 1u);  // leaf only: the root CA stays in the bundle
  EXPECT_EQ((*svid)->chain.front(), *leaf);
  EXPECT_EQ((*svid)->chain_pem, leaf->ToPem());
  auto key = common::PrivateKey::FromPem((*svid)->key_pem);
  ASSERT_THAT(key, IsOk());
  EXPECT_EQ(key->spki_der(), leaf->public_key().spki_der());
  ASSERT_NE((*svid)->bundle, nullptr);
  EXPECT_EQ((*svid)->bundle->trust_domain(), Td());
  EXPECT_EQ((*svid)->bundle->x509_authorities(), tier_->ca().Bundle()->x509_authorities());
  EXPECT_EQ(source_->Current(), *svid);
}

TEST_F(WorkloadX509SourceTest, AbsentSocketIsReportedAsUnavailableNamingTheSocket) {
  testutil::TempDir dir("trellis-wxs");
  const std::string absent = dir.Sub("absent.sock");
  source_ = WorkloadX509Source::Start(absent, Td());
  EXPECT_THAT(source_->Wait(absl::Milliseconds(300)),
              StatusIs(absl::StatusCode::kUnavailable, HasSubstr(absent)));
  EXPECT_EQ(source_->Current(), nullptr);
}

TEST_F(WorkloadX509SourceTest, NothingIssuedYetIsReportedAsUnavailable) {
  source_ = WorkloadX509Source::Start(tier_->workload_api_socket(), Td());
  EXPECT_THAT(source_->Wait(absl::Milliseconds(500)),
              StatusIs(absl::StatusCode::kUnavailable, HasSubstr(tier_->workload_api_socket())));
  EXPECT_EQ(source_->Current(), nullptr);
}

TEST_F(WorkloadX509SourceTest, SvidOfAnotherTrustDomainIsNotAdopted) {
  ASSERT_THAT(tier_->PublishSvid(kDownstreamId), IsOk());
  source_ = WorkloadX509Source::Start(tier_->workload_api_socket(),
                                      *common::TrustDomain::Parse("other.org"));
  EXPECT_THAT(source_->Wait(absl::Seconds(2)),
              StatusIs(absl::StatusCode::kUnavailable, HasSubstr("not in trust domain other.org")));
  EXPECT_EQ(source_->Current(), nullptr);
}

TEST_F(WorkloadX509SourceTest, FollowsARotationAndTellsTheListener) {
  auto first = tier_->PublishSvid(kDownstreamId);
  ASSERT_THAT(first, IsOk());
  source_ = WorkloadX509Source::Start(tier_->workload_api_socket(), Td());
  std::atomic<int> notified{0};
  source_->SetListener([&notified] { notified++; });
  ASSERT_TRUE(WaitForLeaf(*first));
  const int before = notified.load();
  auto second = tier_->PublishSvid(kDownstreamId);
  ASSERT_THAT(second, IsOk());
  ASSERT_FALSE(*first == *second);
  EXPECT_TRUE(WaitForLeaf(*second));
  EXPECT_GT(notified.load(), before);
  auto key = common::PrivateKey::FromPem(source_->Current()->key_pem);
  ASSERT_THAT(key, IsOk());
  EXPECT_EQ(key->spki_der(), second->public_key().spki_der());
}

TEST_F(WorkloadX509SourceTest, ReconnectsAfterTheWorkloadApiRestarts) {
  auto first = tier_->PublishSvid(kDownstreamId);
  ASSERT_THAT(first, IsOk());
  source_ = WorkloadX509Source::Start(tier_->workload_api_socket(), Td());
  ASSERT_TRUE(WaitForLeaf(*first));
  ASSERT_THAT(tier_->RestartWorkloadApi(), IsOk());
  auto second = tier_->PublishSvid(kDownstreamId);
  ASSERT_THAT(second, IsOk());
  EXPECT_TRUE(WaitForLeaf(*second));
}

TEST_F(WorkloadX509SourceTest, StopEndsWaitsAtOnceAndIsIdempotent) {
  testutil::TempDir dir("trellis-wxs");
  source_ = WorkloadX509Source::Start(dir.Sub("absent.sock"), Td());
  source_->Stop();
  source_->Stop();
  const absl::Time start = absl::Now();
  EXPECT_THAT(source_->Wait(absl::Seconds(30)), StatusIs(absl::StatusCode::kUnavailable));
  EXPECT_LT(absl::Now() - start, absl::Seconds(5));
}

TEST_F(WorkloadX509SourceTest, StopsOnTwoThreadsAtOnceJoinTheReaderOnce) {
  testutil::TempDir dir("trellis-wxs");
  for (int round = 0; round < 20; ++round) {
    auto source = WorkloadX509Source::Start(dir.Sub("absent.sock"), Td());
    std::atomic<int> returned{0};
    std::thread other([&] {
      source->Stop();
      returned++;
    });
    source->Stop();
    returned++;
    other.join();
    EXPECT_EQ(returned.load(), 2);
    EXPECT_THAT(source->Wait(absl::Seconds(1)), StatusIs(absl::StatusCode::kUnavailable));
  }
}

TEST_F(WorkloadX509SourceTest, NoListenerCallOnceStopReturns) {
  ASSERT_THAT(tier_->PublishSvid(kDownstreamId), IsOk());
  source_ = WorkloadX509Source::Start(tier_->workload_api_socket(), Td());
  std::atomic<bool> stopped{false};
  std::atomic<int> late{0};
  source_->SetListener([&] {
    if (stopped) late++;
  });
  ASSERT_THAT(source_->Wait(kPatience), IsOk());
  source_->Stop();
  stopped = true;
  ASSERT_THAT(tier_->PublishSvid(kDownstreamId), IsOk());
  absl::SleepFor(absl::Milliseconds(500));
  EXPECT_EQ(late.load(), 0);
}

}  // namespace
}  // namespace trellis::downstream
