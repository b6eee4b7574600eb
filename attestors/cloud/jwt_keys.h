// Verification of the JWTs that cloud identity providers issue to their machines (GCP instance
// identity tokens, Azure managed identity tokens): the provider's signing keys fetched and
// cached, RS256/ES256 signatures, time, issuer and audience checks. Also the small HTTP client
// and agent path templates the cloud node attestors share.
#pragma once

#include <cstddef>
#include <map>
#include <memory>
#include <nlohmann/json_fwd.hpp>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/clock.h"
#include "common/keys.h"

namespace trellis::attestors::cloud_jwt {

// ---- HTTP ----

// How the cloud attestors reach HTTP(S) services.
struct HttpOptions {
  // PEM file of CA certificates trusted for https:// instead of the system store; for private
  // endpoints and tests.
  std::string ca_file;
  // Bounds connecting and each read or write.
  absl::Duration timeout = absl::Seconds(10);
  // Bounds the whole request, however slowly the peer sends its answer (headers included).
  absl::Duration deadline = absl::Seconds(30);
  // Answers larger than this are refused.
  size_t max_body_bytes = 1 << 20;
};

struct HttpResponse {
  int status = 0;
  std::string body;
};

// An http:// or https:// URL split for the client: "scheme://host[:port]" and the path with
// its query ("/" when absent). INVALID_ARGUMENT naming `what` for anything else (credentials,
// whitespace, fragments, other schemes, a bad port).
struct HttpUrl {
  std::string scheme_host_port;
  std::string path = "/";
  bool https = false;
};
absl::StatusOr<HttpUrl> ParseHttpUrl(std::string_view url, std::string_view what);

// The first 200 bytes of an error answer's body, control characters blanked, for messages.
std::string BodySnippet(std::string_view body);

// One request. UNAVAILABLE (naming the URL) when the service cannot be reached, the answer is
// too large or is not complete within `options.deadline`; any HTTP status is returned to the
// caller. `content_type` is sent with a body.
absl::StatusOr<HttpResponse> HttpRequest(
    const std::string& method, const std::string& url,
    const std::vector<std::pair<std::string, std::string>>& headers, const HttpOptions& options,
    const std::string& body = "", const std::string& content_type = "");

// ---- Signing keys ----

// A provider's signing keys by kid, read from `location`: an https:// URL or a file path.
// Accepted documents: a JWKS {"keys": [...]} (RSA and EC P-256/384/521 keys; entries of
// other key types or with "use" other than "sig" are skipped) and Google's map of kid to
// PEM certificate {"<kid>": "-----BEGIN CERTIFICATE-----..."}.
//
// The keys are fetched on first use, again when a token names a kid the cache lacks (at
// most once per `min_refresh_interval`, so random kids cannot make us hammer the provider),
// and when the set is older than `max_age` (so withdrawn keys go away). A failed refresh
// keeps the keys we had.
//
// No lock is held while fetching. Concurrent callers share one fetch: while it is in flight,
// a kid the cached keys know is answered at once, and other callers wait for it no longer
// than its request deadline.
class JwtKeyCache {
 public:
  struct Options {
    std::string location;
    std::string plugin;  // names errors: "gcp_iit"
    std::string what;    // the keys in errors: "Google's signing keys"
    HttpOptions http;
    absl::Duration min_refresh_interval = absl::Minutes(1);
    absl::Duration max_age = absl::Hours(1);
  };
  // INVALID_ARGUMENT when the location is neither an https:// URL nor a path.
  static absl::StatusOr<std::unique_ptr<JwtKeyCache>> Create(Options options,
                                                             const common::Clock& clock);

  // The key for `kid`. PERMISSION_DENIED "<plugin>: unknown key ID" when the provider does
  // not list it; UNAVAILABLE when the keys cannot be fetched or the document is malformed
  // and no keys are cached.
  absl::StatusOr<common::PublicKey> KeyFor(const std::string& kid);

  // Number of fetches attempted so far (for tests and metrics).
  int fetches() const;

 private:
  JwtKeyCache(Options options, const common::Clock& clock)
      : options_(std::move(options)), clock_(clock) {}
  absl::StatusOr<std::map<std::string, common::PublicKey>> Fetch() const;

  const Options options_;
  const common::Clock& clock_;
  bool NotFetching() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return !fetching_; }

  mutable absl::Mutex mu_;
  std::map<std::string, common::PublicKey> keys_ ABSL_GUARDED_BY(mu_);
  bool have_keys_ ABSL_GUARDED_BY(mu_) = false;
  absl::Time fetched_at_ ABSL_GUARDED_BY(mu_) = absl::InfinitePast();
  absl::Time attempted_at_ ABSL_GUARDED_BY(mu_) = absl::InfinitePast();
  int fetches_ ABSL_GUARDED_BY(mu_) = 0;
  // A fetch is in flight (its caller holds no lock); others wait for it to end.
  bool fetching_ ABSL_GUARDED_BY(mu_) = false;
  // Why the last fetch failed, for callers that waited for it.
  std::string last_error_ ABSL_GUARDED_BY(mu_);
};

// Parses a key document as described above. INVALID_ARGUMENT naming the defect; a document
// without a single usable key is refused.
absl::StatusOr<std::map<std::string, common::PublicKey>> ParseKeyDocument(std::string_view doc);

// ---- Tokens ----

struct JwtExpectations {
  std::string plugin;                // names errors: "azure_msi"
  std::vector<std::string> issuers;  // accepted "iss" values (exact match)
  std::string audience;              // must be "aud" or among it
  absl::Duration leeway = absl::Seconds(30);
  size_t max_token_bytes = 16 * 1024;
};

// Verifies a compact JWS signed RS256 (RSA keys of 2048..8192 bits) or ES256 (P-256) by a key
// of `keys`; requires exp and iat, honours nbf, then checks iss and aud. Returns the claims.
// INVALID_ARGUMENT for a token that is not a JWT (segments, base64url, JSON, header fields);
// PERMISSION_DENIED for any refusal (algorithm, unknown kid, signature, time, iss, aud);
// UNAVAILABLE when the keys cannot be had. Messages start with "<plugin>: ".
absl::StatusOr<nlohmann::json> VerifyJwt(std::string_view token, JwtKeyCache& keys,
                                         const JwtExpectations& expect, absl::Time now);

// The claims of a token read without verification: only to choose which keys to verify with.
// INVALID_ARGUMENT "<plugin>: ..." when the token is not a compact JWS with JSON claims.
absl::StatusOr<nlohmann::json> PeekClaims(std::string_view token, const std::string& plugin);

// ---- Agent IDs ----

// Expands SPIRE-style agent path templates: "{{ .Field }}" (spaces optional) replaced by
// `fields[Field]`; any other action is refused. The result, without leading slashes, is the
// part of the agent ID after "/spire/agent/". INVALID_ARGUMENT naming the plugin and the
// template for an unknown field or unbalanced braces; PERMISSION_DENIED naming the field when
// a value put in is empty, ".", ".." or holds a '/' (it would add or remove path segments).
absl::StatusOr<std::string> ExpandAgentPathTemplate(
    std::string_view tmpl, const std::map<std::string, std::string>& fields,
    const std::string& plugin);

}  // namespace trellis::attestors::cloud_jwt
