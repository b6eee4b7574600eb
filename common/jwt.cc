// Compact JWS signing/verification for JWT-SVIDs and JWK conversion of EC and RSA keys.
#include "common/jwt.h"

#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/param_build.h>

#include "absl/status/status.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "common/openssl_util.h"
#include "common/status.h"

namespace trellis::common {
namespace {

using json = nlohmann::json;

absl::Status Malformed(const std::string& what) {
  return absl::InvalidArgumentError("JWT: " + what);
}
absl::Status Refused(const std::string& what) { return absl::UnauthenticatedError("JWT: " + what); }

struct AlgInfo {
  JwtAlg alg;
  const char* name;
  HashAlg hash;
  bool ec;
  bool pss;
};

constexpr AlgInfo kAlgs[] = {
    {JwtAlg::kRs256, "RS256", HashAlg::kSha256, false, false},
    {JwtAlg::kRs384, "RS384", HashAlg::kSha384, false, false},
    {JwtAlg::kRs512, "RS512", HashAlg::kSha512, false, false},
    {JwtAlg::kEs256, "ES256", HashAlg::kSha256, true, false},
    {JwtAlg::kEs384, "ES384", HashAlg::kSha384, true, false},
    {JwtAlg::kEs512, "ES512", HashAlg::kSha512, true, false},
    {JwtAlg::kPs256, "PS256", HashAlg::kSha256, false, true},
    {JwtAlg::kPs384, "PS384", HashAlg::kSha384, false, true},
    {JwtAlg::kPs512, "PS512", HashAlg::kSha512, false, true},
};

const AlgInfo& Info(JwtAlg alg) {
  for (const auto& a : kAlgs) {
    if (a.alg == alg) return a;
  }
  return kAlgs[0];
}

// Coordinate / scalar size in bytes of an EC key type.
size_t EcFieldBytes(KeyType type) {
  switch (type) {
    case KeyType::kEcP256:
      return 32;
    case KeyType::kEcP384:
      return 48;
    default:
      return 66;
  }
}

const char* CurveName(KeyType type) {
  switch (type) {
    case KeyType::kEcP256:
      return "P-256";
    case KeyType::kEcP384:
      return "P-384";
    default:
      return "P-521";
  }
}

absl::StatusOr<std::string> DerToRawEcdsa(std::string_view der, size_t n) {
  const unsigned char* p = reinterpret_cast<const unsigned char*>(der.data());
  EcdsaSigPtr sig(d2i_ECDSA_SIG(nullptr, &p, static_cast<long>(der.size())));
  if (!sig) return OpenSslError("decoding ECDSA signature");
  const BIGNUM* r = nullptr;
  const BIGNUM* s = nullptr;
  ECDSA_SIG_get0(sig.get(), &r, &s);
  std::string out(2 * n, '\0');
  auto* o = reinterpret_cast<unsigned char*>(out.data());
  if (BN_bn2binpad(r, o, static_cast<int>(n)) < 0 ||
      BN_bn2binpad(s, o + n, static_cast<int>(n)) < 0) {
    return OpenSslError("encoding ECDSA signature");
  }
  return out;
}

absl::StatusOr<std::string> RawEcdsaToDer(std::string_view raw, size_t n) {
  if (raw.size() != 2 * n) return Refused("ECDSA signature has the wrong length for the key");
  const auto* p = reinterpret_cast<const unsigned char*>(raw.data());
  BignumPtr r(BN_bin2bn(p, static_cast<int>(n), nullptr));
  BignumPtr s(BN_bin2bn(p + n, static_cast<int>(n), nullptr));
  EcdsaSigPtr sig(ECDSA_SIG_new());
  if (!r || !s || !sig || ECDSA_SIG_set0(sig.get(), r.get(), s.get()) != 1) {
    return OpenSslError("building ECDSA signature");
  }
  r.release();
  s.release();
  unsigned char* der = nullptr;
  int len = i2d_ECDSA_SIG(sig.get(), &der);
  if (len <= 0) return OpenSslError("encoding ECDSA signature");
  std::string out(reinterpret_cast<char*>(der), static_cast<size_t>(len));
  OPENSSL_free(der);
  return out;
}

absl::StatusOr<json> ParseJsonObject(std::string_view text, const std::string& what) {
  json j = json::parse(text.begin(), text.end(), nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) return Malformed(what + " is not valid JSON");
  if (!j.is_object()) return Malformed(what + " is not a JSON object");
  return j;
}

// NumericDate claims as seconds; out-of-range or non-numeric values are refused.
absl::StatusOr<absl::Time> NumericDate(const json& v, const std::string& name) {
  if (!v.is_number()) return Malformed(name + " claim is not a number");
  double d = v.get<double>();
  if (!(d > -1e13 && d < 1e13)) return Malformed(name + " claim is out of range");
  return absl::FromUnixSeconds(static_cast<int64_t>(d));
}

absl::StatusOr<std::string> B64Field(const json& jwk, const char* field) {
  auto it = jwk.find(field);
  if (it == jwk.end() || !it->is_string()) {
    return absl::InvalidArgumentError(absl::StrCat("JWK: missing or non-string \"", field, "\""));
  }
  auto decoded = Base64UrlDecode(it->get<std::string>());
  if (!decoded.ok()) {
    return absl::InvalidArgumentError(absl::StrCat("JWK: \"", field, "\" is not base64url"));
  }
  return decoded;
}

std::string BnBytes(const BIGNUM* bn) {
  std::string out(static_cast<size_t>(BN_num_bytes(bn)), '\0');
  BN_bn2bin(bn, reinterpret_cast<unsigned char*>(out.data()));
  return out;
}

}  // namespace

std::string JwtAlgName(JwtAlg alg) { return Info(alg).name; }

absl::StatusOr<JwtAlg> ParseJwtAlg(std::string_view name) {
  for (const auto& a : kAlgs) {
    if (name == a.name) return a.alg;
  }
  return Refused("algorithm \"" + std::string(name.substr(0, 32)) + "\" is not allowed");
}

JwtAlg DefaultJwtAlg(KeyType type) {
  switch (type) {
    case KeyType::kEcP256:
      return JwtAlg::kEs256;
    case KeyType::kEcP384:
      return JwtAlg::kEs384;
    case KeyType::kEcP521:
      return JwtAlg::kEs512;
    default:
      return JwtAlg::kRs256;
  }
}

absl::Status CheckJwtAlgMatchesKey(JwtAlg alg, KeyType type) {
  const AlgInfo& info = Info(alg);
  bool ok = info.ec ? DefaultJwtAlg(type) == alg : !IsEcKeyType(type);
  if (!ok) {
    return Refused(
        absl::StrCat("algorithm ", info.name, " does not match the ", KeyTypeName(type), " key"));
  }
  return absl::OkStatus();
}

std::string Base64UrlEncode(std::string_view data) {
  std::string out;
  absl::WebSafeBase64Escape(std::string(data), &out);
  return out;
}

absl::StatusOr<std::string> Base64UrlDecode(std::string_view data) {
  for (char c : data) {
    bool ok = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
              c == '-' || c == '_';
    if (!ok) return absl::InvalidArgumentError("base64url: invalid character");
  }
  if (data.size() % 4 == 1) return absl::InvalidArgumentError("base64url: bad length");
  std::string out;
  if (!absl::WebSafeBase64Unescape(std::string(data), &out)) {
    return absl::InvalidArgumentError("base64url: undecodable");
  }
  // Refuse encodings with non-zero padding bits: each value has one canonical form.
  if (Base64UrlEncode(out) != data) return absl::InvalidArgumentError("base64url: not canonical");
  return out;
}

absl::StatusOr<UnverifiedJwt> PeekJwt(std::string_view token) {
  size_t first = token.find('.');
  size_t second = first == std::string_view::npos ? first : token.find('.', first + 1);
  if (second == std::string_view::npos || token.find('.', second + 1) != std::string_view::npos) {
    return absl::InvalidArgumentError("token is not a compact JWS");
  }
  absl::StatusOr<std::string> payload = Base64UrlDecode(token.substr(first + 1, second - first - 1));
  if (!payload.ok()) return absl::InvalidArgumentError("token payload is not base64url");
  UnverifiedJwt out;
  out.claims = json::parse(*payload, nullptr, /*allow_exceptions=*/false);
  absl::StatusOr<std::string> header = Base64UrlDecode(token.substr(0, first));
  out.header = header.ok() ? json::parse(*header, nullptr, /*allow_exceptions=*/false)
                           : json(json::value_t::discarded);
  return out;
}

absl::StatusOr<std::string> SignJwt(const PrivateKey& key, const std::string& kid,
                                    const json& claims, std::optional<JwtAlg> alg) {
  if (kid.empty()) return absl::InvalidArgumentError("JWT: kid is required");
  JwtAlg a = alg.value_or(DefaultJwtAlg(key.type()));
  auto match = CheckJwtAlgMatchesKey(a, key.type());
  if (!match.ok()) return absl::InvalidArgumentError(std::string(match.message()));
  const AlgInfo& info = Info(a);
  json header = {{"alg", info.name}, {"kid", kid}, {"typ", "JWT"}};
  std::string signing_input;
  try {
    signing_input = Base64UrlEncode(header.dump()) + "." + Base64UrlEncode(claims.dump());
  } catch (const json::exception& e) {
    return absl::InvalidArgumentError(std::string("JWT: claims not serialisable: ") + e.what());
  }
  TRELLIS_ASSIGN_OR_RETURN(std::string sig, key.Sign(signing_input, info.hash, info.pss));
  if (info.ec) {
    TRELLIS_ASSIGN_OR_RETURN(sig, DerToRawEcdsa(sig, EcFieldBytes(key.type())));
  }
  return signing_input + "." + Base64UrlEncode(sig);
}

absl::StatusOr<std::string> SignJwtSvid(const PrivateKey& key, const std::string& kid,
                                        const SpiffeId& subject,
                                        const std::vector<std::string>& audience,
                                        absl::Time issued_at, absl::Time expiry,
                                        std::optional<JwtAlg> alg, const json& extra_claims) {
  if (audience.empty()) return absl::InvalidArgumentError("JWT-SVID: audience is required");
  if (subject.IsTrustDomainId()) {
    return absl::InvalidArgumentError("JWT-SVID: subject " + subject.String() + " has no path");
  }
  if (expiry <= issued_at) return absl::InvalidArgumentError("JWT-SVID: expiry not after iat");
  json claims = extra_claims.is_object() ? extra_claims : json::object();
  claims["sub"] = subject.String();
  claims["aud"] = audience;
  claims["exp"] = absl::ToUnixSeconds(expiry);
  claims["iat"] = absl::ToUnixSeconds(issued_at);
  return SignJwt(key, kid, claims, alg);
}

absl::StatusOr<JwtSvid> VerifyJwtSvid(std::string_view token,
                                      const std::map<std::string, PublicKey>& keys,
                                      const std::string& audience, absl::Time now,
                                      absl::Duration leeway) {
  std::vector<std::string_view> parts;
  for (size_t start = 0;;) {
    size_t dot = token.find('.', start);
    parts.push_back(token.substr(start, dot == std::string_view::npos ? dot : dot - start));
    if (dot == std::string_view::npos) break;
    start = dot + 1;
  }
  if (parts.size() != 3) return Malformed("token does not have three segments");
  auto header_bytes = Base64UrlDecode(parts[0]);
  if (!header_bytes.ok()) return Malformed("header is not base64url");
  auto payload_bytes = Base64UrlDecode(parts[1]);
  if (!payload_bytes.ok()) return Malformed("payload is not base64url");
  auto sig_bytes = Base64UrlDecode(parts[2]);
  if (!sig_bytes.ok()) return Malformed("signature is not base64url");
  TRELLIS_ASSIGN_OR_RETURN(json header, ParseJsonObject(*header_bytes, "header"));

  auto alg_it = header.find("alg");
  if (alg_it == header.end() || !alg_it->is_string()) return Malformed("header has no alg");
  TRELLIS_ASSIGN_OR_RETURN(JwtAlg alg, ParseJwtAlg(alg_it->get<std::string>()));
  auto typ_it = header.find("typ");
  if (typ_it != header.end()) {
    if (!typ_it->is_string()) return Malformed("typ is not a string");
    std::string typ = typ_it->get<std::string>();
    if (typ != "JWT" && typ != "JOSE")
      return Refused("typ \"" + typ.substr(0, 32) + "\" not allowed");
  }
  auto kid_it = header.find("kid");
  if (kid_it == header.end() || !kid_it->is_string() || kid_it->get<std::string>().empty()) {
    return Malformed("header has no kid");
  }
  std::string kid = kid_it->get<std::string>();
  auto key_it = keys.find(kid);
  if (key_it == keys.end()) return Refused("unknown kid \"" + kid.substr(0, 64) + "\"");
  const PublicKey& key = key_it->second;
  TRELLIS_RETURN_IF_ERROR(CheckJwtAlgMatchesKey(alg, key.type()));

  const AlgInfo& info = Info(alg);
  std::string sig = *sig_bytes;
  if (info.ec) {
    TRELLIS_ASSIGN_OR_RETURN(sig, RawEcdsaToDer(sig, EcFieldBytes(key.type())));
  }
  size_t signed_len = parts[0].size() + 1 + parts[1].size();
  if (!key.Verify(token.substr(0, signed_len), sig, info.hash, info.pss).ok()) {
    return Refused("signature does not verify");
  }

  TRELLIS_ASSIGN_OR_RETURN(json claims, ParseJsonObject(*payload_bytes, "claims"));
  auto exp_it = claims.find("exp");
  if (exp_it == claims.end()) return Malformed("exp claim missing");
  TRELLIS_ASSIGN_OR_RETURN(absl::Time exp, NumericDate(*exp_it, "exp"));
  std::optional<absl::Time> iat;
  auto iat_it = claims.find("iat");
  if (iat_it != claims.end()) {
    TRELLIS_ASSIGN_OR_RETURN(iat, NumericDate(*iat_it, "iat"));
  }
  auto sub_it = claims.find("sub");
  if (sub_it == claims.end() || !sub_it->is_string()) return Malformed("sub claim missing");
  auto sub = SpiffeId::Parse(sub_it->get<std::string>());
  if (!sub.ok()) return Malformed("sub is not a SPIFFE ID: " + std::string(sub.status().message()));
  if (sub->IsTrustDomainId()) return Malformed("sub has no path");
  std::vector<std::string> aud;
  auto aud_it = claims.find("aud");
  if (aud_it == claims.end()) return Malformed("aud claim missing");
  if (aud_it->is_string()) {
    aud.push_back(aud_it->get<std::string>());
  } else if (aud_it->is_array() && !aud_it->empty()) {
    for (const auto& a : *aud_it) {
      if (!a.is_string()) return Malformed("aud holds a non-string");
      aud.push_back(a.get<std::string>());
    }
  } else {
    return Malformed("aud is neither a string nor a non-empty array");
  }
  if (now > exp + leeway) return Refused("token has expired");
  if (std::find(aud.begin(), aud.end(), audience) == aud.end()) {
    return Refused("audience \"" + audience + "\" not among the token's audiences");
  }
  claims["aud"] = aud;
  return JwtSvid{*std::move(sub), std::move(aud), exp, iat, kid, alg, std::move(claims)};
}

// ---- JWK ----

absl::StatusOr<json> PublicKeyToJwk(const PublicKey& key, const std::string& kid) {
  json jwk;
  if (IsEcKeyType(key.type())) {
    unsigned char* point = nullptr;
    size_t len = EVP_PKEY_get1_encoded_public_key(key.pkey(), &point);
    if (len == 0) return OpenSslError("exporting EC point");
    std::string p(reinterpret_cast<char*>(point), len);
    OPENSSL_free(point);
    size_t n = EcFieldBytes(key.type());
    if (p.size() != 2 * n + 1 || p[0] != 0x04) return absl::InternalError("unexpected EC point");
    jwk = {{"kty", "EC"},
           {"crv", CurveName(key.type())},
           {"x", Base64UrlEncode(p.substr(1, n))},
           {"y", Base64UrlEncode(p.substr(1 + n, n))}};
  } else {
    BIGNUM* n = nullptr;
    BIGNUM* e = nullptr;
    if (EVP_PKEY_get_bn_param(key.pkey(), OSSL_PKEY_PARAM_RSA_N, &n) != 1 ||
        EVP_PKEY_get_bn_param(key.pkey(), OSSL_PKEY_PARAM_RSA_E, &e) != 1) {
      BN_free(n);
      return OpenSslError("exporting RSA key");
    }
    BignumPtr n_owned(n), e_owned(e);
    jwk = {{"kty", "RSA"}, {"n", Base64UrlEncode(BnBytes(n))}, {"e", Base64UrlEncode(BnBytes(e))}};
  }
  if (!kid.empty()) jwk["kid"] = kid;
  return jwk;
}

absl::StatusOr<PublicKey> PublicKeyFromJwk(const json& jwk) {
  if (!jwk.is_object()) return absl::InvalidArgumentError("JWK: not an object");
  auto kty_it = jwk.find("kty");
  if (kty_it == jwk.end() || !kty_it->is_string()) {
    return absl::InvalidArgumentError("JWK: missing \"kty\"");
  }
  std::string kty = kty_it->get<std::string>();
  EvpPkeyCtxPtr ctx(EVP_PKEY_CTX_new_from_name(nullptr, kty == "EC" ? "EC" : "RSA", nullptr));
  ParamBldPtr bld(OSSL_PARAM_BLD_new());
  if (!ctx || !bld) return OpenSslError("allocating key import");
  std::string point;
  BignumPtr n_bn, e_bn;
  if (kty == "EC") {
    auto crv_it = jwk.find("crv");
    if (crv_it == jwk.end() || !crv_it->is_string()) {
      return absl::InvalidArgumentError("JWK: missing \"crv\"");
    }
    std::string crv = crv_it->get<std::string>();
    const char* group;
    size_t size;
    if (crv == "P-256") {
      group = "prime256v1", size = 32;
    } else if (crv == "P-384") {
      group = "secp384r1", size = 48;
    } else if (crv == "P-521") {
      group = "secp521r1", size = 66;
    } else {
      return absl::InvalidArgumentError("JWK: unsupported crv \"" + crv.substr(0, 32) + "\"");
    }
    TRELLIS_ASSIGN_OR_RETURN(std::string x, B64Field(jwk, "x"));
    TRELLIS_ASSIGN_OR_RETURN(std::string y, B64Field(jwk, "y"));
    if (x.size() != size || y.size() != size) {
      return absl::InvalidArgumentError("JWK: x/y have the wrong length for " + crv);
    }
    point = "\x04" + x + y;
    if (OSSL_PARAM_BLD_push_utf8_string(bld.get(), OSSL_PKEY_PARAM_GROUP_NAME, group, 0) != 1 ||
        OSSL_PARAM_BLD_push_octet_string(bld.get(), OSSL_PKEY_PARAM_PUB_KEY, point.data(),
                                         point.size()) != 1) {
      return OpenSslError("building EC key parameters");
    }
  } else if (kty == "RSA") {
    TRELLIS_ASSIGN_OR_RETURN(std::string n, B64Field(jwk, "n"));
    TRELLIS_ASSIGN_OR_RETURN(std::string e, B64Field(jwk, "e"));
    if (n.empty() || e.empty() || n[0] == 0 || e[0] == 0) {
      return absl::InvalidArgumentError("JWK: RSA n/e empty or with leading zeros");
    }
    if (n.size() * 8 > static_cast<size_t>(kMaxRsaBits)) {
      return absl::InvalidArgumentError("JWK: RSA modulus larger than 8192 bits");
    }
    n_bn.reset(BN_bin2bn(reinterpret_cast<const unsigned char*>(n.data()),
                         static_cast<int>(n.size()), nullptr));
    e_bn.reset(BN_bin2bn(reinterpret_cast<const unsigned char*>(e.data()),
                         static_cast<int>(e.size()), nullptr));
    if (!n_bn || !e_bn ||
        OSSL_PARAM_BLD_push_BN(bld.get(), OSSL_PKEY_PARAM_RSA_N, n_bn.get()) != 1 ||
        OSSL_PARAM_BLD_push_BN(bld.get(), OSSL_PKEY_PARAM_RSA_E, e_bn.get()) != 1) {
      return OpenSslError("building RSA key parameters");
    }
  } else {
    return absl::InvalidArgumentError("JWK: unsupported kty \"" + kty.substr(0, 32) + "\"");
  }
  ParamPtr params(OSSL_PARAM_BLD_to_param(bld.get()));
  EVP_PKEY* raw = nullptr;
  if (!params || EVP_PKEY_fromdata_init(ctx.get()) != 1 ||
      EVP_PKEY_fromdata(ctx.get(), &raw, EVP_PKEY_PUBLIC_KEY, params.get()) != 1) {
    return OpenSslError(absl::StatusCode::kInvalidArgument, "JWK: invalid " + kty + " key");
  }
  EvpPkeyPtr pkey(raw);
  auto pub = PublicKey::SharePublicEvpPkey(pkey.get());
  if (!pub.ok()) return Annotate(pub.status(), "JWK");
  return pub;
}

absl::StatusOr<std::string> JwksToJson(const std::map<std::string, PublicKey>& keys) {
  json arr = json::array();
  for (const auto& [kid, key] : keys) {
    if (kid.empty()) return absl::InvalidArgumentError("JWKS: key without kid");
    TRELLIS_ASSIGN_OR_RETURN(json jwk, PublicKeyToJwk(key, kid));
    arr.push_back(std::move(jwk));
  }
  try {
    return json{{"keys", arr}}.dump();
  } catch (const json::exception& e) {
    return absl::InvalidArgumentError(std::string("JWKS: cannot serialise: ") + e.what());
  }
}

absl::StatusOr<std::map<std::string, PublicKey>> JwksFromJson(std::string_view text) {
  json doc = json::parse(text.begin(), text.end(), nullptr, false);
  if (doc.is_discarded() || !doc.is_object()) {
    return absl::InvalidArgumentError("JWKS: not a JSON object");
  }
  auto keys_it = doc.find("keys");
  if (keys_it == doc.end() || !keys_it->is_array()) {
    return absl::InvalidArgumentError("JWKS: \"keys\" missing or not an array");
  }
  std::map<std::string, PublicKey> out;
  size_t i = 0;
  for (const auto& jwk : *keys_it) {
    std::string where = absl::StrCat("JWKS keys[", i++, "]");
    if (!jwk.is_object()) return absl::InvalidArgumentError(where + ": not an object");
    auto kid_it = jwk.find("kid");
    if (kid_it == jwk.end() || !kid_it->is_string() || kid_it->get<std::string>().empty()) {
      return absl::InvalidArgumentError(where + ": missing kid");
    }
    auto key = PublicKeyFromJwk(jwk);
    if (!key.ok()) return Annotate(key.status(), where);
    if (!out.emplace(kid_it->get<std::string>(), *std::move(key)).second) {
      return absl::InvalidArgumentError(where + ": duplicate kid");
    }
  }
  return out;
}

}  // namespace trellis::common
