// The agent's copy-on-write snapshot: a change swaps in a new snapshot, no change publishes
// nothing, and streams see each bundle's DER rendered once.
#include "agent/identity_state.h"

#include "common/bundle.h"
#include "common/keys.h"
#include "common/x509.h"
#include "gtest/gtest.h"

namespace trellis::agent {
namespace {

workload_api::CachedEntry Entry(const std::string& id, int64_t revision) {
  return workload_api::CachedEntry{
      id, *common::SpiffeId::Parse("spiffe://example.org/" + id), {"unix:uid:1"}, {}, "",
      revision, 1, 0};
}

// A sync that changed one entry.
SyncUpdate Changed(workload_api::CachedEntry entry) {
  SyncUpdate update;
  update.changed.push_back(std::make_shared<const workload_api::CachedEntry>(std::move(entry)));
  return update;
}

TEST(IdentityState, SyncWithoutChangesPublishesNothing) {
  IdentityState state;
  SvidCache cache;
  state.ApplySync(Changed(Entry("a", 1)));
  ASSERT_TRUE(state.PublishTo(&cache));
  auto published = cache.Snapshot();
  EXPECT_TRUE(published->ready);
  EXPECT_EQ(published->entries.size(), 1u);
  state.ApplySync(SyncUpdate{});
  EXPECT_FALSE(state.PublishTo(&cache));
  EXPECT_EQ(cache.Snapshot(), published);
}

TEST(IdentityState, ChangeLeavesThePublishedSnapshotUntouched) {
  IdentityState state;
  SvidCache cache;
  state.ApplySync(Changed(Entry("a", 1)));
  ASSERT_TRUE(state.PublishTo(&cache));
  auto before = cache.Snapshot();
  std::vector<std::string> dropped = state.ApplySync(Changed(Entry("a", 2)));
  ASSERT_EQ(dropped.size(), 1u);
  EXPECT_EQ(dropped[0], "a");
  EXPECT_EQ(before->entries.at("a")->revision(), 1);
  ASSERT_TRUE(state.PublishTo(&cache));
  EXPECT_EQ(cache.Snapshot()->entries.at("a")->revision(), 2);
  EXPECT_GT(cache.Snapshot()->version, before->version);
}

TEST(IdentityState, BundleDerIsRenderedWithTheSnapshot) {
  auto td = *common::TrustDomain::Parse("example.org");
  auto key = *common::PrivateKey::Generate();
  auto ca = *common::CreateRootCa(key, td, absl::Hours(1), common::SystemClock::Get());
  auto bundle = std::make_shared<common::Bundle>(td);
  ASSERT_TRUE(bundle->AddX509Authority(ca).ok());
  IdentityState state;
  state.SetBundle(bundle);
  auto snap = state.Current();
  ASSERT_NE(snap->bundle, nullptr);
  EXPECT_EQ(snap->bundle->x509_der(), common::BundleToDer(*bundle));
  EXPECT_EQ(state.Bundle().get(), bundle.get());
}

TEST(IdentityState, SvidOfARemovedEntryIsNotKept) {
  IdentityState state;
  state.ApplySync(Changed(Entry("a", 1)));
  std::vector<std::shared_ptr<const workload_api::CachedSvid>> svids;
  for (const char* id : {"a", "gone"}) {
    svids.push_back(
        std::make_shared<workload_api::CachedSvid>(id, std::vector<std::string>{}, ""));
  }
  std::vector<std::string> kept = state.AddSvids(std::move(svids));
  ASSERT_EQ(kept.size(), 1u);
  EXPECT_EQ(kept[0], "a");
  EXPECT_EQ(state.Current()->svids.count("gone"), 0u);
}

}  // namespace
}  // namespace trellis::agent
