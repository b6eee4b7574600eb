// The agent's health report: which failures make it not ready, and which make it not live.
#include "runtime/agent_health.h"

#include <memory>
#include <string>

#include "gtest/gtest.h"

namespace trellis::runtime {
namespace {

const absl::Time kNow = absl::FromUnixSeconds(1'800'000'000);

AgentHealthInputs Healthy(const workload_api::IdentitySnapshot* snap) {
  AgentHealthInputs in;
  in.now = kNow;
  in.sync_interval = absl::Seconds(5);
  in.sync_started = kNow - absl::Hours(1);
  in.last_attempt = kNow - absl::Seconds(2);
  in.last_success = kNow - absl::Seconds(2);
  in.agent_svid_valid = true;
  in.snapshot = snap;
  return in;
}

bool Live(const common::HealthReport& r) { return common::RenderHealth(r, true).first == 200; }
bool Ready(const common::HealthReport& r) { return common::RenderHealth(r, false).first == 200; }

workload_api::IdentitySnapshot ReadySnapshot() {
  workload_api::IdentitySnapshot snap;
  snap.ready = true;
  return snap;
}

TEST(AgentHealth, RecentSyncAndValidSvidsAreLiveAndReady) {
  auto snap = ReadySnapshot();
  common::HealthReport r = AgentHealthReport(Healthy(&snap));
  EXPECT_TRUE(Live(r));
  EXPECT_TRUE(Ready(r));
  EXPECT_EQ(r.subsystems.at("server_sync").detail, "last sync 2s ago");
}

TEST(AgentHealth, StaleSyncIsNotReadyButLiveAndSaysHowOld) {
  auto snap = ReadySnapshot();
  AgentHealthInputs in = Healthy(&snap);
  in.last_success = kNow - absl::Seconds(31);
  common::HealthReport r = AgentHealthReport(in);
  EXPECT_TRUE(Live(r));
  EXPECT_FALSE(Ready(r));
  EXPECT_FALSE(r.subsystems.at("server_sync").healthy);
  EXPECT_NE(r.subsystems.at("server_sync").detail.find("31s ago"), std::string::npos)
      << r.subsystems.at("server_sync").detail;
  // Just inside the limit is still ready.
  in.last_success = kNow - absl::Seconds(29);
  EXPECT_TRUE(Ready(AgentHealthReport(in)));
}

TEST(AgentHealth, JustSyncedSaysZeroSeconds) {
  auto snap = ReadySnapshot();
  AgentHealthInputs in = Healthy(&snap);
  in.last_success = kNow;
  EXPECT_EQ(AgentHealthReport(in).subsystems.at("server_sync").detail, "last sync 0s ago");
}

TEST(AgentHealth, StaleLimitFollowsTheSyncInterval) {
  EXPECT_EQ(StaleSyncAfter(absl::Seconds(5)), absl::Seconds(30));
  EXPECT_EQ(StaleSyncAfter(absl::Seconds(20)), absl::Minutes(2));
}

TEST(AgentHealth, NeverSyncedIsNotReady) {
  AgentHealthInputs in = Healthy(nullptr);
  in.last_success = absl::InfinitePast();
  common::HealthReport r = AgentHealthReport(in);
  EXPECT_FALSE(Ready(r));
  EXPECT_TRUE(Live(r));
  EXPECT_FALSE(r.subsystems.at("workload_api").healthy);
}

TEST(AgentHealth, ExpiredAgentSvidIsNotReady) {
  auto snap = ReadySnapshot();
  AgentHealthInputs in = Healthy(&snap);
  in.agent_svid_valid = false;
  common::HealthReport r = AgentHealthReport(in);
  EXPECT_FALSE(Ready(r));
  EXPECT_TRUE(Live(r));
}

TEST(AgentHealth, StalledSyncLoopIsNotLive) {
  auto snap = ReadySnapshot();
  AgentHealthInputs in = Healthy(&snap);
  in.last_attempt = kNow - absl::Minutes(6);
  in.last_success = kNow - absl::Minutes(6);
  common::HealthReport r = AgentHealthReport(in);
  EXPECT_FALSE(Live(r));
  EXPECT_NE(r.subsystems.at("sync_loop").detail.find("6m ago"), std::string::npos)
      << r.subsystems.at("sync_loop").detail;
}

TEST(AgentHealth, LoopNotStartedYetIsLive) {
  AgentHealthInputs in = Healthy(nullptr);
  in.sync_started = absl::InfinitePast();
  in.last_attempt = in.last_success = absl::InfinitePast();
  EXPECT_TRUE(Live(AgentHealthReport(in)));
}

}  // namespace
}  // namespace trellis::runtime
