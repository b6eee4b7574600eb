// Every rule of the SPIFFE ID specification, one test per rule.
#include "common/spiffe_id.h"

#include <string>

#include "gtest/gtest.h"

namespace trellis::common {
namespace {

void ExpectInvalid(const std::string& id, const std::string& fragment) {
  auto parsed = SpiffeId::Parse(id);
  ASSERT_FALSE(parsed.ok()) << id;
  EXPECT_EQ(parsed.status().code(), absl::StatusCode::kInvalidArgument) << id;
  EXPECT_NE(std::string(parsed.status().message()).find(fragment), std::string::npos)
      << id << " -> " << parsed.status().message();
}

TEST(SpiffeId, ParsesTrustDomainAndPath) {
  auto id = SpiffeId::Parse("spiffe://example.org/ns/prod/sa/web");
  ASSERT_TRUE(id.ok()) << id.status();
  EXPECT_EQ(id->trust_domain().name(), "example.org");
  EXPECT_EQ(id->path(), "/ns/prod/sa/web");
  EXPECT_EQ(id->String(), "spiffe://example.org/ns/prod/sa/web");
  EXPECT_FALSE(id->IsTrustDomainId());
}

TEST(SpiffeId, ParsesTrustDomainOnlyId) {
  auto id = SpiffeId::Parse("spiffe://example.org");
  ASSERT_TRUE(id.ok());
  EXPECT_TRUE(id->IsTrustDomainId());
}

TEST(SpiffeId, AcceptsEveryAllowedPathCharacter) {
  EXPECT_TRUE(SpiffeId::Parse("spiffe://a-b_c.9/AZaz09._-/x.y").ok());
}

TEST(SpiffeId, RejectsEmpty) { ExpectInvalid("", "empty"); }
TEST(SpiffeId, RejectsWrongScheme) { ExpectInvalid("https://example.org/a", "spiffe://"); }
TEST(SpiffeId, RejectsUppercaseScheme) { ExpectInvalid("SPIFFE://example.org/a", "lowercase"); }
TEST(SpiffeId, RejectsMissingTrustDomain) { ExpectInvalid("spiffe:///a", "missing"); }
TEST(SpiffeId, RejectsUppercaseTrustDomain) { ExpectInvalid("spiffe://Example.org", "uppercase"); }
TEST(SpiffeId, RejectsPort) { ExpectInvalid("spiffe://example.org:8443/a", "port"); }
TEST(SpiffeId, RejectsUserinfo) { ExpectInvalid("spiffe://user@example.org/a", "userinfo"); }
TEST(SpiffeId, RejectsQuery) { ExpectInvalid("spiffe://example.org/a?b=c", "query"); }
TEST(SpiffeId, RejectsQueryInAuthority) { ExpectInvalid("spiffe://example.org?x", "query"); }
TEST(SpiffeId, RejectsFragment) { ExpectInvalid("spiffe://example.org/a#b", "fragment"); }
TEST(SpiffeId, RejectsPercentEncodingInPath) { ExpectInvalid("spiffe://example.org/%2e%2e", "percent"); }
TEST(SpiffeId, RejectsPercentEncodingInTrustDomain) { ExpectInvalid("spiffe://ex%41mple.org", "percent"); }
TEST(SpiffeId, RejectsEmptySegment) { ExpectInvalid("spiffe://example.org/a//b", "empty segment"); }
TEST(SpiffeId, RejectsDotSegment) { ExpectInvalid("spiffe://example.org/a/./b", "'.' segment"); }
TEST(SpiffeId, RejectsDotDotSegment) { ExpectInvalid("spiffe://example.org/a/../b", "'..' segment"); }
TEST(SpiffeId, RejectsTrailingSlash) { ExpectInvalid("spiffe://example.org/a/", "trailing"); }
TEST(SpiffeId, RejectsTrailingSlashOnTrustDomain) { ExpectInvalid("spiffe://example.org/", "trailing"); }

TEST(SpiffeId, RejectsEachForbiddenTrustDomainCharacterClass) {
  for (std::string c : {"!", "*", "+", "~", " ", "$", "\xc3\xa9", "\t"}) {
    ExpectInvalid("spiffe://exa" + c + "mple.org/a", "trust domain");
  }
}

TEST(SpiffeId, RejectsEachForbiddenPathCharacterClass) {
  for (std::string c : {"!", "*", "+", "~", " ", "$", "\xc3\xa9", ":", "@", "=", "\\"}) {
    ExpectInvalid("spiffe://example.org/a" + c + "b", "path");
  }
}

TEST(SpiffeId, AcceptsLongestAllowedTrustDomain) {
  EXPECT_TRUE(SpiffeId::Parse("spiffe://" + std::string(255, 'a')).ok());
}

TEST(SpiffeId, RejectsTrustDomainLongerThan255) {
  ExpectInvalid("spiffe://" + std::string(256, 'a'), "255");
}

TEST(SpiffeId, AcceptsIdOf2048Bytes) {
  std::string id = "spiffe://example.org/";
  id += std::string(2048 - id.size(), 'x');
  ASSERT_EQ(id.size(), 2048u);
  EXPECT_TRUE(SpiffeId::Parse(id).ok());
}

TEST(SpiffeId, RejectsIdLongerThan2048) {
  std::string id = "spiffe://example.org/";
  id += std::string(2049 - id.size(), 'x');
  ExpectInvalid(id, "2048");
}

TEST(SpiffeId, FromPathRefusesTooLongResult) {
  auto td = TrustDomain::Parse("example.org");
  ASSERT_TRUE(td.ok());
  EXPECT_FALSE(SpiffeId::FromPath(*td, "/" + std::string(2040, 'x')).ok());
}

TEST(SpiffeId, ReservedServerAndAgentIds) {
  auto td = *TrustDomain::Parse("example.org");
  EXPECT_EQ(ServerId(td).String(), "spiffe://example.org/spire/server");
  EXPECT_TRUE(ServerId(td).IsServerId());
  EXPECT_TRUE(SpiffeId::IsServerIdText("spiffe://example.org/spire/server"));
  EXPECT_FALSE(SpiffeId::IsServerIdText("spiffe://example.org/spire/server/x"));
  EXPECT_FALSE(SpiffeId::IsServerIdText("spiffe://example.org/spire/agent/x"));
  EXPECT_FALSE(SpiffeId::IsServerIdText("spiffe://example.org"));
  EXPECT_FALSE(SpiffeId::IsServerIdText("http://example.org/spire/server"));
  auto agent = AgentId(td, "join_token", "abc");
  ASSERT_TRUE(agent.ok());
  EXPECT_EQ(agent->String(), "spiffe://example.org/spire/agent/join_token/abc");
  EXPECT_TRUE(agent->IsAgentId());
  EXPECT_FALSE(AgentId(td, "join_token", "../x").ok());
}

TEST(TrustDomain, AcceptsNameAndIdForms) {
  EXPECT_EQ(TrustDomain::Parse("example.org")->name(), "example.org");
  EXPECT_EQ(TrustDomain::Parse("spiffe://example.org")->name(), "example.org");
}

TEST(TrustDomain, RejectsIdWithPath) {
  EXPECT_EQ(TrustDomain::Parse("spiffe://example.org/a").status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(TrustDomain, RejectsOtherScheme) {
  EXPECT_FALSE(TrustDomain::Parse("https://example.org").ok());
}

TEST(TrustDomain, RejectsUppercaseAndEmpty) {
  EXPECT_FALSE(TrustDomain::Parse("Example.org").ok());
  EXPECT_FALSE(TrustDomain::Parse("").ok());
}

}  // namespace
}  // namespace trellis::common
