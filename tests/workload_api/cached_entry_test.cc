// A cached entry keeps all of its strings in one buffer and gives each back exactly,
// including empty ones, lists of any length and bytes that are not text.
#include <string>
#include <vector>

#include "common/spiffe_id.h"
#include "gtest/gtest.h"
#include "workload_api/identity_snapshot.h"

namespace trellis::workload_api {
namespace {

common::SpiffeId Id(const std::string& text) { return *common::SpiffeId::Parse(text); }

TEST(CachedEntry, GivesBackEveryField) {
  CachedEntry e("entry-1", Id("spiffe://example.org/ns/prod/sa/web"),
                {"unix:uid:1000", "unix:gid:50", "k8s:pod-label:app:web"},
                {"other.org", "third.example"}, "web-hint", 7, 1700000000, 300);
  EXPECT_EQ(e.id(), "entry-1");
  EXPECT_EQ(e.spiffe_id(), "spiffe://example.org/ns/prod/sa/web");
  EXPECT_EQ(e.hint(), "web-hint");
  EXPECT_EQ(e.selectors().ToVector(),
            (std::vector<std::string>{"unix:uid:1000", "unix:gid:50", "k8s:pod-label:app:web"}));
  EXPECT_EQ(e.selectors().size(), 3u);
  EXPECT_EQ(e.selectors().at(1), "unix:gid:50");
  EXPECT_EQ(e.federates_with().ToVector(),
            (std::vector<std::string>{"other.org", "third.example"}));
  EXPECT_EQ(e.revision(), 7);
  EXPECT_EQ(e.created_at(), 1700000000);
  EXPECT_EQ(e.jwt_svid_ttl(), 300);
}

TEST(CachedEntry, EmptyStringsAndListsStayEmpty) {
  CachedEntry e("", Id("spiffe://example.org"), {}, {}, "", 0, 0, 0);
  EXPECT_EQ(e.id(), "");
  EXPECT_EQ(e.spiffe_id(), "spiffe://example.org");
  EXPECT_EQ(e.hint(), "");
  EXPECT_TRUE(e.selectors().empty());
  EXPECT_EQ(e.selectors().begin(), e.selectors().end());
  EXPECT_TRUE(e.federates_with().empty());

  CachedEntry with_empty_selector("e", Id("spiffe://example.org/w"), {"", "unix:uid:1", ""}, {},
                                  "", 1, 1, 0);
  EXPECT_EQ(with_empty_selector.selectors().ToVector(),
            (std::vector<std::string>{"", "unix:uid:1", ""}));
}

TEST(CachedEntry, KeepsBytesThatAreNotText) {
  const std::string odd("sel\0ector\xff", 10);
  CachedEntry e(std::string("id\0x", 4), Id("spiffe://example.org/w"), {odd}, {}, "h", 1, 1, 0);
  EXPECT_EQ(e.id(), std::string("id\0x", 4));
  ASSERT_EQ(e.selectors().size(), 1u);
  EXPECT_EQ(e.selectors().at(0), odd);
}

TEST(CachedEntry, ManySelectorsEachComeBackInOrder) {
  std::vector<std::string> selectors;
  for (int i = 0; i < 500; ++i) selectors.push_back("unix:gid:" + std::to_string(i));
  CachedEntry e("e", Id("spiffe://example.org/w"), selectors, {"a.org"}, "", 1, 1, 0);
  EXPECT_EQ(e.selectors().ToVector(), selectors);
  EXPECT_EQ(e.federates_with().ToVector(), std::vector<std::string>{"a.org"});
}

TEST(CachedEntry, CopiesOwnTheirBuffer) {
  auto original = std::make_unique<CachedEntry>("entry-1", Id("spiffe://example.org/w"),
                                                std::vector<std::string>{"unix:uid:1"},
                                                std::vector<std::string>{}, "hint", 3, 4, 5);
  CachedEntry copy(*original);
  CachedEntry assigned("x", Id("spiffe://example.org/x"), {}, {}, "", 0, 0, 0);
  assigned = *original;
  original.reset();
  for (const CachedEntry* e : {&copy, &assigned}) {
    EXPECT_EQ(e->id(), "entry-1");
    EXPECT_EQ(e->spiffe_id(), "spiffe://example.org/w");
    EXPECT_EQ(e->selectors().ToVector(), std::vector<std::string>{"unix:uid:1"});
    EXPECT_EQ(e->hint(), "hint");
    EXPECT_EQ(e->revision(), 3);
    EXPECT_EQ(e->created_at(), 4);
    EXPECT_EQ(e->jwt_svid_ttl(), 5);
  }
}

}  // namespace
}  // namespace trellis::workload_api
