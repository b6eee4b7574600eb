// The agent's pipeline against an in-process fake of the server's Agent API over real SPIFFE
// mTLS: attestation, sync, batched minting, persistence across restarts, watch pushes.
#include "agent/agent.h"

#include <sys/stat.h>

#include "gtest/gtest.h"
#include "tests/agent/fake_agent_server.h"

namespace trellis::agent {
namespace {

using testing::kToken;

class AgentTest : public testing::FakeAgentServerTest<Agent> {
 protected:
  // Creates an agent, obtains its identity and, when that worked, starts its sync loops.
  Agent* StartAgent(const std::string& token, absl::Status* status = nullptr) {
    Agent::Options options;
    options.join_token = token;
    auto agent = Agent::Create(Config(), options, common::SystemClock::Get());
    EXPECT_TRUE(agent.ok()) << agent.status();
    absl::Status s = (*agent)->ObtainIdentity();
    if (s.ok()) (*agent)->StartSyncing();
    if (status) *status = s;
    agents_.push_back(std::move(*agent));
    return agents_.back().get();
  }
};

TEST_F(AgentTest, AttestsSyncsAndMintsTheWorkloadSvid) {
  absl::Status st;
  Agent* agent = StartAgent(kToken, &st);
  ASSERT_TRUE(st.ok()) << st;
  ASSERT_TRUE(WaitForSvid(agent->cache(), 1));
  EXPECT_EQ(fake_.attestations.load(), 1);
  EXPECT_EQ(agent->agent_id()->String(), "spiffe://example.org/spire/agent/join_token/tok123");
}

TEST_F(AgentTest, PersistsTheAgentSvidPrivately) {
  absl::Status st;
  StartAgent(kToken, &st);
  ASSERT_TRUE(st.ok()) << st;
  struct stat sb;
  ASSERT_EQ(stat((dir_ / "data").c_str(), &sb), 0);
  EXPECT_EQ(sb.st_mode & 0777, 0700u);
  ASSERT_EQ(stat((dir_ / "data" / "agent_svid.key").c_str(), &sb), 0);
  EXPECT_EQ(sb.st_mode & 0777, 0600u);
}

TEST_F(AgentTest, RestartReusesThePersistedSvidWithoutAToken) {
  absl::Status st;
  Agent* first = StartAgent(kToken, &st);
  ASSERT_TRUE(st.ok()) << st;
  first->Stop();
  Agent* second = StartAgent("", &st);
  ASSERT_TRUE(st.ok()) << st;
  ASSERT_TRUE(WaitForSvid(second->cache(), 1));
  EXPECT_EQ(fake_.attestations.load(), 1);
}

TEST_F(AgentTest, RefusedAttestationFailsStart) {
  absl::Status st;
  StartAgent("wrong-token", &st);
  EXPECT_EQ(st.code(), absl::StatusCode::kPermissionDenied);
}

TEST_F(AgentTest, WatchNoticeOnRevisionChangeRemintsAtOnce) {
  absl::Status st;
  Agent* agent = StartAgent(kToken, &st);
  ASSERT_TRUE(st.ok()) << st;
  ASSERT_TRUE(WaitForSvid(agent->cache(), 1));
  fake_.BumpRevision();
  // Well inside the 5 s periodic sync when pushed; the poll allows for a loaded machine.
  ASSERT_TRUE(WaitForSvid(agent->cache(), 2));
  EXPECT_GE(fake_.minted.load(), 2);
}

TEST_F(AgentTest, TaintedIssuerTriggersRenewalWithoutRevisionChange) {
  absl::Status st;
  Agent* agent = StartAgent(kToken, &st);
  ASSERT_TRUE(st.ok()) << st;
  ASSERT_TRUE(WaitForSvid(agent->cache(), 1));
  std::string before(agent->cache()->Snapshot()->svids.at("e1")->leaf());
  int minted_before = fake_.minted.load();
  fake_.TaintCa();
  absl::Time deadline = absl::Now() + absl::Seconds(20);
  while (absl::Now() < deadline &&
         agent->cache()->Snapshot()->svids.at("e1")->leaf() == before) {
    absl::SleepFor(absl::Milliseconds(10));
  }
  EXPECT_NE(agent->cache()->Snapshot()->svids.at("e1")->leaf(), before);
  EXPECT_GT(fake_.minted.load(), minted_before);
}

}  // namespace
}  // namespace trellis::agent
