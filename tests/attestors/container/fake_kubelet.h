// A fake kubelet for tests: GET /pods answers a real PodList (kubelet field names and shape),
// over plain HTTP (the read-only port) or HTTPS (the secure port) with a CA and certificates
// made in the test, checking a bearer token or requiring a client certificate.
#pragma once

#include <httplib.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include <atomic>
#include <functional>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "common/openssl_util.h"
#include "gtest/gtest.h"
#include "tests/testutil/temp_dir.h"

namespace trellis::attestors::testing {

// ---- Pods ----

struct FakeContainer {
  std::string name;
  std::string image;     // as in the pod spec, e.g. "ghcr.io/acme/web:1.2"
  std::string image_id;  // the runtime's, e.g. "ghcr.io/acme/web@sha256:..."
  // "containerd://<id>", "cri-o://<id>", "docker://<id>"; empty while it is being created.
  std::string container_id;
};

struct FakeOwner {
  std::string kind;
  std::string name;
  std::string uid;
};

struct FakePod {
  std::string uid;
  std::string name;
  std::string namespace_name = "default";
  std::string service_account = "default";
  std::string node_name = "node-1";
  std::map<std::string, std::string> labels;
  std::vector<FakeOwner> owners;
  std::vector<FakeContainer> containers;
  std::vector<FakeContainer> init_containers;
  std::vector<FakeContainer> ephemeral_containers;
};

inline nlohmann::json ContainerStatusJson(const FakeContainer& c, bool init) {
  nlohmann::json s = {{"name", c.name},        {"ready", !init && !c.container_id.empty()},
                      {"restartCount", 0},     {"image", c.image},
                      {"imageID", c.image_id}, {"started", !c.container_id.empty()}};
  if (c.container_id.empty()) {
    s["state"] = {{"waiting", {{"reason", "ContainerCreating"}}}};
  } else if (init) {
    s["containerID"] = c.container_id;
    s["state"] = {{"terminated",
                   {{"exitCode", 0},
                    {"reason", "Completed"},
                    {"startedAt", "2026-12-01T10:00:00Z"},
                    {"finishedAt", "2026-12-01T10:00:01Z"},
                    {"containerID", c.container_id}}}};
  } else {
    s["containerID"] = c.container_id;
    s["state"] = {{"running", {{"startedAt", "2026-12-01T10:00:02Z"}}}};
  }
  return s;
}

inline nlohmann::json PodJson(const FakePod& pod) {
  nlohmann::json metadata = {{"name", pod.name},
                             {"namespace", pod.namespace_name},
                             {"uid", pod.uid},
                             {"resourceVersion", "4242"},
                             {"creationTimestamp", "2026-12-01T09:59:58Z"}};
  if (!pod.labels.empty()) metadata["labels"] = pod.labels;
  if (!pod.owners.empty()) {
    nlohmann::json owners = nlohmann::json::array();
    for (const FakeOwner& o : pod.owners) {
      owners.push_back({{"apiVersion", "apps/v1"},
                        {"kind", o.kind},
                        {"name", o.name},
                        {"uid", o.uid},
                        {"controller", true},
                        {"blockOwnerDeletion", true}});
    }
    metadata["ownerReferences"] = owners;
  }
  auto spec_containers = [](const std::vector<FakeContainer>& list) {
    nlohmann::json out = nlohmann::json::array();
    for (const FakeContainer& c : list) {
      out.push_back({{"name", c.name},
                     {"image", c.image},
                     {"imagePullPolicy", "IfNotPresent"},
                     {"terminationMessagePath", "/dev/termination-log"},
                     {"resources", nlohmann::json::object()}});
    }
    return out;
  };
  nlohmann::json spec = {{"containers", spec_containers(pod.containers)},
                         {"restartPolicy", "Always"},
                         {"dnsPolicy", "ClusterFirst"},
                         {"serviceAccountName", pod.service_account},
                         {"serviceAccount", pod.service_account},
                         {"nodeName", pod.node_name},
                         {"schedulerName", "default-scheduler"}};
  if (!pod.init_containers.empty()) spec["initContainers"] = spec_containers(pod.init_containers);
  nlohmann::json status = {{"phase", "Running"},
                           {"hostIP", "10.0.0.7"},
                           {"podIP", "10.244.1.9"},
                           {"qosClass", "BestEffort"},
                           {"startTime", "2026-12-01T09:59:58Z"}};
  auto statuses = [](const std::vector<FakeContainer>& list, bool init) {
    nlohmann::json out = nlohmann::json::array();
    for (const FakeContainer& c : list) out.push_back(ContainerStatusJson(c, init));
    return out;
  };
  status["containerStatuses"] = statuses(pod.containers, false);
  if (!pod.init_containers.empty()) {
    status["initContainerStatuses"] = statuses(pod.init_containers, true);
  }
  if (!pod.ephemeral_containers.empty()) {
    status["ephemeralContainerStatuses"] = statuses(pod.ephemeral_containers, false);
  }
  return {{"metadata", metadata}, {"spec", spec}, {"status", status}};
}

inline std::string PodListJson(const std::vector<FakePod>& pods) {
  nlohmann::json items = nlohmann::json::array();
  for (const FakePod& p : pods) items.push_back(PodJson(p));
  nlohmann::json list = {{"kind", "PodList"},
                         {"apiVersion", "v1"},
                         {"metadata", nlohmann::json::object()},
                         {"items", items}};
  return list.dump();
}

// ---- Certificates ----

// A CA, the kubelet's serving certificate from it (SANs: IP 127.0.0.1, localhost and the
// node name), a client certificate from it, and an unrelated CA; all PEM files in `dir`,
// valid from an hour ago for a day.
struct KubeletPki {
  std::string ca_path;
  std::string other_ca_path;
  std::string server_cert_path;
  std::string server_key_path;
  std::string client_cert_path;
  std::string client_key_path;

  static KubeletPki Create(const testutil::TempDir& dir, const std::string& node_name) {
    KubeletPki out;
    common::EvpPkeyPtr ca_key(EVP_EC_gen("P-256"));
    common::X509Ptr ca =
        Issue("kubelet test CA", ca_key.get(), nullptr, ca_key.get(), true, "", "");
    common::EvpPkeyPtr other_key(EVP_EC_gen("P-256"));
    common::X509Ptr other =
        Issue("unrelated CA", other_key.get(), nullptr, other_key.get(), true, "", "");
    common::EvpPkeyPtr server_key(EVP_EC_gen("P-256"));
    common::X509Ptr server = Issue(node_name, server_key.get(), ca.get(), ca_key.get(), false,
                                   "IP:127.0.0.1,DNS:localhost,DNS:" + node_name, "serverAuth");
    common::EvpPkeyPtr client_key(EVP_EC_gen("P-256"));
    common::X509Ptr client = Issue("system:node:spire-agent", client_key.get(), ca.get(),
                                   ca_key.get(), false, "", "clientAuth");
    out.ca_path = dir.Write("kubelet-ca.pem", CertPem(ca.get()));
    out.other_ca_path = dir.Write("other-ca.pem", CertPem(other.get()));
    out.server_cert_path = dir.Write("kubelet.pem", CertPem(server.get()));
    out.server_key_path = dir.Write("kubelet.key", KeyPem(server_key.get()));
    out.client_cert_path = dir.Write("client.pem", CertPem(client.get()));
    out.client_key_path = dir.Write("client.key", KeyPem(client_key.get()));
    return out;
  }

  static common::X509Ptr Issue(const std::string& cn, EVP_PKEY* key, X509* issuer,
                               EVP_PKEY* issuer_key, bool ca, const std::string& san,
                               const std::string& eku) {
    static std::atomic<long> serial{1000};
    common::X509Ptr x(X509_new());
    X509_set_version(x.get(), 2);
    ASN1_INTEGER_set(X509_get_serialNumber(x.get()), serial++);
    X509_NAME* name = X509_get_subject_name(x.get());
    X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_UTF8,
                               reinterpret_cast<const unsigned char*>(cn.c_str()), -1, -1, 0);
    X509_set_issuer_name(x.get(), issuer ? X509_get_subject_name(issuer) : name);
    time_t now = absl::ToTimeT(absl::Now());
    X509_time_adj_ex(X509_getm_notBefore(x.get()), 0, -3600, &now);
    X509_time_adj_ex(X509_getm_notAfter(x.get()), 1, 0, &now);
    X509_set_pubkey(x.get(), key);
    X509V3_CTX ctx;
    X509V3_set_ctx(&ctx, issuer ? issuer : x.get(), x.get(), nullptr, nullptr, 0);
    auto add = [&](int nid, const std::string& value) {
      X509_EXTENSION* ext = X509V3_EXT_conf_nid(nullptr, &ctx, nid, value.c_str());
      if (ext == nullptr) {
        ADD_FAILURE() << "bad extension " << value;
        return;
      }
      X509_add_ext(x.get(), ext, -1);
      X509_EXTENSION_free(ext);
    };
    add(NID_basic_constraints, ca ? "critical,CA:TRUE" : "critical,CA:FALSE");
    add(NID_key_usage, ca ? "critical,keyCertSign,cRLSign" : "critical,digitalSignature");
    add(NID_subject_key_identifier, "hash");
    if (issuer != nullptr) add(NID_authority_key_identifier, "keyid:always");
    if (!san.empty()) add(NID_subject_alt_name, san);
    if (!eku.empty()) add(NID_ext_key_usage, eku);
    if (X509_sign(x.get(), issuer_key, EVP_sha256()) == 0) ADD_FAILURE() << "X509_sign failed";
    return x;
  }

  static std::string CertPem(X509* cert) {
    common::BioPtr bio(BIO_new(BIO_s_mem()));
    PEM_write_bio_X509(bio.get(), cert);
    return common::BioToString(bio.get());
  }
  static std::string KeyPem(EVP_PKEY* key) {
    common::BioPtr bio(BIO_new(BIO_s_mem()));
    PEM_write_bio_PrivateKey(bio.get(), key, nullptr, nullptr, 0, nullptr, nullptr);
    return common::BioToString(bio.get());
  }
};

// ---- The kubelet ----

class FakeKubelet {
 public:
  // The answer to one request: HTTP status and body.
  using Responder = std::function<std::pair<int, std::string>(int request_number)>;

  struct TlsOptions {
    std::string node_name = "node-1";
    // Non-empty: requests must carry "Authorization: Bearer <token>", else 401.
    std::string bearer_token;
    // The TLS handshake requires a client certificate from the test CA.
    bool require_client_cert = false;
  };

  // The read-only port: plain HTTP on 127.0.0.1, no authentication.
  static std::unique_ptr<FakeKubelet> StartHttp() {
    auto k = std::unique_ptr<FakeKubelet>(new FakeKubelet());
    k->server_ = std::make_unique<httplib::Server>();
    k->Run();
    return k;
  }

  // The secure port: HTTPS on 127.0.0.1 with certificates written to `dir` (see pki()).
  static std::unique_ptr<FakeKubelet> StartHttps(const testutil::TempDir& dir, TlsOptions options) {
    auto k = std::unique_ptr<FakeKubelet>(new FakeKubelet());
    k->pki_ = KubeletPki::Create(dir, options.node_name);
    k->token_ = options.bearer_token;
    auto server = std::make_unique<httplib::SSLServer>(
        k->pki_.server_cert_path.c_str(), k->pki_.server_key_path.c_str(),
        options.require_client_cert ? k->pki_.ca_path.c_str() : nullptr);
    EXPECT_TRUE(server->is_valid()) << "cannot load the fake kubelet's certificate";
    k->server_ = std::move(server);
    k->Run();
    return k;
  }

  ~FakeKubelet() {
    server_->stop();
    if (thread_.joinable()) thread_.join();
  }

  int port() const { return port_; }
  const KubeletPki& pki() const { return pki_; }

  // Every request gets this pod list.
  void SetPods(const std::vector<FakePod>& pods) {
    std::string body = PodListJson(pods);
    SetResponder([body](int) { return std::make_pair(200, body); });
  }
  void SetResponder(Responder responder) {
    absl::MutexLock lock(&mu_);
    responder_ = std::move(responder);
  }
  // Every request is answered by `streamer`, which fills in the response itself (status,
  // headers, a content provider that sends the body piecemeal); replaces the responder.
  using Streamer = std::function<void(httplib::Response&)>;
  void SetStreamer(Streamer streamer) {
    absl::MutexLock lock(&mu_);
    streamer_ = std::move(streamer);
  }
  // Requests to /pods answered so far (including refused ones).
  int requests() const {
    absl::MutexLock lock(&mu_);
    return requests_;
  }

 private:
  FakeKubelet() = default;

  void Run() {
    server_->Get("/pods", [this](const httplib::Request& req, httplib::Response& res) {
      Responder responder;
      Streamer streamer;
      int n = 0;
      {
        absl::MutexLock lock(&mu_);
        n = ++requests_;
        responder = responder_;
        streamer = streamer_;
      }
      if (!token_.empty() && req.get_header_value("Authorization") != "Bearer " + token_) {
        res.status = 401;
        res.set_content("Unauthorized", "text/plain");
        return;
      }
      if (streamer) {
        streamer(res);
        return;
      }
      auto [status, body] = responder ? responder(n) : std::make_pair(200, PodListJson({}));
      res.status = status;
      res.set_content(body, "application/json");
    });
    port_ = server_->bind_to_any_port("127.0.0.1");
    if (port_ <= 0) {
      ADD_FAILURE() << "the fake kubelet cannot bind";
      return;
    }
    thread_ = std::thread([this] { server_->listen_after_bind(); });
    // stop() is only heard once the accept loop runs.
    while (!server_->is_running()) absl::SleepFor(absl::Milliseconds(1));
  }

  std::unique_ptr<httplib::Server> server_;
  std::thread thread_;
  int port_ = 0;
  KubeletPki pki_;
  std::string token_;
  mutable absl::Mutex mu_;
  Responder responder_ ABSL_GUARDED_BY(mu_);
  Streamer streamer_ ABSL_GUARDED_BY(mu_);
  int requests_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace trellis::attestors::testing
