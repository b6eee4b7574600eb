// The DataStore contract, run against every backend (SQLite and PostgreSQL).
#include <algorithm>
#include <atomic>
#include <map>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/barrier.h"
#include "common/clock.h"
#include "datastore/datastore.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/datastore/test_backends.h"

namespace trellis::datastore {
namespace {

using ::testing::HasSubstr;

const absl::Time kStart = absl::FromUnixSeconds(1'800'000'000);

RegistrationEntry MakeEntry(const std::string& path, const std::string& parent,
                            std::vector<Selector> selectors) {
  RegistrationEntry e;
  e.spiffe_id = "spiffe://example.org" + path;
  e.parent_id = "spiffe://example.org" + parent;
  e.selectors = std::move(selectors);
  return e;
}

std::vector<std::string> SpiffeIds(const std::vector<RegistrationEntry>& entries) {
  std::vector<std::string> out;
  for (const auto& e : entries) out.push_back(e.spiffe_id);
  std::sort(out.begin(), out.end());
  return out;
}

class DataStoreConformance : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    auto backend = testing::MakeTestBackend(GetParam());
    ASSERT_TRUE(backend.ok()) << backend.status();
    backend_ = std::move(*backend);
    auto store = backend_->Open(Options());
    ASSERT_TRUE(store.ok()) << store.status();
    store_ = std::move(*store);
  }

  DataStoreOptions Options() {
    DataStoreOptions o;
    o.clock = &clock_;
    o.pool_size = 8;
    return o;
  }

  // Three workload entries under one agent, used by the filter tests.
  void CreateFilterFixture() {
    Selector a{"unix", "uid:1"}, b{"unix", "gid:2"}, c{"k8s", "ns:x"};
    ASSERT_TRUE(store_->CreateEntry(MakeEntry("/ab", "/agent", {a, b})).ok());
    ASSERT_TRUE(store_->CreateEntry(MakeEntry("/a", "/agent", {a})).ok());
    ASSERT_TRUE(store_->CreateEntry(MakeEntry("/abc", "/agent", {a, b, c})).ok());
    ASSERT_TRUE(store_->CreateEntry(MakeEntry("/c", "/other", {c})).ok());
  }

  std::vector<std::string> ListBySelectors(std::vector<Selector> s, MatchMode m) {
    ListEntriesRequest req;
    req.by_selectors = SelectorFilter{std::move(s), m};
    auto r = store_->ListEntries(req);
    EXPECT_TRUE(r.ok()) << r.status();
    return r.ok() ? SpiffeIds(r->entries) : std::vector<std::string>{};
  }

  Bundle MakeBundle(const std::string& td) {
    Bundle b;
    b.trust_domain = td;
    b.x509_authorities.push_back({"der-old", kStart + absl::Hours(1), false});
    b.x509_authorities.push_back({"der-new", kStart + absl::Hours(48), false});
    b.jwt_authorities.push_back({"kid-1", "spki-1", kStart + absl::Hours(1), false});
    b.refresh_hint_seconds = 300;
    return b;
  }

  common::FakeClock clock_{kStart};
  std::unique_ptr<testing::TestBackend> backend_;
  std::unique_ptr<DataStore> store_;
};

// ---- entries: CRUD ----

TEST_P(DataStoreConformance, CreateEntryGeneratesIdAndStartsAtRevisionZero) {
  auto e = store_->CreateEntry(MakeEntry("/w", "/agent", {{"unix", "uid:1"}}));
  ASSERT_TRUE(e.ok()) << e.status();
  EXPECT_EQ(e->id.size(), 36u);
  EXPECT_EQ(e->revision_number, 0);
  EXPECT_EQ(e->created_at, kStart);
}

TEST_P(DataStoreConformance, TransactionsCountsEachCallThatReachesTheBackend) {
  const int64_t before = store_->Transactions();
  auto e = store_->CreateEntry(MakeEntry("/w", "/agent", {{"unix", "uid:1"}}));
  ASSERT_TRUE(e.ok()) << e.status();
  ASSERT_TRUE(store_->GetEntry(e->id).ok());
  EXPECT_EQ(store_->Transactions() - before, 2);
}

TEST_P(DataStoreConformance, GetEntriesReturnsTheExistingOnesWithTheirChildRows) {
  RegistrationEntry a = MakeEntry("/a", "/agent", {{"unix", "uid:1"}, {"unix", "gid:2"}});
  a.dns_names = {"a.example.org"};
  auto ca = store_->CreateEntry(a);
  auto cb = store_->CreateEntry(MakeEntry("/b", "/agent", {{"unix", "uid:3"}}));
  ASSERT_TRUE(ca.ok() && cb.ok());
  auto got = store_->GetEntries({cb->id, "no-such-id", ca->id});
  ASSERT_TRUE(got.ok()) << got.status();
  ASSERT_EQ(got->size(), 2u);
  std::map<std::string, RegistrationEntry> by_id;
  for (auto& e : *got) by_id[e.id] = e;
  EXPECT_EQ(by_id.at(ca->id).selectors.size(), 2u);
  EXPECT_EQ(by_id.at(ca->id).dns_names, std::vector<std::string>{"a.example.org"});
  EXPECT_EQ(by_id.at(cb->id).spiffe_id, cb->spiffe_id);
  EXPECT_TRUE(store_->GetEntries({})->empty());
}

TEST_P(DataStoreConformance, GetEntriesReadsMoreIdsThanOneStatementHolds) {
  std::vector<RegistrationEntry> batch;
  for (int i = 0; i < 1200; ++i) {
    batch.push_back(MakeEntry("/w" + std::to_string(i), "/agent", {{"unix", "uid:1"}}));
  }
  auto created = store_->CreateEntries(batch);
  ASSERT_TRUE(created.ok()) << created.status();
  std::vector<std::string> ids;
  for (const auto& e : *created) ids.push_back(e.id);
  auto got = store_->GetEntries(ids);
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(got->size(), 1200u);
}

TEST_P(DataStoreConformance, CreateEntryRoundTripsEveryField) {
  RegistrationEntry in = MakeEntry("/w", "/agent", {{"unix", "uid:1"}, {"k8s", "ns:a"}});
  in.id = "custom-id";
  in.x509_svid_ttl = 3600;
  in.jwt_svid_ttl = 300;
  in.federates_with = {"spiffe://b.org", "a.org"};
  in.admin = true;
  in.downstream = true;
  in.dns_names = {"z.example", "a.example"};
  in.expires_at = kStart + absl::Hours(5);
  in.hint = "frontend";
  ASSERT_TRUE(store_->CreateEntry(in).ok());
  auto got = store_->GetEntry("custom-id");
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(got->spiffe_id, in.spiffe_id);
  EXPECT_EQ(got->parent_id, in.parent_id);
  EXPECT_EQ(got->selectors, (std::vector<Selector>{{"k8s", "ns:a"}, {"unix", "uid:1"}}));
  EXPECT_EQ(got->x509_svid_ttl, 3600);
  EXPECT_EQ(got->jwt_svid_ttl, 300);
  EXPECT_EQ(got->federates_with, (std::vector<std::string>{"a.org", "b.org"}));
  EXPECT_TRUE(got->admin);
  EXPECT_TRUE(got->downstream);
  EXPECT_EQ(got->dns_names, (std::vector<std::string>{"z.example", "a.example"}));
  EXPECT_EQ(got->expires_at, kStart + absl::Hours(5));
  EXPECT_EQ(got->hint, "frontend");
  EXPECT_EQ(got->created_at, kStart);
}

TEST_P(DataStoreConformance, CreateEntryWithSameSpiffeParentAndSelectorsIsAlreadyExists) {
  ASSERT_TRUE(store_->CreateEntry(MakeEntry("/w", "/agent", {{"a", "1"}, {"b", "2"}})).ok());
  auto dup = store_->CreateEntry(MakeEntry("/w", "/agent", {{"b", "2"}, {"a", "1"}}));
  EXPECT_EQ(dup.status().code(), absl::StatusCode::kAlreadyExists);
  EXPECT_TRUE(store_->CreateEntry(MakeEntry("/w", "/agent", {{"a", "1"}})).ok());
}

TEST_P(DataStoreConformance, CreateEntryWithTakenIdIsAlreadyExists) {
  RegistrationEntry a = MakeEntry("/a", "/agent", {{"a", "1"}});
  a.id = "same";
  RegistrationEntry b = MakeEntry("/b", "/agent", {{"a", "1"}});
  b.id = "same";
  ASSERT_TRUE(store_->CreateEntry(a).ok());
  EXPECT_EQ(store_->CreateEntry(b).status().code(), absl::StatusCode::kAlreadyExists);
}

TEST_P(DataStoreConformance, CreateEntryRejectsInvalidSpiffeId) {
  RegistrationEntry e = MakeEntry("/a", "/agent", {{"a", "1"}});
  e.spiffe_id = "spiffe://example.org/../etc";
  EXPECT_EQ(store_->CreateEntry(e).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST_P(DataStoreConformance, CreateEntryRejectsSelectorWithEmptyValue) {
  auto r = store_->CreateEntry(MakeEntry("/a", "/agent", {{"unix", ""}}));
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
}

TEST_P(DataStoreConformance, CreateEntryRejectsNegativeTtl) {
  RegistrationEntry e = MakeEntry("/a", "/agent", {{"a", "1"}});
  e.x509_svid_ttl = -1;
  EXPECT_EQ(store_->CreateEntry(e).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST_P(DataStoreConformance, CreateEntriesIsAllOrNothing) {
  std::vector<RegistrationEntry> batch = {MakeEntry("/1", "/agent", {{"a", "1"}}),
                                          MakeEntry("/2", "/agent", {{"a", "1"}}),
                                          MakeEntry("/1", "/agent", {{"a", "1"}})};
  EXPECT_EQ(store_->CreateEntries(batch).status().code(), absl::StatusCode::kAlreadyExists);
  EXPECT_EQ(*store_->CountEntries(), 0);
  EXPECT_EQ(*store_->MaxEventId(), 0);  // the failed batch left no events either
  batch.pop_back();
  auto ok = store_->CreateEntries(batch);
  ASSERT_TRUE(ok.ok()) << ok.status();
  EXPECT_EQ(ok->size(), 2u);
  EXPECT_EQ(*store_->CountEntries(), 2);
}

TEST_P(DataStoreConformance, GetEntryOfUnknownIdIsNotFound) {
  EXPECT_EQ(store_->GetEntry("nope").status().code(), absl::StatusCode::kNotFound);
}

TEST_P(DataStoreConformance, UpdateEntryIncrementsRevisionEveryTime) {
  auto e = store_->CreateEntry(MakeEntry("/w", "/agent", {{"a", "1"}}));
  ASSERT_TRUE(e.ok());
  e->x509_svid_ttl = 60;
  ASSERT_TRUE(store_->UpdateEntry(*e, std::nullopt).ok());
  e->x509_svid_ttl = 120;
  auto u = store_->UpdateEntry(*e, std::nullopt);
  ASSERT_TRUE(u.ok()) << u.status();
  EXPECT_EQ(u->revision_number, 2);
  EXPECT_EQ(store_->GetEntry(e->id)->revision_number, 2);
  EXPECT_EQ(store_->GetEntry(e->id)->x509_svid_ttl, 120);
}

TEST_P(DataStoreConformance, UpdateEntryWithMaskWritesOnlyMaskedFields) {
  RegistrationEntry in = MakeEntry("/w", "/agent", {{"a", "1"}});
  in.dns_names = {"keep.example"};
  auto e = store_->CreateEntry(in);
  ASSERT_TRUE(e.ok());
  RegistrationEntry change;
  change.id = e->id;
  change.selectors = {{"b", "2"}};
  change.dns_names = {"ignored.example"};
  EntryMask mask;
  mask.selectors = true;
  ASSERT_TRUE(store_->UpdateEntry(change, mask).ok());
  auto got = store_->GetEntry(e->id);
  ASSERT_TRUE(got.ok());
  EXPECT_EQ(got->selectors, (std::vector<Selector>{{"b", "2"}}));
  EXPECT_EQ(got->dns_names, (std::vector<std::string>{"keep.example"}));
  EXPECT_EQ(got->spiffe_id, in.spiffe_id);
}

TEST_P(DataStoreConformance, UpdateEntryOntoAnotherEntrysKeyIsAlreadyExists) {
  ASSERT_TRUE(store_->CreateEntry(MakeEntry("/w", "/agent", {{"a", "1"}})).ok());
  auto e = store_->CreateEntry(MakeEntry("/w", "/agent", {{"a", "2"}}));
  ASSERT_TRUE(e.ok());
  e->selectors = {{"a", "1"}};
  EXPECT_EQ(store_->UpdateEntry(*e, std::nullopt).status().code(),
            absl::StatusCode::kAlreadyExists);
  EXPECT_EQ(store_->GetEntry(e->id)->revision_number, 0);
}

TEST_P(DataStoreConformance, UpdateEntryOfUnknownIdIsNotFound) {
  RegistrationEntry e = MakeEntry("/w", "/agent", {{"a", "1"}});
  e.id = "missing";
  EXPECT_EQ(store_->UpdateEntry(e, std::nullopt).status().code(), absl::StatusCode::kNotFound);
}

TEST_P(DataStoreConformance, DeleteEntryRemovesIt) {
  auto e = store_->CreateEntry(MakeEntry("/w", "/agent", {{"a", "1"}}));
  ASSERT_TRUE(e.ok());
  auto d = store_->DeleteEntry(e->id);
  ASSERT_TRUE(d.ok()) << d.status();
  EXPECT_EQ(d->spiffe_id, e->spiffe_id);
  EXPECT_EQ(store_->GetEntry(e->id).status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(store_->DeleteEntry(e->id).status().code(), absl::StatusCode::kNotFound);
  // The same tuple can be registered again once the old entry is gone.
  EXPECT_TRUE(store_->CreateEntry(MakeEntry("/w", "/agent", {{"a", "1"}})).ok());
}

TEST_P(DataStoreConformance, DeleteEntriesWithUnknownIdDeletesNothing) {
  auto e = store_->CreateEntry(MakeEntry("/w", "/agent", {{"a", "1"}}));
  ASSERT_TRUE(e.ok());
  EXPECT_EQ(store_->DeleteEntries({e->id, "missing"}).code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(*store_->CountEntries(), 1);
  EXPECT_TRUE(store_->DeleteEntries({e->id}).ok());
  EXPECT_EQ(*store_->CountEntries(), 0);
}

// ---- entries: filters and pagination ----

TEST_P(DataStoreConformance, ListEntriesFiltersBySpiffeId) {
  CreateFilterFixture();
  ListEntriesRequest req;
  req.by_spiffe_id = "spiffe://example.org/ab";
  auto r = store_->ListEntries(req);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(SpiffeIds(r->entries), (std::vector<std::string>{"spiffe://example.org/ab"}));
}

TEST_P(DataStoreConformance, ListEntriesFiltersByParentId) {
  CreateFilterFixture();
  ListEntriesRequest req;
  req.by_parent_id = "spiffe://example.org/other";
  auto r = store_->ListEntries(req);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(SpiffeIds(r->entries), (std::vector<std::string>{"spiffe://example.org/c"}));
}

TEST_P(DataStoreConformance, ListEntriesSelectorExactMatchesEqualSetsOnly) {
  CreateFilterFixture();
  EXPECT_EQ(ListBySelectors({{"unix", "gid:2"}, {"unix", "uid:1"}}, MatchMode::kExact),
            (std::vector<std::string>{"spiffe://example.org/ab"}));
}

TEST_P(DataStoreConformance, ListEntriesSelectorSubsetMatchesEntriesInsideTheSet) {
  CreateFilterFixture();
  EXPECT_EQ(ListBySelectors({{"unix", "gid:2"}, {"unix", "uid:1"}}, MatchMode::kSubset),
            (std::vector<std::string>{"spiffe://example.org/a", "spiffe://example.org/ab"}));
}

TEST_P(DataStoreConformance, ListEntriesSelectorSupersetMatchesEntriesHoldingTheSet) {
  CreateFilterFixture();
  EXPECT_EQ(ListBySelectors({{"unix", "gid:2"}, {"unix", "uid:1"}}, MatchMode::kSuperset),
            (std::vector<std::string>{"spiffe://example.org/ab", "spiffe://example.org/abc"}));
}

TEST_P(DataStoreConformance, ListEntriesSelectorAnyMatchesSharedElement) {
  CreateFilterFixture();
  EXPECT_EQ(ListBySelectors({{"k8s", "ns:x"}, {"none", "x"}}, MatchMode::kAny),
            (std::vector<std::string>{"spiffe://example.org/abc", "spiffe://example.org/c"}));
}

TEST_P(DataStoreConformance, ListEntriesEmptySelectorFilterIsInvalidArgument) {
  ListEntriesRequest req;
  req.by_selectors = SelectorFilter{{}, MatchMode::kAny};
  EXPECT_EQ(store_->ListEntries(req).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST_P(DataStoreConformance, ListEntriesFiltersByFederatesWith) {
  RegistrationEntry ab = MakeEntry("/ab", "/agent", {{"a", "1"}});
  ab.federates_with = {"a.org", "b.org"};
  RegistrationEntry a = MakeEntry("/a", "/agent", {{"a", "1"}});
  a.federates_with = {"a.org"};
  RegistrationEntry none = MakeEntry("/none", "/agent", {{"a", "1"}});
  ASSERT_TRUE(store_->CreateEntry(ab).ok());
  ASSERT_TRUE(store_->CreateEntry(a).ok());
  ASSERT_TRUE(store_->CreateEntry(none).ok());
  auto list = [&](std::vector<std::string> tds, MatchMode m) {
    ListEntriesRequest req;
    req.by_federates_with = FederatesWithFilter{std::move(tds), m};
    auto r = store_->ListEntries(req);
    EXPECT_TRUE(r.ok()) << r.status();
    return r.ok() ? SpiffeIds(r->entries) : std::vector<std::string>{};
  };
  EXPECT_EQ(list({"a.org"}, MatchMode::kExact),
            (std::vector<std::string>{"spiffe://example.org/a"}));
  EXPECT_EQ(list({"spiffe://a.org"}, MatchMode::kSuperset),
            (std::vector<std::string>{"spiffe://example.org/a", "spiffe://example.org/ab"}));
  EXPECT_EQ(list({"b.org"}, MatchMode::kAny),
            (std::vector<std::string>{"spiffe://example.org/ab"}));
  EXPECT_EQ(list({"a.org"}, MatchMode::kSubset),
            (std::vector<std::string>{"spiffe://example.org/a"}));
}

TEST_P(DataStoreConformance, ListEntriesFiltersByDownstreamAndHint) {
  RegistrationEntry d = MakeEntry("/down", "/agent", {{"a", "1"}});
  d.downstream = true;
  d.hint = "regional";
  ASSERT_TRUE(store_->CreateEntry(d).ok());
  ASSERT_TRUE(store_->CreateEntry(MakeEntry("/plain", "/agent", {{"a", "1"}})).ok());
  ListEntriesRequest req;
  req.by_downstream = true;
  EXPECT_EQ(SpiffeIds(store_->ListEntries(req)->entries),
            (std::vector<std::string>{"spiffe://example.org/down"}));
  ListEntriesRequest by_hint;
  by_hint.by_hint = "regional";
  EXPECT_EQ(SpiffeIds(store_->ListEntries(by_hint)->entries),
            (std::vector<std::string>{"spiffe://example.org/down"}));
}

TEST_P(DataStoreConformance, ListEntriesPagesInStableCreationOrder) {
  std::vector<RegistrationEntry> batch;
  for (int i = 0; i < 25; ++i)
    batch.push_back(MakeEntry(absl::StrCat("/w", i), "/a", {{"a", "1"}}));
  auto created = store_->CreateEntries(batch);
  ASSERT_TRUE(created.ok()) << created.status();
  std::vector<std::string> seen;
  ListEntriesRequest req;
  req.page_size = 10;
  int pages = 0;
  do {
    auto r = store_->ListEntries(req);
    ASSERT_TRUE(r.ok()) << r.status();
    ++pages;
    for (const auto& e : r->entries) seen.push_back(e.id);
    req.page_token = r->next_page_token;
  } while (!req.page_token.empty());
  EXPECT_EQ(pages, 3);
  ASSERT_EQ(seen.size(), 25u);
  for (size_t i = 0; i < seen.size(); ++i) EXPECT_EQ(seen[i], (*created)[i].id);
}

TEST_P(DataStoreConformance, ListEntriesWithGarbagePageTokenIsInvalidArgument) {
  ListEntriesRequest req;
  req.page_token = "not-a-token";
  EXPECT_EQ(store_->ListEntries(req).status().code(), absl::StatusCode::kInvalidArgument);
}

// ---- change log ----

TEST_P(DataStoreConformance, EntryWritesAppendEventsInOrder) {
  auto e = store_->CreateEntry(MakeEntry("/w", "/agent", {{"a", "1"}}));
  ASSERT_TRUE(e.ok());
  ASSERT_TRUE(store_->UpdateEntry(*e, std::nullopt).ok());
  ASSERT_TRUE(store_->DeleteEntry(e->id).ok());
  auto events = store_->ListEvents(0, 0);
  ASSERT_TRUE(events.ok()) << events.status();
  ASSERT_EQ(events->size(), 3u);
  EXPECT_EQ((*events)[0].kind, EventKind::kEntryCreated);
  EXPECT_EQ((*events)[1].kind, EventKind::kEntryUpdated);
  EXPECT_EQ((*events)[2].kind, EventKind::kEntryDeleted);
  for (const Event& ev : *events) EXPECT_EQ(ev.entry_id, e->id);
  EXPECT_LT((*events)[0].id, (*events)[1].id);
  EXPECT_LT((*events)[1].id, (*events)[2].id);
  EXPECT_EQ(*store_->MaxEventId(), (*events)[2].id);
}

TEST_P(DataStoreConformance, ListEventsResumesAfterIdWithLimit) {
  for (int i = 0; i < 5; ++i) {
    ASSERT_TRUE(store_->CreateEntry(MakeEntry(absl::StrCat("/w", i), "/a", {{"a", "1"}})).ok());
  }
  auto first = store_->ListEvents(0, 2);
  ASSERT_TRUE(first.ok());
  ASSERT_EQ(first->size(), 2u);
  auto rest = store_->ListEvents(first->back().id, 0);
  ASSERT_TRUE(rest.ok());
  EXPECT_EQ(rest->size(), 3u);
}

TEST_P(DataStoreConformance, NodeWritesAppendNodeEvents) {
  AttestedNode n;
  n.spiffe_id = "spiffe://example.org/spire/agent/join_token/t";
  n.attestation_data_type = "join_token";
  ASSERT_TRUE(store_->CreateNode(n).ok());
  ASSERT_TRUE(store_->SetNodeSelectors(n.spiffe_id, {{"x", "y"}}).ok());
  ASSERT_TRUE(store_->DeleteNode(n.spiffe_id).ok());
  auto events = store_->ListEvents(0, 0);
  ASSERT_TRUE(events.ok());
  ASSERT_EQ(events->size(), 3u);
  EXPECT_EQ((*events)[0].kind, EventKind::kNodeCreated);
  EXPECT_EQ((*events)[1].kind, EventKind::kNodeUpdated);
  EXPECT_EQ((*events)[2].kind, EventKind::kNodeDeleted);
  EXPECT_EQ((*events)[2].node_spiffe_id, n.spiffe_id);
}

TEST_P(DataStoreConformance, PruneEventsDropsOldEventsButKeepsTheNewest) {
  ASSERT_TRUE(store_->CreateEntry(MakeEntry("/1", "/a", {{"a", "1"}})).ok());
  ASSERT_TRUE(store_->CreateEntry(MakeEntry("/2", "/a", {{"a", "1"}})).ok());
  int64_t max = *store_->MaxEventId();
  clock_.Advance(absl::Hours(1));
  ASSERT_TRUE(store_->CreateEntry(MakeEntry("/3", "/a", {{"a", "1"}})).ok());
  auto pruned = store_->PruneEvents(kStart + absl::Minutes(30));
  ASSERT_TRUE(pruned.ok()) << pruned.status();
  EXPECT_EQ(*pruned, 2);
  EXPECT_EQ(store_->ListEvents(0, 0)->size(), 1u);
  EXPECT_EQ(*store_->PruneEvents(kStart + absl::Hours(5)), 0);
  EXPECT_GT(*store_->MaxEventId(), max);
}

// ---- concurrency ----

TEST_P(DataStoreConformance, ConcurrentWritersAllLand) {
  constexpr int kThreads = 4, kPerThread = 25;
  std::atomic<int> failures{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kPerThread; ++i) {
        auto e = store_->CreateEntry(MakeEntry(absl::StrCat("/t", t, "/", i), "/a", {{"a", "1"}}));
        if (!e.ok()) failures++;
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(failures.load(), 0);
  EXPECT_EQ(*store_->CountEntries(), kThreads * kPerThread);
  auto events = store_->ListEvents(0, 0);
  ASSERT_TRUE(events.ok());
  ASSERT_EQ(events->size(), static_cast<size_t>(kThreads * kPerThread));
  for (size_t i = 1; i < events->size(); ++i) EXPECT_LT((*events)[i - 1].id, (*events)[i].id);
}

TEST_P(DataStoreConformance, JoinTokenRacedByManyThreadsIsConsumedExactlyOnce) {
  ASSERT_TRUE(store_->CreateJoinToken({"race", kStart + absl::Minutes(10)}).ok());
  constexpr int kThreads = 8;
  absl::Barrier* barrier = new absl::Barrier(kThreads);
  std::atomic<int> won{0}, not_found{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&] {
      if (barrier->Block()) delete barrier;
      auto r = store_->ConsumeJoinToken("race", kStart);
      if (r.ok()) won++;
      if (r.status().code() == absl::StatusCode::kNotFound) not_found++;
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(won.load(), 1);
  EXPECT_EQ(not_found.load(), kThreads - 1);
}

// ---- join tokens ----

TEST_P(DataStoreConformance, ConsumeJoinTokenReturnsItOnce) {
  ASSERT_TRUE(store_->CreateJoinToken({"t1", kStart + absl::Minutes(10)}).ok());
  auto t = store_->ConsumeJoinToken("t1", kStart);
  ASSERT_TRUE(t.ok()) << t.status();
  EXPECT_EQ(t->expires_at, kStart + absl::Minutes(10));
  EXPECT_EQ(store_->ConsumeJoinToken("t1", kStart).status().code(), absl::StatusCode::kNotFound);
}

TEST_P(DataStoreConformance, ConsumeExpiredJoinTokenIsFailedPreconditionAndBurnsIt) {
  ASSERT_TRUE(store_->CreateJoinToken({"old", kStart - absl::Seconds(1)}).ok());
  EXPECT_EQ(store_->ConsumeJoinToken("old", kStart).status().code(),
            absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(store_->ConsumeJoinToken("old", kStart).status().code(), absl::StatusCode::kNotFound);
}

TEST_P(DataStoreConformance, CreateDuplicateJoinTokenIsAlreadyExists) {
  ASSERT_TRUE(store_->CreateJoinToken({"dup", kStart}).ok());
  EXPECT_EQ(store_->CreateJoinToken({"dup", kStart}).code(), absl::StatusCode::kAlreadyExists);
}

TEST_P(DataStoreConformance, PruneJoinTokensRemovesOnlyExpired) {
  ASSERT_TRUE(store_->CreateJoinToken({"a", kStart - absl::Minutes(1)}).ok());
  ASSERT_TRUE(store_->CreateJoinToken({"b", kStart + absl::Minutes(1)}).ok());
  EXPECT_EQ(*store_->PruneJoinTokens(kStart), 1);
  EXPECT_EQ(store_->DeleteJoinToken("a").code(), absl::StatusCode::kNotFound);
  EXPECT_TRUE(store_->DeleteJoinToken("b").ok());
}

// ---- nodes ----

AttestedNode MakeNode(const std::string& name, const std::string& type = "join_token") {
  AttestedNode n;
  n.spiffe_id = "spiffe://example.org/spire/agent/" + type + "/" + name;
  n.attestation_data_type = type;
  n.cert_serial_number = "01";
  n.cert_not_after = kStart + absl::Hours(1);
  return n;
}

TEST_P(DataStoreConformance, NodeRoundTripsAndUpdatesWithMask) {
  AttestedNode n = MakeNode("n1");
  ASSERT_TRUE(store_->CreateNode(n).ok());
  EXPECT_EQ(store_->CreateNode(n).status().code(), absl::StatusCode::kAlreadyExists);
  AttestedNode change = n;
  change.new_cert_serial_number = "02";
  change.new_cert_not_after = kStart + absl::Hours(2);
  change.cert_serial_number = "ignored";
  NodeMask mask;
  mask.new_cert_serial_number = mask.new_cert_not_after = true;
  ASSERT_TRUE(store_->UpdateNode(change, mask).ok());
  auto got = store_->GetNode(n.spiffe_id, false);
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(got->cert_serial_number, "01");
  EXPECT_EQ(got->new_cert_serial_number, "02");
  EXPECT_EQ(got->new_cert_not_after, kStart + absl::Hours(2));
  EXPECT_EQ(got->cert_not_after, kStart + absl::Hours(1));
}

TEST_P(DataStoreConformance, DeleteNodeRemovesItsSelectors) {
  AttestedNode n = MakeNode("n1");
  ASSERT_TRUE(store_->CreateNode(n).ok());
  ASSERT_TRUE(store_->SetNodeSelectors(n.spiffe_id, {{"x", "1"}, {"x", "2"}}).ok());
  EXPECT_EQ(store_->GetNode(n.spiffe_id, true)->selectors.size(), 2u);
  ASSERT_TRUE(store_->DeleteNode(n.spiffe_id).ok());
  EXPECT_EQ(store_->GetNode(n.spiffe_id, false).status().code(), absl::StatusCode::kNotFound);
  EXPECT_TRUE(store_->GetNodeSelectors(n.spiffe_id)->empty());
}

TEST_P(DataStoreConformance, SetNodeSelectorsReplacesThePreviousSet) {
  ASSERT_TRUE(store_->SetNodeSelectors("spiffe://example.org/n", {{"x", "1"}}).ok());
  ASSERT_TRUE(store_->SetNodeSelectors("spiffe://example.org/n", {{"y", "2"}}).ok());
  EXPECT_EQ(*store_->GetNodeSelectors("spiffe://example.org/n"),
            (std::vector<Selector>{{"y", "2"}}));
}

TEST_P(DataStoreConformance, ListNodesFiltersAndPages) {
  AttestedNode banned = MakeNode("banned");
  banned.banned = true;
  AttestedNode x509 = MakeNode("pop", "x509pop");
  x509.cert_not_after = kStart - absl::Hours(1);
  ASSERT_TRUE(store_->CreateNode(MakeNode("n1")).ok());
  ASSERT_TRUE(store_->CreateNode(banned).ok());
  ASSERT_TRUE(store_->CreateNode(x509).ok());
  ASSERT_TRUE(store_->SetNodeSelectors(x509.spiffe_id, {{"x509pop", "cn:a"}}).ok());

  ListNodesRequest by_banned;
  by_banned.by_banned = true;
  EXPECT_EQ(store_->ListNodes(by_banned)->nodes.size(), 1u);
  ListNodesRequest by_type;
  by_type.by_attestation_type = "x509pop";
  EXPECT_EQ(store_->ListNodes(by_type)->nodes.at(0).spiffe_id, x509.spiffe_id);
  ListNodesRequest by_expiry;
  by_expiry.by_expires_before = kStart;
  EXPECT_EQ(store_->ListNodes(by_expiry)->nodes.at(0).spiffe_id, x509.spiffe_id);
  ListNodesRequest by_sel;
  by_sel.by_selectors = SelectorFilter{{{"x509pop", "cn:a"}}, MatchMode::kSuperset};
  by_sel.fetch_selectors = true;
  auto sel = store_->ListNodes(by_sel);
  ASSERT_TRUE(sel.ok()) << sel.status();
  ASSERT_EQ(sel->nodes.size(), 1u);
  EXPECT_EQ(sel->nodes[0].selectors, (std::vector<Selector>{{"x509pop", "cn:a"}}));

  ListNodesRequest paged;
  paged.page_size = 2;
  auto p1 = store_->ListNodes(paged);
  ASSERT_TRUE(p1.ok());
  EXPECT_EQ(p1->nodes.size(), 2u);
  paged.page_token = p1->next_page_token;
  auto p2 = store_->ListNodes(paged);
  ASSERT_TRUE(p2.ok());
  EXPECT_EQ(p2->nodes.size(), 1u);
  EXPECT_TRUE(p2->next_page_token.empty());
  EXPECT_EQ(*store_->CountNodes(), 3);
}

TEST_P(DataStoreConformance, CreateNodeWithInvalidSpiffeIdIsInvalidArgument) {
  AttestedNode n = MakeNode("n");
  n.spiffe_id = "spiffe://Example.org/x";
  EXPECT_EQ(store_->CreateNode(n).status().code(), absl::StatusCode::kInvalidArgument);
}

// ---- bundles ----

TEST_P(DataStoreConformance, CreateBundleStartsAtSequenceOneAndRoundTrips) {
  auto b = store_->CreateBundle(MakeBundle("example.org"));
  ASSERT_TRUE(b.ok()) << b.status();
  EXPECT_EQ(b->sequence_number, 1);
  EXPECT_EQ(b->x509_authorities, MakeBundle("example.org").x509_authorities);
  EXPECT_EQ(b->jwt_authorities, MakeBundle("example.org").jwt_authorities);
  EXPECT_EQ(b->refresh_hint_seconds, 300);
  EXPECT_EQ(store_->CreateBundle(MakeBundle("example.org")).status().code(),
            absl::StatusCode::kAlreadyExists);
}

TEST_P(DataStoreConformance, BundleSequenceIncreasesOnEveryChange) {
  ASSERT_TRUE(store_->SetBundle(MakeBundle("example.org")).ok());
  EXPECT_EQ(store_->SetBundle(MakeBundle("example.org"))->sequence_number, 2);
  Bundle extra;
  extra.trust_domain = "example.org";
  extra.jwt_authorities.push_back({"kid-2", "spki-2", kStart + absl::Hours(3), false});
  auto appended = store_->AppendBundle(extra);
  ASSERT_TRUE(appended.ok()) << appended.status();
  EXPECT_EQ(appended->sequence_number, 3);
  EXPECT_EQ(appended->jwt_authorities.size(), 2u);
  // Appending what is already there changes nothing.
  EXPECT_EQ(store_->AppendBundle(extra)->sequence_number, 3);
  ASSERT_TRUE(store_->TaintJwtAuthority("example.org", "kid-1").ok());
  EXPECT_EQ(store_->GetBundle("example.org")->sequence_number, 4);
}

TEST_P(DataStoreConformance, ConcurrentAppendsKeepEveryAuthority) {
  constexpr int kThreads = 4;
  std::atomic<int> failures{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      Bundle b;
      b.trust_domain = "example.org";
      b.jwt_authorities.push_back({absl::StrCat("kid-", t), "spki", kStart, false});
      if (!store_->AppendBundle(b).ok()) failures++;
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(failures.load(), 0);
  auto b = store_->GetBundle("example.org");
  ASSERT_TRUE(b.ok()) << b.status();
  EXPECT_EQ(b->jwt_authorities.size(), static_cast<size_t>(kThreads));
  EXPECT_EQ(b->sequence_number, kThreads);
}

TEST_P(DataStoreConformance, AppendBundleCreatesMissingBundle) {
  auto b = store_->AppendBundle(MakeBundle("fed.org"));
  ASSERT_TRUE(b.ok()) << b.status();
  EXPECT_EQ(b->sequence_number, 1);
  EXPECT_EQ(b->x509_authorities.size(), 2u);
}

TEST_P(DataStoreConformance, TaintThenRevokeX509Authority) {
  ASSERT_TRUE(store_->SetBundle(MakeBundle("example.org")).ok());
  EXPECT_EQ(store_->RevokeX509Authority("example.org", "der-old").code(),
            absl::StatusCode::kFailedPrecondition);
  ASSERT_TRUE(store_->TaintX509Authority("example.org", "der-old").ok());
  EXPECT_EQ(store_->TaintX509Authority("example.org", "der-old").code(),
            absl::StatusCode::kFailedPrecondition);
  EXPECT_TRUE(store_->GetBundle("example.org")->x509_authorities.at(0).tainted);
  ASSERT_TRUE(store_->RevokeX509Authority("example.org", "der-old").ok());
  auto b = store_->GetBundle("example.org");
  ASSERT_EQ(b->x509_authorities.size(), 1u);
  EXPECT_EQ(b->x509_authorities[0].ca_der, "der-new");
  EXPECT_EQ(b->sequence_number, 3);
  EXPECT_EQ(store_->TaintX509Authority("example.org", "der-x").code(), absl::StatusCode::kNotFound);
}

TEST_P(DataStoreConformance, RevokeJwtAuthorityNeedsTaintFirst) {
  ASSERT_TRUE(store_->SetBundle(MakeBundle("example.org")).ok());
  EXPECT_EQ(store_->RevokeJwtAuthority("example.org", "kid-1").code(),
            absl::StatusCode::kFailedPrecondition);
  ASSERT_TRUE(store_->TaintJwtAuthority("example.org", "kid-1").ok());
  ASSERT_TRUE(store_->RevokeJwtAuthority("example.org", "kid-1").ok());
  EXPECT_TRUE(store_->GetBundle("example.org")->jwt_authorities.empty());
}

TEST_P(DataStoreConformance, PruneBundleDropsExpiredAuthorities) {
  ASSERT_TRUE(store_->SetBundle(MakeBundle("example.org")).ok());
  auto pruned = store_->PruneBundle("example.org", kStart + absl::Hours(2));
  ASSERT_TRUE(pruned.ok()) << pruned.status();
  EXPECT_TRUE(*pruned);
  auto b = store_->GetBundle("example.org");
  EXPECT_EQ(b->x509_authorities.size(), 1u);
  EXPECT_TRUE(b->jwt_authorities.empty());
  EXPECT_EQ(b->sequence_number, 2);
  EXPECT_FALSE(*store_->PruneBundle("example.org", kStart + absl::Hours(2)));
  EXPECT_EQ(store_->GetBundle("example.org")->sequence_number, 2);
}

TEST_P(DataStoreConformance, PruneBundleRefusesToRemoveEveryX509Authority) {
  ASSERT_TRUE(store_->SetBundle(MakeBundle("example.org")).ok());
  EXPECT_EQ(store_->PruneBundle("example.org", kStart + absl::Hours(100)).status().code(),
            absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(store_->GetBundle("example.org")->x509_authorities.size(), 2u);
}

TEST_P(DataStoreConformance, DeleteBundleRestrictRefusesWhileEntriesFederate) {
  ASSERT_TRUE(store_->SetBundle(MakeBundle("fed.org")).ok());
  RegistrationEntry e = MakeEntry("/w", "/a", {{"a", "1"}});
  e.federates_with = {"fed.org"};
  auto created = store_->CreateEntry(e);
  ASSERT_TRUE(created.ok());
  EXPECT_EQ(store_->DeleteBundle("fed.org", BundleDeleteMode::kRestrict).code(),
            absl::StatusCode::kFailedPrecondition);
  ASSERT_TRUE(store_->DeleteBundle("fed.org", BundleDeleteMode::kDissociate).ok());
  EXPECT_EQ(store_->GetBundle("fed.org").status().code(), absl::StatusCode::kNotFound);
  auto after = store_->GetEntry(created->id);
  EXPECT_TRUE(after->federates_with.empty());
  EXPECT_EQ(after->revision_number, 1);
}

TEST_P(DataStoreConformance, DeleteBundleInDeleteModeRemovesFederatingEntries) {
  ASSERT_TRUE(store_->SetBundle(MakeBundle("fed.org")).ok());
  RegistrationEntry e = MakeEntry("/w", "/a", {{"a", "1"}});
  e.federates_with = {"fed.org"};
  ASSERT_TRUE(store_->CreateEntry(e).ok());
  ASSERT_TRUE(store_->DeleteBundle("fed.org", BundleDeleteMode::kDelete).ok());
  EXPECT_EQ(*store_->CountEntries(), 0);
}

TEST_P(DataStoreConformance, ListBundlesReturnsEveryTrustDomain) {
  ASSERT_TRUE(store_->SetBundle(MakeBundle("b.org")).ok());
  ASSERT_TRUE(store_->SetBundle(MakeBundle("a.org")).ok());
  auto all = store_->ListBundles();
  ASSERT_TRUE(all.ok()) << all.status();
  ASSERT_EQ(all->size(), 2u);
  EXPECT_EQ((*all)[0].trust_domain, "a.org");
  EXPECT_EQ(store_->GetBundle("c.org").status().code(), absl::StatusCode::kNotFound);
}

// ---- CA journal ----

TEST_P(DataStoreConformance, CaJournalKeepsRecordsPerServerAndUpdatesStatus) {
  CaJournalEntry x;
  x.server_id = "server-1";
  x.kind = AuthorityKind::kX509;
  x.authority_id = "ca-1";
  x.status = AuthorityStatus::kPrepared;
  x.data = std::string("\x00\x01opaque", 8);
  x.not_after = kStart + absl::Hours(24);
  ASSERT_TRUE(store_->PutCaJournalEntry(x).ok());
  CaJournalEntry other = x;
  other.server_id = "server-2";
  ASSERT_TRUE(store_->PutCaJournalEntry(other).ok());
  clock_.Advance(absl::Minutes(5));
  x.status = AuthorityStatus::kActive;
  auto updated = store_->PutCaJournalEntry(x);
  ASSERT_TRUE(updated.ok()) << updated.status();
  EXPECT_EQ(updated->created_at, kStart);
  EXPECT_EQ(updated->updated_at, kStart + absl::Minutes(5));
  auto list = store_->ListCaJournal("server-1");
  ASSERT_TRUE(list.ok()) << list.status();
  ASSERT_EQ(list->size(), 1u);
  EXPECT_EQ((*list)[0].status, AuthorityStatus::kActive);
  EXPECT_EQ((*list)[0].data, x.data);
  ASSERT_TRUE(store_->DeleteCaJournalEntry("server-1", AuthorityKind::kX509, "ca-1").ok());
  EXPECT_EQ(store_->DeleteCaJournalEntry("server-1", AuthorityKind::kX509, "ca-1").code(),
            absl::StatusCode::kNotFound);
}

// ---- federation relationships ----

TEST_P(DataStoreConformance, FederationRelationshipCrud) {
  FederationRelationship f{"fed.org", "https://fed.org/bundle", BundleEndpointProfile::kHttpsSpiffe,
                           "spiffe://fed.org/spire/server"};
  ASSERT_TRUE(store_->CreateFederationRelationship(f).ok());
  EXPECT_EQ(store_->CreateFederationRelationship(f).status().code(),
            absl::StatusCode::kAlreadyExists);
  f.profile = BundleEndpointProfile::kHttpsWeb;
  f.endpoint_spiffe_id.clear();
  ASSERT_TRUE(store_->UpdateFederationRelationship(f).ok());
  auto got = store_->GetFederationRelationship("spiffe://fed.org");
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(got->profile, BundleEndpointProfile::kHttpsWeb);
  EXPECT_EQ(store_->ListFederationRelationships()->size(), 1u);
  ASSERT_TRUE(store_->DeleteFederationRelationship("fed.org").ok());
  EXPECT_EQ(store_->GetFederationRelationship("fed.org").status().code(),
            absl::StatusCode::kNotFound);
}

TEST_P(DataStoreConformance, FederationRelationshipNeedsHttpsAndEndpointIdForSpiffeProfile) {
  FederationRelationship f{"fed.org", "http://fed.org/bundle", BundleEndpointProfile::kHttpsWeb,
                           ""};
  EXPECT_EQ(store_->CreateFederationRelationship(f).status().code(),
            absl::StatusCode::kInvalidArgument);
  f.bundle_endpoint_url = "https://fed.org/bundle";
  f.profile = BundleEndpointProfile::kHttpsSpiffe;
  EXPECT_EQ(store_->CreateFederationRelationship(f).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST_P(DataStoreConformance, BundleWritesAreLoggedWithTheirTrustDomain) {
  const int64_t start = *store_->MaxEventId();
  Bundle b;
  b.trust_domain = "other.org";
  b.x509_authorities.push_back({"der-1", kStart + absl::Hours(1)});
  ASSERT_TRUE(store_->SetBundle(b).ok());
  ASSERT_TRUE(store_->TaintX509Authority("other.org", "der-1").ok());
  ASSERT_TRUE(store_->DeleteBundle("other.org", BundleDeleteMode::kRestrict).ok());
  auto events = store_->ListEvents(start, 0);
  ASSERT_TRUE(events.ok()) << events.status();
  ASSERT_EQ(events->size(), 3u);
  for (const Event& e : *events) {
    EXPECT_EQ(e.kind, EventKind::kBundleUpdated);
    EXPECT_EQ(e.trust_domain, "other.org");
    EXPECT_EQ(e.entry_id, "");
    EXPECT_EQ(e.node_spiffe_id, "");
  }
}

TEST_P(DataStoreConformance, AnUnchangedBundleWriteLogsNothing) {
  Bundle b;
  b.trust_domain = "other.org";
  b.x509_authorities.push_back({"der-1", kStart + absl::Hours(1)});
  ASSERT_TRUE(store_->SetBundle(b).ok());
  const int64_t start = *store_->MaxEventId();
  // Appending what is already there changes nothing.
  ASSERT_TRUE(store_->AppendBundle(b).ok());
  EXPECT_TRUE(store_->ListEvents(start, 0)->empty());
}

// ---- schema ----

TEST_P(DataStoreConformance, FreshDatabaseIsMigratedToLatestVersion) {
  EXPECT_EQ(*store_->SchemaVersion(), 3);
}

TEST_P(DataStoreConformance, ReopeningKeepsDataAndVersion) {
  auto e = store_->CreateEntry(MakeEntry("/w", "/a", {{"a", "1"}}));
  ASSERT_TRUE(e.ok());
  store_.reset();
  auto reopened = backend_->Open(Options());
  ASSERT_TRUE(reopened.ok()) << reopened.status();
  EXPECT_TRUE((*reopened)->GetEntry(e->id).ok());
  EXPECT_EQ(*(*reopened)->SchemaVersion(), 3);
}

TEST_P(DataStoreConformance, MigratesFromPreviousVersionKeepingRows) {
  auto fresh = testing::MakeTestBackend(GetParam());
  ASSERT_TRUE(fresh.ok());
  DataStoreOptions v1 = Options();
  v1.target_schema_version = 1;
  {
    auto old = (*fresh)->Open(v1);
    ASSERT_TRUE(old.ok()) << old.status();
    EXPECT_EQ(*(*old)->SchemaVersion(), 1);
  }
  // Rows as a version-1 server wrote them (no hint column yet).
  ASSERT_TRUE((*fresh)
                  ->ExecRaw("INSERT INTO entries (id, spiffe_id, parent_id, unique_key,"
                            " x509_svid_ttl, jwt_svid_ttl, admin, downstream, expires_at,"
                            " revision_number, created_at) VALUES ('old-entry',"
                            " 'spiffe://example.org/w', 'spiffe://example.org/a', 'k', 0, 0, 0,"
                            " 0, 0, 4, 1800000000);"
                            " INSERT INTO entry_selectors (entry_seq, type, value)"
                            " SELECT seq, 'unix', 'uid:1' FROM entries WHERE id = 'old-entry';")
                  .ok());
  auto upgraded = (*fresh)->Open(Options());
  ASSERT_TRUE(upgraded.ok()) << upgraded.status();
  EXPECT_EQ(*(*upgraded)->SchemaVersion(), 3);
  auto e = (*upgraded)->GetEntry("old-entry");
  ASSERT_TRUE(e.ok()) << e.status();
  EXPECT_EQ(e->revision_number, 4);
  EXPECT_EQ(e->hint, "");
  EXPECT_EQ(e->selectors, (std::vector<Selector>{{"unix", "uid:1"}}));
}

TEST_P(DataStoreConformance, NewerSchemaThanBinaryIsRefused) {
  store_.reset();
  ASSERT_TRUE(backend_->ExecRaw("UPDATE schema_version SET version = 99").ok());
  auto r = backend_->Open(Options());
  ASSERT_EQ(r.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(std::string(r.status().message()), HasSubstr("99"));
  EXPECT_THAT(std::string(r.status().message()), HasSubstr("version 3"));
}

// ---- rows holding bad data ----

TEST_P(DataStoreConformance, EntryWithInvalidStoredSpiffeIdIsRefused) {
  auto e = store_->CreateEntry(MakeEntry("/w", "/a", {{"a", "1"}}));
  ASSERT_TRUE(e.ok());
  ASSERT_TRUE(backend_->ExecRaw("UPDATE entries SET spiffe_id = 'spiffe://EVIL/../x'").ok());
  auto got = store_->GetEntry(e->id);
  ASSERT_EQ(got.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(std::string(got.status().message()), HasSubstr("spiffe_id"));
  EXPECT_THAT(std::string(got.status().message()), HasSubstr(e->id));
  EXPECT_EQ(store_->ListEntries({}).status().code(), absl::StatusCode::kDataLoss);
}

TEST_P(DataStoreConformance, NodeWithBadBooleanIsRefused) {
  ASSERT_TRUE(store_->CreateNode(MakeNode("n")).ok());
  ASSERT_TRUE(backend_->ExecRaw("UPDATE attested_nodes SET banned = 7").ok());
  auto got = store_->GetNode(MakeNode("n").spiffe_id, false);
  ASSERT_EQ(got.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(std::string(got.status().message()), HasSubstr("banned"));
}

TEST_P(DataStoreConformance, FederationRelationshipWithUnknownProfileIsRefused) {
  ASSERT_TRUE(store_
                  ->CreateFederationRelationship(
                      {"fed.org", "https://fed.org/b", BundleEndpointProfile::kHttpsWeb, ""})
                  .ok());
  ASSERT_TRUE(backend_->ExecRaw("UPDATE federation_relationships SET profile = 'ftp'").ok());
  auto got = store_->ListFederationRelationships();
  ASSERT_EQ(got.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(std::string(got.status().message()), HasSubstr("profile"));
}

TEST_P(DataStoreConformance, BundleWithNegativeStoredSequenceIsRefused) {
  ASSERT_TRUE(store_->SetBundle(MakeBundle("example.org")).ok());
  ASSERT_TRUE(backend_->ExecRaw("UPDATE bundles SET sequence_number = -3").ok());
  auto got = store_->GetBundle("example.org");
  ASSERT_EQ(got.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(std::string(got.status().message()), HasSubstr("sequence_number"));
}

INSTANTIATE_TEST_SUITE_P(Backends, DataStoreConformance, ::testing::Values("Sqlite", "Postgres"),
                         [](const ::testing::TestParamInfo<std::string>& info) {
                           return info.param;
                         });

}  // namespace
}  // namespace trellis::datastore
