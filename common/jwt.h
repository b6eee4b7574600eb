// JWT-SVIDs (compact JWS, SPIFFE JWT-SVID profile) and JWK / JWKS encoding of public keys.
#pragma once

#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "common/keys.h"
#include "common/spiffe_id.h"

namespace trellis::common {

enum class JwtAlg { kRs256, kRs384, kRs512, kEs256, kEs384, kEs512, kPs256, kPs384, kPs512 };

std::string JwtAlgName(JwtAlg alg);
// Only the nine asymmetric algorithms of the JWT-SVID profile; "none", HS* and anything else
// are UNAUTHENTICATED (a token that asks for them is refused, not misread).
absl::StatusOr<JwtAlg> ParseJwtAlg(std::string_view name);
// ES256/ES384/ES512 for P-256/P-384/P-521, RS256 for RSA.
JwtAlg DefaultJwtAlg(KeyType type);
// OK when `alg` can be used with a key of `type`; UNAUTHENTICATED otherwise.
absl::Status CheckJwtAlgMatchesKey(JwtAlg alg, KeyType type);

// Unpadded base64url; Decode refuses padding, other alphabets and non-canonical trailing bits.
std::string Base64UrlEncode(std::string_view data);
absl::StatusOr<std::string> Base64UrlDecode(std::string_view data);

// A compact JWS read without checking its signature: only for routing (which trust domain's
// keys, which key id, what expiry to report for a token we signed ourselves), never for trust.
// A segment that is not base64url JSON leaves its member a discarded value (is_object() false).
struct UnverifiedJwt {
  nlohmann::json header;
  nlohmann::json claims;
};
// INVALID_ARGUMENT "token is not a compact JWS" unless there are exactly three segments,
// "token payload is not base64url" when the claims segment does not decode.
absl::StatusOr<UnverifiedJwt> PeekJwt(std::string_view token);

// Signs arbitrary claims; header is {"alg", "kid", "typ":"JWT"}. `alg` defaults from the key.
absl::StatusOr<std::string> SignJwt(const PrivateKey& key, const std::string& kid,
                                    const nlohmann::json& claims,
                                    std::optional<JwtAlg> alg = std::nullopt);

// Signs a JWT-SVID with claims sub, aud (always an array), exp and iat, plus `extra_claims`.
absl::StatusOr<std::string> SignJwtSvid(
    const PrivateKey& key, const std::string& kid, const SpiffeId& subject,
    const std::vector<std::string>& audience, absl::Time issued_at, absl::Time expiry,
    std::optional<JwtAlg> alg = std::nullopt,
    const nlohmann::json& extra_claims = nlohmann::json::object());

struct JwtSvid {
  SpiffeId subject;
  std::vector<std::string> audience;
  absl::Time expiry;
  std::optional<absl::Time> issued_at;
  std::string kid;
  JwtAlg alg;
  nlohmann::json claims;  // the full claim set, aud normalised to an array
};

// Verifies a JWT-SVID against `keys` (kid -> key), requiring `audience` among its aud.
// INVALID_ARGUMENT: not three base64url segments, bad JSON, header or claims not objects,
//   kid missing, exp missing or not a number, sub missing or not a SPIFFE ID with a path,
//   aud missing or not a string / array of strings.
// UNAUTHENTICATED: alg none, HS* or unknown; typ other than absent, "JWT" or "JOSE"; unknown
//   kid; alg not matching the key; bad signature; expired (beyond `leeway`); audience absent.
absl::StatusOr<JwtSvid> VerifyJwtSvid(std::string_view token,
                                      const std::map<std::string, PublicKey>& keys,
                                      const std::string& audience, absl::Time now,
                                      absl::Duration leeway = absl::ZeroDuration());

// JWK of a public key: EC {kty, crv, x, y} or RSA {kty, n, e}, plus "kid" when non-empty.
absl::StatusOr<nlohmann::json> PublicKeyToJwk(const PublicKey& key, const std::string& kid = "");
// Reads the key material of a JWK (ignores kid/use/x5c). INVALID_ARGUMENT naming the field.
absl::StatusOr<PublicKey> PublicKeyFromJwk(const nlohmann::json& jwk);

// A Workload API JWKS {"keys":[...]}; every key carries its kid.
absl::StatusOr<std::string> JwksToJson(const std::map<std::string, PublicKey>& keys);
absl::StatusOr<std::map<std::string, PublicKey>> JwksFromJson(std::string_view json);

}  // namespace trellis::common
