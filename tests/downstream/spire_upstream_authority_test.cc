// UpstreamAuthority "spire" against a real upstream tier: option checks, the upstream's
// refusals as the downstream sees them, SVID rotation, and stopping while it still waits.
#include "downstream/spire_upstream_authority.h"

#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "common/keys.h"
#include "common/log.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testutil/status_matchers.h"
#include "tests/testutil/temp_dir.h"
#include "tests/upstream/upstream_tier.h"

namespace trellis::downstream {
namespace {

using ::testing::AllOf;
using ::testing::HasSubstr;
using testutil::IsOk;
using testutil::StatusIs;
using upstream::testing::kDownstreamId;
using upstream::testing::UpstreamTier;

common::TrustDomain Td() { return *common::TrustDomain::Parse("example.org"); }

SpireUpstreamOptions OptionsFor(const UpstreamTier& tier) {
  SpireUpstreamOptions o(Td());
  o.server_address = "127.0.0.1";
  o.server_port = static_cast<uint16_t>(tier.upstream_port());
  o.workload_api_socket = tier.workload_api_socket();
  o.svid_wait = absl::Seconds(20);
  return o;
}

TEST(SpireUpstreamAuthorityOptions, IncompleteOptionsAreRefused) {
  SpireUpstreamOptions no_address(Td());
  no_address.server_port = 8081;
  no_address.workload_api_socket = "/tmp/agent.sock";
  EXPECT_THAT(CreateSpireUpstreamAuthority(no_address),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("server_address")));
  SpireUpstreamOptions no_port = no_address;
  no_port.server_address = "127.0.0.1";
  no_port.server_port = 0;
  EXPECT_THAT(CreateSpireUpstreamAuthority(no_port),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("server_port")));
  SpireUpstreamOptions no_socket = no_port;
  no_socket.server_port = 8081;
  no_socket.workload_api_socket = "";
  EXPECT_THAT(CreateSpireUpstreamAuthority(no_socket),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("workload_api_socket")));
}

class SpireUpstreamAuthorityTest : public upstream::testing::UpstreamTierTest {
 protected:
  void TearDown() override {
    // The downstream's streams end before the tier they talk to.
    authority_.reset();
  }

  void Connect(SpireUpstreamOptions options) {
    auto authority = CreateSpireUpstreamAuthority(std::move(options));
    ASSERT_THAT(authority, IsOk());
    authority_ = std::move(*authority);
  }

  absl::StatusOr<server::UpstreamAuthority::MintResult> Mint() {
    auto key = common::PrivateKey::Generate();
    if (!key.ok()) return key.status();
    return authority_->MintX509Ca(*key, Td(), absl::Hours(1));
  }

  std::unique_ptr<server::UpstreamAuthority> authority_;
};

TEST_F(SpireUpstreamAuthorityTest, CallerWithoutADownstreamEntryIsRefusedNamingTheUpstream) {
  ASSERT_THAT(tier_->PublishSvid(kDownstreamId), IsOk());
  tier_->SetDownstream(kDownstreamId, false);
  Connect(OptionsFor(*tier_));
  const std::string upstream =
      "upstream server 127.0.0.1:" + std::to_string(tier_->upstream_port());
  EXPECT_THAT(Mint(), StatusIs(absl::StatusCode::kPermissionDenied,
                               AllOf(HasSubstr(upstream), HasSubstr(kDownstreamId))));
  auto jwt_key = common::PrivateKey::Generate();
  datastore::JwtAuthority a{"k1", jwt_key->spki_der(), absl::Now() + absl::Hours(1), false};
  EXPECT_THAT(authority_->PublishJwtAuthority(a),
              StatusIs(absl::StatusCode::kPermissionDenied, HasSubstr(upstream)));
}

// The upstream's line names the downstream server and the method; the line of the Workload
// API the downstream took its SVID from names this process and the SPIFFE ID it was served.
TEST_F(SpireUpstreamAuthorityTest, CallLinesNameTheCallerAndTheMethod) {
  ASSERT_THAT(tier_->PublishSvid(kDownstreamId), IsOk());
  common::SetLogLevel(common::config::LogLevel::kDebug);
  ::testing::internal::CaptureStderr();
  Connect(OptionsFor(*tier_));
  absl::StatusOr<server::UpstreamAuthority::MintResult> minted = Mint();
  std::string out = ::testing::internal::GetCapturedStderr();
  common::SetLogLevel(common::config::LogLevel::kInfo);
  ASSERT_THAT(minted, IsOk());
  auto line_with = [&out](const std::string& msg) {
    size_t at = out.find(msg);
    return at == std::string::npos ? std::string() : out.substr(at, out.find('\n', at) - at);
  };
  std::string mint_line = line_with("Minted a downstream CA");
  ASSERT_FALSE(mint_line.empty()) << out;
  EXPECT_THAT(mint_line, HasSubstr(" caller_id=" + std::string(kDownstreamId)));
  EXPECT_THAT(mint_line, HasSubstr(" method=/trellis.server.v1.Upstream/MintX509CA"));
  std::string served = line_with("Workload API identities served");
  ASSERT_FALSE(served.empty()) << out;
  EXPECT_THAT(served, HasSubstr(" caller_pid=" + std::to_string(::getpid())));
  EXPECT_THAT(served, HasSubstr(" caller_uid=" + std::to_string(::getuid())));
  EXPECT_THAT(served, HasSubstr(" caller_id=" + std::string(kDownstreamId)));
  EXPECT_THAT(served, HasSubstr(" method=/SpiffeWorkloadAPI/FetchX509SVID"));
}

TEST_F(SpireUpstreamAuthorityTest, WithoutAnSvidCallsFailUnavailableNamingTheSocket) {
  testutil::TempDir dir("trellis-sua");
  SpireUpstreamOptions options = OptionsFor(*tier_);
  options.workload_api_socket = dir.Sub("absent.sock");
  options.svid_wait = absl::Milliseconds(300);
  Connect(options);
  EXPECT_THAT(Mint(), StatusIs(absl::StatusCode::kUnavailable, HasSubstr("absent.sock")));
}

TEST_F(SpireUpstreamAuthorityTest, CallsAuthenticateWithTheRotatedSvid) {
  auto first = tier_->PublishSvid(kDownstreamId);
  ASSERT_THAT(first, IsOk());
  Connect(OptionsFor(*tier_));
  ASSERT_THAT(Mint(), IsOk());
  EXPECT_EQ(tier_->LastCallerSerial(), first->SerialHex());
  auto second = tier_->PublishSvid(kDownstreamId);
  ASSERT_THAT(second, IsOk());
  // The source follows the rotation on its own thread; the next calls switch channels.
  const absl::Time deadline = absl::Now() + absl::Seconds(20);
  while (tier_->LastCallerSerial() != second->SerialHex() && absl::Now() < deadline) {
    ASSERT_THAT(Mint(), IsOk());
    absl::SleepFor(absl::Milliseconds(50));
  }
  EXPECT_EQ(tier_->LastCallerSerial(), second->SerialHex());
}

TEST_F(SpireUpstreamAuthorityTest, StopEndsAWatchStillWaitingForItsFirstSvid) {
  testutil::TempDir dir("trellis-sua");
  SpireUpstreamOptions options = OptionsFor(*tier_);
  options.workload_api_socket = dir.Sub("absent.sock");
  options.svid_wait = absl::Seconds(60);
  Connect(options);
  authority_->WatchBundle([](const datastore::Bundle&) {});
  absl::SleepFor(absl::Milliseconds(200));
  const absl::Time start = absl::Now();
  authority_->Stop();
  EXPECT_LT(absl::Now() - start, absl::Seconds(5));
}

TEST_F(SpireUpstreamAuthorityTest, StopsOnTwoThreadsAtOnceEndTheWatchOnce) {
  testutil::TempDir dir("trellis-sua");
  SpireUpstreamOptions options = OptionsFor(*tier_);
  options.workload_api_socket = dir.Sub("absent.sock");
  options.svid_wait = absl::Seconds(60);
  for (int round = 0; round < 10; ++round) {
    Connect(options);
    std::atomic<int> calls{0};
    authority_->WatchBundle([&calls](const datastore::Bundle&) { calls++; });
    std::thread other([this] { authority_->Stop(); });
    authority_->Stop();
    other.join();
    // Stopped: a watch asked for afterwards starts nothing, and nothing was delivered.
    authority_->WatchBundle([&calls](const datastore::Bundle&) { calls++; });
    authority_->Stop();
    EXPECT_EQ(calls.load(), 0);
  }
}

TEST_F(SpireUpstreamAuthorityTest, WatchFollowsTheUpstreamAcrossRevokedAndRestoredAccess) {
  ASSERT_THAT(tier_->PublishSvid(kDownstreamId), IsOk());
  Connect(OptionsFor(*tier_));
  absl::Mutex mu;
  std::vector<std::string> kids_seen;
  authority_->WatchBundle([&](const datastore::Bundle& b) {
    absl::MutexLock lock(&mu);
    for (const auto& a : b.jwt_authorities) kids_seen.push_back(a.kid);
  });
  auto saw = [&](const std::string& kid) {
    absl::MutexLock lock(&mu);
    auto has = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) {
      return std::find(kids_seen.begin(), kids_seen.end(), kid) != kids_seen.end();
    };
    return mu.AwaitWithTimeout(absl::Condition(&has), absl::Seconds(20));
  };
  ASSERT_TRUE(saw(tier_->ca().ActiveJwtKid()));
  // The upstream ends the stream once the entry is gone; the downstream retries and is
  // served again when the entry is back.
  auto open_watches_become = [&](int64_t n) {
    const absl::Time deadline = absl::Now() + absl::Seconds(20);
    while (tier_->service().OpenWatches() != n && absl::Now() < deadline) {
      absl::SleepFor(absl::Milliseconds(20));
    }
    return tier_->service().OpenWatches() == n;
  };
  ASSERT_TRUE(open_watches_become(1));
  tier_->SetDownstream(kDownstreamId, false);
  tier_->service().NotifyBundleChanged();
  ASSERT_TRUE(open_watches_become(0));
  tier_->SetDownstream(kDownstreamId, true);
  EXPECT_TRUE(open_watches_become(1));
  auto prepared = tier_->ca().PrepareJwt();
  ASSERT_THAT(prepared, IsOk());
  EXPECT_TRUE(saw(prepared->id));
  authority_->Stop();
}

}  // namespace
}  // namespace trellis::downstream
