// A fake Kubernetes API server on 127.0.0.1: TokenReview, pods and nodes, with generated PKI.
#pragma once

#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"

namespace httplib {
class Server;
}

namespace trellis::attestors::k8s::testing {

struct FakePod {
  std::string namespace_name;
  std::string name;
  std::string uid;
  std::string node_name;
  std::string host_ip;
  std::map<std::string, std::string> labels;
};

struct FakeNode {
  std::string name;
  std::string uid;
  std::map<std::string, std::string> labels;
};

// What the cluster knows about a service account token it issued.
struct FakeToken {
  std::string namespace_name;
  std::string service_account;
  std::string pod_name;  // empty: not bound to a pod (no pod extras)
  std::string pod_uid;
  std::string node_name;  // non-empty: also the node-name extra of newer clusters
  std::vector<std::string> audiences = {"spire-server"};
  std::string username;  // non-empty: replaces system:serviceaccount:<ns>:<sa>
};

// A canned answer for one request path, replacing the normal handling.
struct FakeAnswer {
  int status = 500;
  std::string body;
  std::string content_type = "application/json";
};

// How the kubeconfig written by KubeconfigPath trusts the server and authenticates.
struct KubeconfigOptions {
  enum class Trust { kCaData, kCaFile, kInsecure };
  enum class Auth { kToken, kTokenFile, kClientCertData, kClientCertFile };
  Trust trust = Trust::kCaData;
  Auth auth = Auth::kToken;
  std::string server;  // empty: this server's URL
};

class FakeKubeApi {
 public:
  struct Options {
    bool tls = true;
    // TLS clients must present a certificate of ClientCa (then no bearer token is needed).
    bool require_client_certificate = false;
  };
  FakeKubeApi();
  explicit FakeKubeApi(Options options);
  ~FakeKubeApi();
  FakeKubeApi(const FakeKubeApi&) = delete;
  FakeKubeApi& operator=(const FakeKubeApi&) = delete;

  // Listens on 127.0.0.1 (port 0) and serves until destroyed or Stop().
  absl::Status Start();
  void Stop();
  int Port() const { return port_; }
  // "https://127.0.0.1:<port>" (or http://).
  std::string Url() const;

  // PEM of the CA that issued the server (and client) certificates.
  const std::string& CaPem() const { return ca_pem_; }
  // A client certificate and key issued by that CA, for client-certificate kubeconfigs.
  const std::string& ClientCertPem() const { return client_cert_pem_; }
  const std::string& ClientKeyPem() const { return client_key_pem_; }

  // The bearer token callers must present (default "trellis-server-sa-token").
  void SetCallerToken(const std::string& token);
  void AddPod(const FakePod& pod);
  void RemovePod(const std::string& namespace_name, const std::string& name);
  void AddNode(const FakeNode& node);
  void RemoveNode(const std::string& name);
  // A token the TokenReview API authenticates, for the audiences it was issued for.
  void AcceptToken(const std::string& token, const FakeToken& identity);
  // Answers `path` (e.g. "/api/v1/nodes/n1") with `answer` until cleared.
  void SetAnswer(const std::string& path, const FakeAnswer& answer);
  void ClearAnswer(const std::string& path);

  // The bearer token of the last request, and the last TokenReview's spec.audiences.
  std::string LastCallerToken() const;
  std::vector<std::string> LastReviewAudiences() const;
  int RequestCount() const;

  // Writes a kubeconfig pointing at this server into directory `dir` and returns its path;
  // file-based variants write their files beside it.
  std::string KubeconfigPath(const std::string& dir, const KubeconfigOptions& options = {}) const;

 private:
  struct Answer {
    int status;
    std::string body;
    std::string content_type = "application/json";
  };
  Answer Handle(const std::string& method, const std::string& path,
                const std::string& authorization, const std::string& body);
  Answer Review(const std::string& body) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  Options options_;
  std::string ca_pem_;
  std::string server_cert_pem_;
  std::string server_key_pem_;
  std::string client_cert_pem_;
  std::string client_key_pem_;
  std::unique_ptr<httplib::Server> server_;
  std::thread thread_;
  int port_ = 0;

  mutable absl::Mutex mu_;
  std::string caller_token_ ABSL_GUARDED_BY(mu_) = "trellis-server-sa-token";
  std::map<std::string, FakePod> pods_ ABSL_GUARDED_BY(mu_);  // "<ns>/<name>"
  std::map<std::string, FakeNode> nodes_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, FakeToken> tokens_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, FakeAnswer> answers_ ABSL_GUARDED_BY(mu_);
  std::string last_caller_token_ ABSL_GUARDED_BY(mu_);
  std::vector<std::string> last_review_audiences_ ABSL_GUARDED_BY(mu_);
  int requests_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace trellis::attestors::k8s::testing
