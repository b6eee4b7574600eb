// SPIFFE bundle documents, PEM and DER bundles: round trips and malformed input.
#include "common/bundle.h"

#include <nlohmann/json.hpp>
#include <string>

#include "absl/strings/escaping.h"
#include "common/jwt.h"
#include "gtest/gtest.h"
#include "tests/common/test_pki.h"

namespace trellis::common {
namespace {

using json = nlohmann::json;
using testing::TestPki;
using testing::Unwrap;

Bundle FullBundle(const TestPki& pki) {
  Bundle bundle(pki.td);
  EXPECT_TRUE(bundle.AddX509Authority(pki.root).ok());
  EXPECT_TRUE(bundle.AddJwtAuthority("jwt-1", Unwrap(PrivateKey::Generate()).public_key()).ok());
  EXPECT_TRUE(
      bundle.AddJwtAuthority("jwt-2", Unwrap(PrivateKey::Generate(KeyType::kEcP384)).public_key())
          .ok());
  bundle.set_sequence(42);
  bundle.set_refresh_hint_seconds(300);
  return bundle;
}

void ExpectBad(const TestPki& pki, const json& doc, const std::string& fragment) {
  auto b = ParseSpiffeBundle(pki.td, doc.dump());
  ASSERT_FALSE(b.ok()) << doc.dump();
  EXPECT_EQ(b.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(b.status().message().find(fragment), std::string::npos) << b.status();
}

json X509Key(const Certificate& cert) {
  json jwk = Unwrap(PublicKeyToJwk(cert.public_key()));
  jwk["use"] = "x509-svid";
  std::string b64;
  absl::Base64Escape(cert.der(), &b64);
  jwk["x5c"] = {b64};
  return jwk;
}

TEST(SpiffeBundle, DocumentRoundTrip) {
  TestPki pki;
  Bundle bundle = FullBundle(pki);
  Bundle back = Unwrap(ParseSpiffeBundle(pki.td, Unwrap(SpiffeBundleToJson(bundle))));
  EXPECT_EQ(back, bundle);
}

TEST(SpiffeBundle, DocumentHasUseAndSpiffeFields) {
  TestPki pki;
  json doc = json::parse(Unwrap(SpiffeBundleToJson(FullBundle(pki))));
  EXPECT_EQ(doc["spiffe_sequence"], 42);
  EXPECT_EQ(doc["spiffe_refresh_hint"], 300);
  ASSERT_EQ(doc["keys"].size(), 3u);
  const json& x509 = doc["keys"][0];
  EXPECT_EQ(x509["use"], "x509-svid");
  EXPECT_EQ(x509["kty"], "EC");
  EXPECT_FALSE(x509.contains("kid"));
  ASSERT_EQ(x509["x5c"].size(), 1u);
  std::string der;
  ASSERT_TRUE(absl::Base64Unescape(x509["x5c"][0].get<std::string>(), &der));
  EXPECT_EQ(der, pki.root.der());
  EXPECT_EQ(doc["keys"][1]["use"], "jwt-svid");
  EXPECT_EQ(doc["keys"][1]["kid"], "jwt-1");
}

TEST(SpiffeBundle, EmptyKeysIsEmptyBundle) {
  TestPki pki;
  Bundle b = Unwrap(ParseSpiffeBundle(pki.td, R"({"keys": []})"));
  EXPECT_TRUE(b.x509_authorities().empty());
  EXPECT_TRUE(b.jwt_authorities().empty());
  EXPECT_EQ(b.sequence(), 0u);
  EXPECT_FALSE(b.refresh_hint_seconds().has_value());
}

TEST(SpiffeBundle, MissingKeysIsInvalidArgument) {
  TestPki pki;
  ExpectBad(pki, json{{"spiffe_sequence", 1}}, "keys");
}

TEST(SpiffeBundle, KeysNotArrayIsInvalidArgument) {
  TestPki pki;
  ExpectBad(pki, json{{"keys", json::object()}}, "not an array");
}

TEST(SpiffeBundle, NotJsonIsInvalidArgument) {
  TestPki pki;
  EXPECT_EQ(ParseSpiffeBundle(pki.td, "{\"keys\":").status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(SpiffeBundle, NegativeSequenceIsInvalidArgument) {
  TestPki pki;
  ExpectBad(pki, json{{"keys", json::array()}, {"spiffe_sequence", -1}}, "spiffe_sequence");
}

TEST(SpiffeBundle, StringRefreshHintIsInvalidArgument) {
  TestPki pki;
  ExpectBad(pki, json{{"keys", json::array()}, {"spiffe_refresh_hint", "5m"}},
            "spiffe_refresh_hint");
}

TEST(SpiffeBundle, SequenceKeepsFull64Bits) {
  TestPki pki;
  Bundle b =
      Unwrap(ParseSpiffeBundle(pki.td, R"({"keys":[],"spiffe_sequence":18446744073709551615})"));
  EXPECT_EQ(b.sequence(), UINT64_MAX);
}

TEST(SpiffeBundle, KeyWithoutUseIsIgnored) {
  TestPki pki;
  json key = X509Key(pki.root);
  key.erase("use");
  EXPECT_TRUE(
      Unwrap(ParseSpiffeBundle(pki.td, json{{"keys", {key}}}.dump())).x509_authorities().empty());
}

TEST(SpiffeBundle, KeyWithUnknownUseIsIgnored) {
  TestPki pki;
  json key = X509Key(pki.root);
  key["use"] = "enc";
  EXPECT_TRUE(
      Unwrap(ParseSpiffeBundle(pki.td, json{{"keys", {key}}}.dump())).x509_authorities().empty());
}

TEST(SpiffeBundle, X509KeyWithTwoCertificatesIsInvalidArgument) {
  TestPki pki;
  json key = X509Key(pki.root);
  key["x5c"].push_back(key["x5c"][0]);
  ExpectBad(pki, json{{"keys", {key}}}, "keys[0]: x509-svid key must have exactly one x5c");
}

TEST(SpiffeBundle, X509KeyWithoutX5cIsInvalidArgument) {
  TestPki pki;
  json key = X509Key(pki.root);
  key.erase("x5c");
  ExpectBad(pki, json{{"keys", {key}}}, "exactly one x5c");
}

TEST(SpiffeBundle, X509KeyWithKidIsInvalidArgument) {
  TestPki pki;
  json key = X509Key(pki.root);
  key["kid"] = "x";
  ExpectBad(pki, json{{"keys", {key}}}, "must not have a kid");
}

TEST(SpiffeBundle, X5cInBase64UrlIsInvalidArgument) {
  TestPki pki;
  json key = X509Key(pki.root);
  std::string b64url;
  absl::WebSafeBase64Escape(pki.root.der(), &b64url);
  key["x5c"] = {b64url + "-_"};
  ExpectBad(pki, json{{"keys", {key}}}, "standard base64");
}

TEST(SpiffeBundle, X5cNotACertificateIsInvalidArgument) {
  TestPki pki;
  json key = X509Key(pki.root);
  key["x5c"] = {"AAAA"};
  ExpectBad(pki, json{{"keys", {key}}}, "x5c");
}

TEST(SpiffeBundle, X509KeyParametersMismatchIsInvalidArgument) {
  TestPki pki;
  json key = X509Key(pki.root);
  json other = Unwrap(PublicKeyToJwk(pki.inter.public_key()));
  key["x"] = other["x"];
  key["y"] = other["y"];
  ExpectBad(pki, json{{"keys", {key}}}, "do not match");
}

TEST(SpiffeBundle, JwtKeyWithoutKidIsInvalidArgument) {
  TestPki pki;
  json key = Unwrap(PublicKeyToJwk(Unwrap(PrivateKey::Generate()).public_key()));
  key["use"] = "jwt-svid";
  ExpectBad(pki, json{{"keys", {key}}}, "keys[0]: jwt-svid key must have a kid");
}

TEST(SpiffeBundle, DuplicateJwtKidIsInvalidArgument) {
  TestPki pki;
  json a = Unwrap(PublicKeyToJwk(Unwrap(PrivateKey::Generate()).public_key(), "k"));
  json b = Unwrap(PublicKeyToJwk(Unwrap(PrivateKey::Generate()).public_key(), "k"));
  a["use"] = b["use"] = "jwt-svid";
  ExpectBad(pki, json{{"keys", {a, b}}}, "duplicate kid");
}

TEST(SpiffeBundle, KeyWithoutKtyIsInvalidArgument) {
  TestPki pki;
  json key = X509Key(pki.root);
  key.erase("kty");
  ExpectBad(pki, json{{"keys", {key}}}, "kty");
}

TEST(SpiffeBundle, RsaAuthoritiesRoundTrip) {
  TestPki pki(KeyType::kRsa2048);
  Bundle bundle(pki.td);
  ASSERT_TRUE(bundle.AddX509Authority(pki.root).ok());
  ASSERT_TRUE(bundle.AddJwtAuthority("r", pki.inter_key.public_key()).ok());
  EXPECT_EQ(Unwrap(ParseSpiffeBundle(pki.td, Unwrap(SpiffeBundleToJson(bundle)))), bundle);
}

TEST(Bundle, AddingLeafAsAuthorityIsInvalidArgument) {
  TestPki pki;
  Bundle bundle(pki.td);
  PrivateKey key = Unwrap(PrivateKey::Generate());
  Certificate leaf = Unwrap(Certificate::FromDer(
      Unwrap(pki.issuer->IssueForPublicKey(key.public_key(), pki.id, absl::Hours(1)))));
  EXPECT_EQ(bundle.AddX509Authority(leaf).code(), absl::StatusCode::kInvalidArgument);
}

TEST(Bundle, DuplicateAuthorityIsKeptOnce) {
  TestPki pki;
  Bundle bundle(pki.td);
  ASSERT_TRUE(bundle.AddX509Authority(pki.root).ok());
  ASSERT_TRUE(bundle.AddX509Authority(pki.root).ok());
  EXPECT_EQ(bundle.x509_authorities().size(), 1u);
}

TEST(Bundle, ConflictingJwtKidIsAlreadyExists) {
  TestPki pki;
  Bundle bundle(pki.td);
  ASSERT_TRUE(bundle.AddJwtAuthority("k", pki.root_key.public_key()).ok());
  EXPECT_EQ(bundle.AddJwtAuthority("k", pki.inter_key.public_key()).code(),
            absl::StatusCode::kAlreadyExists);
}

TEST(Bundle, RemoveAuthorities) {
  TestPki pki;
  Bundle bundle = FullBundle(pki);
  EXPECT_TRUE(bundle.RemoveX509Authority(pki.root));
  EXPECT_FALSE(bundle.RemoveX509Authority(pki.root));
  EXPECT_TRUE(bundle.RemoveJwtAuthority("jwt-1"));
  EXPECT_FALSE(bundle.RemoveJwtAuthority("jwt-1"));
}

TEST(PemBundle, RoundTrip) {
  TestPki pki;
  Bundle bundle(pki.td);
  ASSERT_TRUE(bundle.AddX509Authority(pki.root).ok());
  ASSERT_TRUE(bundle.AddX509Authority(pki.inter).ok());
  EXPECT_TRUE(Unwrap(BundleFromPem(pki.td, BundleToPem(bundle))).SameAuthorities(bundle));
}

TEST(PemBundle, OtherBlockIsInvalidArgument) {
  TestPki pki;
  std::string pem = pki.root.ToPem() + pki.root_key.public_key().ToPem();
  auto b = BundleFromPem(pki.td, pem);
  ASSERT_EQ(b.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(b.status().message().find("PUBLIC KEY"), std::string::npos) << b.status();
}

TEST(PemBundle, TrailingGarbageIsInvalidArgument) {
  TestPki pki;
  EXPECT_EQ(BundleFromPem(pki.td, pki.root.ToPem() + "junk").status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(DerBundle, RoundTrip) {
  TestPki pki;
  Bundle bundle(pki.td);
  ASSERT_TRUE(bundle.AddX509Authority(pki.root).ok());
  ASSERT_TRUE(bundle.AddX509Authority(pki.inter).ok());
  std::string der = BundleToDer(bundle);
  EXPECT_EQ(der, pki.root.der() + pki.inter.der());
  EXPECT_TRUE(Unwrap(BundleFromDer(pki.td, der)).SameAuthorities(bundle));
}

TEST(DerBundle, GarbageIsInvalidArgument) {
  TestPki pki;
  EXPECT_EQ(BundleFromDer(pki.td, pki.root.der() + "\x30\x05zz").status().code(),
            absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace trellis::common
