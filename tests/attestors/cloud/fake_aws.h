// Fake AWS for tests on 127.0.0.1: an IMDSv2 instance metadata service serving an instance
// identity document signed in the test by a stand-in "AWS" key (PKCS#7 rsa2048 and the base64
// RSA signature), and the EC2 / IAM query APIs (DescribeInstances, GetInstanceProfile) that
// check each call's SigV4 Authorization header before answering AWS's XML.
#pragma once

#include <httplib.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/pkcs7.h>
#include <openssl/x509.h>

#include <map>
#include <memory>
#include <regex>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "attestors/cloud/aws_iid.h"
#include "gtest/gtest.h"
#include "tests/attestors/x509_test_certs.h"

namespace trellis::attestors::fakeaws {

inline std::string Base64(std::string_view bytes, size_t wrap = 0) {
  std::string out(4 * ((bytes.size() + 2) / 3) + 1, '\0');
  int n = EVP_EncodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                          reinterpret_cast<const unsigned char*>(bytes.data()),
                          static_cast<int>(bytes.size()));
  out.resize(static_cast<size_t>(n));
  if (wrap == 0) return out;
  std::string wrapped;
  for (size_t i = 0; i < out.size(); i += wrap) {
    if (i > 0) wrapped.push_back('\n');
    wrapped.append(out.substr(i, wrap));
  }
  return wrapped;
}

// A key and self-signed certificate standing in for AWS's regional signing certificate.
class Signer {
 public:
  explicit Signer(const std::string& cn = "Fake AWS", unsigned bits = 2048)
      : key_(testcerts::RsaKey(bits)),
        cert_(testcerts::MakeCert(cn, key_.p, nullptr, key_.p, /*ca=*/false)) {}

  std::string CertPem() const {
    BIO* bio = BIO_new(BIO_s_mem());
    PEM_write_bio_X509(bio, cert_.x509);
    char* data = nullptr;
    long n = BIO_get_mem_data(bio, &data);
    std::string out(data, static_cast<size_t>(n));
    BIO_free(bio);
    return out;
  }

  // The rsa2048 form: base64 of a DER PKCS#7 signedData, without PEM armour, in 64-column
  // lines; the signer's certificate is carried in it. `detached`: the document is left out.
  std::string Rsa2048(std::string_view document, bool detached = true) const {
    BIO* in = BIO_new_mem_buf(document.data(), static_cast<int>(document.size()));
    int flags = PKCS7_BINARY | (detached ? PKCS7_DETACHED : 0);
    PKCS7* p7 = PKCS7_sign(cert_.x509, key_.p, nullptr, in, flags);
    BIO_free(in);
    EXPECT_NE(p7, nullptr);
    unsigned char* der = nullptr;
    int len = i2d_PKCS7(p7, &der);
    PKCS7_free(p7);
    std::string out(reinterpret_cast<char*>(der), static_cast<size_t>(len));
    OPENSSL_free(der);
    return Base64(out, 64);
  }

  // The "signature" form: base64 RSA PKCS#1 v1.5 SHA-256 over the document.
  std::string Signature(std::string_view document) const {
    EVP_MD_CTX* ctx = EVP_MD_CTX_new();
    size_t len = 0;
    EXPECT_EQ(EVP_DigestSignInit(ctx, nullptr, EVP_sha256(), nullptr, key_.p), 1);
    EXPECT_EQ(
        EVP_DigestSign(ctx, nullptr, &len, reinterpret_cast<const unsigned char*>(document.data()),
                       document.size()),
        1);
    std::string sig(len, '\0');
    EXPECT_EQ(
        EVP_DigestSign(ctx, reinterpret_cast<unsigned char*>(sig.data()), &len,
                       reinterpret_cast<const unsigned char*>(document.data()), document.size()),
        1);
    EVP_MD_CTX_free(ctx);
    sig.resize(len);
    return Base64(sig, 64);
  }

 private:
  testcerts::Pkey key_;
  testcerts::Issued cert_;
};

// An instance identity document with AWS's field names, pretty-printed as IMDS serves it.
struct Document {
  std::string account_id = "123456789012";
  std::string region = "us-east-1";
  std::string instance_id = "i-0123456789abcdef0";
  std::string availability_zone = "us-east-1a";
  std::string image_id = "ami-0abcdef1234567890";
  std::string pending_time = "2027-01-15T08:00:00Z";
  std::string instance_type = "t3.micro";

  std::string ToJson() const {
    return absl::StrCat(
        "{\n  \"accountId\" : \"", account_id,
        "\",\n  \"architecture\" : \"x86_64\",\n  \"availabilityZone\" : \"", availability_zone,
        "\",\n  \"billingProducts\" : null,\n  \"devpayProductCodes\" : null,\n"
        "  \"marketplaceProductCodes\" : null,\n  \"imageId\" : \"",
        image_id, "\",\n  \"instanceId\" : \"", instance_id, "\",\n  \"instanceType\" : \"",
        instance_type, "\",\n  \"kernelId\" : null,\n  \"pendingTime\" : \"", pending_time,
        "\",\n  \"privateIp\" : \"10.0.0.12\",\n  \"ramdiskId\" : null,\n"
        "  \"region\" : \"",
        region, "\",\n  \"version\" : \"2017-09-30\"\n}");
  }
};

// Runs an httplib server on 127.0.0.1 and an ephemeral port. The socket listens from
// construction, so clients may connect at once.
class LoopbackServer {
 public:
  explicit LoopbackServer(const std::function<void(httplib::Server&)>& routes) {
    routes(server_);
    port_ = server_.bind_to_any_port("127.0.0.1");
    EXPECT_GT(port_, 0);
    thread_ = std::thread([this] { server_.listen_after_bind(); });
  }
  ~LoopbackServer() {
    // stop() only takes effect once the accept loop runs.
    while (!server_.is_running()) std::this_thread::yield();
    server_.stop();
    thread_.join();
  }
  std::string url() const { return "http://127.0.0.1:" + std::to_string(port_); }
  int port() const { return port_; }

 private:
  httplib::Server server_;
  int port_ = 0;
  std::thread thread_;
};

// IMDSv2: PUT /latest/api/token (with X-aws-ec2-metadata-token-ttl-seconds, 1..21600) issues a
// session token; every GET must carry it in X-aws-ec2-metadata-token, or gets 401.
class FakeImds {
 public:
  FakeImds() : server_([this](httplib::Server& s) { Routes(s); }) {}

  std::string endpoint() const { return server_.url(); }

  // What the service answers; an empty rsa2048 or signature is a 404.
  void Serve(std::string document, std::string signature, std::string rsa2048) {
    absl::MutexLock lock(&mu_);
    document_ = std::move(document);
    signature_ = std::move(signature);
    rsa2048_ = std::move(rsa2048);
  }
  // Serves `doc` signed by `signer` in both forms.
  void ServeSigned(const std::string& doc, const Signer& signer) {
    Serve(doc, signer.Signature(doc), signer.Rsa2048(doc));
  }
  // When set, token requests get 403 (as when IMDS is disabled for the instance).
  void RefuseTokens(bool refuse) {
    absl::MutexLock lock(&mu_);
    refuse_tokens_ = refuse;
  }
  int tokens_issued() const {
    absl::MutexLock lock(&mu_);
    return tokens_issued_;
  }
  int unauthorized() const {
    absl::MutexLock lock(&mu_);
    return unauthorized_;
  }

 private:
  void Routes(httplib::Server& s) {
    s.Put("/latest/api/token", [this](const httplib::Request& req, httplib::Response& res) {
      absl::MutexLock lock(&mu_);
      if (refuse_tokens_) {
        res.status = 403;
        return;
      }
      const std::string ttl = req.get_header_value("X-aws-ec2-metadata-token-ttl-seconds");
      int seconds = 0;
      if (ttl.empty() || !absl::SimpleAtoi(ttl, &seconds) || seconds < 1 || seconds > 21600) {
        res.status = 400;
        return;
      }
      token_ = "AQAEAFake-" + std::to_string(++tokens_issued_) + "-token==";
      res.set_content(token_, "text/plain");
    });
    s.Get(R"(/latest/dynamic/instance-identity/(document|signature|rsa2048))",
          [this](const httplib::Request& req, httplib::Response& res) {
            absl::MutexLock lock(&mu_);
            const std::string token = req.get_header_value("X-aws-ec2-metadata-token");
            if (token.empty() || token != token_) {
              ++unauthorized_;
              res.status = 401;
              return;
            }
            const std::string what = req.matches[1];
            const std::string& body = what == "document"    ? document_
                                      : what == "signature" ? signature_
                                                            : rsa2048_;
            if (body.empty()) {
              res.status = 404;
              return;
            }
            res.set_content(body, "text/plain");
          });
  }

  mutable absl::Mutex mu_;
  std::string document_ ABSL_GUARDED_BY(mu_);
  std::string signature_ ABSL_GUARDED_BY(mu_);
  std::string rsa2048_ ABSL_GUARDED_BY(mu_);
  std::string token_ ABSL_GUARDED_BY(mu_);
  bool refuse_tokens_ ABSL_GUARDED_BY(mu_) = false;
  int tokens_issued_ ABSL_GUARDED_BY(mu_) = 0;
  int unauthorized_ ABSL_GUARDED_BY(mu_) = 0;
  LoopbackServer server_;  // last: stopped before the state its handlers use goes away
};

// The EC2 and IAM query APIs on one endpoint (the service is told by the SigV4 scope).
class FakeAwsApi {
 public:
  struct Instance {
    std::string owner_id = "123456789012";
    std::string instance_id = "i-0123456789abcdef0";
    std::vector<std::pair<std::string, std::string>> tags;
    std::vector<std::pair<std::string, std::string>> security_groups;  // id, name
    std::string instance_profile_arn;
    std::string root_device_type = "ebs";
    std::string root_device_name = "/dev/xvda";
    std::string eni_attach_time = "2027-01-15T08:00:01.000Z";
    std::string root_attach_time = "2027-01-15T08:00:02.000Z";
  };
  struct Call {
    std::string service;  // "ec2" or "iam"
    std::string region;   // of the SigV4 scope
    std::string action;
  };

  explicit FakeAwsApi(AwsCredentials credentials)
      : credentials_(std::move(credentials)), server_([this](httplib::Server& s) {
          s.Get("/",
                [this](const httplib::Request& req, httplib::Response& res) { Handle(req, res); });
        }) {}

  std::string endpoint() const { return server_.url(); }

  void AddInstance(Instance instance) {
    absl::MutexLock lock(&mu_);
    instances_[instance.instance_id] = std::move(instance);
  }
  void AddInstanceProfile(const std::string& arn, std::vector<std::string> role_arns) {
    absl::MutexLock lock(&mu_);
    profiles_[arn] = std::move(role_arns);
  }
  // Every call answers `status` with an AWS error document (code, message); status 0 clears.
  void FailWith(int status, std::string code, std::string message) {
    absl::MutexLock lock(&mu_);
    fail_status_ = status;
    fail_code_ = std::move(code);
    fail_message_ = std::move(message);
  }
  // Every call answers 200 with this body instead (e.g. malformed XML); "" clears.
  void AnswerRaw(std::string body) {
    absl::MutexLock lock(&mu_);
    raw_ = std::move(body);
  }
  std::vector<Call> calls() const {
    absl::MutexLock lock(&mu_);
    return calls_;
  }

 private:
  static std::string ErrorXml(const std::string& service, const std::string& code,
                              const std::string& message) {
    if (service == "iam") {
      return "<ErrorResponse xmlns=\"https://iam.amazonaws.com/doc/2010-05-08/\"><Error>"
             "<Type>Sender</Type><Code>" +
             code + "</Code><Message>" + message +
             "</Message></Error><RequestId>4a1c2d3e-0000-4000-8000-000000000001</RequestId>"
             "</ErrorResponse>";
    }
    return "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Response><Errors><Error><Code>" + code +
           "</Code><Message>" + message +
           "</Message></Error></Errors><RequestID>5b2d3e4f-0000-4000-8000-000000000002"
           "</RequestID></Response>";
  }

  void Handle(const httplib::Request& req, httplib::Response& res) {
    absl::MutexLock lock(&mu_);
    auto fail = [&](int status, const std::string& service, const std::string& code,
                    const std::string& message) {
      res.status = status;
      res.set_content(ErrorXml(service, code, message), "text/xml;charset=UTF-8");
    };
    // AWS4-HMAC-SHA256 Credential=<key>/<date>/<region>/<service>/aws4_request,
    // SignedHeaders=<h;h>, Signature=<64 hex>
    static const std::regex kAuth(
        "AWS4-HMAC-SHA256 Credential=([A-Za-z0-9]+)/([0-9]{8})/([a-z0-9-]+)/([a-z0-9]+)/"
        "aws4_request, SignedHeaders=([a-z0-9;-]+), Signature=([0-9a-f]{64})");
    static const std::regex kAmzDate("[0-9]{8}T[0-9]{6}Z");
    std::smatch m;
    const std::string auth = req.get_header_value("Authorization");
    const std::string amz_date = req.get_header_value("X-Amz-Date");
    if (!std::regex_match(auth, m, kAuth) || !std::regex_match(amz_date, kAmzDate)) {
      return fail(400, "ec2", "MissingAuthenticationToken",
                  "Request is missing a well-formed SigV4 Authorization header.");
    }
    const std::string key_id = m[1], date = m[2], region = m[3], service = m[4],
                      signed_headers = m[5], signature = m[6];
    if (service != "ec2" && service != "iam") {
      return fail(400, "ec2", "InvalidAction", "Unknown service " + service);
    }
    if (date != amz_date.substr(0, 8) ||
        (";" + signed_headers + ";").find(";host;") == std::string::npos ||
        (";" + signed_headers + ";").find(";x-amz-date;") == std::string::npos) {
      return fail(400, service, "IncompleteSignature", "Bad credential scope or headers.");
    }
    if (key_id != credentials_.access_key_id) {
      return fail(401, service, "AuthFailure", "AWS was not able to validate the credentials.");
    }
    // Recompute the signature over what was received.
    AwsSigV4Request signed_req;
    signed_req.host = req.get_header_value("Host");
    for (const auto& [k, v] : req.params) signed_req.query.emplace_back(k, v);
    absl::Time at;
    std::string err;
    EXPECT_TRUE(absl::ParseTime("%E4Y%m%dT%H%M%SZ", amz_date, &at, &err)) << err;
    AwsSigV4Signature expect = AwsSigV4Sign(signed_req, credentials_, region, service, at);
    const std::string sent_query = req.target.substr(req.target.find('?') + 1);
    if (signature != expect.signature || sent_query != expect.canonical_query) {
      return fail(403, service, "SignatureDoesNotMatch",
                  "The request signature we calculated does not match the signature you "
                  "provided.");
    }
    const std::string action = req.get_param_value("Action");
    calls_.push_back({service, region, action});
    if (fail_status_ != 0) return fail(fail_status_, service, fail_code_, fail_message_);
    if (!raw_.empty()) {
      res.set_content(raw_, "text/xml;charset=UTF-8");
      return;
    }
    if (service == "ec2" && action == "DescribeInstances" &&
        req.get_param_value("Version") == "2016-11-15") {
      auto it = instances_.find(req.get_param_value("InstanceId.1"));
      if (it == instances_.end()) {
        return fail(400, service, "InvalidInstanceID.NotFound",
                    "The instance ID '" + req.get_param_value("InstanceId.1") + "' does not exist");
      }
      res.set_content(DescribeInstancesXml(it->second), "text/xml;charset=UTF-8");
      return;
    }
    if (service == "iam" && action == "GetInstanceProfile" &&
        req.get_param_value("Version") == "2010-05-08") {
      const std::string name = req.get_param_value("InstanceProfileName");
      for (const auto& [arn, roles] : profiles_) {
        if (arn.substr(arn.rfind('/') + 1) == name) {
          res.set_content(GetInstanceProfileXml(arn, name, roles), "text/xml");
          return;
        }
      }
      return fail(404, service, "NoSuchEntity", "Instance Profile " + name + " cannot be found.");
    }
    return fail(400, service, "InvalidAction", "The action " + action + " is not valid.");
  }

  static std::string DescribeInstancesXml(const Instance& i) {
    std::string groups;
    for (const auto& [id, name] : i.security_groups) {
      absl::StrAppend(&groups, "<item><groupId>", id, "</groupId><groupName>", name,
                      "</groupName></item>");
    }
    std::string tags;
    for (const auto& [k, v] : i.tags) {
      absl::StrAppend(&tags, "<item><key>", k, "</key><value>", v, "</value></item>");
    }
    std::string profile;
    if (!i.instance_profile_arn.empty()) {
      profile = "<iamInstanceProfile><arn>" + i.instance_profile_arn +
                "</arn><id>AIPAJ2HFAKEPROFILE0001</id></iamInstanceProfile>";
    }
    return absl::StrCat(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
        "<DescribeInstancesResponse xmlns=\"http://ec2.amazonaws.com/doc/2016-11-15/\">"
        "<requestId>8f7724cf-496f-496e-8fe3-example</requestId><reservationSet><item>"
        "<reservationId>r-0123456789abcdef0</reservationId><ownerId>",
        i.owner_id, "</ownerId><groupSet/><instancesSet><item><instanceId>", i.instance_id,
        "</instanceId><imageId>ami-0abcdef1234567890</imageId><instanceState><code>16</code>"
        "<name>running</name></instanceState><instanceType>t3.micro</instanceType>"
        "<launchTime>2027-01-15T08:00:00.000Z</launchTime>"
        "<placement><availabilityZone>us-east-1a</availabilityZone></placement>"
        "<rootDeviceType>",
        i.root_device_type, "</rootDeviceType><rootDeviceName>", i.root_device_name,
        "</rootDeviceName><blockDeviceMapping><item><deviceName>", i.root_device_name,
        "</deviceName><ebs><volumeId>vol-0123456789abcdef0</volumeId><status>attached</status>"
        "<attachTime>",
        i.root_attach_time,
        "</attachTime><deleteOnTermination>true</deleteOnTermination></ebs></item>"
        "<item><deviceName>/dev/sdf</deviceName><ebs><volumeId>vol-0fedcba9876543210</volumeId>"
        "<status>attached</status><attachTime>2027-02-01T00:00:00.000Z</attachTime>"
        "</ebs></item></blockDeviceMapping>",
        profile, "<groupSet>", groups, "</groupSet><tagSet>", tags,
        "</tagSet><networkInterfaceSet><item><networkInterfaceId>eni-0123456789abcdef0"
        "</networkInterfaceId><groupSet><item><groupId>sg-0nested</groupId><groupName>nested"
        "</groupName></item></groupSet><attachment><attachmentId>eni-attach-01</attachmentId>"
        "<deviceIndex>0</deviceIndex><status>attached</status><attachTime>",
        i.eni_attach_time,
        "</attachTime></attachment></item></networkInterfaceSet></item></instancesSet>"
        "</item></reservationSet></DescribeInstancesResponse>");
  }

  static std::string GetInstanceProfileXml(const std::string& arn, const std::string& name,
                                           const std::vector<std::string>& roles) {
    std::string members;
    for (const std::string& role : roles) {
      absl::StrAppend(&members, "<member><Path>/</Path><Arn>", role, "</Arn><RoleName>",
                      role.substr(role.rfind('/') + 1),
                      "</RoleName><RoleId>AROAFAKEROLE000001</RoleId></member>");
    }
    return absl::StrCat(
        "<GetInstanceProfileResponse xmlns=\"https://iam.amazonaws.com/doc/2010-05-08/\">"
        "<GetInstanceProfileResult><InstanceProfile><InstanceProfileId>AIPAJ2HFAKEPROFILE0001"
        "</InstanceProfileId><Roles>",
        members, "</Roles><InstanceProfileName>", name, "</InstanceProfileName><Path>/</Path><Arn>",
        arn,
        "</Arn><CreateDate>2026-05-24T16:17:03Z</CreateDate></InstanceProfile>"
        "</GetInstanceProfileResult><ResponseMetadata><RequestId>"
        "37289fda-0000-4000-8000-000000000003</RequestId></ResponseMetadata>"
        "</GetInstanceProfileResponse>");
  }

  const AwsCredentials credentials_;
  mutable absl::Mutex mu_;
  std::map<std::string, Instance> instances_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, std::vector<std::string>> profiles_ ABSL_GUARDED_BY(mu_);
  int fail_status_ ABSL_GUARDED_BY(mu_) = 0;
  std::string fail_code_ ABSL_GUARDED_BY(mu_);
  std::string fail_message_ ABSL_GUARDED_BY(mu_);
  std::string raw_ ABSL_GUARDED_BY(mu_);
  std::vector<Call> calls_ ABSL_GUARDED_BY(mu_);
  LoopbackServer server_;  // last: stopped before the state its handlers use goes away
};

}  // namespace trellis::attestors::fakeaws
