// JWK and Workload API JWKS encoding of EC and RSA public keys.
#include <string>

#include "common/jwt.h"
#include "gtest/gtest.h"
#include "tests/common/test_pki.h"

namespace trellis::common {
namespace {

using json = nlohmann::json;
using testing::Unwrap;

class JwkKeyTypes : public ::testing::TestWithParam<KeyType> {};

TEST_P(JwkKeyTypes, RoundTripKeepsKey) {
  PrivateKey key = Unwrap(PrivateKey::Generate(GetParam()));
  json jwk = Unwrap(PublicKeyToJwk(key.public_key(), "kid-1"));
  EXPECT_EQ(jwk["kid"], "kid-1");
  EXPECT_EQ(Unwrap(PublicKeyFromJwk(jwk)), key.public_key());
}

INSTANTIATE_TEST_SUITE_P(All, JwkKeyTypes,
                         ::testing::Values(KeyType::kEcP256, KeyType::kEcP384, KeyType::kEcP521,
                                           KeyType::kRsa2048));

TEST(Jwk, EcFieldsAreFixedWidth) {
  PrivateKey key = Unwrap(PrivateKey::Generate(KeyType::kEcP521));
  json jwk = Unwrap(PublicKeyToJwk(key.public_key()));
  EXPECT_EQ(jwk["kty"], "EC");
  EXPECT_EQ(jwk["crv"], "P-521");
  EXPECT_EQ(Unwrap(Base64UrlDecode(jwk["x"].get<std::string>())).size(), 66u);
  EXPECT_EQ(Unwrap(Base64UrlDecode(jwk["y"].get<std::string>())).size(), 66u);
  EXPECT_FALSE(jwk.contains("kid"));
}

TEST(Jwk, RsaHasModulusAndExponent) {
  PrivateKey key = Unwrap(PrivateKey::Generate(KeyType::kRsa2048));
  json jwk = Unwrap(PublicKeyToJwk(key.public_key()));
  EXPECT_EQ(jwk["kty"], "RSA");
  EXPECT_EQ(Unwrap(Base64UrlDecode(jwk["n"].get<std::string>())).size(), 256u);
  EXPECT_EQ(jwk["e"], "AQAB");
}

TEST(Jwk, UnknownKtyIsInvalidArgument) {
  EXPECT_EQ(PublicKeyFromJwk(json{{"kty", "OKP"}}).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(Jwk, UnknownCurveIsInvalidArgument) {
  PrivateKey key = Unwrap(PrivateKey::Generate());
  json jwk = Unwrap(PublicKeyToJwk(key.public_key()));
  jwk["crv"] = "secp256k1";
  EXPECT_EQ(PublicKeyFromJwk(jwk).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(Jwk, PointOffCurveIsInvalidArgument) {
  PrivateKey key = Unwrap(PrivateKey::Generate());
  json jwk = Unwrap(PublicKeyToJwk(key.public_key()));
  std::string y = Unwrap(Base64UrlDecode(jwk["y"].get<std::string>()));
  y.back() ^= 1;
  jwk["y"] = Base64UrlEncode(y);
  EXPECT_EQ(PublicKeyFromJwk(jwk).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(Jwk, ShortCoordinateIsInvalidArgument) {
  PrivateKey key = Unwrap(PrivateKey::Generate());
  json jwk = Unwrap(PublicKeyToJwk(key.public_key()));
  jwk["x"] = Base64UrlEncode(std::string(31, 'a'));
  EXPECT_EQ(PublicKeyFromJwk(jwk).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(Jwk, SmallRsaModulusIsInvalidArgument) {
  json jwk = {{"kty", "RSA"}, {"n", Base64UrlEncode(std::string(128, '\xc3'))}, {"e", "AQAB"}};
  EXPECT_EQ(PublicKeyFromJwk(jwk).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(Jwk, MissingFieldIsNamed) {
  auto key = PublicKeyFromJwk(json{{"kty", "RSA"}, {"e", "AQAB"}});
  ASSERT_EQ(key.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(key.status().message().find("\"n\""), std::string::npos) << key.status();
}

TEST(Jwks, RoundTripKeepsKidsAndKeys) {
  std::map<std::string, PublicKey> keys;
  keys.emplace("a", Unwrap(PrivateKey::Generate()).public_key());
  keys.emplace("b", Unwrap(PrivateKey::Generate(KeyType::kRsa2048)).public_key());
  EXPECT_EQ(Unwrap(JwksFromJson(Unwrap(JwksToJson(keys)))), keys);
}

TEST(Jwks, EveryKeyCarriesKid) {
  std::map<std::string, PublicKey> keys;
  keys.emplace("a", Unwrap(PrivateKey::Generate()).public_key());
  json doc = json::parse(Unwrap(JwksToJson(keys)));
  ASSERT_EQ(doc["keys"].size(), 1u);
  EXPECT_EQ(doc["keys"][0]["kid"], "a");
}

TEST(Jwks, KeyWithoutKidIsInvalidArgument) {
  json jwk = Unwrap(PublicKeyToJwk(Unwrap(PrivateKey::Generate()).public_key()));
  EXPECT_EQ(JwksFromJson(json{{"keys", {jwk}}}.dump()).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(Jwks, DuplicateKidIsInvalidArgument) {
  json jwk = Unwrap(PublicKeyToJwk(Unwrap(PrivateKey::Generate()).public_key(), "a"));
  EXPECT_EQ(JwksFromJson(json{{"keys", {jwk, jwk}}}.dump()).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(Jwks, MissingKeysIsInvalidArgument) {
  EXPECT_EQ(JwksFromJson("{}").status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(Jwks, NotJsonIsInvalidArgument) {
  EXPECT_EQ(JwksFromJson("{\"keys\": [").status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(Jwks, NonUtf8KidIsInvalidArgumentNotACrash) {
  std::map<std::string, PublicKey> keys;
  keys.emplace("\xff\xfe", Unwrap(PrivateKey::Generate()).public_key());
  EXPECT_EQ(JwksToJson(keys).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(Jwks, EmptyKeysIsEmptySet) { EXPECT_TRUE(Unwrap(JwksFromJson("{\"keys\":[]}")).empty()); }

}  // namespace
}  // namespace trellis::common
