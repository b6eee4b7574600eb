// Tests of the shared cloud JWT verification: key documents, the key cache, token checks.
#include "attestors/cloud/jwt_keys.h"

#include <nlohmann/json.hpp>
#include <thread>

#include "absl/synchronization/notification.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/attestors/cloud/drip_server.h"
#include "tests/attestors/cloud/fake_cloud_identity.h"
#include "tests/testutil/status_matchers.h"

namespace trellis::attestors::cloud_jwt {
namespace {

using cloudtest::FakeKeyServer;
using cloudtest::Must;
using cloudtest::SigningKey;
using cloudtest::TestTls;
using ::testing::HasSubstr;
using testutil::IsOk;
using testutil::StatusIs;
using json = nlohmann::json;

const absl::Time kNow = absl::FromUnixSeconds(1900000000);

json Claims(absl::Time now = kNow) {
  return {{"iss", "https://issuer.example"},
          {"aud", "the-audience"},
          {"sub", "someone"},
          {"iat", absl::ToUnixSeconds(now)},
          {"exp", absl::ToUnixSeconds(now + absl::Hours(1))}};
}

JwtExpectations Expect() {
  JwtExpectations e;
  e.plugin = "test_plugin";
  e.issuers = {"https://issuer.example"};
  e.audience = "the-audience";
  return e;
}

// A key server with key "k1", a cache over it, and a fake clock.
struct Fixture {
  Fixture() : clock(kNow), server(tls), k1{"k1", cloudtest::RsaKey(1)} {
    server.SetKeys({&k1});
    cache = Must(JwtKeyCache::Create(Options(server.Url("/oauth2/v3/certs")), clock));
  }
  JwtKeyCache::Options Options(const std::string& location) const {
    JwtKeyCache::Options o;
    o.location = location;
    o.plugin = "test_plugin";
    o.what = "the test keys";
    o.http.ca_file = tls.ca_file();
    return o;
  }
  TestTls tls;
  common::FakeClock clock;
  FakeKeyServer server;
  SigningKey k1;
  std::unique_ptr<JwtKeyCache> cache;
};

TEST(ParseHttpUrl, SplitsSchemeHostPortAndPath) {
  HttpUrl u = Must(ParseHttpUrl("https://example.com:8443/a/b?x=1", "url"));
  EXPECT_TRUE(u.https);
  EXPECT_EQ(u.scheme_host_port, "https://example.com:8443");
  EXPECT_EQ(u.path, "/a/b?x=1");
  u = Must(ParseHttpUrl("http://169.254.169.254", "url"));
  EXPECT_FALSE(u.https);
  EXPECT_EQ(u.path, "/");
  u = Must(ParseHttpUrl("http://[::1]:80?q", "url"));
  EXPECT_EQ(u.scheme_host_port, "http://[::1]:80");
  EXPECT_EQ(u.path, "/?q");
}

TEST(ParseHttpUrl, RefusesMalformedUrls) {
  for (const char* bad : {"ftp://x", "https://", "https://user@host/", "https://host:0/",
                          "https://host:99999/", "https://host:/", "https://ho st/",
                          "https://host/#frag", "/just/a/path", "https://[::1/"}) {
    EXPECT_THAT(ParseHttpUrl(bad, "setting"),
                StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("setting")))
        << bad;
  }
}

TEST(ParseKeyDocument, ReadsJwksAndSkipsEncryptionKeys) {
  SigningKey rsa{"r", cloudtest::RsaKey(1)};
  SigningKey ec{"e", Must(common::PrivateKey::Generate())};
  json doc = json::parse(cloudtest::Jwks({&rsa, &ec}));
  json enc = rsa.Jwk();
  enc["kid"] = "enc";
  enc["use"] = "enc";
  doc["keys"].push_back(enc);
  auto keys = Must(ParseKeyDocument(doc.dump()));
  EXPECT_EQ(keys.size(), 2u);
  EXPECT_TRUE(keys.at("r") == rsa.key.public_key());
  EXPECT_TRUE(keys.at("e") == ec.key.public_key());
}

TEST(ParseKeyDocument, SkipsUnsupportedKeysButNeedsOneUsable) {
  SigningKey rsa{"r", cloudtest::RsaKey(1)};
  json doc = json::parse(cloudtest::Jwks({&rsa}));
  doc["keys"].push_back({{"kty", "oct"}, {"kid", "sym"}, {"k", "AAAA"}});
  EXPECT_EQ(Must(ParseKeyDocument(doc.dump())).size(), 1u);
  EXPECT_THAT(ParseKeyDocument(R"({"keys":[{"kty":"oct","kid":"sym","k":"AAAA"}]})"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("no usable key")));
}

TEST(ParseKeyDocument, ReadsGooglePemCertificateMap) {
  SigningKey rsa{"google-kid", cloudtest::RsaKey(1)};
  json doc = {{"google-kid", cloudtest::CertificatePem(rsa.key, "accounts.google.com", false)}};
  auto keys = Must(ParseKeyDocument(doc.dump()));
  ASSERT_EQ(keys.size(), 1u);
  EXPECT_TRUE(keys.at("google-kid") == rsa.key.public_key());
}

TEST(ParseKeyDocument, RefusesMalformedDocuments) {
  for (const char* bad :
       {"", "not json", "[]", R"({"keys":{}})", R"({"keys":[1]})", R"({"keys":[]})", "{}",
        R"({"kid":"not a certificate"})", R"({"kid":42})"}) {
    EXPECT_THAT(ParseKeyDocument(bad), StatusIs(absl::StatusCode::kInvalidArgument)) << bad;
  }
  SigningKey rsa{"dup", cloudtest::RsaKey(1)};
  EXPECT_THAT(ParseKeyDocument(cloudtest::Jwks({&rsa, &rsa})),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("repeats kid")));
}

// ---- Request deadline ----

HttpOptions ShortDeadline() {
  HttpOptions o;
  o.timeout = absl::Seconds(10);  // each read arrives long before this
  o.deadline = absl::Milliseconds(300);
  return o;
}

TEST(HttpRequest, ADrippedBodyStopsAtTheDeadline) {
  // 200 bytes at one per 50 ms: ten seconds in all, had the client waited.
  testdrip::DripServer server(testdrip::OkHead(200), std::string(200, ' '), absl::Milliseconds(50));
  const absl::Time start = absl::Now();
  EXPECT_THAT(HttpRequest("GET", server.url("/keys"), {}, ShortDeadline()),
              StatusIs(absl::StatusCode::kUnavailable,
                       HasSubstr("did not answer within the request deadline of 300ms")));
  EXPECT_LT(absl::Now() - start, absl::Seconds(8));
}

TEST(HttpRequest, DrippedHeadersStopAtTheDeadline) {
  testdrip::DripServer server("", testdrip::OkHead(2) + "{}", absl::Milliseconds(50));
  EXPECT_THAT(HttpRequest("GET", server.url("/keys"), {}, ShortDeadline()),
              StatusIs(absl::StatusCode::kUnavailable, HasSubstr("request deadline")));
}

TEST(HttpRequest, ASlowButTimelyAnswerIsRead) {
  testdrip::DripServer server(testdrip::OkHead(4), "{\"a\"", absl::Milliseconds(1));
  HttpOptions o;
  o.deadline = absl::Seconds(20);
  auto res = HttpRequest("GET", server.url("/keys"), {}, o);
  ASSERT_THAT(res, IsOk());
  EXPECT_EQ(res->status, 200);
  EXPECT_EQ(res->body, "{\"a\"");
}

TEST(JwtKeyCache, RefusesPlainHttpAndOtherSchemes) {
  common::FakeClock clock(kNow);
  JwtKeyCache::Options o;
  o.plugin = "test_plugin";
  o.location = "http://example.com/keys";
  EXPECT_THAT(JwtKeyCache::Create(o, clock), StatusIs(absl::StatusCode::kInvalidArgument));
  o.location = "ftp://example.com/keys";
  EXPECT_THAT(JwtKeyCache::Create(o, clock), StatusIs(absl::StatusCode::kInvalidArgument));
  o.location = "";
  EXPECT_THAT(JwtKeyCache::Create(o, clock), StatusIs(absl::StatusCode::kInvalidArgument));
}

TEST(JwtKeyCache, FetchesOnceAndServesFromCache) {
  Fixture f;
  EXPECT_TRUE(Must(f.cache->KeyFor("k1")) == f.k1.key.public_key());
  EXPECT_TRUE(Must(f.cache->KeyFor("k1")) == f.k1.key.public_key());
  EXPECT_EQ(f.server.requests(), 1);
  EXPECT_THAT(f.server.paths(), ::testing::ElementsAre("/oauth2/v3/certs"));
}

TEST(JwtKeyCache, UnknownKidRefetchesAtMostOncePerMinute) {
  Fixture f;
  ASSERT_THAT(f.cache->KeyFor("k1"), IsOk());
  f.clock.Advance(absl::Seconds(61));
  EXPECT_THAT(f.cache->KeyFor("nope"),
              StatusIs(absl::StatusCode::kPermissionDenied, HasSubstr("unknown key ID")));
  EXPECT_EQ(f.server.requests(), 2);
  EXPECT_THAT(f.cache->KeyFor("nope2"), StatusIs(absl::StatusCode::kPermissionDenied));
  EXPECT_EQ(f.server.requests(), 2);
  f.clock.Advance(absl::Seconds(61));
  EXPECT_THAT(f.cache->KeyFor("nope3"), StatusIs(absl::StatusCode::kPermissionDenied));
  EXPECT_EQ(f.server.requests(), 3);
}

TEST(JwtKeyCache, RotatedKeyIsFetchedOnDemand) {
  Fixture f;
  ASSERT_THAT(f.cache->KeyFor("k1"), IsOk());
  SigningKey k2{"k2", cloudtest::RsaKey(2)};
  f.server.SetKeys({&k2});
  f.clock.Advance(absl::Seconds(61));
  EXPECT_TRUE(Must(f.cache->KeyFor("k2")) == k2.key.public_key());
  // The withdrawn key is gone with the new set.
  f.clock.Advance(absl::Seconds(61));
  EXPECT_THAT(f.cache->KeyFor("k1"), StatusIs(absl::StatusCode::kPermissionDenied));
}

TEST(JwtKeyCache, StaleSetIsRefreshedAfterMaxAge) {
  Fixture f;
  ASSERT_THAT(f.cache->KeyFor("k1"), IsOk());
  f.clock.Advance(absl::Hours(2));
  ASSERT_THAT(f.cache->KeyFor("k1"), IsOk());
  EXPECT_EQ(f.server.requests(), 2);
}

TEST(JwtKeyCache, ServerDownIsUnavailable) {
  Fixture f;
  f.server.Stop();
  EXPECT_THAT(f.cache->KeyFor("k1"),
              StatusIs(absl::StatusCode::kUnavailable, HasSubstr("cannot get the test keys")));
  // A failed fetch is not retried at once.
  EXPECT_THAT(f.cache->KeyFor("k1"), StatusIs(absl::StatusCode::kUnavailable));
  EXPECT_EQ(f.cache->fetches(), 1);
}

TEST(JwtKeyCache, ServerErrorAndMalformedDocumentAreUnavailable) {
  Fixture f;
  f.server.SetBody(R"({"error":"boom"})", 500);
  EXPECT_THAT(f.cache->KeyFor("k1"),
              StatusIs(absl::StatusCode::kUnavailable, HasSubstr("HTTP 500")));
  f.clock.Advance(absl::Seconds(61));
  f.server.SetBody("{not json");
  EXPECT_THAT(f.cache->KeyFor("k1"),
              StatusIs(absl::StatusCode::kUnavailable, HasSubstr("not a JSON object")));
  f.clock.Advance(absl::Seconds(61));
  f.server.SetKeys({&f.k1});
  EXPECT_THAT(f.cache->KeyFor("k1"), IsOk());
}

TEST(JwtKeyCache, KeepsKnownKeysWhenRefreshFails) {
  Fixture f;
  ASSERT_THAT(f.cache->KeyFor("k1"), IsOk());
  f.server.SetBody("garbage");
  f.clock.Advance(absl::Hours(2));
  EXPECT_THAT(f.cache->KeyFor("k1"), IsOk());
  EXPECT_EQ(f.server.requests(), 2);
}

TEST(JwtKeyCache, AStuckFetchHoldsOtherCallersNoLongerThanItsDeadline) {
  Fixture f;
  JwtKeyCache::Options o = f.Options(f.server.Url("/keys"));
  o.http.timeout = absl::Seconds(60);  // only the deadline can end the stuck request
  o.http.deadline = absl::Milliseconds(500);
  auto cache = Must(JwtKeyCache::Create(o, f.clock));
  f.server.HoldNext(1);
  absl::StatusOr<common::PublicKey> first = absl::UnknownError("not run");
  absl::StatusOr<common::PublicKey> second = absl::UnknownError("not run");
  absl::Notification first_done, second_done;
  std::thread a([&] {
    first = cache->KeyFor("k1");
    first_done.Notify();
  });
  ASSERT_TRUE(f.server.AwaitRequests(1));
  std::thread b([&] {
    second = cache->KeyFor("k1");
    second_done.Notify();
  });
  // Both come back while the endpoint is still stuck.
  EXPECT_TRUE(second_done.WaitForNotificationWithTimeout(absl::Seconds(20)));
  EXPECT_TRUE(first_done.WaitForNotificationWithTimeout(absl::Seconds(20)));
  f.server.Release();
  a.join();
  b.join();
  EXPECT_THAT(first, StatusIs(absl::StatusCode::kUnavailable, HasSubstr("deadline")));
  EXPECT_THAT(second, StatusIs(absl::StatusCode::kUnavailable));
  EXPECT_EQ(cache->fetches(), 1);
}

TEST(JwtKeyCache, KnownKeysServeWhileARefreshIsStuck) {
  Fixture f;
  JwtKeyCache::Options o = f.Options(f.server.Url("/keys"));
  o.http.timeout = absl::Seconds(60);
  auto cache = Must(JwtKeyCache::Create(o, f.clock));
  ASSERT_THAT(cache->KeyFor("k1"), IsOk());
  f.clock.Advance(absl::Hours(2));  // the set is stale: the next call refreshes it
  f.server.HoldNext(1);
  absl::Notification refreshed;
  std::thread refresher([&] {
    EXPECT_THAT(cache->KeyFor("k1"), IsOk());
    refreshed.Notify();
  });
  ASSERT_TRUE(f.server.AwaitRequests(2));
  absl::StatusOr<common::PublicKey> meanwhile = absl::UnknownError("not run");
  absl::Notification answered;
  std::thread other([&] {
    meanwhile = cache->KeyFor("k1");
    answered.Notify();
  });
  EXPECT_TRUE(answered.WaitForNotificationWithTimeout(absl::Seconds(20)));
  EXPECT_FALSE(refreshed.HasBeenNotified());
  f.server.Release();
  other.join();
  refresher.join();
  EXPECT_THAT(meanwhile, IsOk());
  EXPECT_EQ(cache->fetches(), 2);
}

TEST(JwtKeyCache, ServerCertificateMustBeTrusted) {
  Fixture f;
  JwtKeyCache::Options o = f.Options(f.server.Url("/keys"));
  o.http.ca_file = f.tls.cert_file();  // not the issuing CA
  auto cache = Must(JwtKeyCache::Create(o, f.clock));
  EXPECT_THAT(cache->KeyFor("k1"), StatusIs(absl::StatusCode::kUnavailable));
}

TEST(JwtKeyCache, ReadsKeysFromAFile) {
  Fixture f;
  std::string path = f.tls.dir().Write("keys.json", cloudtest::Jwks({&f.k1}));
  auto cache = Must(JwtKeyCache::Create(f.Options(path), f.clock));
  EXPECT_TRUE(Must(cache->KeyFor("k1")) == f.k1.key.public_key());
  auto missing = Must(JwtKeyCache::Create(f.Options(f.tls.dir().Sub("none.json")), f.clock));
  EXPECT_THAT(missing->KeyFor("k1"), StatusIs(absl::StatusCode::kUnavailable));
}

TEST(VerifyJwt, AcceptsAValidRs256Token) {
  Fixture f;
  json claims = Must(VerifyJwt(f.k1.Sign(Claims()), *f.cache, Expect(), kNow));
  EXPECT_EQ(claims["sub"], "someone");
}

TEST(VerifyJwt, AcceptsAValidEs256Token) {
  Fixture f;
  SigningKey ec{"ec", Must(common::PrivateKey::Generate())};
  f.server.SetKeys({&f.k1, &ec});
  EXPECT_THAT(VerifyJwt(ec.Sign(Claims()), *f.cache, Expect(), kNow), IsOk());
}

TEST(VerifyJwt, AcceptsAudienceArrays) {
  Fixture f;
  json c = Claims();
  c["aud"] = {"other", "the-audience"};
  EXPECT_THAT(VerifyJwt(f.k1.Sign(c), *f.cache, Expect(), kNow), IsOk());
}

TEST(VerifyJwt, RefusesASignatureByAnotherKey) {
  Fixture f;
  SigningKey forger{"k1", cloudtest::RsaKey(3)};
  EXPECT_THAT(VerifyJwt(forger.Sign(Claims()), *f.cache, Expect(), kNow),
              StatusIs(absl::StatusCode::kPermissionDenied,
                       "test_plugin: token signature does not verify"));
}

TEST(VerifyJwt, RefusesTamperedClaims) {
  Fixture f;
  std::string token = f.k1.Sign(Claims());
  const size_t a = token.find('.'), b = token.rfind('.');
  json c = Claims();
  c["sub"] = "someone-else";
  std::string forged = token.substr(0, a + 1) + common::Base64UrlEncode(c.dump()) + token.substr(b);
  EXPECT_THAT(VerifyJwt(forged, *f.cache, Expect(), kNow),
              StatusIs(absl::StatusCode::kPermissionDenied, HasSubstr("signature")));
}

TEST(VerifyJwt, RefusesOtherAlgorithms) {
  Fixture f;
  EXPECT_THAT(VerifyJwt(Must(common::SignJwt(f.k1.key, "k1", Claims(), common::JwtAlg::kRs384)),
                        *f.cache, Expect(), kNow),
              StatusIs(absl::StatusCode::kPermissionDenied, HasSubstr("RS384")));
  std::string none = common::Base64UrlEncode(R"({"alg":"none","kid":"k1"})") + "." +
                     common::Base64UrlEncode(Claims().dump()) + ".";
  EXPECT_THAT(VerifyJwt(none, *f.cache, Expect(), kNow),
              StatusIs(absl::StatusCode::kPermissionDenied, HasSubstr("none")));
  std::string hs = common::Base64UrlEncode(R"({"alg":"HS256","kid":"k1"})") + "." +
                   common::Base64UrlEncode(Claims().dump()) + "." + common::Base64UrlEncode("x");
  EXPECT_THAT(VerifyJwt(hs, *f.cache, Expect(), kNow),
              StatusIs(absl::StatusCode::kPermissionDenied, HasSubstr("HS256")));
}

TEST(VerifyJwt, RefusesAlgorithmNotMatchingTheKey) {
  Fixture f;
  SigningKey ec{"ec", Must(common::PrivateKey::Generate())};
  f.server.SetKeys({&f.k1, &ec});
  // An RSA signature presented under the EC key's kid.
  EXPECT_THAT(VerifyJwt(Must(common::SignJwt(f.k1.key, "ec", Claims())), *f.cache, Expect(), kNow),
              StatusIs(absl::StatusCode::kPermissionDenied, HasSubstr("not RSA")));
}

TEST(VerifyJwt, RefusesUnknownKid) {
  Fixture f;
  SigningKey other{"other", cloudtest::RsaKey(2)};
  EXPECT_THAT(VerifyJwt(other.Sign(Claims()), *f.cache, Expect(), kNow),
              StatusIs(absl::StatusCode::kPermissionDenied, HasSubstr("unknown key ID")));
}

TEST(VerifyJwt, RefusesExpiredTokensBeyondTheLeeway) {
  Fixture f;
  std::string token = f.k1.Sign(Claims());
  EXPECT_THAT(VerifyJwt(token, *f.cache, Expect(), kNow + absl::Hours(1) + absl::Seconds(29)),
              IsOk());
  EXPECT_THAT(VerifyJwt(token, *f.cache, Expect(), kNow + absl::Hours(1) + absl::Seconds(31)),
              StatusIs(absl::StatusCode::kPermissionDenied, HasSubstr("expired")));
}

TEST(VerifyJwt, RefusesTokensNotYetValid) {
  Fixture f;
  json c = Claims();
  c["nbf"] = absl::ToUnixSeconds(kNow + absl::Minutes(5));
  EXPECT_THAT(VerifyJwt(f.k1.Sign(c), *f.cache, Expect(), kNow),
              StatusIs(absl::StatusCode::kPermissionDenied, HasSubstr("not valid before")));
  EXPECT_THAT(VerifyJwt(f.k1.Sign(Claims(kNow + absl::Minutes(5))), *f.cache, Expect(), kNow),
              StatusIs(absl::StatusCode::kPermissionDenied, HasSubstr("in the future")));
}

TEST(VerifyJwt, RequiresExpAndIat) {
  Fixture f;
  for (const char* claim : {"exp", "iat"}) {
    json c = Claims();
    c.erase(claim);
    EXPECT_THAT(VerifyJwt(f.k1.Sign(c), *f.cache, Expect(), kNow),
                StatusIs(absl::StatusCode::kPermissionDenied, HasSubstr(claim)));
    c[claim] = "soon";
    EXPECT_THAT(VerifyJwt(f.k1.Sign(c), *f.cache, Expect(), kNow),
                StatusIs(absl::StatusCode::kPermissionDenied, HasSubstr("not a number")));
  }
}

TEST(VerifyJwt, RefusesWrongIssuerAndAudience) {
  Fixture f;
  json c = Claims();
  c["iss"] = "https://evil.example";
  EXPECT_THAT(VerifyJwt(f.k1.Sign(c), *f.cache, Expect(), kNow),
              StatusIs(absl::StatusCode::kPermissionDenied, HasSubstr("issuer")));
  c = Claims();
  c.erase("iss");
  EXPECT_THAT(VerifyJwt(f.k1.Sign(c), *f.cache, Expect(), kNow),
              StatusIs(absl::StatusCode::kPermissionDenied, HasSubstr("issuer")));
  c = Claims();
  c["aud"] = "another-audience";
  EXPECT_THAT(VerifyJwt(f.k1.Sign(c), *f.cache, Expect(), kNow),
              StatusIs(absl::StatusCode::kPermissionDenied, HasSubstr("audience")));
  c["aud"] = json::array({"x", 3});
  EXPECT_THAT(VerifyJwt(f.k1.Sign(c), *f.cache, Expect(), kNow),
              StatusIs(absl::StatusCode::kPermissionDenied, HasSubstr("audience")));
}

TEST(VerifyJwt, RefusesMalformedTokensWithoutFetchingKeys) {
  Fixture f;
  const std::string claims = common::Base64UrlEncode(Claims().dump());
  const std::string header = common::Base64UrlEncode(R"({"alg":"RS256","kid":"k1"})");
  for (const std::string& bad :
       {std::string(""), std::string("abc"), std::string("a.b"), std::string("a.b.c.d"),
        "!!." + claims + ".sig", header + ".!!.sig", header + "." + claims + ".!!",
        common::Base64UrlEncode("[]") + "." + claims + ".c2ln",
        header + "." + common::Base64UrlEncode("not json") + ".c2ln",
        common::Base64UrlEncode(R"({"alg":"RS256"})") + "." + claims + ".c2ln",
        std::string(20000, 'a')}) {
    EXPECT_THAT(VerifyJwt(bad, *f.cache, Expect(), kNow),
                StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("test_plugin: ")))
        << bad.substr(0, 40);
  }
  EXPECT_EQ(f.server.requests(), 0);
}

TEST(ExpandAgentPathTemplate, ReplacesFields) {
  std::map<std::string, std::string> fields = {{"PluginName", "p"}, {"ID", "42"}};
  EXPECT_EQ(Must(ExpandAgentPathTemplate("{{ .PluginName }}/{{.ID}}", fields, "p")), "p/42");
  EXPECT_EQ(Must(ExpandAgentPathTemplate("/{{ .PluginName }}/x/{{ .ID }}", fields, "p")), "p/x/42");
}

TEST(ExpandAgentPathTemplate, RefusesUnknownFieldsAndActions) {
  std::map<std::string, std::string> fields = {{"ID", "42"}};
  for (const char* bad : {"{{ .Nope }}", "{{ printf \"x\" }}", "{{ .ID", "a}}b", "{{}}", "/"}) {
    EXPECT_THAT(ExpandAgentPathTemplate(bad, fields, "p"),
                StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("agent_path_template")))
        << bad;
  }
}

TEST(ExpandAgentPathTemplate, RefusesValuesThatAreNotOnePathSegment) {
  for (const char* bad : {"", ".", "..", "a/b", "/", "../x"}) {
    std::map<std::string, std::string> fields = {{"PluginName", "p"}, {"ID", bad}};
    EXPECT_THAT(ExpandAgentPathTemplate("{{ .PluginName }}/{{ .ID }}", fields, "p"),
                StatusIs(absl::StatusCode::kPermissionDenied,
                         HasSubstr("p: agent_path_template field \"ID\"")))
        << bad;
  }
  // A value the template does not use is not looked at.
  std::map<std::string, std::string> fields = {{"PluginName", "p"}, {"ID", "a/b"}};
  EXPECT_EQ(Must(ExpandAgentPathTemplate("{{ .PluginName }}/x", fields, "p")), "p/x");
  fields["ID"] = "a.b..c";
  EXPECT_EQ(Must(ExpandAgentPathTemplate("{{ .PluginName }}/{{ .ID }}", fields, "p")), "p/a.b..c");
}

}  // namespace
}  // namespace trellis::attestors::cloud_jwt
