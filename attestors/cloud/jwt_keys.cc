// Cloud provider JWTs: key documents fetched and cached, signatures and claims checked.
#include "attestors/cloud/jwt_keys.h"

#include <httplib.h>
#include <openssl/bn.h>
#include <openssl/ecdsa.h>

#include <algorithm>
#include <atomic>
#include <cctype>
#include <functional>
#include <nlohmann/json.hpp>
#include <optional>
#include <thread>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "common/file_util.h"
#include "common/jwt.h"
#include "common/openssl_util.h"
#include "common/status.h"
#include "common/x509.h"

namespace trellis::attestors::cloud_jwt {
namespace {

using json = nlohmann::json;

std::string Shorten(std::string_view s, size_t n = 64) {
  return std::string(s.substr(0, std::min(n, s.size())));
}

std::string DescribeError(httplib::Error e) {
  switch (e) {
    case httplib::Error::Connection:
      return "cannot connect";
    case httplib::Error::ConnectionTimeout:
      return "connection timed out";
    case httplib::Error::Read:
      return "read failed or timed out";
    case httplib::Error::Write:
      return "write failed";
    case httplib::Error::SSLConnection:
      return "TLS handshake failed";
    case httplib::Error::SSLServerVerification:
      return "server certificate not trusted";
    case httplib::Error::Canceled:
      return "answer too large";
    default:
      return httplib::to_string(e);
  }
}

// Once `deadline` passes, calls `stop` (which shuts the request's socket down) until Finish(),
// so a peer that sends its answer a byte at a time, headers included, cannot hold the request
// past the deadline. The socket may not exist yet when the deadline passes (the connection or
// the handshake is still under way), hence the repeated calls.
class Watchdog {
 public:
  Watchdog(absl::Time deadline, std::function<void()> stop)
      : thread_([this, deadline, stop = std::move(stop)] {
          if (done_.WaitForNotificationWithDeadline(deadline)) return;
          fired_.store(true);
          do {
            stop();
          } while (!done_.WaitForNotificationWithTimeout(absl::Milliseconds(50)));
        }) {}
  ~Watchdog() { Finish(); }
  Watchdog(const Watchdog&) = delete;
  Watchdog& operator=(const Watchdog&) = delete;

  // Ends the watch; `stop` is not called after this returns.
  void Finish() {
    if (!thread_.joinable()) return;
    done_.Notify();
    thread_.join();
  }
  bool fired() const { return fired_.load(); }

 private:
  absl::Notification done_;
  std::atomic<bool> fired_{false};
  std::thread thread_;
};

// An ES256 signature in JWS form (r || s, 32 bytes each) as the DER OpenSSL verifies.
absl::StatusOr<std::string> RawP256SignatureToDer(std::string_view raw) {
  if (raw.size() != 64) return absl::InvalidArgumentError("ES256 signature is not 64 bytes");
  const auto* p = reinterpret_cast<const unsigned char*>(raw.data());
  common::BignumPtr r(BN_bin2bn(p, 32, nullptr));
  common::BignumPtr s(BN_bin2bn(p + 32, 32, nullptr));
  common::EcdsaSigPtr sig(ECDSA_SIG_new());
  if (!r || !s || !sig || ECDSA_SIG_set0(sig.get(), r.get(), s.get()) != 1) {
    return common::OpenSslError("ES256 signature");
  }
  r.release();
  s.release();
  unsigned char* der = nullptr;
  int len = i2d_ECDSA_SIG(sig.get(), &der);
  if (len <= 0) return common::OpenSslError("ES256 signature");
  std::string out(reinterpret_cast<char*>(der), static_cast<size_t>(len));
  OPENSSL_free(der);
  return out;
}

absl::StatusOr<absl::Time> NumericDate(const json& claims, const char* name, bool required,
                                       const std::string& plugin, bool* present) {
  *present = false;
  auto it = claims.find(name);
  if (it == claims.end()) {
    if (!required) return absl::InfinitePast();
    return absl::PermissionDeniedError(plugin + ": token has no \"" + name + "\" claim");
  }
  if (!it->is_number()) {
    return absl::PermissionDeniedError(plugin + ": token claim \"" + name + "\" is not a number");
  }
  double v = it->get<double>();
  if (!(v >= 0 && v < 1e11)) {
    return absl::PermissionDeniedError(plugin + ": token claim \"" + name + "\" is out of range");
  }
  *present = true;
  return absl::FromUnixSeconds(static_cast<int64_t>(v));
}

}  // namespace

// ---- HTTP ----

absl::StatusOr<HttpUrl> ParseHttpUrl(std::string_view url, std::string_view what) {
  auto bad = [&](const std::string& why) {
    return absl::InvalidArgumentError(std::string(what) + " \"" + Shorten(url, 200) + "\": " + why);
  };
  HttpUrl out;
  std::string_view rest;
  if (url.substr(0, 8) == "https://") {
    out.https = true;
    rest = url.substr(8);
  } else if (url.substr(0, 7) == "http://") {
    rest = url.substr(7);
  } else {
    return bad("not an http:// or https:// URL");
  }
  for (char c : url) {
    if (static_cast<unsigned char>(c) <= 0x20 || c == 0x7f) return bad("contains whitespace");
  }
  if (url.find('#') != std::string_view::npos) return bad("has a fragment");
  size_t slash = rest.find_first_of("/?");
  std::string_view authority = rest.substr(0, slash);
  if (slash != std::string_view::npos) {
    out.path = std::string(rest.substr(slash));
    if (out.path[0] == '?') out.path = "/" + out.path;
  }
  if (authority.empty()) return bad("has no host");
  if (authority.find('@') != std::string_view::npos) return bad("carries credentials");
  std::string_view host = authority;
  std::string_view port;
  if (authority[0] == '[') {
    size_t close = authority.find(']');
    if (close == std::string_view::npos) return bad("has an unterminated IPv6 address");
    host = authority.substr(0, close + 1);
    std::string_view after = authority.substr(close + 1);
    if (!after.empty()) {
      if (after[0] != ':') return bad("has junk after the IPv6 address");
      port = after.substr(1);
    }
  } else if (size_t colon = authority.rfind(':'); colon != std::string_view::npos) {
    host = authority.substr(0, colon);
    port = authority.substr(colon + 1);
  }
  if (host.empty()) return bad("has no host");
  if (!port.empty() || authority.back() == ':') {
    if (port.empty() || port.size() > 5 ||
        !std::all_of(port.begin(), port.end(), [](char c) { return c >= '0' && c <= '9'; }) ||
        std::stoi(std::string(port)) == 0 || std::stoi(std::string(port)) > 65535) {
      return bad("has a bad port");
    }
  }
  out.scheme_host_port = std::string(out.https ? "https://" : "http://") + std::string(authority);
  return out;
}

std::string BodySnippet(std::string_view body) {
  std::string s(body.substr(0, 200));
  std::replace_if(
      s.begin(), s.end(), [](char c) { return c < 0x20 || c == 0x7f; }, ' ');
  return s;
}

absl::StatusOr<HttpResponse> HttpRequest(
    const std::string& method, const std::string& url,
    const std::vector<std::pair<std::string, std::string>>& headers, const HttpOptions& options,
    const std::string& body, const std::string& content_type) {
  TRELLIS_ASSIGN_OR_RETURN(HttpUrl parsed, ParseHttpUrl(url, "URL"));
  httplib::Client client(parsed.scheme_host_port);
  if (!client.is_valid()) {
    return absl::InvalidArgumentError("cannot make an HTTP client for " + Shorten(url, 200));
  }
  const auto seconds =
      static_cast<time_t>(std::max<int64_t>(1, absl::ToInt64Seconds(options.timeout)));
  client.set_connection_timeout(seconds, 0);
  client.set_read_timeout(seconds, 0);
  client.set_write_timeout(seconds, 0);
  client.set_follow_location(false);
  if (parsed.https) {
    if (!options.ca_file.empty()) client.set_ca_cert_path(options.ca_file);
    client.enable_server_certificate_verification(true);
  }
  httplib::Request req;
  req.method = method;
  req.path = parsed.path;
  for (const auto& [k, v] : headers) req.headers.emplace(k, v);
  if (!body.empty() || method == "POST") {
    req.body = body;
    req.headers.emplace("Content-Type", content_type.empty() ? "text/plain" : content_type);
  }
  std::string received;
  bool too_large = false;
  bool late = false;
  const absl::Time deadline = absl::Now() + options.deadline;
  req.content_receiver = [&](const char* data, size_t len, uint64_t, uint64_t) {
    if (absl::Now() >= deadline) {
      late = true;
      return false;
    }
    if (received.size() + len > options.max_body_bytes) {
      too_large = true;
      return false;
    }
    received.append(data, len);
    return true;
  };
  req.progress = [&](uint64_t, uint64_t) {
    if (absl::Now() < deadline) return true;
    late = true;
    return false;
  };
  Watchdog watchdog(deadline, [&client] { client.stop(); });
  httplib::Result res = client.send(req);
  watchdog.Finish();
  if (late || (!res && (watchdog.fired() || absl::Now() >= deadline))) {
    return absl::UnavailableError(Shorten(url, 200) +
                                  " did not answer within the request deadline of " +
                                  absl::FormatDuration(options.deadline));
  }
  if (too_large) {
    return absl::UnavailableError(Shorten(url, 200) + " answered more than " +
                                  std::to_string(options.max_body_bytes) + " bytes");
  }
  if (!res) {
    return absl::UnavailableError("cannot reach " + Shorten(url, 200) + ": " +
                                  DescribeError(res.error()));
  }
  return HttpResponse{res->status, std::move(received)};
}

// ---- Signing keys ----

absl::StatusOr<std::map<std::string, common::PublicKey>> ParseKeyDocument(std::string_view doc) {
  json parsed = json::parse(doc.begin(), doc.end(), nullptr, /*allow_exceptions=*/false);
  if (parsed.is_discarded() || !parsed.is_object()) {
    return absl::InvalidArgumentError("key document is not a JSON object");
  }
  std::map<std::string, common::PublicKey> out;
  std::string first_problem;
  auto keys_it = parsed.find("keys");
  if (keys_it != parsed.end()) {
    if (!keys_it->is_array()) return absl::InvalidArgumentError("JWKS \"keys\" is not an array");
    size_t i = 0;
    for (const auto& jwk : *keys_it) {
      const std::string where = absl::StrCat("JWKS keys[", i++, "]");
      if (!jwk.is_object()) return absl::InvalidArgumentError(where + " is not an object");
      auto kid_it = jwk.find("kid");
      if (kid_it == jwk.end() || !kid_it->is_string() || kid_it->get<std::string>().empty()) {
        if (first_problem.empty()) first_problem = where + " has no kid";
        continue;
      }
      auto use_it = jwk.find("use");
      if (use_it != jwk.end() && (!use_it->is_string() || use_it->get<std::string>() != "sig")) {
        continue;  // an encryption key: never a signer
      }
      absl::StatusOr<common::PublicKey> key = common::PublicKeyFromJwk(jwk);
      if (!key.ok()) {
        if (first_problem.empty())
          first_problem = where + ": " + std::string(key.status().message());
        continue;
      }
      if (!out.emplace(kid_it->get<std::string>(), *std::move(key)).second) {
        return absl::InvalidArgumentError(where + " repeats kid \"" +
                                          Shorten(kid_it->get<std::string>()) + "\"");
      }
    }
  } else {
    // Google's kid -> PEM certificate map.
    for (const auto& [kid, value] : parsed.items()) {
      if (!value.is_string()) {
        return absl::InvalidArgumentError(
            "key document is neither a JWKS nor a map of key IDs to PEM certificates");
      }
      absl::StatusOr<common::Certificate> cert =
          common::Certificate::FromPem(value.get<std::string>());
      if (!cert.ok()) {
        return absl::InvalidArgumentError("certificate of kid \"" + Shorten(kid) +
                                          "\": " + std::string(cert.status().message()));
      }
      out.emplace(kid, cert->public_key());
    }
  }
  if (out.empty()) {
    return absl::InvalidArgumentError(first_problem.empty() ? "key document holds no keys"
                                                            : "no usable key: " + first_problem);
  }
  return out;
}

absl::StatusOr<std::unique_ptr<JwtKeyCache>> JwtKeyCache::Create(Options options,
                                                                 const common::Clock& clock) {
  if (options.location.empty()) {
    return absl::InvalidArgumentError(options.plugin + ": no location for " + options.what);
  }
  if (absl::StartsWith(options.location, "http://")) {
    return absl::InvalidArgumentError(options.plugin + ": " + options.what +
                                      " must be read over https:// or from a file, not " +
                                      Shorten(options.location, 200));
  }
  if (absl::StartsWith(options.location, "https://")) {
    auto url = ParseHttpUrl(options.location, options.plugin + " key URL");
    if (!url.ok()) return url.status();
  } else if (options.location.find("://") != std::string::npos) {
    return absl::InvalidArgumentError(
        options.plugin + ": " + options.what +
        " location is neither an https:// URL nor a file path: " + Shorten(options.location, 200));
  }
  return std::unique_ptr<JwtKeyCache>(new JwtKeyCache(std::move(options), clock));
}

absl::StatusOr<std::map<std::string, common::PublicKey>> JwtKeyCache::Fetch() const {
  const std::string& loc = options_.location;
  std::string doc;
  if (absl::StartsWith(loc, "https://")) {
    TRELLIS_ASSIGN_OR_RETURN(
        HttpResponse res, HttpRequest("GET", loc, {{"Accept", "application/json"}}, options_.http));
    if (res.status != 200) {
      return absl::UnavailableError(loc + " answered HTTP " + std::to_string(res.status));
    }
    doc = std::move(res.body);
  } else {
    absl::StatusOr<std::string> read = common::ReadFile(loc);
    if (!read.ok()) return absl::UnavailableError(std::string(read.status().message()));
    doc = *std::move(read);
  }
  absl::StatusOr<std::map<std::string, common::PublicKey>> keys = ParseKeyDocument(doc);
  if (!keys.ok()) {
    return absl::UnavailableError(
        loc + " did not serve usable keys: " + std::string(keys.status().message()));
  }
  return keys;
}

absl::StatusOr<common::PublicKey> JwtKeyCache::KeyFor(const std::string& kid) {
  auto lookup = [&]() ABSL_SHARED_LOCKS_REQUIRED(mu_) -> std::optional<common::PublicKey> {
    auto it = keys_.find(kid);
    if (it == keys_.end()) return std::nullopt;
    return it->second;
  };
  auto unknown = [&] {
    return absl::PermissionDeniedError(options_.plugin + ": token signed with unknown key ID \"" +
                                       Shorten(kid) + "\"");
  };
  {
    absl::MutexLock lock(&mu_);
    const absl::Time now = clock_.Now();
    if (have_keys_ && now - fetched_at_ < options_.max_age) {
      if (auto key = lookup()) return *std::move(key);
      if (now - attempted_at_ < options_.min_refresh_interval) return unknown();
    }
    if (fetching_) {
      // Another attestation is fetching. The keys we have serve meanwhile, as they would if
      // that fetch failed; otherwise wait for it, no longer than its request may take.
      if (auto key = lookup()) return *std::move(key);
      const absl::Duration bound = options_.http.deadline + absl::Seconds(1);
      if (!mu_.AwaitWithTimeout(absl::Condition(this, &JwtKeyCache::NotFetching), bound)) {
        return absl::UnavailableError(options_.plugin + ": " + options_.what +
                                      " are still being fetched after " +
                                      absl::FormatDuration(bound));
      }
      if (auto key = lookup()) return *std::move(key);
      if (have_keys_) return unknown();
      return absl::UnavailableError(options_.plugin + ": cannot get " + options_.what + ": " +
                                    last_error_);
    }
    if (have_keys_ && now - attempted_at_ < options_.min_refresh_interval) {
      // The set is stale but the last refresh failed moments ago: keep what we have.
      if (auto key = lookup()) return *std::move(key);
      return unknown();
    }
    if (!have_keys_ && now - attempted_at_ < options_.min_refresh_interval && fetches_ > 0) {
      return absl::UnavailableError(options_.plugin + ": " + options_.what +
                                    " are unavailable; the last fetch failed less than " +
                                    absl::FormatDuration(options_.min_refresh_interval) + " ago");
    }
    fetching_ = true;
    attempted_at_ = now;
    ++fetches_;
  }
  // No lock is held here: other attestations go on with the keys we have.
  absl::StatusOr<std::map<std::string, common::PublicKey>> fetched = Fetch();
  absl::MutexLock lock(&mu_);
  fetching_ = false;
  if (!fetched.ok()) {
    last_error_ = std::string(fetched.status().message());
    if (auto key = lookup()) return *std::move(key);
    return absl::UnavailableError(options_.plugin + ": cannot get " + options_.what + ": " +
                                  last_error_);
  }
  keys_ = *std::move(fetched);
  have_keys_ = true;
  fetched_at_ = clock_.Now();
  if (auto key = lookup()) return *std::move(key);
  return unknown();
}

int JwtKeyCache::fetches() const {
  absl::MutexLock lock(&mu_);
  return fetches_;
}

// ---- Tokens ----

absl::StatusOr<json> PeekClaims(std::string_view token, const std::string& plugin) {
  absl::StatusOr<common::UnverifiedJwt> peeked = common::PeekJwt(token);
  if (!peeked.ok()) {
    return absl::InvalidArgumentError(plugin + ": " + std::string(peeked.status().message()));
  }
  if (!peeked->claims.is_object()) {
    return absl::InvalidArgumentError(plugin + ": token claims are not a JSON object");
  }
  return std::move(peeked->claims);
}

absl::StatusOr<json> VerifyJwt(std::string_view token, JwtKeyCache& keys,
                               const JwtExpectations& expect, absl::Time now) {
  const std::string& plugin = expect.plugin;
  auto malformed = [&](const std::string& why) {
    return absl::InvalidArgumentError(plugin + ": " + why);
  };
  auto denied = [&](const std::string& why) {
    return absl::PermissionDeniedError(plugin + ": " + why);
  };
  if (token.empty()) return malformed("empty token");
  if (token.size() > expect.max_token_bytes) return malformed("token is too large");
  const size_t first = token.find('.');
  const size_t second = first == std::string_view::npos ? first : token.find('.', first + 1);
  if (second == std::string_view::npos || token.find('.', second + 1) != std::string_view::npos) {
    return malformed("token is not a compact JWS (three dot-separated parts)");
  }
  auto header_bytes = common::Base64UrlDecode(token.substr(0, first));
  if (!header_bytes.ok()) return malformed("token header is not base64url");
  auto claims_bytes = common::Base64UrlDecode(token.substr(first + 1, second - first - 1));
  if (!claims_bytes.ok()) return malformed("token claims are not base64url");
  auto sig = common::Base64UrlDecode(token.substr(second + 1));
  if (!sig.ok()) return malformed("token signature is not base64url");
  json header = json::parse(*header_bytes, nullptr, /*allow_exceptions=*/false);
  if (header.is_discarded() || !header.is_object()) {
    return malformed("token header is not a JSON object");
  }
  json claims = json::parse(*claims_bytes, nullptr, /*allow_exceptions=*/false);
  if (claims.is_discarded() || !claims.is_object()) {
    return malformed("token claims are not a JSON object");
  }
  auto alg_it = header.find("alg");
  if (alg_it == header.end() || !alg_it->is_string()) return malformed("token header has no alg");
  const std::string alg = alg_it->get<std::string>();
  if (alg != "RS256" && alg != "ES256") {
    return denied("token algorithm \"" + Shorten(alg, 16) + "\" is not accepted (RS256, ES256)");
  }
  auto kid_it = header.find("kid");
  if (kid_it == header.end() || !kid_it->is_string() || kid_it->get<std::string>().empty()) {
    return malformed("token header has no kid");
  }
  TRELLIS_ASSIGN_OR_RETURN(common::PublicKey key, keys.KeyFor(kid_it->get<std::string>()));
  std::string signature = *std::move(sig);
  if (alg == "RS256") {
    if (common::IsEcKeyType(key.type())) return denied("token is RS256 but its key is not RSA");
    const int bits = key.bits();
    if (bits < common::kMinRsaBits || bits > common::kMaxRsaBits) {
      return denied("signing key of " + std::to_string(bits) + " bits is outside 2048..8192");
    }
  } else {
    if (key.type() != common::KeyType::kEcP256) {
      return denied("token is ES256 but its key is not P-256");
    }
    auto der = RawP256SignatureToDer(signature);
    if (!der.ok()) return denied("token signature does not verify");
    signature = *std::move(der);
  }
  if (!key.Verify(token.substr(0, second), signature, common::HashAlg::kSha256).ok()) {
    common::ClearOpenSslErrors();
    return denied("token signature does not verify");
  }

  bool present = false;
  TRELLIS_ASSIGN_OR_RETURN(absl::Time exp, NumericDate(claims, "exp", true, plugin, &present));
  TRELLIS_ASSIGN_OR_RETURN(absl::Time iat, NumericDate(claims, "iat", true, plugin, &present));
  TRELLIS_ASSIGN_OR_RETURN(absl::Time nbf, NumericDate(claims, "nbf", false, plugin, &present));
  if (now >= exp + expect.leeway) {
    return denied("token expired at " +
                  absl::FormatTime(absl::RFC3339_sec, exp, absl::UTCTimeZone()));
  }
  if (present && now + expect.leeway < nbf) {
    return denied("token is not valid before " +
                  absl::FormatTime(absl::RFC3339_sec, nbf, absl::UTCTimeZone()));
  }
  if (now + expect.leeway < iat) return denied("token is issued in the future");

  auto iss_it = claims.find("iss");
  if (iss_it == claims.end() || !iss_it->is_string()) return denied("token has no issuer");
  const std::string iss = iss_it->get<std::string>();
  if (std::find(expect.issuers.begin(), expect.issuers.end(), iss) == expect.issuers.end()) {
    return denied("token issuer \"" + Shorten(iss, 128) + "\" is not the expected one");
  }
  auto aud_it = claims.find("aud");
  bool aud_ok = false;
  if (aud_it != claims.end() && aud_it->is_string()) {
    aud_ok = aud_it->get<std::string>() == expect.audience;
  } else if (aud_it != claims.end() && aud_it->is_array()) {
    for (const auto& a : *aud_it) aud_ok = aud_ok || (a.is_string() && a == expect.audience);
  }
  if (!aud_ok) return denied("token audience is not \"" + expect.audience + "\"");
  return claims;
}

// ---- Agent IDs ----

absl::StatusOr<std::string> ExpandAgentPathTemplate(
    std::string_view tmpl, const std::map<std::string, std::string>& fields,
    const std::string& plugin) {
  auto bad = [&](const std::string& why) {
    return absl::InvalidArgumentError(plugin + ": agent_path_template \"" + Shorten(tmpl, 200) +
                                      "\": " + why);
  };
  std::string out;
  size_t pos = 0;
  while (pos < tmpl.size()) {
    size_t open = tmpl.find("{{", pos);
    if (open == std::string_view::npos) {
      if (tmpl.find("}}", pos) != std::string_view::npos) return bad("unbalanced \"}}\"");
      out.append(tmpl.substr(pos));
      break;
    }
    if (tmpl.substr(pos, open - pos).find("}}") != std::string_view::npos) {
      return bad("unbalanced \"}}\"");
    }
    out.append(tmpl.substr(pos, open - pos));
    size_t close = tmpl.find("}}", open + 2);
    if (close == std::string_view::npos) return bad("unterminated \"{{\"");
    std::string_view action = tmpl.substr(open + 2, close - open - 2);
    while (!action.empty() && action.front() == ' ') action.remove_prefix(1);
    while (!action.empty() && action.back() == ' ') action.remove_suffix(1);
    if (action.empty() || action[0] != '.') {
      return bad("only {{ .Field }} placeholders are supported");
    }
    auto it = fields.find(std::string(action.substr(1)));
    if (it == fields.end()) {
      std::string known;
      for (const auto& [name, value] : fields)
        absl::StrAppend(&known, known.empty() ? "" : ", ", name);
      return bad("unknown field \"" + Shorten(action.substr(1), 32) + "\" (known: " + known + ")");
    }
    const std::string& value = it->second;
    if (value.empty() || value == "." || value == ".." || value.find('/') != std::string::npos) {
      // A value must stay inside its path segment: a '/' would add segments, "." and ".."
      // would name others.
      return absl::PermissionDeniedError(
          plugin + ": agent_path_template field \"" + Shorten(action.substr(1), 32) + "\" has " +
          (value.empty() ? std::string("an empty value")
                         : "the value \"" + Shorten(value) + "\", which is not a path segment"));
    }
    out.append(value);
    pos = close + 2;
  }
  size_t start = out.find_first_not_of('/');
  if (start == std::string::npos) return bad("expands to an empty path");
  return out.substr(start);
}

}  // namespace trellis::attestors::cloud_jwt
