// ServerConnection: how agents spread over the servers of a tier and move between them.
#include "agent/server_connection.h"

#include <atomic>
#include <set>

#include "absl/time/clock.h"
#include "gtest/gtest.h"

namespace trellis::agent {
namespace {

const std::vector<std::string> kThree = {"127.0.0.1:1", "127.0.0.2:1", "127.0.0.3:1"};

ServerConnection Connection(const std::vector<std::string>& targets, ConnectionPolicy policy = {}) {
  return ServerConnection(
      targets, *common::TrustDomain::Parse("example.org"),
      [] { return std::shared_ptr<const common::Bundle>(); }, policy);
}

TEST(ResolveTarget, AnAddressLiteralIsUsedAsItIs) {
  EXPECT_EQ(ResolveTarget("127.0.0.1:8081"), std::vector<std::string>{"ipv4:127.0.0.1:8081"});
  EXPECT_EQ(ResolveTarget("[::1]:8081"), std::vector<std::string>{"ipv6:[::1]:8081"});
}

TEST(ResolveTarget, ANameThatDoesNotResolveIsLeftToGrpc) {
  EXPECT_EQ(ResolveTarget("no-such-host.invalid:8081"),
            std::vector<std::string>{"dns:///no-such-host.invalid:8081"});
}

TEST(ServerConnection, AgentsStartOnServersPickedAtRandom) {
  std::set<std::string> first_choices;
  // The chance that 60 uniform picks among three miss one is 3 * (2/3)^60, about 1e-10.
  for (int i = 0; i < 60; ++i) first_choices.insert(Connection(kThree).CurrentTarget());
  EXPECT_EQ(first_choices.size(), 3u);
}

TEST(ServerConnection, FailoverMovesToAnotherServerAndTellsTheListener) {
  ServerConnection conn = Connection(kThree);
  std::atomic<int> switches{0};
  conn.SetSwitchListener([&] { ++switches; });
  for (int i = 0; i < 20; ++i) {
    std::string before = conn.CurrentAddress();
    conn.Failover();
    EXPECT_NE(conn.CurrentAddress(), before);
  }
  EXPECT_EQ(switches.load(), 20);
}

TEST(ServerConnection, FailoverWithOneServerStaysOnIt) {
  ServerConnection conn = Connection({"127.0.0.1:1"});
  conn.Failover();
  EXPECT_EQ(conn.CurrentTarget(), "127.0.0.1:1");
}

TEST(ServerConnection, AnAgedConnectionPicksAfreshAcrossEveryServer) {
  ServerConnection conn = Connection(kThree, ConnectionPolicy{absl::Milliseconds(1), 0.2});
  std::atomic<int> switches{0};
  conn.SetSwitchListener([&] { ++switches; });
  std::set<std::string> seen{conn.CurrentTarget()};
  absl::Time deadline = absl::Now() + absl::Seconds(30);
  while (seen.size() < 3 && absl::Now() < deadline) {
    ASSERT_NE(conn.Stub(), nullptr);
    seen.insert(conn.CurrentTarget());
  }
  EXPECT_EQ(seen.size(), 3u);
  EXPECT_GE(switches.load(), 2);
}

TEST(ServerConnection, AnAgedConnectionToTheOnlyServerKeepsItsChannel) {
  ServerConnection conn = Connection({"127.0.0.1:1"}, ConnectionPolicy{absl::Milliseconds(1), 0.2});
  std::atomic<int> switches{0};
  conn.SetSwitchListener([&] { ++switches; });
  auto first = conn.Stub();
  absl::Time deadline = absl::Now() + absl::Milliseconds(20);
  while (absl::Now() < deadline) EXPECT_EQ(conn.Stub(), first);
  EXPECT_EQ(switches.load(), 0);
}

TEST(ServerConnection, ZeroMaxAgeKeepsTheConnection) {
  ServerConnection conn = Connection(kThree, ConnectionPolicy{absl::ZeroDuration(), 0.2});
  std::string first = conn.CurrentAddress();
  for (int i = 0; i < 50; ++i) ASSERT_NE(conn.Stub(), nullptr);
  EXPECT_EQ(conn.CurrentAddress(), first);
}

TEST(ServerConnection, PreferMakesAttestationsTargetCurrentAndFirstToTry) {
  ServerConnection conn = Connection(kThree);
  conn.Prefer("127.0.0.2:1");
  EXPECT_EQ(conn.CurrentTarget(), "127.0.0.2:1");
  EXPECT_EQ(conn.TargetsFromCurrent(),
            (std::vector<std::string>{"127.0.0.2:1", "127.0.0.3:1", "127.0.0.1:1"}));
}

}  // namespace
}  // namespace trellis::agent
