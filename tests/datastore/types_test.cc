// The stored text of each DataStore enum, and that parsing it gives the value back.
#include "datastore/types.h"

#include <gtest/gtest.h>

namespace trellis::datastore {
namespace {

TEST(TypesTest, MatchModeNames) {
  EXPECT_STREQ(MatchModeName(MatchMode::kExact), "exact");
  EXPECT_STREQ(MatchModeName(MatchMode::kSubset), "subset");
  EXPECT_STREQ(MatchModeName(MatchMode::kSuperset), "superset");
  EXPECT_STREQ(MatchModeName(MatchMode::kAny), "any");
}

TEST(TypesTest, EventKindNamesRoundTrip) {
  const std::pair<EventKind, const char*> cases[] = {
      {EventKind::kEntryCreated, "entry_created"}, {EventKind::kEntryUpdated, "entry_updated"},
      {EventKind::kEntryDeleted, "entry_deleted"}, {EventKind::kNodeCreated, "node_created"},
      {EventKind::kNodeUpdated, "node_updated"},   {EventKind::kNodeDeleted, "node_deleted"},
  };
  for (const auto& [kind, name] : cases) {
    EXPECT_STREQ(EventKindName(kind), name);
    EXPECT_EQ(ParseEventKind(name), kind) << name;
  }
  EXPECT_EQ(ParseEventKind("entry_moved"), std::nullopt);
  EXPECT_EQ(ParseEventKind("Entry_Created"), std::nullopt);
}

TEST(TypesTest, AuthorityNamesRoundTrip) {
  EXPECT_STREQ(AuthorityKindName(AuthorityKind::kX509), "x509");
  EXPECT_STREQ(AuthorityKindName(AuthorityKind::kJwt), "jwt");
  EXPECT_EQ(ParseAuthorityKind("x509"), AuthorityKind::kX509);
  EXPECT_EQ(ParseAuthorityKind("jwt"), AuthorityKind::kJwt);
  EXPECT_EQ(ParseAuthorityKind(""), std::nullopt);

  EXPECT_STREQ(AuthorityStatusName(AuthorityStatus::kPrepared), "prepared");
  EXPECT_STREQ(AuthorityStatusName(AuthorityStatus::kActive), "active");
  EXPECT_STREQ(AuthorityStatusName(AuthorityStatus::kOld), "old");
  EXPECT_EQ(ParseAuthorityStatus("prepared"), AuthorityStatus::kPrepared);
  EXPECT_EQ(ParseAuthorityStatus("active"), AuthorityStatus::kActive);
  EXPECT_EQ(ParseAuthorityStatus("old"), AuthorityStatus::kOld);
  EXPECT_EQ(ParseAuthorityStatus("retired"), std::nullopt);
}

TEST(TypesTest, BundleEndpointProfileNamesRoundTrip) {
  EXPECT_STREQ(BundleEndpointProfileName(BundleEndpointProfile::kHttpsWeb), "https_web");
  EXPECT_STREQ(BundleEndpointProfileName(BundleEndpointProfile::kHttpsSpiffe), "https_spiffe");
  EXPECT_EQ(ParseBundleEndpointProfile("https_web"), BundleEndpointProfile::kHttpsWeb);
  EXPECT_EQ(ParseBundleEndpointProfile("https_spiffe"), BundleEndpointProfile::kHttpsSpiffe);
  EXPECT_EQ(ParseBundleEndpointProfile("http"), std::nullopt);
}

}  // namespace
}  // namespace trellis::datastore
