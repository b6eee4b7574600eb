// aws_iid: IMDSv2 on the agent; on the server, PKCS#7 / RSA verification of the instance
// identity document against pinned AWS certificates, policy checks, and the optional EC2/IAM
// lookups behind the tag, security group and IAM role selectors.
#include "attestors/cloud/aws_iid.h"

#include <openssl/bio.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/pem.h>
#include <openssl/pkcs7.h>
#include <openssl/x509.h>
#include <tinyxml2.h>

#include <algorithm>
#include <cstdlib>
#include <nlohmann/json.hpp>
#include <set>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "attestors/cloud/jwt_keys.h"
#include "common/file_util.h"
#include "common/https_url.h"
#include "common/status.h"

namespace trellis::attestors {
namespace {

using json = nlohmann::json;

constexpr size_t kMaxPayloadBytes = 64 * 1024;
constexpr size_t kMaxDocumentBytes = 16 * 1024;
constexpr size_t kMaxImdsAnswerBytes = 32 * 1024;
constexpr size_t kMaxApiAnswerBytes = 4 << 20;
constexpr char kImdsTokenTtlSeconds[] = "300";
constexpr char kEc2ApiVersion[] = "2016-11-15";
constexpr char kIamApiVersion[] = "2010-05-08";

std::string Err(const std::string& what) { return std::string(kAwsIidName) + ": " + what; }

std::string Shorten(std::string_view s, size_t max = 64) {
  std::string out(s.substr(0, max));
  for (char& c : out) {
    if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) c = '?';
  }
  if (s.size() > max) out += "...";
  return out;
}

// ---- Encoding helpers ----

// Standard base64 (RFC 4648 section 4) as IMDS serves it: line breaks and blanks between
// groups are ignored; padding is optional at the very end.
absl::StatusOr<std::string> Base64Decode(std::string_view in, const std::string& what) {
  auto value = [](char c) -> int {
    if (c >= 'A' && c <= 'Z') return c - 'A';
    if (c >= 'a' && c <= 'z') return c - 'a' + 26;
    if (c >= '0' && c <= '9') return c - '0' + 52;
    if (c == '+') return 62;
    if (c == '/') return 63;
    return -1;
  };
  std::string out;
  uint32_t acc = 0;
  int bits = 0;
  size_t padding = 0;
  size_t symbols = 0;
  for (char c : in) {
    if (c == ' ' || c == '\n' || c == '\r' || c == '\t') continue;
    if (c == '=') {
      ++padding;
      continue;
    }
    int v = value(c);
    if (v < 0 || padding > 0) return absl::InvalidArgumentError(Err(what + " is not base64"));
    ++symbols;
    acc = (acc << 6) | static_cast<uint32_t>(v);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out.push_back(static_cast<char>((acc >> bits) & 0xff));
    }
  }
  if (symbols % 4 == 1 || padding > 2 || (padding > 0 && (symbols + padding) % 4 != 0)) {
    return absl::InvalidArgumentError(Err(what + " is not base64"));
  }
  if (out.empty()) return absl::InvalidArgumentError(Err(what + " is empty"));
  return out;
}

std::string HmacSha256(std::string_view key, std::string_view data) {
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  HMAC(EVP_sha256(), key.data(), static_cast<int>(key.size()),
       reinterpret_cast<const unsigned char*>(data.data()), data.size(), md, &len);
  return std::string(reinterpret_cast<char*>(md), len);
}

std::string TrimAndCollapseSpaces(std::string_view v) {
  std::string out;
  bool space = false;
  for (char c : v) {
    if (c == ' ' || c == '\t') {
      space = true;
      continue;
    }
    if (space && !out.empty()) out.push_back(' ');
    space = false;
    out.push_back(c);
  }
  return out;
}

std::string ToLower(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

bool IsToken(std::string_view s, std::string_view extra) {
  if (s.empty() || s.size() > 256) return false;
  return std::all_of(s.begin(), s.end(), [&](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           extra.find(c) != std::string_view::npos;
  });
}

// ---- Documents and payloads ----

struct Payload {
  std::string document;
  std::string signature;  // base64
  std::string rsa2048;    // base64 DER PKCS#7
};

absl::StatusOr<Payload> ParsePayload(std::string_view payload) {
  if (payload.empty()) return absl::InvalidArgumentError(Err("empty attestation payload"));
  if (payload.size() > kMaxPayloadBytes) {
    return absl::InvalidArgumentError(Err("attestation payload is too large"));
  }
  json j = json::parse(payload.begin(), payload.end(), nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded() || !j.is_object()) {
    return absl::InvalidArgumentError(Err("attestation payload is not a JSON object"));
  }
  Payload out;
  auto read = [&](const char* key, std::string* dst) -> absl::Status {
    auto it = j.find(key);
    if (it == j.end() || it->is_null()) return absl::OkStatus();
    if (!it->is_string()) {
      return absl::InvalidArgumentError(
          Err(std::string("payload \"") + key + "\" is not a string"));
    }
    *dst = it->get<std::string>();
    return absl::OkStatus();
  };
  TRELLIS_RETURN_IF_ERROR(read("document", &out.document));
  TRELLIS_RETURN_IF_ERROR(read("signature", &out.signature));
  TRELLIS_RETURN_IF_ERROR(read("rsa2048_signature", &out.rsa2048));
  if (out.document.empty()) {
    return absl::InvalidArgumentError(Err("payload has no instance identity document"));
  }
  if (out.document.size() > kMaxDocumentBytes) {
    return absl::InvalidArgumentError(Err("instance identity document is too large"));
  }
  if (out.signature.empty() && out.rsa2048.empty()) {
    return absl::InvalidArgumentError(
        Err("payload has neither \"rsa2048_signature\" nor \"signature\""));
  }
  return out;
}

struct Document {
  std::string account_id;
  std::string region;
  std::string instance_id;
  std::string availability_zone;
  std::string image_id;
  absl::Time pending_time;
};

absl::StatusOr<json> ParseDocumentJson(const std::string& document) {
  json j = json::parse(document, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded() || !j.is_object()) {
    return absl::InvalidArgumentError(Err("instance identity document is not a JSON object"));
  }
  return j;
}

absl::StatusOr<std::string> DocString(const json& j, const char* key, std::string_view extra) {
  auto it = j.find(key);
  if (it == j.end() || !it->is_string() || it->get<std::string>().empty()) {
    return absl::InvalidArgumentError(
        Err(std::string("instance identity document lacks \"") + key + "\""));
  }
  std::string v = it->get<std::string>();
  if (!IsToken(v, extra)) {
    return absl::InvalidArgumentError(Err(std::string("instance identity document \"") + key +
                                          "\" has unexpected characters: \"" + Shorten(v) + "\""));
  }
  return v;
}

absl::StatusOr<Document> ReadDocument(const json& j) {
  Document d;
  TRELLIS_ASSIGN_OR_RETURN(d.account_id, DocString(j, "accountId", ""));
  if (d.account_id.find_first_not_of("0123456789") != std::string::npos) {
    return absl::InvalidArgumentError(Err("instance identity document \"accountId\" \"" +
                                          Shorten(d.account_id) + "\" is not numeric"));
  }
  TRELLIS_ASSIGN_OR_RETURN(d.region, DocString(j, "region", "-"));
  TRELLIS_ASSIGN_OR_RETURN(d.instance_id, DocString(j, "instanceId", "-"));
  TRELLIS_ASSIGN_OR_RETURN(d.availability_zone, DocString(j, "availabilityZone", "-"));
  TRELLIS_ASSIGN_OR_RETURN(d.image_id, DocString(j, "imageId", "-"));
  TRELLIS_ASSIGN_OR_RETURN(std::string pending, DocString(j, "pendingTime", "-:.+"));
  std::string err;
  if (!absl::ParseTime(absl::RFC3339_full, pending, &d.pending_time, &err)) {
    return absl::InvalidArgumentError(Err("instance identity document \"pendingTime\" \"" +
                                          Shorten(pending) + "\" is not an RFC 3339 time"));
  }
  return d;
}

// ---- Certificates ----

absl::Status CheckAwsCertificate(X509* cert, const std::string& source) {
  EVP_PKEY* key = X509_get0_pubkey(cert);
  if (key == nullptr || EVP_PKEY_get_base_id(key) != EVP_PKEY_RSA) {
    return absl::InvalidArgumentError(
        Err(source + " holds a certificate without an RSA key; use AWS's RSA-2048 and RSA "
                     "certificates (the DSA ones verify a signature form Trellis does not use)"));
  }
  // AWS's certificates for the base64 "signature" are RSA-1024 in most regions.
  const int bits = EVP_PKEY_get_bits(key);
  if (bits < 1024 || bits > 8192) {
    return absl::InvalidArgumentError(Err(source + " holds an RSA key of " + std::to_string(bits) +
                                          " bits (1024..8192 accepted)"));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::vector<common::X509Ptr>> ReadCertificates(std::string_view pem,
                                                              const std::string& source) {
  common::BioPtr bio(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())));
  if (!bio) return absl::ResourceExhaustedError(Err("out of memory"));
  std::vector<common::X509Ptr> out;
  while (true) {
    X509* cert = PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr);
    if (cert == nullptr) break;
    out.emplace_back(cert);
    TRELLIS_RETURN_IF_ERROR(CheckAwsCertificate(cert, source));
  }
  common::ClearOpenSslErrors();  // the end of the input reads as an error
  if (out.empty()) {
    return absl::InvalidArgumentError(Err(source + " holds no PEM certificate"));
  }
  return out;
}

bool IsRegionName(std::string_view s) { return IsToken(s, "-") && s.size() <= 64; }

// The AWS partition's DNS suffix and IAM signing region for a region name.
struct Partition {
  std::string dns_suffix;
  std::string iam_endpoint;
  std::string iam_region;
};
Partition PartitionOf(const std::string& region) {
  if (absl::StartsWith(region, "cn-")) {
    return {"amazonaws.com.cn", "https://iam.cn-north-1.amazonaws.com.cn", "cn-north-1"};
  }
  if (absl::StartsWith(region, "us-gov-")) {
    return {"amazonaws.com", "https://iam.us-gov.amazonaws.com", "us-gov-west-1"};
  }
  return {"amazonaws.com", "https://iam.amazonaws.com", "us-east-1"};
}

// ---- Signature checks ----

absl::Status VerifyPkcs7(const std::string& der, const std::string& document,
                         const std::vector<X509*>& certs, const std::string& region) {
  const auto* p = reinterpret_cast<const unsigned char*>(der.data());
  PKCS7* raw = d2i_PKCS7(nullptr, &p, static_cast<long>(der.size()));
  if (raw == nullptr || p != reinterpret_cast<const unsigned char*>(der.data()) + der.size()) {
    PKCS7_free(raw);
    common::ClearOpenSslErrors();
    return absl::InvalidArgumentError(Err("rsa2048 signature is not a DER PKCS#7 structure"));
  }
  std::unique_ptr<PKCS7, decltype(&PKCS7_free)> p7(raw, &PKCS7_free);
  if (!PKCS7_type_is_signed(p7.get())) {
    return absl::InvalidArgumentError(Err("rsa2048 signature is not PKCS#7 signed data"));
  }
  common::X509StackPtr signers(sk_X509_new_null());
  common::X509StorePtr store(X509_STORE_new());
  if (!signers || !store) return absl::ResourceExhaustedError(Err("out of memory"));
  for (X509* c : certs) {
    X509_up_ref(c);
    if (sk_X509_push(signers.get(), c) <= 0) {
      X509_free(c);
      return absl::ResourceExhaustedError(Err("out of memory"));
    }
  }
  // NOINTERN: only our certificates may be the signer, never one carried in the message.
  // NOVERIFY: AWS's certificates are self-signed pinned keys; there is no chain to build.
  const int flags = PKCS7_NOINTERN | PKCS7_NOVERIFY | PKCS7_BINARY;
  const bool detached = PKCS7_get_detached(p7.get()) != 0;
  common::BioPtr content(
      detached ? BIO_new_mem_buf(document.data(), static_cast<int>(document.size())) : nullptr);
  common::BioPtr out(BIO_new(BIO_s_mem()));
  if ((detached && !content) || !out) return absl::ResourceExhaustedError(Err("out of memory"));
  if (PKCS7_verify(p7.get(), signers.get(), store.get(), content.get(), out.get(), flags) != 1) {
    common::ClearOpenSslErrors();
    return absl::PermissionDeniedError(Err(
        "the rsa2048 signature does not verify with the AWS certificate(s) for region " + region));
  }
  // An attached signature must carry exactly the document presented.
  if (!detached && common::BioToString(out.get()) != document) {
    return absl::PermissionDeniedError(
        Err("the rsa2048 signature covers a different document than the one presented"));
  }
  return absl::OkStatus();
}

absl::Status VerifyRsaSha256(const std::string& sig, const std::string& document,
                             const std::vector<X509*>& certs, const std::string& region) {
  for (X509* c : certs) {
    EVP_PKEY* key = X509_get0_pubkey(c);
    common::EvpMdCtxPtr ctx(EVP_MD_CTX_new());
    if (!ctx) return absl::ResourceExhaustedError(Err("out of memory"));
    if (EVP_DigestVerifyInit(ctx.get(), nullptr, EVP_sha256(), nullptr, key) == 1 &&
        EVP_DigestVerify(ctx.get(), reinterpret_cast<const unsigned char*>(sig.data()), sig.size(),
                         reinterpret_cast<const unsigned char*>(document.data()),
                         document.size()) == 1) {
      return absl::OkStatus();
    }
    common::ClearOpenSslErrors();
  }
  return absl::PermissionDeniedError(
      Err("the signature does not verify with the AWS certificate(s) for region " + region));
}

// ---- XML answers of the EC2 and IAM query APIs ----

const char* ChildText(const tinyxml2::XMLElement* e, const char* name) {
  if (e == nullptr) return nullptr;
  const tinyxml2::XMLElement* c = e->FirstChildElement(name);
  if (c == nullptr) return nullptr;
  const char* t = c->GetText();
  return t == nullptr ? "" : t;
}

std::string ChildString(const tinyxml2::XMLElement* e, const char* name) {
  const char* t = ChildText(e, name);
  return t == nullptr ? "" : t;
}

// "<Code>: <Message>" of an AWS query API error answer (EC2's <Response><Errors><Error>, IAM's
// <ErrorResponse><Error>), or a note that the body was not one.
std::string DescribeApiError(const std::string& body) {
  tinyxml2::XMLDocument doc;
  if (doc.Parse(body.data(), body.size()) == tinyxml2::XML_SUCCESS) {
    const tinyxml2::XMLElement* root = doc.RootElement();
    const tinyxml2::XMLElement* error = nullptr;
    if (root != nullptr) {
      const tinyxml2::XMLElement* errors = root->FirstChildElement("Errors");
      error =
          errors != nullptr ? errors->FirstChildElement("Error") : root->FirstChildElement("Error");
    }
    if (error != nullptr) {
      return Shorten(ChildString(error, "Code"), 100) + ": " +
             Shorten(ChildString(error, "Message"), 300);
    }
  }
  return "an answer that is not an AWS error document";
}

absl::StatusOr<absl::Time> ParseAwsTime(const std::string& s, const std::string& what) {
  absl::Time t;
  std::string err;
  if (!absl::ParseTime(absl::RFC3339_full, s, &t, &err)) {
    return absl::UnavailableError(
        Err("EC2 DescribeInstances answered a bad " + what + " \"" + Shorten(s) + "\""));
  }
  return t;
}

struct SignedCall {
  std::string url;
  std::vector<std::pair<std::string, std::string>> headers;
};

// A SigV4-signed GET of `endpoint` (http(s)://host[:port]) with `query`.
absl::StatusOr<SignedCall> SignGet(const std::string& endpoint,
                                   std::vector<std::pair<std::string, std::string>> query,
                                   const AwsCredentials& creds, const std::string& region,
                                   const std::string& service, absl::Time now) {
  TRELLIS_ASSIGN_OR_RETURN(cloud_jwt::HttpUrl url,
                           cloud_jwt::ParseHttpUrl(endpoint, Err(service + " endpoint")));
  std::string host(url.scheme_host_port.substr(url.https ? 8 : 7));
  // The Host header omits the scheme's default port, as HTTP clients send it.
  const std::string default_port = url.https ? ":443" : ":80";
  if (absl::EndsWith(host, default_port)) host.resize(host.size() - default_port.size());
  AwsSigV4Request req;
  req.host = host;
  req.query = std::move(query);
  AwsSigV4Signature sig = AwsSigV4Sign(req, creds, region, service, now);
  SignedCall call;
  call.url = url.scheme_host_port + "/?" + sig.canonical_query;
  call.headers = {{"Host", host},
                  {"X-Amz-Date", sig.amz_date},
                  {"Authorization", sig.authorization},
                  {"Accept", "text/xml"}};
  return call;
}

}  // namespace

// ---- SigV4 ----

AwsSigV4Signature AwsSigV4Sign(const AwsSigV4Request& request, const AwsCredentials& credentials,
                               std::string_view region, std::string_view service, absl::Time now) {
  AwsSigV4Signature out;
  out.amz_date = absl::FormatTime("%Y%m%dT%H%M%SZ", now, absl::UTCTimeZone());
  const std::string date = out.amz_date.substr(0, 8);

  std::vector<std::pair<std::string, std::string>> query;
  for (const auto& [k, v] : request.query)
    query.emplace_back(common::PercentEncode(k), common::PercentEncode(v));
  std::sort(query.begin(), query.end());
  std::vector<std::string> parts;
  for (const auto& [k, v] : query) parts.push_back(k + "=" + v);
  out.canonical_query = absl::StrJoin(parts, "&");

  std::map<std::string, std::vector<std::string>> headers;
  headers["host"].push_back(TrimAndCollapseSpaces(request.host));
  headers["x-amz-date"].push_back(out.amz_date);
  for (const auto& [k, v] : request.headers) {
    headers[ToLower(k)].push_back(TrimAndCollapseSpaces(v));
  }
  std::string canonical_headers;
  std::vector<std::string> names;
  for (const auto& [name, values] : headers) {
    absl::StrAppend(&canonical_headers, name, ":", absl::StrJoin(values, ","), "\n");
    names.push_back(name);
  }
  const std::string signed_headers = absl::StrJoin(names, ";");

  out.canonical_request =
      absl::StrCat(request.method, "\n", request.path.empty() ? "/" : request.path, "\n",
                   out.canonical_query, "\n", canonical_headers, "\n", signed_headers, "\n",
                   common::HexEncode(common::Sha256(request.payload)));
  const std::string scope =
      absl::StrCat(date, "/", std::string(region), "/", std::string(service), "/aws4_request");
  out.string_to_sign = absl::StrCat("AWS4-HMAC-SHA256\n", out.amz_date, "\n", scope, "\n",
                                    common::HexEncode(common::Sha256(out.canonical_request)));
  std::string key = HmacSha256("AWS4" + credentials.secret_access_key, date);
  key = HmacSha256(key, region);
  key = HmacSha256(key, service);
  key = HmacSha256(key, "aws4_request");
  out.signature = common::HexEncode(HmacSha256(key, out.string_to_sign));
  out.authorization =
      absl::StrCat("AWS4-HMAC-SHA256 Credential=", credentials.access_key_id, "/", scope,
                   ", SignedHeaders=", signed_headers, ", Signature=", out.signature);
  return out;
}

// ---- Server ----

struct AwsIidServerAttestor::Instance {
  std::vector<std::pair<std::string, std::string>> tags;
  std::vector<std::pair<std::string, std::string>> security_groups;  // id, name
  std::string instance_profile_arn;
};

AwsIidServerAttestor::~AwsIidServerAttestor() = default;

absl::StatusOr<std::unique_ptr<AwsIidServerAttestor>> AwsIidServerAttestor::Create(
    common::TrustDomain td, const common::config::AwsIidServerAttestorConfig& config,
    const common::Clock& clock) {
  return CreateWithCertificates(std::move(td), config, {}, clock);
}

absl::StatusOr<std::unique_ptr<AwsIidServerAttestor>> AwsIidServerAttestor::CreateWithCertificates(
    common::TrustDomain td, const common::config::AwsIidServerAttestorConfig& config,
    const std::map<std::string, std::string>& pem_by_region, const common::Clock& clock) {
  if (config.access_key_id.empty() != config.secret_access_key.empty()) {
    return absl::InvalidArgumentError(
        Err("set access_key_id and secret_access_key together (or neither)"));
  }
  const std::vector<std::pair<std::string, std::string>> endpoints = {
      {"ec2_endpoint", config.ec2_endpoint}, {"iam_endpoint", config.iam_endpoint}};
  for (const auto& [what, endpoint] : endpoints) {
    if (endpoint.empty()) continue;
    auto url = cloud_jwt::ParseHttpUrl(endpoint, Err(what));
    if (!url.ok()) return url.status();
    if (url->path != "/") return absl::InvalidArgumentError(Err(what + " must not have a path"));
  }
  for (const std::string& account : config.account_ids) {
    if (account.empty() || account.find_first_not_of("0123456789") != std::string::npos) {
      return absl::InvalidArgumentError(
          Err("account_ids entry \"" + Shorten(account) + "\" is not an AWS account ID"));
    }
  }
  if (config.max_document_age < absl::ZeroDuration()) {
    return absl::InvalidArgumentError(Err("max_document_age must not be negative"));
  }
  std::unique_ptr<AwsIidServerAttestor> a(new AwsIidServerAttestor(std::move(td), config, clock));

  // The template must expand with the document's fields, plus any tags it names.
  const std::string tmpl = config.agent_path_template.empty() ? kAwsIidDefaultAgentPathTemplate
                                                              : config.agent_path_template;
  std::map<std::string, std::string> fields = {{"PluginName", "p"},       {"AccountID", "1"},
                                               {"Region", "r"},           {"InstanceID", "i"},
                                               {"AvailabilityZone", "z"}, {"ImageID", "m"}};
  for (size_t pos = tmpl.find(".Tags."); pos != std::string::npos;
       pos = tmpl.find(".Tags.", pos + 1)) {
    if (config.access_key_id.empty()) {
      return absl::InvalidArgumentError(
          Err("agent_path_template names instance tags, which need DescribeInstances: set "
              "access_key_id and secret_access_key"));
    }
    size_t end = tmpl.find_first_of(" }", pos + 6);
    fields[tmpl.substr(pos + 1, end == std::string::npos ? end : end - pos - 1)] = "t";
  }
  auto expanded = cloud_jwt::ExpandAgentPathTemplate(tmpl, fields, kAwsIidName);
  if (!expanded.ok()) return expanded.status();

  auto add = [&](const std::string& region, std::string_view pem,
                 const std::string& source) -> absl::Status {
    if (!region.empty() && !IsRegionName(region)) {
      return absl::InvalidArgumentError(
          Err(source + ": \"" + Shorten(region) + "\" is not an AWS region name"));
    }
    TRELLIS_ASSIGN_OR_RETURN(std::vector<common::X509Ptr> certs, ReadCertificates(pem, source));
    auto& dst = a->certs_[region];
    for (auto& c : certs) dst.push_back(std::move(c));
    return absl::OkStatus();
  };
  for (const std::string& entry : config.aws_ca_cert_paths) {
    std::string region;
    std::string path = entry;
    // "<region>=<path>" pins to a region; a path holding '/' before any '=' is a bare path.
    if (size_t eq = entry.find('=');
        eq != std::string::npos && entry.substr(0, eq).find('/') == std::string::npos) {
      region = entry.substr(0, eq);
      path = entry.substr(eq + 1);
    }
    auto pem = common::ReadFile(path);
    if (!pem.ok()) {
      return absl::InvalidArgumentError(
          Err("aws_ca_cert_paths " + path + ": " + std::string(pem.status().message())));
    }
    TRELLIS_RETURN_IF_ERROR(add(region, *pem, "aws_ca_cert_paths " + path));
  }
  for (const auto& [region, pem] : pem_by_region) {
    TRELLIS_RETURN_IF_ERROR(
        add(region, pem, "certificates for " + (region.empty() ? "every region" : region)));
  }
  if (a->certs_.empty()) {
    return absl::InvalidArgumentError(
        Err("aws_ca_cert_paths is required: Trellis carries no built-in AWS certificates; list "
            "PEM files of AWS's public certificates for instance identity documents (the "
            "RSA-2048 ones, and the RSA ones for the base64 signature), as \"<path>\" for "
            "every region or \"<region>=<path>\""));
  }
  return a;
}

std::vector<X509*> AwsIidServerAttestor::CertificatesFor(const std::string& region) const {
  std::vector<X509*> out;
  for (const std::string& key : {region, std::string()}) {
    auto it = certs_.find(key);
    if (it == certs_.end()) continue;
    for (const auto& c : it->second) out.push_back(c.get());
  }
  return out;
}

absl::Status AwsIidServerAttestor::VerifySignature(const std::string& region,
                                                   const std::string& document,
                                                   const std::string& rsa2048,
                                                   const std::string& signature) const {
  std::vector<X509*> certs = CertificatesFor(region);
  if (certs.empty()) {
    return absl::PermissionDeniedError(
        Err("no AWS certificate is configured for region " + region));
  }
  if (!rsa2048.empty()) {
    TRELLIS_ASSIGN_OR_RETURN(std::string der, Base64Decode(rsa2048, "rsa2048 signature"));
    return VerifyPkcs7(der, document, certs, region);
  }
  TRELLIS_ASSIGN_OR_RETURN(std::string sig, Base64Decode(signature, "signature"));
  return VerifyRsaSha256(sig, document, certs, region);
}

absl::StatusOr<AwsIidServerAttestor::Instance> AwsIidServerAttestor::DescribeInstance(
    const std::string& region, const std::string& account_id,
    const std::string& instance_id) const {
  const std::string endpoint = config_.ec2_endpoint.empty()
                                   ? "https://ec2." + region + "." + PartitionOf(region).dns_suffix
                                   : config_.ec2_endpoint;
  TRELLIS_ASSIGN_OR_RETURN(
      SignedCall call,
      SignGet(endpoint,
              {{"Action", "DescribeInstances"},
               {"Version", kEc2ApiVersion},
               {"InstanceId.1", instance_id}},
              {config_.access_key_id, config_.secret_access_key}, region, "ec2", clock_.Now()));
  cloud_jwt::HttpOptions http;
  http.max_body_bytes = kMaxApiAnswerBytes;
  auto res = cloud_jwt::HttpRequest("GET", call.url, call.headers, http);
  if (!res.ok()) {
    return absl::UnavailableError(
        Err("EC2 DescribeInstances: " + std::string(res.status().message())));
  }
  if (res->status != 200) {
    const std::string why = "EC2 DescribeInstances of " + instance_id + " answered HTTP " +
                            std::to_string(res->status) + " (" + DescribeApiError(res->body) + ")";
    return res->status >= 500 ? absl::UnavailableError(Err(why))
                              : absl::PermissionDeniedError(Err(why));
  }
  tinyxml2::XMLDocument doc;
  if (doc.Parse(res->body.data(), res->body.size()) != tinyxml2::XML_SUCCESS) {
    return absl::UnavailableError(
        Err("EC2 DescribeInstances answered malformed XML: " + std::string(doc.ErrorStr())));
  }
  const tinyxml2::XMLElement* root = doc.RootElement();
  if (root == nullptr || std::string_view(root->Name()) != "DescribeInstancesResponse") {
    return absl::UnavailableError(
        Err("EC2 DescribeInstances answered XML that is not a DescribeInstancesResponse"));
  }
  const tinyxml2::XMLElement* found = nullptr;
  std::string owner;
  const tinyxml2::XMLElement* reservations = root->FirstChildElement("reservationSet");
  for (const tinyxml2::XMLElement* r = reservations ? reservations->FirstChildElement("item")
                                                    : nullptr;
       r != nullptr && found == nullptr; r = r->NextSiblingElement("item")) {
    const tinyxml2::XMLElement* instances = r->FirstChildElement("instancesSet");
    for (const tinyxml2::XMLElement* i = instances ? instances->FirstChildElement("item") : nullptr;
         i != nullptr; i = i->NextSiblingElement("item")) {
      if (ChildString(i, "instanceId") == instance_id) {
        found = i;
        owner = ChildString(r, "ownerId");
        break;
      }
    }
  }
  if (found == nullptr) {
    return absl::PermissionDeniedError(
        Err("EC2 DescribeInstances does not list instance " + instance_id));
  }
  if (owner != account_id) {
    return absl::PermissionDeniedError(Err("EC2 reports instance " + instance_id +
                                           " in account \"" + Shorten(owner) + "\", not " +
                                           account_id));
  }

  Instance out;
  if (const auto* tags = found->FirstChildElement("tagSet")) {
    for (const auto* t = tags->FirstChildElement("item"); t; t = t->NextSiblingElement("item")) {
      out.tags.emplace_back(ChildString(t, "key"), ChildString(t, "value"));
    }
  }
  if (const auto* groups = found->FirstChildElement("groupSet")) {
    for (const auto* g = groups->FirstChildElement("item"); g; g = g->NextSiblingElement("item")) {
      out.security_groups.emplace_back(ChildString(g, "groupId"), ChildString(g, "groupName"));
    }
  }
  if (const auto* profile = found->FirstChildElement("iamInstanceProfile")) {
    out.instance_profile_arn = ChildString(profile, "arn");
  }

  if (!config_.skip_block_device) {
    // The root volume must have been attached with the primary network interface, at launch:
    // a root volume swapped in later could carry anything.
    const tinyxml2::XMLElement* primary = nullptr;
    if (const auto* ifaces = found->FirstChildElement("networkInterfaceSet")) {
      for (const auto* n = ifaces->FirstChildElement("item"); n;
           n = n->NextSiblingElement("item")) {
        const auto* att = n->FirstChildElement("attachment");
        if (att != nullptr && ChildString(att, "deviceIndex") == "0") {
          primary = att;
          break;
        }
      }
    }
    if (primary == nullptr) {
      return absl::PermissionDeniedError(Err(
          "EC2 reports no primary network interface (device index 0) for instance " + instance_id));
    }
    if (ChildString(found, "rootDeviceType") == "ebs") {
      const std::string root_name = ChildString(found, "rootDeviceName");
      const tinyxml2::XMLElement* root_ebs = nullptr;
      if (const auto* bdm = found->FirstChildElement("blockDeviceMapping")) {
        for (const auto* b = bdm->FirstChildElement("item"); b; b = b->NextSiblingElement("item")) {
          if (!root_name.empty() && ChildString(b, "deviceName") == root_name) {
            root_ebs = b->FirstChildElement("ebs");
            break;
          }
        }
      }
      if (root_ebs == nullptr) {
        return absl::PermissionDeniedError(Err("EC2 lists no block device for the root device \"" +
                                               Shorten(root_name) + "\" of instance " +
                                               instance_id));
      }
      TRELLIS_ASSIGN_OR_RETURN(absl::Time iface_at, ParseAwsTime(ChildString(primary, "attachTime"),
                                                                 "network interface attachTime"));
      TRELLIS_ASSIGN_OR_RETURN(absl::Time root_at, ParseAwsTime(ChildString(root_ebs, "attachTime"),
                                                                "root volume attachTime"));
      if (absl::AbsDuration(iface_at - root_at) > kAwsMaxDeviceAttachSkew) {
        return absl::PermissionDeniedError(
            Err("the root volume of instance " + instance_id + " was attached " +
                absl::FormatDuration(absl::AbsDuration(iface_at - root_at)) +
                " apart from its primary network interface (more than " +
                absl::FormatDuration(kAwsMaxDeviceAttachSkew) + "): it may have been replaced"));
      }
    }
  }
  return out;
}

absl::StatusOr<std::vector<std::string>> AwsIidServerAttestor::InstanceProfileRoles(
    const std::string& region, const std::string& arn) const {
  // arn:<partition>:iam::<account>:instance-profile/<path/><name>
  const size_t marker = arn.find(":instance-profile/");
  if (!absl::StartsWith(arn, "arn:") || marker == std::string::npos || arn.back() == '/') {
    return absl::UnavailableError(
        Err("EC2 reports an instance profile ARN that is not one: \"" + Shorten(arn, 200) + "\""));
  }
  const std::string name = arn.substr(arn.rfind('/') + 1);
  const Partition partition = PartitionOf(region);
  const std::string endpoint =
      config_.iam_endpoint.empty() ? partition.iam_endpoint : config_.iam_endpoint;
  TRELLIS_ASSIGN_OR_RETURN(SignedCall call,
                           SignGet(endpoint,
                                   {{"Action", "GetInstanceProfile"},
                                    {"Version", kIamApiVersion},
                                    {"InstanceProfileName", name}},
                                   {config_.access_key_id, config_.secret_access_key},
                                   partition.iam_region, "iam", clock_.Now()));
  cloud_jwt::HttpOptions http;
  http.max_body_bytes = kMaxApiAnswerBytes;
  auto res = cloud_jwt::HttpRequest("GET", call.url, call.headers, http);
  if (!res.ok()) {
    return absl::UnavailableError(
        Err("IAM GetInstanceProfile: " + std::string(res.status().message())));
  }
  if (res->status != 200) {
    const std::string why = "IAM GetInstanceProfile of " + Shorten(name) + " answered HTTP " +
                            std::to_string(res->status) + " (" + DescribeApiError(res->body) + ")";
    return res->status >= 500 ? absl::UnavailableError(Err(why))
                              : absl::PermissionDeniedError(Err(why));
  }
  tinyxml2::XMLDocument doc;
  if (doc.Parse(res->body.data(), res->body.size()) != tinyxml2::XML_SUCCESS) {
    return absl::UnavailableError(
        Err("IAM GetInstanceProfile answered malformed XML: " + std::string(doc.ErrorStr())));
  }
  const tinyxml2::XMLElement* root = doc.RootElement();
  const tinyxml2::XMLElement* profile =
      root == nullptr || std::string_view(root->Name()) != "GetInstanceProfileResponse"
          ? nullptr
          : root->FirstChildElement("GetInstanceProfileResult");
  if (profile != nullptr) profile = profile->FirstChildElement("InstanceProfile");
  if (profile == nullptr) {
    return absl::UnavailableError(
        Err("IAM GetInstanceProfile answered XML without an InstanceProfile"));
  }
  if (ChildString(profile, "Arn") != arn) {
    return absl::UnavailableError(Err("IAM GetInstanceProfile answered for another profile: \"" +
                                      Shorten(ChildString(profile, "Arn"), 200) + "\""));
  }
  std::vector<std::string> roles;
  if (const auto* members = profile->FirstChildElement("Roles")) {
    for (const auto* m = members->FirstChildElement("member"); m;
         m = m->NextSiblingElement("member")) {
      std::string role = ChildString(m, "Arn");
      if (!role.empty()) roles.push_back(std::move(role));
    }
  }
  return roles;
}

absl::StatusOr<ServerNodeAttestor::Result> AwsIidServerAttestor::Attest(
    std::string_view payload, const std::function<absl::StatusOr<std::string>(std::string)>&) {
  TRELLIS_ASSIGN_OR_RETURN(Payload p, ParsePayload(payload));
  TRELLIS_ASSIGN_OR_RETURN(json doc_json, ParseDocumentJson(p.document));
  // Only the region is read before the signature check: it chooses the certificates.
  TRELLIS_ASSIGN_OR_RETURN(std::string region, DocString(doc_json, "region", "-"));
  TRELLIS_RETURN_IF_ERROR(VerifySignature(region, p.document, p.rsa2048, p.signature));
  TRELLIS_ASSIGN_OR_RETURN(Document doc, ReadDocument(doc_json));

  if (!config_.account_ids.empty() &&
      std::find(config_.account_ids.begin(), config_.account_ids.end(), doc.account_id) ==
          config_.account_ids.end()) {
    return absl::PermissionDeniedError(Err("account " + doc.account_id + " is not allowed"));
  }
  if (config_.max_document_age > absl::ZeroDuration()) {
    const absl::Duration age = clock_.Now() - doc.pending_time;
    if (age > config_.max_document_age) {
      return absl::PermissionDeniedError(Err(
          "instance identity document is " + absl::FormatDuration(age) +
          " old, more than max_document_age " + absl::FormatDuration(config_.max_document_age)));
    }
  }

  std::set<std::string> selectors = {
      "az:" + doc.availability_zone,
      "image:id:" + doc.image_id,
      "instance:id:" + doc.instance_id,
      "region:" + doc.region,
  };
  std::map<std::string, std::string> fields = {{"PluginName", kAwsIidName},
                                               {"AccountID", doc.account_id},
                                               {"Region", doc.region},
                                               {"InstanceID", doc.instance_id},
                                               {"AvailabilityZone", doc.availability_zone},
                                               {"ImageID", doc.image_id}};
  if (!config_.access_key_id.empty()) {
    TRELLIS_ASSIGN_OR_RETURN(Instance inst,
                             DescribeInstance(doc.region, doc.account_id, doc.instance_id));
    for (const auto& [key, value] : inst.tags) {
      selectors.insert("tag:" + key + ":" + value);
      fields["Tags." + key] = value;
    }
    for (const auto& [id, name] : inst.security_groups) {
      if (!id.empty()) selectors.insert("sg:id:" + id);
      if (!name.empty()) selectors.insert("sg:name:" + name);
    }
    if (!inst.instance_profile_arn.empty() && !config_.disable_instance_profile_selectors) {
      TRELLIS_ASSIGN_OR_RETURN(std::vector<std::string> roles,
                               InstanceProfileRoles(doc.region, inst.instance_profile_arn));
      for (const std::string& role : roles) selectors.insert("iamrole:" + role);
    }
  }

  const std::string tmpl = config_.agent_path_template.empty() ? kAwsIidDefaultAgentPathTemplate
                                                               : config_.agent_path_template;
  auto path = cloud_jwt::ExpandAgentPathTemplate(tmpl, fields, kAwsIidName);
  if (!path.ok()) {
    return absl::PermissionDeniedError(
        Err("cannot name the agent: " + std::string(path.status().message())));
  }
  auto id = common::SpiffeId::FromPath(td_, "/spire/agent/" + *path);
  if (!id.ok()) {
    return absl::PermissionDeniedError(
        Err("agent ID path \"" + Shorten(*path, 200) +
            "\" is not valid: " + std::string(id.status().message())));
  }
  Result result{*std::move(id), {}, config_.allow_reattestation};
  for (const std::string& s : selectors) result.selectors.push_back({kAwsIidName, s});
  return result;
}

// ---- Agent ----

absl::StatusOr<std::unique_ptr<AwsIidAgentAttestor>> AwsIidAgentAttestor::Create(
    const common::config::AwsIidAgentAttestorConfig& config) {
  TRELLIS_ASSIGN_OR_RETURN(
      cloud_jwt::HttpUrl url,
      cloud_jwt::ParseHttpUrl(config.ec2_metadata_endpoint, Err("ec2_metadata_endpoint")));
  if (url.path != "/") {
    return absl::InvalidArgumentError(Err("ec2_metadata_endpoint must not have a path"));
  }
  return std::unique_ptr<AwsIidAgentAttestor>(new AwsIidAgentAttestor(url.scheme_host_port));
}

absl::StatusOr<std::string> AwsIidAgentAttestor::Payload() {
  cloud_jwt::HttpOptions http;
  http.max_body_bytes = kMaxImdsAnswerBytes;
  http.timeout = absl::Seconds(5);
  auto token = cloud_jwt::HttpRequest(
      "PUT", endpoint_ + "/latest/api/token",
      {{"X-aws-ec2-metadata-token-ttl-seconds", kImdsTokenTtlSeconds}}, http);
  if (!token.ok()) {
    return absl::UnavailableError(
        Err("instance metadata service: " + std::string(token.status().message())));
  }
  if (token->status != 200 || token->body.empty()) {
    return absl::UnavailableError(Err("instance metadata service refused a session token (HTTP " +
                                      std::to_string(token->status) + ")"));
  }
  // Returns "" for a 404 when `optional`.
  auto get = [&](const std::string& what, bool optional) -> absl::StatusOr<std::string> {
    auto res =
        cloud_jwt::HttpRequest("GET", endpoint_ + "/latest/dynamic/instance-identity/" + what,
                               {{"X-aws-ec2-metadata-token", token->body}}, http);
    if (!res.ok()) {
      return absl::UnavailableError(
          Err("instance metadata service: " + std::string(res.status().message())));
    }
    if (optional && res->status == 404) return std::string();
    if (res->status != 200 || res->body.empty()) {
      return absl::UnavailableError(Err("instance metadata service answered HTTP " +
                                        std::to_string(res->status) + " for the instance " +
                                        "identity " + what));
    }
    return std::move(res->body);
  };
  TRELLIS_ASSIGN_OR_RETURN(std::string document, get("document", false));
  TRELLIS_ASSIGN_OR_RETURN(std::string rsa2048, get("rsa2048", true));
  TRELLIS_ASSIGN_OR_RETURN(std::string signature, get("signature", !rsa2048.empty()));
  json out = {{"document", document}};
  if (!signature.empty()) out["signature"] = signature;
  if (!rsa2048.empty()) out["rsa2048_signature"] = rsa2048;
  return out.dump(-1, ' ', false, json::error_handler_t::replace);
}

absl::StatusOr<std::string> AwsIidAgentAttestor::Answer(std::string_view) {
  return absl::InvalidArgumentError(Err("attestation has no challenge"));
}

}  // namespace trellis::attestors
