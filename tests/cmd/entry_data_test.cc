// Entry files for the bulk entry commands: SPIRE's JSON shape, and clear errors for bad files.
#include "cmd/entry_data.h"

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace trellis::cmd {
namespace {

using ::testing::HasSubstr;

void ExpectInvalid(std::string_view text, const std::string& fragment, bool update = false) {
  auto parsed = ParseEntryData(text, update);
  ASSERT_FALSE(parsed.ok()) << text;
  EXPECT_EQ(parsed.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(parsed.status().message()), HasSubstr(fragment));
}

TEST(ParseEntryData, ReadsSpiresShapeWithObjectIds) {
  auto parsed = ParseEntryData(R"({"entries": [{
      "spiffe_id": {"trust_domain": "example.org", "path": "/blog"},
      "parent_id": {"trust_domain": "example.org", "path": "/spire/agent/join_token/t"},
      "selectors": [{"type": "unix", "value": "uid:1111"}, {"type": "unix", "value": "gid:1"}],
      "x509_svid_ttl": 200, "jwt_svid_ttl": 30, "admin": true, "downstream": false,
      "dns_names": ["blog.example.org"], "federates_with": ["other.org"],
      "expires_at": 1900000000, "hint": "blog"}]})",
                               false);
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  ASSERT_EQ(parsed->size(), 1u);
  const server::v1::Entry& e = (*parsed)[0];
  EXPECT_EQ(e.spiffe_id(), "spiffe://example.org/blog");
  EXPECT_EQ(e.parent_id(), "spiffe://example.org/spire/agent/join_token/t");
  ASSERT_EQ(e.selectors_size(), 2);
  EXPECT_EQ(e.selectors(1).value(), "gid:1");
  EXPECT_EQ(e.x509_svid_ttl(), 200);
  EXPECT_EQ(e.jwt_svid_ttl(), 30);
  EXPECT_TRUE(e.admin());
  EXPECT_EQ(e.dns_names(0), "blog.example.org");
  EXPECT_EQ(e.federates_with(0), "other.org");
  EXPECT_EQ(e.expires_at(), 1900000000);
  EXPECT_EQ(e.hint(), "blog");
}

TEST(ParseEntryData, ReadsStringIdsAndTheOlderTtlKey) {
  auto parsed = ParseEntryData(R"({"entries": [{"spiffe_id": "spiffe://example.org/a",
      "parent_id": "spiffe://example.org/p", "selectors": [{"type": "k", "value": "v"}],
      "ttl": 60}]})",
                               false);
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  EXPECT_EQ((*parsed)[0].spiffe_id(), "spiffe://example.org/a");
  EXPECT_EQ((*parsed)[0].x509_svid_ttl(), 60);
}

TEST(ParseEntryData, BadFilesNameWhatIsWrong) {
  ExpectInvalid("not json", "not valid JSON");
  ExpectInvalid("[]", "JSON object");
  ExpectInvalid(R"({"entries": []})", "is empty");
  ExpectInvalid(R"({"things": []})", "unknown key \"things\"");
  ExpectInvalid(R"({"entries": [{"spiffe_id": "spiffe://example.org/a",
      "parent_id": "spiffe://example.org/p", "selectors": [{"type": "k", "value": "v"}],
      "colour": "red"}]})",
                "entries[0]: unknown key \"colour\"");
  ExpectInvalid(R"({"entries": [{"spiffe_id": "spiffe://example.org/a",
      "parent_id": "spiffe://example.org/p", "selectors": []}]})",
                "entries[0]: at least one selector");
  ExpectInvalid(R"({"entries": [{"spiffe_id": "spiffe://example.org/a",
      "parent_id": "spiffe://example.org/p", "selectors": [{"type": "k", "value": "v"}],
      "x509_svid_ttl": -1}]})",
                "entries[0].x509_svid_ttl: expected 0 to 2147483647");
  ExpectInvalid(R"({"entries": [{"spiffe_id": 7, "parent_id": "spiffe://example.org/p",
      "selectors": [{"type": "k", "value": "v"}]}]})",
                "entries[0].spiffe_id");
  ExpectInvalid(R"({"entries": [{"spiffe_id": "spiffe://example.org/a",
      "selectors": [{"type": "k", "value": "v"}]}]})",
                "entries[0]: parent_id is required");
  ExpectInvalid(R"({"entries": [{"spiffe_id": "spiffe://example.org/a",
      "parent_id": "spiffe://example.org/p", "selectors": [{"type": "k"}]}]})",
                "entries[0].selectors[0]: type and value are required");
}

TEST(ParseEntryData, UpdatesNeedIds) {
  ExpectInvalid(R"({"entries": [{"spiffe_id": "spiffe://example.org/a",
      "parent_id": "spiffe://example.org/p", "selectors": [{"type": "k", "value": "v"}]}]})",
                "entries[0]: id is required", /*update=*/true);
}

TEST(ParseEntryIds, ReadsIdsAndRefusesEmptyOnes) {
  auto ids = ParseEntryIds(R"({"ids": ["a", "b"]})");
  ASSERT_TRUE(ids.ok()) << ids.status();
  EXPECT_EQ(*ids, (std::vector<std::string>{"a", "b"}));
  EXPECT_THAT(std::string(ParseEntryIds(R"({"ids": ["a", ""]})").status().message()),
              HasSubstr("ids[1]: empty id"));
  EXPECT_THAT(std::string(ParseEntryIds(R"({"ids": [1]})").status().message()),
              HasSubstr("ids[0]: expected a string"));
  EXPECT_EQ(ParseEntryIds("{}").status().code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace trellis::cmd
