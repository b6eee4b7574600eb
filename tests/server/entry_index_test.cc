// EntryIndex: authorisation rules and incremental updates from the datastore change log.
#include "server/entry_index.h"

#include <algorithm>
#include <atomic>
#include <functional>
#include <set>
#include <thread>

#include "gtest/gtest.h"
#include "tests/server/server_test_util.h"

namespace trellis::server {
namespace {

using testing::kTestStart;
using testing::OpenTestStore;
using testutil::TempDir;

constexpr char kAgent[] = "spiffe://example.org/spire/agent/join_token/a1";
constexpr char kOtherAgent[] = "spiffe://example.org/spire/agent/join_token/a2";
constexpr char kServer[] = "spiffe://example.org/spire/server";

class EntryIndexTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ds_ = OpenTestStore(dir_, clock_);
    ASSERT_NE(ds_, nullptr);
  }

  std::string AddEntry(const std::string& parent, const std::string& spiffe_id,
                       std::vector<datastore::Selector> selectors = {{"unix", "uid:1000"}},
                       absl::Time expires_at = absl::InfiniteFuture()) {
    datastore::RegistrationEntry e;
    e.parent_id = parent;
    e.spiffe_id = spiffe_id;
    e.selectors = std::move(selectors);
    e.expires_at = expires_at;
    auto created = ds_->CreateEntry(e);
    EXPECT_TRUE(created.ok()) << created.status();
    if (created.ok()) all_ids_.push_back(created->id);
    return created.ok() ? created->id : "";
  }

  void AddNode(const std::string& id, std::vector<datastore::Selector> selectors) {
    datastore::AttestedNode n;
    n.spiffe_id = id;
    n.attestation_data_type = "join_token";
    n.cert_serial_number = "01";
    n.cert_not_after = kTestStart + absl::Hours(1);
    ASSERT_TRUE(ds_->CreateNode(n).ok());
    ASSERT_TRUE(ds_->SetNodeSelectors(id, selectors).ok());
  }

  std::unique_ptr<EntryIndex> MakeIndex() {
    auto index = EntryIndex::Create(ds_.get(), clock_);
    EXPECT_TRUE(index.ok()) << index.status();
    return index.ok() ? std::move(*index) : nullptr;
  }

  static std::set<std::string> Ids(const std::vector<datastore::RegistrationEntry>& entries) {
    std::set<std::string> out;
    for (const auto& e : entries) out.insert(e.id);
    return out;
  }

  // The authorised set, from the walk down the agent's tree; checks that the walk up from each
  // entry (AuthorizedEntry) says the same of every entry the test created.
  std::set<std::string> Authorized(const EntryIndex& index, const std::string& agent) {
    common::SpiffeId id = *common::SpiffeId::Parse(agent);
    std::set<std::string> down = Ids(index.AuthorizedEntries(id));
    for (const std::string& entry_id : all_ids_) {
      std::optional<datastore::RegistrationEntry> up = index.AuthorizedEntry(id, entry_id);
      EXPECT_EQ(up.has_value(), down.count(entry_id) > 0) << entry_id;
      if (up) EXPECT_EQ(up->id, entry_id);
    }
    EXPECT_FALSE(index.AuthorizedEntry(id, "no-such-entry").has_value());
    return down;
  }

  TempDir dir_;
  common::FakeClock clock_{kTestStart};
  std::unique_ptr<datastore::DataStore> ds_;
  std::vector<std::string> all_ids_;
};

TEST_F(EntryIndexTest, EntryParentedByAgentIsAuthorized) {
  const std::string mine = AddEntry(kAgent, "spiffe://example.org/app");
  AddEntry(kOtherAgent, "spiffe://example.org/other");
  auto index = MakeIndex();
  ASSERT_NE(index, nullptr);
  EXPECT_EQ(Authorized(*index, kAgent), std::set<std::string>{mine});
}

TEST_F(EntryIndexTest, NodeAliasAppliesWhenItsSelectorsAreSubsetOfNodeSelectors) {
  AddNode(kAgent, {{"x509pop", "subject:cn:a"}, {"x509pop", "serialnumber:1"}});
  const std::string alias =
      AddEntry(kServer, "spiffe://example.org/nodes/a", {{"x509pop", "subject:cn:a"}});
  AddEntry(kServer, "spiffe://example.org/nodes/b",
           {{"x509pop", "subject:cn:a"}, {"x509pop", "subject:cn:b"}});
  auto index = MakeIndex();
  ASSERT_NE(index, nullptr);
  EXPECT_EQ(Authorized(*index, kAgent), std::set<std::string>{alias});
}

TEST_F(EntryIndexTest, NodeAliasDoesNotApplyToAgentWithoutNodeRow) {
  AddEntry(kServer, "spiffe://example.org/nodes/a", {{"x509pop", "subject:cn:a"}});
  auto index = MakeIndex();
  ASSERT_NE(index, nullptr);
  EXPECT_TRUE(Authorized(*index, kAgent).empty());
}

TEST_F(EntryIndexTest, DescendantsAreAuthorizedTransitively) {
  AddNode(kAgent, {{"k", "v"}});
  const std::string alias = AddEntry(kServer, "spiffe://example.org/nodes/k", {{"k", "v"}});
  const std::string child = AddEntry("spiffe://example.org/nodes/k", "spiffe://example.org/mid");
  const std::string grandchild = AddEntry("spiffe://example.org/mid", "spiffe://example.org/leaf");
  const std::string direct = AddEntry(kAgent, "spiffe://example.org/direct");
  const std::string under_direct =
      AddEntry("spiffe://example.org/direct", "spiffe://example.org/under-direct");
  AddEntry("spiffe://example.org/unrelated", "spiffe://example.org/nope");
  auto index = MakeIndex();
  ASSERT_NE(index, nullptr);
  EXPECT_EQ(Authorized(*index, kAgent),
            (std::set<std::string>{alias, child, grandchild, direct, under_direct}));
}

TEST_F(EntryIndexTest, EntryReachableTwiceIsReturnedOnce) {
  AddEntry(kAgent, "spiffe://example.org/group", {{"unix", "uid:1"}});
  AddEntry(kAgent, "spiffe://example.org/group", {{"unix", "uid:2"}});
  AddEntry(kAgent, "spiffe://example.org/app", {{"unix", "uid:3"}});
  AddEntry("spiffe://example.org/app", "spiffe://example.org/app", {{"unix", "uid:4"}});
  AddEntry("spiffe://example.org/group", "spiffe://example.org/svc");
  auto index = MakeIndex();
  ASSERT_NE(index, nullptr);
  auto entries = index->AuthorizedEntries(*common::SpiffeId::Parse(kAgent));
  EXPECT_EQ(entries.size(), 5u);
  EXPECT_EQ(Ids(entries).size(), entries.size());
}

TEST_F(EntryIndexTest, AParentCycleAuthorizesNothingAndEndsTheWalkUp) {
  AddEntry("spiffe://example.org/b", "spiffe://example.org/a");
  AddEntry("spiffe://example.org/a", "spiffe://example.org/b");
  const std::string mine = AddEntry(kAgent, "spiffe://example.org/app");
  auto index = MakeIndex();
  ASSERT_NE(index, nullptr);
  EXPECT_EQ(Authorized(*index, kAgent), std::set<std::string>{mine});
}

TEST_F(EntryIndexTest, ExpiredEntryAndItsChildrenAreExcluded) {
  const std::string live = AddEntry(kAgent, "spiffe://example.org/live");
  AddEntry(kAgent, "spiffe://example.org/gone", {{"unix", "uid:1"}}, kTestStart + absl::Minutes(5));
  AddEntry("spiffe://example.org/gone", "spiffe://example.org/under-gone");
  auto index = MakeIndex();
  ASSERT_NE(index, nullptr);
  EXPECT_EQ(Authorized(*index, kAgent).size(), 3u);
  clock_.Advance(absl::Minutes(6));
  EXPECT_EQ(Authorized(*index, kAgent), std::set<std::string>{live});
}

TEST_F(EntryIndexTest, CreatedEntryAppearsAfterPoll) {
  auto index = MakeIndex();
  ASSERT_NE(index, nullptr);
  const uint64_t v0 = index->Version();
  const std::string id = AddEntry(kAgent, "spiffe://example.org/app");
  EXPECT_TRUE(Authorized(*index, kAgent).empty());  // no datastore reads between polls
  ASSERT_TRUE(index->Poll().ok());
  EXPECT_EQ(Authorized(*index, kAgent), std::set<std::string>{id});
  EXPECT_GT(index->Version(), v0);
}

TEST_F(EntryIndexTest, UpdatedParentMovesEntryAfterPoll) {
  const std::string id = AddEntry(kAgent, "spiffe://example.org/app");
  auto index = MakeIndex();
  ASSERT_NE(index, nullptr);
  datastore::RegistrationEntry e = *ds_->GetEntry(id);
  e.parent_id = kOtherAgent;
  datastore::EntryMask mask;
  mask.parent_id = true;
  ASSERT_TRUE(ds_->UpdateEntry(e, mask).ok());
  ASSERT_TRUE(index->Poll().ok());
  EXPECT_TRUE(Authorized(*index, kAgent).empty());
  EXPECT_EQ(Authorized(*index, kOtherAgent), std::set<std::string>{id});
  EXPECT_EQ(index->Entry(id)->revision_number, 1);
}

TEST_F(EntryIndexTest, DeletedEntryDisappearsAfterPoll) {
  const std::string id = AddEntry(kAgent, "spiffe://example.org/app");
  auto index = MakeIndex();
  ASSERT_NE(index, nullptr);
  ASSERT_TRUE(ds_->DeleteEntry(id).ok());
  ASSERT_TRUE(index->Poll().ok());
  EXPECT_TRUE(Authorized(*index, kAgent).empty());
  EXPECT_FALSE(index->Entry(id).has_value());
  EXPECT_EQ(index->EntryCount(), 0u);
}

TEST_F(EntryIndexTest, NodeSelectorChangeRecomputesAliases) {
  AddNode(kAgent, {{"k", "old"}});
  const std::string alias = AddEntry(kServer, "spiffe://example.org/nodes/new", {{"k", "new"}});
  auto index = MakeIndex();
  ASSERT_NE(index, nullptr);
  EXPECT_TRUE(Authorized(*index, kAgent).empty());
  ASSERT_TRUE(ds_->SetNodeSelectors(kAgent, {{"k", "new"}}).ok());
  ASSERT_TRUE(index->Poll().ok());
  EXPECT_EQ(Authorized(*index, kAgent), std::set<std::string>{alias});
}

TEST_F(EntryIndexTest, BanIsReflectedInNodeAfterPoll) {
  AddNode(kAgent, {{"k", "v"}});
  auto index = MakeIndex();
  ASSERT_NE(index, nullptr);
  ASSERT_TRUE(index->Node(kAgent).has_value());
  EXPECT_FALSE(index->Node(kAgent)->banned);
  EXPECT_EQ(index->Node(kAgent)->selectors.size(), 1u);
  datastore::AttestedNode n = *ds_->GetNode(kAgent, false);
  n.banned = true;
  datastore::NodeMask mask;
  mask.banned = true;
  ASSERT_TRUE(ds_->UpdateNode(n, mask).ok());
  ASSERT_TRUE(index->Poll().ok());
  EXPECT_TRUE(index->Node(kAgent)->banned);
}

TEST_F(EntryIndexTest, DeletedNodeIsGoneAfterPoll) {
  AddNode(kAgent, {{"k", "v"}});
  auto index = MakeIndex();
  ASSERT_NE(index, nullptr);
  ASSERT_TRUE(ds_->DeleteNode(kAgent).ok());
  ASSERT_TRUE(index->Poll().ok());
  EXPECT_FALSE(index->Node(kAgent).has_value());
}

TEST_F(EntryIndexTest, ListenerGetsNewVersionOnlyWhenSomethingChanged) {
  auto index = MakeIndex();
  ASSERT_NE(index, nullptr);
  std::vector<uint64_t> seen;
  index->SetChangeListener([&](uint64_t v, const EntryIndex::Change&) { seen.push_back(v); });
  ASSERT_TRUE(index->Poll().ok());
  EXPECT_TRUE(seen.empty());
  AddEntry(kAgent, "spiffe://example.org/app");
  ASSERT_TRUE(index->Poll().ok());
  ASSERT_EQ(seen.size(), 1u);
  EXPECT_EQ(seen[0], index->Version());
}

// The agents the listener hears of after one change made by `change`.
class AffectedAgentsTest : public EntryIndexTest {
 protected:
  std::set<std::string> AfterChange(EntryIndex& index, const std::function<void()>& change) {
    std::set<std::string> heard;
    int calls = 0;
    index.SetChangeListener([&](uint64_t, const EntryIndex::Change& change) {
      heard = change.agents;
      ++calls;
    });
    change();
    EXPECT_TRUE(index.Poll().ok());
    EXPECT_EQ(calls, 1);
    index.SetChangeListener(nullptr);
    return heard;
  }
};

TEST_F(AffectedAgentsTest, AnEntryUnderOneAgentConcernsThatAgentOnly) {
  AddNode(kAgent, {});
  AddNode(kOtherAgent, {});
  auto index = MakeIndex();
  ASSERT_NE(index, nullptr);
  EXPECT_EQ(AfterChange(*index, [&] { AddEntry(kAgent, "spiffe://example.org/app"); }),
            std::set<std::string>{kAgent});
}

TEST_F(AffectedAgentsTest, AGrandchildEntryConcernsTheAgentAboveItsParent) {
  AddEntry(kAgent, "spiffe://example.org/mid");
  auto index = MakeIndex();
  ASSERT_NE(index, nullptr);
  std::set<std::string> heard = AfterChange(
      *index, [&] { AddEntry("spiffe://example.org/mid", "spiffe://example.org/leaf"); });
  EXPECT_TRUE(heard.count(kAgent));
  EXPECT_FALSE(heard.count(kOtherAgent));
}

TEST_F(AffectedAgentsTest, MovingAnEntryConcernsTheOldAndTheNewAgent) {
  const std::string id = AddEntry(kAgent, "spiffe://example.org/app");
  auto index = MakeIndex();
  ASSERT_NE(index, nullptr);
  std::set<std::string> heard = AfterChange(*index, [&] {
    datastore::RegistrationEntry e = *index->Entry(id);
    e.parent_id = kOtherAgent;
    ASSERT_TRUE(ds_->UpdateEntry(e, datastore::EntryMask::All()).ok());
  });
  EXPECT_EQ(heard, (std::set<std::string>{kAgent, kOtherAgent}));
}

TEST_F(AffectedAgentsTest, DeletingAnEntryConcernsTheAgentThatHadIt) {
  const std::string id = AddEntry(kAgent, "spiffe://example.org/app");
  auto index = MakeIndex();
  ASSERT_NE(index, nullptr);
  EXPECT_EQ(AfterChange(*index, [&] { ASSERT_TRUE(ds_->DeleteEntry(id).ok()); }),
            std::set<std::string>{kAgent});
}

TEST_F(AffectedAgentsTest, ANodeAliasConcernsTheNodesWhoseSelectorsCoverIt) {
  AddNode(kAgent, {{"k8s", "cluster:a"}, {"k8s", "zone:1"}});
  AddNode(kOtherAgent, {{"k8s", "cluster:b"}});
  auto index = MakeIndex();
  ASSERT_NE(index, nullptr);
  std::set<std::string> heard = AfterChange(*index, [&] {
    AddEntry(kServer, "spiffe://example.org/cluster-a", {{"k8s", "cluster:a"}});
    AddEntry("spiffe://example.org/cluster-a", "spiffe://example.org/app");
  });
  EXPECT_TRUE(heard.count(kAgent));
  EXPECT_FALSE(heard.count(kOtherAgent));
}

TEST_F(AffectedAgentsTest, ANodeChangeConcernsThatNode) {
  AddNode(kAgent, {});
  AddNode(kOtherAgent, {});
  auto index = MakeIndex();
  ASSERT_NE(index, nullptr);
  std::set<std::string> heard = AfterChange(*index, [&] {
    datastore::AttestedNode ban;
    ban.spiffe_id = kAgent;
    ban.banned = true;
    datastore::NodeMask mask;
    mask.banned = true;
    ASSERT_TRUE(ds_->UpdateNode(ban, mask).ok());
  });
  EXPECT_EQ(heard, std::set<std::string>{kAgent});
}

TEST_F(EntryIndexTest, ABundleWriteIsReportedByTrustDomainAndConcernsNoAgent) {
  auto index = MakeIndex();
  ASSERT_NE(index, nullptr);
  EntryIndex::Change heard;
  index->SetChangeListener([&](uint64_t, const EntryIndex::Change& change) { heard = change; });
  datastore::Bundle b;
  b.trust_domain = "other.org";
  b.x509_authorities.push_back({"der", kTestStart + absl::Hours(1)});
  ASSERT_TRUE(ds_->SetBundle(b).ok());
  ASSERT_TRUE(index->Poll().ok());
  EXPECT_EQ(heard.bundles, std::set<std::string>{"other.org"});
  EXPECT_TRUE(heard.agents.empty());
  index->SetChangeListener(nullptr);
}

TEST_F(AffectedAgentsTest, AParentCycleEndsTheWalk) {
  AddEntry("spiffe://example.org/b", "spiffe://example.org/a");
  auto index = MakeIndex();
  ASSERT_NE(index, nullptr);
  std::set<std::string> heard = AfterChange(
      *index, [&] { AddEntry("spiffe://example.org/a", "spiffe://example.org/b"); });
  EXPECT_EQ(heard, (std::set<std::string>{"spiffe://example.org/a", "spiffe://example.org/b"}));
}

TEST_F(EntryIndexTest, EntriesBySpiffeIdFindsDownstreamEntries) {
  AddEntry(kAgent, "spiffe://example.org/downstream", {{"unix", "uid:1"}});
  AddEntry(kOtherAgent, "spiffe://example.org/downstream", {{"unix", "uid:2"}});
  auto index = MakeIndex();
  ASSERT_NE(index, nullptr);
  EXPECT_EQ(index->EntriesBySpiffeId("spiffe://example.org/downstream").size(), 2u);
  EXPECT_TRUE(index->EntriesBySpiffeId("spiffe://example.org/none").empty());
}

TEST_F(EntryIndexTest, PollAppliesMoreEventsThanOneBatch) {
  auto index = MakeIndex();
  ASSERT_NE(index, nullptr);
  std::vector<datastore::RegistrationEntry> batch;
  for (int i = 0; i < 1500; ++i) {
    datastore::RegistrationEntry e;
    e.parent_id = kAgent;
    e.spiffe_id = "spiffe://example.org/w" + std::to_string(i);
    e.selectors = {{"unix", "uid:1"}};
    batch.push_back(e);
  }
  ASSERT_TRUE(ds_->CreateEntries(batch).ok());
  ASSERT_TRUE(index->Poll().ok());
  EXPECT_EQ(index->EntryCount(), 1500u);
  EXPECT_EQ(Authorized(*index, kAgent).size(), 1500u);
}

TEST_F(EntryIndexTest, ReadersSeeConsistentStateWhilePolling) {
  auto index = MakeIndex();
  ASSERT_NE(index, nullptr);
  std::atomic<bool> stop{false};
  std::atomic<int> bad{0};
  std::thread reader([&] {
    const auto agent = *common::SpiffeId::Parse(kAgent);
    while (!stop) {
      // Every returned entry must be complete, whatever Poll() is doing meanwhile.
      for (const auto& e : index->AuthorizedEntries(agent)) {
        if (e.id.empty() || e.selectors.empty()) bad++;
      }
    }
  });
  for (int i = 0; i < 50; ++i) {
    AddEntry(kAgent, "spiffe://example.org/p" + std::to_string(i));
    ASSERT_TRUE(index->Poll().ok());
  }
  stop = true;
  reader.join();
  EXPECT_EQ(bad.load(), 0);
  EXPECT_EQ(Authorized(*index, kAgent).size(), 50u);
}

}  // namespace
}  // namespace trellis::server
