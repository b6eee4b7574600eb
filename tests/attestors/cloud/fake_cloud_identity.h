// Fake cloud identity services on 127.0.0.1 for the cloud node attestor tests: key endpoints
// (JWKS or Google's PEM map) over HTTPS, the GCE metadata server, the Azure Instance Metadata
// Service, and Google's OAuth token endpoint with the Compute Engine instances API. Paths,
// headers and JSON follow the real services; every key and certificate is made in the test.
#pragma once

#include <httplib.h>
#include <openssl/evp.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include <atomic>
#include <functional>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_split.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "common/clock.h"
#include "common/jwt.h"
#include "common/keys.h"
#include "common/x509.h"
#include "gtest/gtest.h"
#include "tests/testutil/temp_dir.h"

namespace trellis::attestors::cloudtest {

using json = nlohmann::json;

template <typename T>
T Must(absl::StatusOr<T> v) {
  EXPECT_TRUE(v.ok()) << v.status();
  return *std::move(v);
}

// RSA keys are slow to make: each test binary makes a few once and shares them.
inline const common::PrivateKey& RsaKey(int index) {
  static absl::Mutex mu(absl::kConstInit);
  static auto* keys = new std::map<int, common::PrivateKey>();
  absl::MutexLock lock(&mu);
  auto it = keys->find(index);
  if (it == keys->end()) {
    it = keys->emplace(index, Must(common::PrivateKey::Generate(common::KeyType::kRsa2048))).first;
  }
  return it->second;
}

// A provider signing key: kid and private key.
struct SigningKey {
  std::string kid;
  common::PrivateKey key;
  json Jwk() const {
    json jwk = Must(common::PublicKeyToJwk(key.public_key(), kid));
    jwk["use"] = "sig";
    jwk["alg"] = IsEcKeyType(key.type()) ? "ES256" : "RS256";
    return jwk;
  }
  std::string Sign(const json& claims) const { return Must(common::SignJwt(key, kid, claims)); }
};

inline std::string Jwks(const std::vector<const SigningKey*>& keys) {
  json arr = json::array();
  for (const SigningKey* k : keys) arr.push_back(k->Jwk());
  return json{{"keys", arr}}.dump();
}

// A self-signed certificate for `key`, valid around now, as PEM.
inline std::string CertificatePem(const common::PrivateKey& key, const std::string& cn,
                                  bool ca = true, const std::string& san = "",
                                  const common::PrivateKey* issuer_key = nullptr,
                                  X509* issuer = nullptr) {
  X509* x = X509_new();
  X509_set_version(x, 2);
  ASN1_INTEGER_set(X509_get_serialNumber(x), static_cast<long>(absl::ToUnixMicros(absl::Now())));
  X509_NAME* name = X509_NAME_new();
  X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_UTF8,
                             reinterpret_cast<const unsigned char*>(cn.c_str()), -1, -1, 0);
  X509_set_subject_name(x, name);
  X509_set_issuer_name(x, issuer ? X509_get_subject_name(issuer) : name);
  X509_NAME_free(name);
  X509_gmtime_adj(X509_getm_notBefore(x), -3600);
  X509_gmtime_adj(X509_getm_notAfter(x), 24 * 3600);
  X509_set_pubkey(x, key.pkey());
  X509V3_CTX ctx;
  X509V3_set_ctx(&ctx, issuer ? issuer : x, x, nullptr, nullptr, 0);
  auto add = [&](int nid, const std::string& value) {
    X509_EXTENSION* ext = X509V3_EXT_conf_nid(nullptr, &ctx, nid, value.c_str());
    EXPECT_NE(ext, nullptr) << value;
    X509_add_ext(x, ext, -1);
    X509_EXTENSION_free(ext);
  };
  add(NID_basic_constraints, ca ? "critical,CA:TRUE" : "CA:FALSE");
  add(NID_key_usage, ca ? "critical,keyCertSign,cRLSign" : "critical,digitalSignature");
  if (!san.empty()) add(NID_subject_alt_name, san);
  X509_sign(x, issuer_key ? issuer_key->pkey() : key.pkey(), EVP_sha256());
  unsigned char* der = nullptr;
  int len = i2d_X509(x, &der);
  std::string der_str(reinterpret_cast<char*>(der), static_cast<size_t>(len));
  OPENSSL_free(der);
  X509_free(x);
  return Must(common::Certificate::FromDer(der_str)).ToPem();
}

// A CA and a server certificate for 127.0.0.1, as files; clients trust ca_file().
class TestTls {
 public:
  TestTls() : dir_("cloud-tls") {
    common::PrivateKey ca_key = Must(common::PrivateKey::Generate());
    std::string ca_pem = CertificatePem(ca_key, "Cloud Test CA");
    common::Certificate ca = Must(common::Certificate::FromPem(ca_pem));
    common::PrivateKey leaf_key = Must(common::PrivateKey::Generate());
    std::string leaf_pem =
        CertificatePem(leaf_key, "127.0.0.1", false, "IP:127.0.0.1", &ca_key, ca.x509());
    ca_file_ = dir_.Write("ca.pem", ca_pem);
    cert_file_ = dir_.Write("server.pem", leaf_pem);
    key_file_ = dir_.Write("server.key", std::string(Must(leaf_key.ToPem()).view()));
  }
  const std::string& ca_file() const { return ca_file_; }
  const std::string& cert_file() const { return cert_file_; }
  const std::string& key_file() const { return key_file_; }
  const testutil::TempDir& dir() const { return dir_; }

 private:
  testutil::TempDir dir_;
  std::string ca_file_, cert_file_, key_file_;
};

// A loopback HTTP server (HTTPS when given TLS) running `routes` on a port of its own.
class FakeServer {
 public:
  FakeServer(const TestTls* tls, const std::function<void(httplib::Server&)>& routes) {
    if (tls != nullptr) {
      server_ =
          std::make_unique<httplib::SSLServer>(tls->cert_file().c_str(), tls->key_file().c_str());
    } else {
      server_ = std::make_unique<httplib::Server>();
    }
    https_ = tls != nullptr;
    EXPECT_TRUE(server_->is_valid());
    routes(*server_);
    port_ = server_->bind_to_any_port("127.0.0.1");
    EXPECT_GT(port_, 0);
    // The socket listens already: requests wait in the backlog until the loop accepts them.
    thread_ = std::thread([this] { server_->listen_after_bind(); });
  }
  ~FakeServer() { Stop(); }
  FakeServer(const FakeServer&) = delete;
  FakeServer& operator=(const FakeServer&) = delete;

  // Stops answering: later connections are refused.
  void Stop() {
    if (!thread_.joinable()) return;
    // stop() is a no-op until the loop runs; wait for it so the join cannot hang.
    while (!server_->is_running()) std::this_thread::yield();
    server_->stop();
    thread_.join();
  }
  int port() const { return port_; }
  std::string base_url() const {
    return std::string(https_ ? "https" : "http") + "://127.0.0.1:" + std::to_string(port_);
  }

 private:
  std::unique_ptr<httplib::Server> server_;
  std::thread thread_;
  int port_ = 0;
  bool https_ = false;
};

// How long a held request waits for Release() at most, so a test that forgets cannot hang.
inline constexpr absl::Duration kMaxHold = absl::Seconds(60);

// Serves a key document (JWKS or PEM map) at every path over HTTPS.
class FakeKeyServer {
 public:
  explicit FakeKeyServer(const TestTls& tls)
      : server_(&tls, [this](httplib::Server& s) {
          s.Get(R"(/.*)", [this](const httplib::Request& req, httplib::Response& res) {
            absl::MutexLock lock(&mu_);
            paths_.push_back(req.path);
            if (hold_ > 0) {
              // A stuck endpoint: no byte of an answer until released.
              --hold_;
              mu_.AwaitWithTimeout(absl::Condition(&released_), kMaxHold);
            }
            res.status = status_;
            res.set_content(body_, "application/json");
          });
        }) {}
  ~FakeKeyServer() { Release(); }
  // The next `n` requests get no answer until Release().
  void HoldNext(int n) {
    absl::MutexLock lock(&mu_);
    hold_ = n;
    released_ = false;
  }
  void Release() {
    absl::MutexLock lock(&mu_);
    released_ = true;
  }
  // Waits (at most 30 s) until `n` requests have arrived; false if they did not.
  bool AwaitRequests(int n) const {
    absl::MutexLock lock(&mu_);
    auto arrived = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      return static_cast<int>(paths_.size()) >= n;
    };
    return mu_.AwaitWithTimeout(absl::Condition(&arrived), absl::Seconds(30));
  }
  void SetKeys(const std::vector<const SigningKey*>& keys) { SetBody(Jwks(keys)); }
  void SetBody(std::string body, int status = 200) {
    absl::MutexLock lock(&mu_);
    body_ = std::move(body);
    status_ = status;
  }
  int requests() const {
    absl::MutexLock lock(&mu_);
    return static_cast<int>(paths_.size());
  }
  std::vector<std::string> paths() const {
    absl::MutexLock lock(&mu_);
    return paths_;
  }
  std::string Url(const std::string& path) const { return server_.base_url() + path; }
  void Stop() { server_.Stop(); }

 private:
  mutable absl::Mutex mu_;
  std::string body_ ABSL_GUARDED_BY(mu_) = R"({"keys":[]})";
  int status_ ABSL_GUARDED_BY(mu_) = 200;
  std::vector<std::string> paths_ ABSL_GUARDED_BY(mu_);
  int hold_ ABSL_GUARDED_BY(mu_) = 0;
  bool released_ ABSL_GUARDED_BY(mu_) = false;
  FakeServer server_;
};

// The GCE metadata server's identity endpoint (plain HTTP, like the real one). Answers 403
// without "Metadata-Flavor: Google", 400 without an audience.
class FakeGcpMetadataServer {
 public:
  FakeGcpMetadataServer()
      : server_(nullptr, [this](httplib::Server& s) {
          s.Get(R"(/computeMetadata/v1/instance/service-accounts/([^/]+)/identity)",
                [this](const httplib::Request& req, httplib::Response& res) {
                  absl::MutexLock lock(&mu_);
                  res.set_header("Metadata-Flavor", "Google");
                  if (req.get_header_value("Metadata-Flavor") != "Google") {
                    res.status = 403;
                    res.set_content("Missing Metadata-Flavor:Google header.", "text/plain");
                    return;
                  }
                  if (!req.has_param("audience") || req.get_param_value("audience").empty()) {
                    res.status = 400;
                    res.set_content("non-empty audience parameter required", "text/plain");
                    return;
                  }
                  account_ = req.matches[1];
                  audience_ = req.get_param_value("audience");
                  format_ = req.get_param_value("format");
                  res.status = status_;
                  res.set_content(token_, "text/html");
                });
        }) {}
  void SetToken(std::string token, int status = 200) {
    absl::MutexLock lock(&mu_);
    token_ = std::move(token);
    status_ = status;
  }
  std::string account() const {
    absl::MutexLock lock(&mu_);
    return account_;
  }
  std::string audience() const {
    absl::MutexLock lock(&mu_);
    return audience_;
  }
  std::string format() const {
    absl::MutexLock lock(&mu_);
    return format_;
  }
  // What identity_token_host is set to.
  std::string host() const { return "127.0.0.1:" + std::to_string(server_.port()); }
  std::string base_url() const { return server_.base_url(); }
  void Stop() { server_.Stop(); }

 private:
  mutable absl::Mutex mu_;
  std::string token_ ABSL_GUARDED_BY(mu_);
  int status_ ABSL_GUARDED_BY(mu_) = 200;
  std::string account_ ABSL_GUARDED_BY(mu_);
  std::string audience_ ABSL_GUARDED_BY(mu_);
  std::string format_ ABSL_GUARDED_BY(mu_);
  FakeServer server_;
};

// xms_mirid of a VM's system-assigned managed identity (the VM's own resource ID) and of a
// user-assigned one, as IMDS tokens carry them (IMDS writes "resourcegroups" in lowercase).
inline std::string SystemAssignedMirid(const std::string& subscription, const std::string& group,
                                       const std::string& vm) {
  return "/subscriptions/" + subscription + "/resourcegroups/" + group +
         "/providers/Microsoft.Compute/virtualMachines/" + vm;
}
inline std::string UserAssignedMirid(const std::string& subscription, const std::string& group,
                                     const std::string& identity) {
  return "/subscriptions/" + subscription + "/resourcegroups/" + group +
         "/providers/Microsoft.ManagedIdentity/userAssignedIdentities/" + identity;
}

// The claims of a managed identity access token (v1.0) as Entra ID issues it through IMDS.
inline json ManagedIdentityClaims(const std::string& tenant, const std::string& principal,
                                  const std::string& mirid, const std::string& resource,
                                  absl::Time now) {
  const int64_t t = absl::ToUnixSeconds(now);
  return {{"aud", resource},
          {"iss", "https://sts.windows.net/" + tenant + "/"},
          {"iat", t - 5},
          {"nbf", t - 5},
          {"exp", t + 86400},
          {"aio", "E2ZgYJg"},
          {"appid", "11111111-2222-3333-4444-555555555555"},
          {"appidacr", "2"},
          {"idp", "https://sts.windows.net/" + tenant + "/"},
          {"idtyp", "app"},
          {"oid", principal},
          {"rh", "0.AAAA"},
          {"sub", principal},
          {"tid", tenant},
          {"uti", "AbCdEf"},
          {"ver", "1.0"},
          {"xms_mirid", mirid}};
}

// Azure IMDS's managed identity token endpoint. Answers 400 without "Metadata: true", an
// api-version or a resource, as the real service does. Serves the token set with SetToken,
// or, after MintTokens, a token signed for each request with the requested resource as its
// audience and the managed identity's claims (xms_mirid among them).
class FakeAzureImds {
 public:
  FakeAzureImds()
      : server_(nullptr, [this](httplib::Server& s) {
          s.Get("/metadata/identity/oauth2/token", [this](const httplib::Request& req,
                                                          httplib::Response& res) {
            absl::MutexLock lock(&mu_);
            auto error = [&](const std::string& code, const std::string& description) {
              res.status = 400;
              res.set_content(json{{"error", code}, {"error_description", description}}.dump(),
                              "application/json");
            };
            if (req.get_header_value("Metadata") != "true") {
              return error("invalid_request", "Required metadata header not specified");
            }
            if (req.get_param_value("api-version").empty()) {
              return error("invalid_request", "Required query variable 'api-version' is missing");
            }
            if (req.get_param_value("resource").empty()) {
              return error("invalid_request", "Required query variable 'resource' is missing");
            }
            api_version_ = req.get_param_value("api-version");
            resource_ = req.get_param_value("resource");
            res.status = status_;
            if (!raw_body_.empty()) {
              res.set_content(raw_body_, "application/json");
              return;
            }
            const int64_t now = absl::ToUnixSeconds(absl::Now());
            std::string token = token_;
            if (minter_ != nullptr) {
              token = minter_->Sign(
                  ManagedIdentityClaims(tenant_, principal_, mirid_, resource_, absl::Now()));
            }
            res.set_content(json{{"access_token", token},
                                 {"client_id", "11111111-2222-3333-4444-555555555555"},
                                 {"expires_in", "86399"},
                                 {"expires_on", std::to_string(now + 86399)},
                                 {"ext_expires_in", "86399"},
                                 {"not_before", std::to_string(now)},
                                 {"resource", resource_},
                                 {"token_type", "Bearer"}}
                                .dump(),
                            "application/json");
          });
        }) {}
  void SetToken(std::string token, int status = 200) {
    absl::MutexLock lock(&mu_);
    token_ = std::move(token);
    status_ = status;
  }
  // Signs a token with `key` (kept by the caller) for each request, for the managed identity
  // `principal` of `tenant` whose resource ID is `mirid`.
  void MintTokens(const SigningKey* key, std::string tenant, std::string principal,
                  std::string mirid) {
    absl::MutexLock lock(&mu_);
    minter_ = key;
    tenant_ = std::move(tenant);
    principal_ = std::move(principal);
    mirid_ = std::move(mirid);
  }
  // Answers `body` verbatim instead of the token document.
  void SetRawBody(std::string body) {
    absl::MutexLock lock(&mu_);
    raw_body_ = std::move(body);
  }
  std::string resource() const {
    absl::MutexLock lock(&mu_);
    return resource_;
  }
  std::string api_version() const {
    absl::MutexLock lock(&mu_);
    return api_version_;
  }
  std::string base_url() const { return server_.base_url(); }
  void Stop() { server_.Stop(); }

 private:
  mutable absl::Mutex mu_;
  std::string token_ ABSL_GUARDED_BY(mu_);
  std::string raw_body_ ABSL_GUARDED_BY(mu_);
  const SigningKey* minter_ ABSL_GUARDED_BY(mu_) = nullptr;
  std::string tenant_ ABSL_GUARDED_BY(mu_);
  std::string principal_ ABSL_GUARDED_BY(mu_);
  std::string mirid_ ABSL_GUARDED_BY(mu_);
  int status_ ABSL_GUARDED_BY(mu_) = 200;
  std::string resource_ ABSL_GUARDED_BY(mu_);
  std::string api_version_ ABSL_GUARDED_BY(mu_);
  FakeServer server_;
};

inline std::string PercentDecode(const std::string& s) {
  std::string out;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '%' && i + 2 < s.size()) {
      out.push_back(static_cast<char>(std::stoi(s.substr(i + 1, 2), nullptr, 16)));
      i += 2;
    } else if (s[i] == '+') {
      out.push_back(' ');
    } else {
      out.push_back(s[i]);
    }
  }
  return out;
}

// Google's OAuth 2.0 token endpoint (JWT bearer grant, assertion checked against the service
// account's public key) and the Compute Engine API's instances.get, over HTTPS.
class FakeGoogleApis {
 public:
  FakeGoogleApis(const TestTls& tls, const common::PrivateKey& account_key,
                 std::string account_email)
      : account_key_(account_key.public_key()),
        account_email_(std::move(account_email)),
        server_(&tls, [this](httplib::Server& s) {
          s.Post("/token", [this](const httplib::Request& req, httplib::Response& res) {
            HandleToken(req, res);
          });
          s.Get(R"(/compute/v1/projects/([^/]+)/zones/([^/]+)/instances/([^/]+))",
                [this](const httplib::Request& req, httplib::Response& res) {
                  HandleInstance(req, res);
                });
        }) {}

  void SetInstance(const std::string& project, const std::string& zone, const std::string& name,
                   json instance) {
    absl::MutexLock lock(&mu_);
    instances_[project + "/" + zone + "/" + name] = std::move(instance);
  }
  ~FakeGoogleApis() { ReleaseTokenRequests(); }
  // The expires_in of the access tokens issued from now on.
  void set_token_lifetime(absl::Duration d) {
    absl::MutexLock lock(&mu_);
    token_lifetime_ = d;
  }
  // Checks the times of OAuth assertions against `clock` (kept by the caller) instead of the
  // real time, for tests that move a fake clock far.
  void set_clock(const common::Clock* clock) {
    absl::MutexLock lock(&mu_);
    clock_ = clock;
  }
  // The next `n` token requests get no answer until ReleaseTokenRequests().
  void HoldTokenRequests(int n) {
    absl::MutexLock lock(&mu_);
    hold_tokens_ = n;
    released_ = false;
  }
  void ReleaseTokenRequests() {
    absl::MutexLock lock(&mu_);
    released_ = true;
  }
  // Waits (at most 30 s) until `n` token requests have arrived; false if they did not.
  bool AwaitTokenRequests(int n) const {
    absl::MutexLock lock(&mu_);
    auto arrived = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return token_requests_ >= n; };
    return mu_.AwaitWithTimeout(absl::Condition(&arrived), absl::Seconds(30));
  }
  int token_requests() const {
    absl::MutexLock lock(&mu_);
    return token_requests_;
  }
  int instance_requests() const {
    absl::MutexLock lock(&mu_);
    return instance_requests_;
  }
  std::string token_uri() const { return server_.base_url() + "/token"; }
  std::string base_url() const { return server_.base_url(); }

  // A service account JSON key file for `key`, naming this server's token endpoint.
  static std::string ServiceAccountJson(const common::PrivateKey& key, const std::string& email,
                                        const std::string& token_uri) {
    return json{{"type", "service_account"},
                {"project_id", "sa-project"},
                {"private_key_id", "0123456789abcdef"},
                {"private_key", std::string(Must(key.ToPem()).view())},
                {"client_email", email},
                {"client_id", "1234567890"},
                {"auth_uri", "https://accounts.google.com/o/oauth2/auth"},
                {"token_uri", token_uri}}
        .dump();
  }

 private:
  void HandleToken(const httplib::Request& req, httplib::Response& res) {
    absl::MutexLock lock(&mu_);
    ++token_requests_;
    if (hold_tokens_ > 0) {
      // A stuck endpoint: no byte of an answer until released.
      --hold_tokens_;
      mu_.AwaitWithTimeout(absl::Condition(&released_), kMaxHold);
    }
    auto fail = [&](const std::string& error, const std::string& description) {
      res.status = 400;
      res.set_content(json{{"error", error}, {"error_description", description}}.dump(),
                      "application/json");
    };
    std::map<std::string, std::string> form;
    for (absl::string_view pair : absl::StrSplit(req.body, '&')) {
      std::vector<std::string> kv = absl::StrSplit(pair, absl::MaxSplits('=', 1));
      if (kv.size() == 2) form[PercentDecode(kv[0])] = PercentDecode(kv[1]);
    }
    if (form["grant_type"] != "urn:ietf:params:oauth:grant-type:jwt-bearer") {
      return fail("unsupported_grant_type", "Invalid grant_type");
    }
    const std::string& assertion = form["assertion"];
    const size_t last_dot = assertion.rfind('.');
    auto peeked = common::PeekJwt(assertion);
    if (last_dot == std::string::npos || !peeked.ok() || !peeked->claims.is_object()) {
      return fail("invalid_grant", "Invalid JWT");
    }
    auto sig = common::Base64UrlDecode(assertion.substr(last_dot + 1));
    if (!sig.ok() || peeked->header.value("alg", "") != "RS256" ||
        !account_key_.Verify(assertion.substr(0, last_dot), *sig, common::HashAlg::kSha256).ok()) {
      return fail("invalid_grant", "Invalid JWT Signature.");
    }
    const json& c = peeked->claims;
    const int64_t now = absl::ToUnixSeconds(clock_ != nullptr ? clock_->Now() : absl::Now());
    if (c.value("iss", "") != account_email_ || c.value("aud", "") != token_uri() ||
        c.value("scope", "").empty() || c.value("exp", int64_t{0}) < now ||
        c.value("iat", int64_t{0}) > now + 60) {
      return fail("invalid_grant", "Invalid JWT: claims");
    }
    scope_ = c.value("scope", "");
    issued_ = "ya29.fake-" + std::to_string(token_requests_);
    res.set_content(json{{"access_token", issued_},
                         {"expires_in", absl::ToInt64Seconds(token_lifetime_)},
                         {"token_type", "Bearer"}}
                        .dump(),
                    "application/json");
  }

  void HandleInstance(const httplib::Request& req, httplib::Response& res) {
    absl::MutexLock lock(&mu_);
    ++instance_requests_;
    if (issued_.empty() || req.get_header_value("Authorization") != "Bearer " + issued_) {
      res.status = 401;
      res.set_content(
          R"({"error":{"code":401,"message":"Request is missing required authentication credential."}})",
          "application/json");
      return;
    }
    auto it = instances_.find(std::string(req.matches[1]) + "/" + std::string(req.matches[2]) +
                              "/" + std::string(req.matches[3]));
    if (it == instances_.end()) {
      res.status = 404;
      res.set_content(R"({"error":{"code":404,"message":"The resource was not found"}})",
                      "application/json");
      return;
    }
    res.set_content(it->second.dump(), "application/json");
  }

  const common::PublicKey account_key_;
  const std::string account_email_;
  mutable absl::Mutex mu_;
  std::map<std::string, json> instances_ ABSL_GUARDED_BY(mu_);
  std::string issued_ ABSL_GUARDED_BY(mu_);
  std::string scope_ ABSL_GUARDED_BY(mu_);
  absl::Duration token_lifetime_ ABSL_GUARDED_BY(mu_) = absl::Seconds(3599);
  int token_requests_ ABSL_GUARDED_BY(mu_) = 0;
  int instance_requests_ ABSL_GUARDED_BY(mu_) = 0;
  const common::Clock* clock_ ABSL_GUARDED_BY(mu_) = nullptr;
  int hold_tokens_ ABSL_GUARDED_BY(mu_) = 0;
  bool released_ ABSL_GUARDED_BY(mu_) = false;
  FakeServer server_;
};

}  // namespace trellis::attestors::cloudtest
