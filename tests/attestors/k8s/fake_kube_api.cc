// The fake Kubernetes API: the three paths k8s_psat calls, with the API's JSON and statuses.
#include "tests/attestors/k8s/fake_kube_api.h"

#include <httplib.h>
#include <openssl/evp.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include <atomic>
#include <fstream>
#include <nlohmann/json.hpp>

#include "absl/strings/escaping.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "common/keys.h"
#include "common/x509.h"
#include "gtest/gtest.h"

namespace trellis::attestors::k8s::testing {
namespace {

using Json = nlohmann::json;

constexpr char kApiServerAudience[] = "https://kubernetes.default.svc.cluster.local";

struct Issued {
  std::string cert_pem;
  std::string key_pem;
};

// A certificate valid from an hour ago for a day: CA, server (127.0.0.1, localhost) or client.
Issued Issue(const std::string& cn, const std::string& kind, const Issued* issuer) {
  Issued out;
  absl::StatusOr<common::PrivateKey> key = common::PrivateKey::Generate();
  EXPECT_TRUE(key.ok()) << key.status();
  absl::StatusOr<common::SecretBytes> key_pem = key->ToPem();
  out.key_pem = std::string(key_pem->view());
  std::optional<common::Certificate> issuer_cert;
  std::optional<common::PrivateKey> issuer_key;
  if (issuer != nullptr) {
    issuer_cert.emplace(*common::Certificate::FromPem(issuer->cert_pem));
    issuer_key.emplace(*common::PrivateKey::FromPem(issuer->key_pem));
  }
  static std::atomic<long> serial{1000};
  X509* x = X509_new();
  X509_set_version(x, 2);
  ASN1_INTEGER_set(X509_get_serialNumber(x), serial++);
  X509_NAME* name = X509_NAME_new();
  X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_UTF8,
                             reinterpret_cast<const unsigned char*>(cn.c_str()), -1, -1, 0);
  X509_set_subject_name(x, name);
  X509_set_issuer_name(x, issuer_cert ? X509_get_subject_name(issuer_cert->x509()) : name);
  X509_NAME_free(name);
  const time_t now = absl::ToTimeT(absl::Now());
  ASN1_TIME_set(X509_getm_notBefore(x), now - 3600);
  ASN1_TIME_set(X509_getm_notAfter(x), now + 86400);
  X509_set_pubkey(x, key->pkey());
  X509V3_CTX ctx;
  X509V3_set_ctx(&ctx, issuer_cert ? issuer_cert->x509() : x, x, nullptr, nullptr, 0);
  auto add = [&](int nid, const std::string& value) {
    X509_EXTENSION* ext = X509V3_EXT_conf_nid(nullptr, &ctx, nid, value.c_str());
    EXPECT_NE(ext, nullptr) << value;
    X509_add_ext(x, ext, -1);
    X509_EXTENSION_free(ext);
  };
  if (kind == "ca") {
    add(NID_basic_constraints, "critical,CA:TRUE");
    add(NID_key_usage, "critical,keyCertSign,cRLSign");
  } else {
    add(NID_basic_constraints, "CA:FALSE");
    add(NID_key_usage, "critical,digitalSignature");
    if (kind == "server") {
      add(NID_ext_key_usage, "serverAuth");
      add(NID_subject_alt_name, "IP:127.0.0.1,DNS:localhost");
    } else {
      add(NID_ext_key_usage, "clientAuth");
    }
  }
  add(NID_subject_key_identifier, "hash");
  EXPECT_GT(X509_sign(x, issuer_key ? issuer_key->pkey() : key->pkey(), EVP_sha256()), 0);
  unsigned char* der = nullptr;
  const int len = i2d_X509(x, &der);
  std::string der_bytes(reinterpret_cast<char*>(der), static_cast<size_t>(len));
  OPENSSL_free(der);
  X509_free(x);
  out.cert_pem = common::Certificate::FromDer(der_bytes)->ToPem();
  return out;
}

std::string StatusBody(int code, const std::string& reason, const std::string& message) {
  return Json{{"kind", "Status"},    {"apiVersion", "v1"}, {"metadata", Json::object()},
              {"status", "Failure"}, {"message", message}, {"reason", reason},
              {"code", code}}
      .dump();
}

Json Labels(const std::map<std::string, std::string>& labels) {
  Json out = Json::object();
  for (const auto& [k, v] : labels) out[k] = v;
  return out;
}

void WriteFile(const std::string& path, const std::string& content) {
  std::ofstream f(path, std::ios::binary | std::ios::trunc);
  f << content;
  EXPECT_TRUE(f.good()) << path;
}

}  // namespace

FakeKubeApi::FakeKubeApi() : FakeKubeApi(Options()) {}

FakeKubeApi::FakeKubeApi(Options options) : options_(options) {
  Issued ca = Issue("fake-kubernetes-ca", "ca", nullptr);
  Issued server = Issue("kube-apiserver", "server", &ca);
  Issued client = Issue("trellis-server", "client", &ca);
  ca_pem_ = ca.cert_pem;
  server_cert_pem_ = server.cert_pem;
  server_key_pem_ = server.key_pem;
  client_cert_pem_ = client.cert_pem;
  client_key_pem_ = client.key_pem;
}

FakeKubeApi::~FakeKubeApi() { Stop(); }

absl::Status FakeKubeApi::Start() {
  if (options_.tls) {
    absl::StatusOr<common::Certificate> cert = common::Certificate::FromPem(server_cert_pem_);
    absl::StatusOr<common::PrivateKey> key = common::PrivateKey::FromPem(server_key_pem_);
    if (!cert.ok() || !key.ok()) return absl::InternalError("fake API: server certificate");
    X509_STORE* client_cas = nullptr;
    if (options_.require_client_certificate) {
      client_cas = X509_STORE_new();
      X509_STORE_add_cert(client_cas, common::Certificate::FromPem(ca_pem_)->x509());
    }
    server_ = std::make_unique<httplib::SSLServer>(cert->x509(), key->pkey(), client_cas);
  } else {
    server_ = std::make_unique<httplib::Server>();
  }
  if (!server_->is_valid()) return absl::InternalError("fake API: server is not valid");
  auto handler = [this](const httplib::Request& req, httplib::Response& res) {
    Answer a = Handle(req.method, req.path, req.get_header_value("Authorization"), req.body);
    res.status = a.status;
    res.set_content(a.body, a.content_type.c_str());
  };
  server_->Get(".*", handler);
  server_->Post(".*", handler);
  // The accept loop notices stop() this often.
  server_->set_idle_interval(0, 100000);
  port_ = server_->bind_to_any_port("127.0.0.1");
  if (port_ <= 0) return absl::UnavailableError("fake API: cannot listen on 127.0.0.1");
  auto returned = std::make_shared<std::atomic<bool>>(false);
  httplib::Server* s = server_.get();
  thread_ = std::thread([s, returned] {
    s->listen_after_bind();
    *returned = true;
  });
  // stop() does nothing before the accept loop runs, so wait for it.
  while (!server_->is_running() && !*returned) absl::SleepFor(absl::Milliseconds(1));
  if (!server_->is_running()) return absl::UnavailableError("fake API: listener did not start");
  return absl::OkStatus();
}

void FakeKubeApi::Stop() {
  if (server_) server_->stop();
  if (thread_.joinable()) thread_.join();
}

std::string FakeKubeApi::Url() const {
  return std::string(options_.tls ? "https" : "http") + "://127.0.0.1:" + std::to_string(port_);
}

void FakeKubeApi::SetCallerToken(const std::string& token) {
  absl::MutexLock lock(&mu_);
  caller_token_ = token;
}

void FakeKubeApi::AddPod(const FakePod& pod) {
  absl::MutexLock lock(&mu_);
  pods_[pod.namespace_name + "/" + pod.name] = pod;
}

void FakeKubeApi::RemovePod(const std::string& namespace_name, const std::string& name) {
  absl::MutexLock lock(&mu_);
  pods_.erase(namespace_name + "/" + name);
}

void FakeKubeApi::AddNode(const FakeNode& node) {
  absl::MutexLock lock(&mu_);
  nodes_[node.name] = node;
}

void FakeKubeApi::RemoveNode(const std::string& name) {
  absl::MutexLock lock(&mu_);
  nodes_.erase(name);
}

void FakeKubeApi::AcceptToken(const std::string& token, const FakeToken& identity) {
  absl::MutexLock lock(&mu_);
  tokens_[token] = identity;
}

void FakeKubeApi::SetAnswer(const std::string& path, const FakeAnswer& answer) {
  absl::MutexLock lock(&mu_);
  answers_[path] = answer;
}

void FakeKubeApi::ClearAnswer(const std::string& path) {
  absl::MutexLock lock(&mu_);
  answers_.erase(path);
}

std::string FakeKubeApi::LastCallerToken() const {
  absl::MutexLock lock(&mu_);
  return last_caller_token_;
}

std::vector<std::string> FakeKubeApi::LastReviewAudiences() const {
  absl::MutexLock lock(&mu_);
  return last_review_audiences_;
}

int FakeKubeApi::RequestCount() const {
  absl::MutexLock lock(&mu_);
  return requests_;
}

FakeKubeApi::Answer FakeKubeApi::Handle(const std::string& method, const std::string& path,
                                        const std::string& authorization, const std::string& body) {
  absl::MutexLock lock(&mu_);
  ++requests_;
  const std::string bearer = "Bearer ";
  last_caller_token_ =
      authorization.rfind(bearer, 0) == 0 ? authorization.substr(bearer.size()) : "";
  if (!options_.require_client_certificate && authorization != bearer + caller_token_) {
    return {401, StatusBody(401, "Unauthorized", "Unauthorized")};
  }
  if (auto it = answers_.find(path); it != answers_.end()) {
    return {it->second.status, it->second.body, it->second.content_type};
  }
  const std::vector<std::string> parts = absl::StrSplit(path, '/');
  // "", "api", "v1", "namespaces", ns, "pods", name
  if (method == "GET" && parts.size() == 7 && parts[1] == "api" && parts[2] == "v1" &&
      parts[3] == "namespaces" && parts[5] == "pods") {
    auto it = pods_.find(parts[4] + "/" + parts[6]);
    if (it == pods_.end()) {
      return {404, StatusBody(404, "NotFound", "pods \"" + parts[6] + "\" not found")};
    }
    const FakePod& p = it->second;
    Json pod = {{"kind", "Pod"},
                {"apiVersion", "v1"},
                {"metadata",
                 {{"name", p.name},
                  {"namespace", p.namespace_name},
                  {"uid", p.uid},
                  {"resourceVersion", "4242"},
                  {"creationTimestamp", "2024-05-01T10:00:00Z"},
                  {"labels", Labels(p.labels)}}},
                {"spec",
                 {{"nodeName", p.node_name},
                  {"serviceAccountName", "spire-agent"},
                  {"containers", Json::array({{{"name", "spire-agent"}, {"image", "agent:1"}}})}}},
                {"status", {{"phase", "Running"}, {"hostIP", p.host_ip}, {"podIP", "10.244.1.7"}}}};
    if (p.node_name.empty()) pod["spec"].erase("nodeName");
    if (p.host_ip.empty()) pod["status"].erase("hostIP");
    return {200, pod.dump()};
  }
  // "", "api", "v1", "nodes", name
  if (method == "GET" && parts.size() == 5 && parts[1] == "api" && parts[2] == "v1" &&
      parts[3] == "nodes") {
    auto it = nodes_.find(parts[4]);
    if (it == nodes_.end()) {
      return {404, StatusBody(404, "NotFound", "nodes \"" + parts[4] + "\" not found")};
    }
    const FakeNode& n = it->second;
    Json node = {
        {"kind", "Node"},
        {"apiVersion", "v1"},
        {"metadata",
         {{"name", n.name},
          {"uid", n.uid},
          {"resourceVersion", "77"},
          {"labels", Labels(n.labels)}}},
        {"spec", {{"podCIDR", "10.244.1.0/24"}}},
        {"status", {{"addresses", Json::array({{{"type", "Hostname"}, {"address", n.name}}})}}}};
    return {200, node.dump()};
  }
  if (method == "POST" && path == "/apis/authentication.k8s.io/v1/tokenreviews") {
    return Review(body);
  }
  return {404, StatusBody(404, "NotFound", "the server could not find the requested resource")};
}

FakeKubeApi::Answer FakeKubeApi::Review(const std::string& body) {
  Json req = Json::parse(body, nullptr, /*allow_exceptions=*/false);
  if (!req.is_object() || req.value("kind", "") != "TokenReview" ||
      req.value("apiVersion", "") != "authentication.k8s.io/v1" || !req.contains("spec") ||
      !req["spec"].is_object()) {
    return {400, StatusBody(400, "BadRequest",
                            "the body is not an authentication.k8s.io/v1 "
                            "TokenReview")};
  }
  const Json& spec = req["spec"];
  const std::string token = spec.value("token", "");
  if (token.empty()) {
    return {400, StatusBody(400, "BadRequest",
                            "token is required for TokenReview in "
                            "authentication")};
  }
  std::vector<std::string> wanted;
  if (spec.contains("audiences") && spec["audiences"].is_array()) {
    for (const Json& a : spec["audiences"]) {
      if (a.is_string()) wanted.push_back(a.get<std::string>());
    }
  }
  last_review_audiences_ = wanted;
  if (wanted.empty()) wanted.push_back(kApiServerAudience);
  Json status = {{"user", Json::object()}};
  auto it = tokens_.find(token);
  if (it == tokens_.end()) {
    status["error"] = "[invalid bearer token, square/go-jose: error in cryptographic primitive]";
  } else {
    const FakeToken& t = it->second;
    std::vector<std::string> matched;
    for (const std::string& a : wanted) {
      if (std::find(t.audiences.begin(), t.audiences.end(), a) != t.audiences.end()) {
        matched.push_back(a);
      }
    }
    if (matched.empty()) {
      status["error"] = "[invalid bearer token, token audiences " + Json(t.audiences).dump() +
                        " is invalid for the target audiences " + Json(wanted).dump() + "]";
    } else {
      Json extra = Json::object();
      if (!t.pod_name.empty()) {
        extra["authentication.kubernetes.io/pod-name"] = Json::array({t.pod_name});
        extra["authentication.kubernetes.io/pod-uid"] = Json::array({t.pod_uid});
      }
      if (!t.node_name.empty()) {
        extra["authentication.kubernetes.io/node-name"] = Json::array({t.node_name});
      }
      status = {{"authenticated", true},
                {"user",
                 {{"username", t.username.empty() ? "system:serviceaccount:" + t.namespace_name +
                                                        ":" + t.service_account
                                                  : t.username},
                  {"uid", "sa-uid-" + t.namespace_name + "-" + t.service_account},
                  {"groups", Json::array({"system:serviceaccounts",
                                          "system:serviceaccounts:" + t.namespace_name,
                                          "system:authenticated"})},
                  {"extra", extra}}},
                {"audiences", matched}};
    }
  }
  Json out = {{"kind", "TokenReview"},
              {"apiVersion", "authentication.k8s.io/v1"},
              {"metadata", {{"creationTimestamp", nullptr}}},
              {"spec", spec},
              {"status", status}};
  return {201, out.dump()};
}

std::string FakeKubeApi::KubeconfigPath(const std::string& dir,
                                        const KubeconfigOptions& options) const {
  std::string caller_token;
  {
    absl::MutexLock lock(&mu_);
    caller_token = caller_token_;
  }
  std::string cluster = "    server: " + (options.server.empty() ? Url() : options.server) + "\n";
  switch (options.trust) {
    case KubeconfigOptions::Trust::kCaData:
      cluster += "    certificate-authority-data: " + absl::Base64Escape(ca_pem_) + "\n";
      break;
    case KubeconfigOptions::Trust::kCaFile:
      WriteFile(dir + "/ca.crt", ca_pem_);
      cluster += "    certificate-authority: ca.crt\n";  // relative to the kubeconfig
      break;
    case KubeconfigOptions::Trust::kInsecure:
      cluster += "    insecure-skip-tls-verify: true\n";
      break;
  }
  std::string user;
  switch (options.auth) {
    case KubeconfigOptions::Auth::kToken:
      user = "    token: " + caller_token + "\n";
      break;
    case KubeconfigOptions::Auth::kTokenFile:
      WriteFile(dir + "/caller-token", caller_token + "\n");
      user = "    tokenFile: " + dir + "/caller-token\n";
      break;
    case KubeconfigOptions::Auth::kClientCertData:
      user = "    client-certificate-data: " + absl::Base64Escape(client_cert_pem_) + "\n" +
             "    client-key-data: " + absl::Base64Escape(client_key_pem_) + "\n";
      break;
    case KubeconfigOptions::Auth::kClientCertFile:
      WriteFile(dir + "/client.crt", client_cert_pem_);
      WriteFile(dir + "/client.key", client_key_pem_);
      user = "    client-certificate: " + dir + "/client.crt\n" + "    client-key: client.key\n";
      break;
  }
  const std::string path = dir + "/kubeconfig";
  WriteFile(path,
            "apiVersion: v1\n"
            "kind: Config\n"
            "clusters:\n"
            "- name: other\n"
            "  cluster:\n"
            "    server: https://192.0.2.1:6443\n"
            "- name: fake\n"
            "  cluster:\n" +
                cluster +
                "contexts:\n"
                "- name: other\n"
                "  context:\n"
                "    cluster: other\n"
                "    user: nobody\n"
                "- name: fake\n"
                "  context:\n"
                "    cluster: fake\n"
                "    user: trellis\n"
                "    namespace: spire\n"
                "current-context: fake\n"
                "users:\n"
                "- name: trellis\n"
                "  user:\n" +
                user);
  return path;
}

}  // namespace trellis::attestors::k8s::testing
