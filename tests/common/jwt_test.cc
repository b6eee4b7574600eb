// JWT-SVID signing and verification: every algorithm, and each rejection rule on its own.
#include "common/jwt.h"

#include <string>

#include "gtest/gtest.h"
#include "tests/common/test_pki.h"

namespace trellis::common {
namespace {

using json = nlohmann::json;
using testing::Unwrap;

const absl::Time kNow = absl::FromUnixSeconds(1'800'000'000);

class JwtTest : public ::testing::Test {
 protected:
  JwtTest()
      : key_(Unwrap(PrivateKey::Generate())),
        id_(Unwrap(SpiffeId::Parse("spiffe://example.org/w"))) {
    keys_.emplace("k1", key_.public_key());
  }

  std::string Token(const std::vector<std::string>& aud = {"svc"},
                    absl::Duration ttl = absl::Minutes(5)) {
    return Unwrap(SignJwtSvid(key_, "k1", id_, aud, kNow, kNow + ttl));
  }
  // A validly signed token with arbitrary claims (to reach the claim checks).
  std::string Signed(const json& claims) { return Unwrap(SignJwt(key_, "k1", claims)); }
  // A validly signed token with an arbitrary header.
  std::string WithHeader(const json& header, const json& claims) {
    std::string input = Base64UrlEncode(header.dump()) + "." + Base64UrlEncode(claims.dump());
    return input + "." + Base64UrlEncode(RawFromDer(Unwrap(key_.Sign(input))));
  }
  static std::string RawFromDer(const std::string& der) {
    // ECDSA-Sig-Value (P-256, short lengths) -> fixed-width r || s.
    size_t pos = 2;
    auto read_int = [&]() {
      size_t len = static_cast<uint8_t>(der[pos + 1]);
      std::string v = der.substr(pos + 2, len);
      pos += 2 + len;
      while (v.size() > 32) v.erase(0, 1);
      while (v.size() < 32) v.insert(0, 1, '\0');
      return v;
    };
    std::string r = read_int();
    return r + read_int();
  }
  json GoodClaims() {
    return {{"sub", id_.String()},
            {"aud", {"svc"}},
            {"exp", absl::ToUnixSeconds(kNow) + 300},
            {"iat", absl::ToUnixSeconds(kNow)}};
  }
  absl::StatusCode Code(const std::string& token, const std::string& aud = "svc",
                        absl::Time now = kNow) {
    return VerifyJwtSvid(token, keys_, aud, now).status().code();
  }

  PrivateKey key_;
  SpiffeId id_;
  std::map<std::string, PublicKey> keys_;
};

TEST_F(JwtTest, ValidTokenVerifies) {
  JwtSvid svid = Unwrap(VerifyJwtSvid(Token(), keys_, "svc", kNow));
  EXPECT_EQ(svid.subject, id_);
  EXPECT_EQ(svid.audience, std::vector<std::string>{"svc"});
  EXPECT_EQ(svid.expiry, kNow + absl::Minutes(5));
  EXPECT_EQ(svid.issued_at, kNow);
  EXPECT_EQ(svid.kid, "k1");
  EXPECT_EQ(svid.alg, JwtAlg::kEs256);
}

TEST_F(JwtTest, HeaderHasKidAndTypJwt) {
  std::string token = Token();
  json header = json::parse(Unwrap(Base64UrlDecode(token.substr(0, token.find('.')))));
  EXPECT_EQ(header["kid"], "k1");
  EXPECT_EQ(header["typ"], "JWT");
  EXPECT_EQ(header["alg"], "ES256");
}

TEST_F(JwtTest, AudienceIsAlwaysAnArray) {
  std::string token = Token({"one"});
  size_t a = token.find('.'), b = token.rfind('.');
  json claims = json::parse(Unwrap(Base64UrlDecode(token.substr(a + 1, b - a - 1))));
  EXPECT_TRUE(claims["aud"].is_array());
}

TEST_F(JwtTest, StringAudienceIsAccepted) {
  json claims = GoodClaims();
  claims["aud"] = "svc";
  EXPECT_EQ(Unwrap(VerifyJwtSvid(Signed(claims), keys_, "svc", kNow)).claims["aud"],
            json::array({"svc"}));
}

TEST_F(JwtTest, OneOfSeveralAudiencesMatches) {
  EXPECT_TRUE(VerifyJwtSvid(Token({"a", "svc", "b"}), keys_, "svc", kNow).ok());
}

TEST_F(JwtTest, AlgNoneIsUnauthenticated) {
  json header = {{"alg", "none"}, {"kid", "k1"}, {"typ", "JWT"}};
  std::string token =
      Base64UrlEncode(header.dump()) + "." + Base64UrlEncode(GoodClaims().dump()) + ".";
  EXPECT_EQ(Code(token), absl::StatusCode::kUnauthenticated);
}

TEST_F(JwtTest, AlgHs256IsUnauthenticated) {
  EXPECT_EQ(Code(WithHeader({{"alg", "HS256"}, {"kid", "k1"}}, GoodClaims())),
            absl::StatusCode::kUnauthenticated);
}

TEST_F(JwtTest, UnknownAlgIsUnauthenticated) {
  EXPECT_EQ(Code(WithHeader({{"alg", "ES257"}, {"kid", "k1"}}, GoodClaims())),
            absl::StatusCode::kUnauthenticated);
}

TEST_F(JwtTest, AlgNotMatchingKeyIsUnauthenticated) {
  EXPECT_EQ(Code(WithHeader({{"alg", "RS256"}, {"kid", "k1"}}, GoodClaims())),
            absl::StatusCode::kUnauthenticated);
}

TEST_F(JwtTest, Es384OnP256KeyIsUnauthenticated) {
  EXPECT_EQ(Code(WithHeader({{"alg", "ES384"}, {"kid", "k1"}}, GoodClaims())),
            absl::StatusCode::kUnauthenticated);
}

TEST_F(JwtTest, MissingAlgIsInvalidArgument) {
  EXPECT_EQ(Code(WithHeader({{"kid", "k1"}}, GoodClaims())), absl::StatusCode::kInvalidArgument);
}

TEST_F(JwtTest, MissingKidIsInvalidArgument) {
  EXPECT_EQ(Code(WithHeader({{"alg", "ES256"}}, GoodClaims())), absl::StatusCode::kInvalidArgument);
}

TEST_F(JwtTest, UnknownKidIsUnauthenticated) {
  EXPECT_EQ(Code(WithHeader({{"alg", "ES256"}, {"kid", "k2"}}, GoodClaims())),
            absl::StatusCode::kUnauthenticated);
}

TEST_F(JwtTest, TypAbsentIsAccepted) {
  EXPECT_TRUE(
      VerifyJwtSvid(WithHeader({{"alg", "ES256"}, {"kid", "k1"}}, GoodClaims()), keys_, "svc", kNow)
          .ok());
}

TEST_F(JwtTest, TypJoseIsAccepted) {
  EXPECT_TRUE(
      VerifyJwtSvid(WithHeader({{"alg", "ES256"}, {"kid", "k1"}, {"typ", "JOSE"}}, GoodClaims()),
                    keys_, "svc", kNow)
          .ok());
}

TEST_F(JwtTest, BadTypIsUnauthenticated) {
  EXPECT_EQ(Code(WithHeader({{"alg", "ES256"}, {"kid", "k1"}, {"typ", "at+jwt"}}, GoodClaims())),
            absl::StatusCode::kUnauthenticated);
}

TEST_F(JwtTest, MissingExpIsInvalidArgument) {
  json claims = GoodClaims();
  claims.erase("exp");
  EXPECT_EQ(Code(Signed(claims)), absl::StatusCode::kInvalidArgument);
}

TEST_F(JwtTest, NonNumericExpIsInvalidArgument) {
  json claims = GoodClaims();
  claims["exp"] = "tomorrow";
  EXPECT_EQ(Code(Signed(claims)), absl::StatusCode::kInvalidArgument);
}

TEST_F(JwtTest, ExpiredIsUnauthenticated) {
  EXPECT_EQ(Code(Token(), "svc", kNow + absl::Minutes(5) + absl::Seconds(1)),
            absl::StatusCode::kUnauthenticated);
}

TEST_F(JwtTest, LeewayAcceptsJustExpired) {
  EXPECT_TRUE(VerifyJwtSvid(Token(), keys_, "svc", kNow + absl::Minutes(5) + absl::Seconds(20),
                            absl::Seconds(30))
                  .ok());
}

TEST_F(JwtTest, MissingAudIsInvalidArgument) {
  json claims = GoodClaims();
  claims.erase("aud");
  EXPECT_EQ(Code(Signed(claims)), absl::StatusCode::kInvalidArgument);
}

TEST_F(JwtTest, WrongAudIsUnauthenticated) {
  EXPECT_EQ(Code(Token({"other"})), absl::StatusCode::kUnauthenticated);
}

TEST_F(JwtTest, MissingSubIsInvalidArgument) {
  json claims = GoodClaims();
  claims.erase("sub");
  EXPECT_EQ(Code(Signed(claims)), absl::StatusCode::kInvalidArgument);
}

TEST_F(JwtTest, NonSpiffeSubIsInvalidArgument) {
  json claims = GoodClaims();
  claims["sub"] = "https://example.org/w";
  EXPECT_EQ(Code(Signed(claims)), absl::StatusCode::kInvalidArgument);
}

TEST_F(JwtTest, TrustDomainOnlySubIsInvalidArgument) {
  json claims = GoodClaims();
  claims["sub"] = "spiffe://example.org";
  EXPECT_EQ(Code(Signed(claims)), absl::StatusCode::kInvalidArgument);
}

TEST_F(JwtTest, TamperedPayloadIsUnauthenticated) {
  std::string token = Token();
  json claims = GoodClaims();
  claims["sub"] = "spiffe://example.org/admin";
  size_t a = token.find('.'), b = token.rfind('.');
  std::string forged = token.substr(0, a + 1) + Base64UrlEncode(claims.dump()) + token.substr(b);
  EXPECT_EQ(Code(forged), absl::StatusCode::kUnauthenticated);
}

TEST_F(JwtTest, SignatureFromOtherKeyIsUnauthenticated) {
  PrivateKey other = Unwrap(PrivateKey::Generate());
  std::string token = Unwrap(SignJwtSvid(other, "k1", id_, {"svc"}, kNow, kNow + absl::Minutes(1)));
  EXPECT_EQ(Code(token), absl::StatusCode::kUnauthenticated);
}

TEST_F(JwtTest, DerSignatureInsteadOfRawIsUnauthenticated) {
  std::string token = Token();
  std::string input = token.substr(0, token.rfind('.'));
  std::string der = Unwrap(key_.Sign(input));
  EXPECT_EQ(Code(input + "." + Base64UrlEncode(der)), absl::StatusCode::kUnauthenticated);
}

TEST_F(JwtTest, TwoSegmentsIsInvalidArgument) {
  std::string token = Token();
  EXPECT_EQ(Code(token.substr(0, token.rfind('.'))), absl::StatusCode::kInvalidArgument);
}

TEST_F(JwtTest, FourSegmentsIsInvalidArgument) {
  EXPECT_EQ(Code(Token() + ".x"), absl::StatusCode::kInvalidArgument);
}

TEST_F(JwtTest, PaddedBase64IsInvalidArgument) {
  std::string token = Token();
  size_t a = token.find('.');
  std::string header = token.substr(0, a);
  while (header.size() % 4 != 0) header += '=';
  EXPECT_EQ(Code(header + token.substr(a)), absl::StatusCode::kInvalidArgument);
}

TEST_F(JwtTest, StandardBase64AlphabetIsInvalidArgument) {
  std::string token = Token();
  size_t b = token.rfind('.');
  std::string sig = token.substr(b + 1);
  for (char& c : sig) {
    if (c == '-') c = '+';
    if (c == '_') c = '/';
  }
  if (sig == token.substr(b + 1)) sig[0] = '+';
  EXPECT_EQ(Code(token.substr(0, b + 1) + sig), absl::StatusCode::kInvalidArgument);
}

TEST_F(JwtTest, HeaderNotJsonIsInvalidArgument) {
  std::string token = Token();
  EXPECT_EQ(Code(Base64UrlEncode("{not json") + token.substr(token.find('.'))),
            absl::StatusCode::kInvalidArgument);
}

TEST_F(JwtTest, ClaimsNotAnObjectIsInvalidArgument) {
  EXPECT_EQ(Code(Signed(json::array({1, 2}))), absl::StatusCode::kInvalidArgument);
}

TEST_F(JwtTest, SignRequiresKid) {
  EXPECT_EQ(SignJwtSvid(key_, "", id_, {"svc"}, kNow, kNow + absl::Minutes(1)).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST_F(JwtTest, SignRequiresAudience) {
  EXPECT_EQ(SignJwtSvid(key_, "k1", id_, {}, kNow, kNow + absl::Minutes(1)).status().code(),
            absl::StatusCode::kInvalidArgument);
}

struct AlgCase {
  JwtAlg alg;
  KeyType key;
};

class JwtAlgs : public ::testing::TestWithParam<AlgCase> {};

TEST_P(JwtAlgs, RoundTrip) {
  PrivateKey key = Unwrap(PrivateKey::Generate(GetParam().key));
  SpiffeId id = Unwrap(SpiffeId::Parse("spiffe://example.org/w"));
  std::string token =
      Unwrap(SignJwtSvid(key, "kid", id, {"aud"}, kNow, kNow + absl::Minutes(1), GetParam().alg));
  std::map<std::string, PublicKey> keys{{"kid", key.public_key()}};
  JwtSvid svid = Unwrap(VerifyJwtSvid(token, keys, "aud", kNow));
  EXPECT_EQ(svid.alg, GetParam().alg);
  EXPECT_EQ(JwtAlgName(svid.alg), JwtAlgName(GetParam().alg));
}

INSTANTIATE_TEST_SUITE_P(All, JwtAlgs,
                         ::testing::Values(AlgCase{JwtAlg::kEs256, KeyType::kEcP256},
                                           AlgCase{JwtAlg::kEs384, KeyType::kEcP384},
                                           AlgCase{JwtAlg::kEs512, KeyType::kEcP521},
                                           AlgCase{JwtAlg::kRs256, KeyType::kRsa2048},
                                           AlgCase{JwtAlg::kRs384, KeyType::kRsa2048},
                                           AlgCase{JwtAlg::kRs512, KeyType::kRsa2048},
                                           AlgCase{JwtAlg::kPs256, KeyType::kRsa2048},
                                           AlgCase{JwtAlg::kPs384, KeyType::kRsa2048},
                                           AlgCase{JwtAlg::kPs512, KeyType::kRsa2048}));

TEST(JwtEs512, RawSignatureIs132Bytes) {
  PrivateKey key = Unwrap(PrivateKey::Generate(KeyType::kEcP521));
  std::string token = Unwrap(SignJwt(key, "k", json{{"a", 1}}));
  EXPECT_EQ(Unwrap(Base64UrlDecode(token.substr(token.rfind('.') + 1))).size(), 132u);
}

TEST(Base64Url, RoundTripsAllLengths) {
  std::string data;
  for (int i = 0; i < 10; ++i) {
    EXPECT_EQ(Unwrap(Base64UrlDecode(Base64UrlEncode(data))), data);
    data.push_back(static_cast<char>(0xf0 + i));
  }
}

TEST(Base64Url, NonCanonicalTrailingBitsAreRefused) {
  // "QR" decodes to 'A' but the canonical encoding of 'A' is "QQ".
  EXPECT_EQ(Base64UrlDecode("QR").status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(Base64Url, PaddingIsRefused) {
  EXPECT_EQ(Base64UrlDecode("QQ==").status().code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace trellis::common
