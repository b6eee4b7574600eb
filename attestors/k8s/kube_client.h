// A small Kubernetes API client: token reviews, pods and nodes, from a kubeconfig or in-cluster.
#pragma once

#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "common/keys.h"
#include "common/x509.h"

namespace trellis::attestors::k8s {

// Where an in-cluster client finds the API server and its own service account. Empty host or
// port: read from $KUBERNETES_SERVICE_HOST / $KUBERNETES_SERVICE_PORT.
struct InClusterOptions {
  std::string service_host;
  std::string service_port;
  std::string token_path = "/var/run/secrets/kubernetes.io/serviceaccount/token";
  std::string ca_path = "/var/run/secrets/kubernetes.io/serviceaccount/ca.crt";
};

struct KubeClientOptions {
  // Bounds the connect, each read and each write of every call.
  absl::Duration timeout = absl::Seconds(10);
  // Bounds each call as a whole, however slowly the server sends its answer (headers
  // included): past it the call is UNAVAILABLE.
  absl::Duration deadline = absl::Seconds(30);
};

// status of an authentication.k8s.io/v1 TokenReview.
struct TokenReviewStatus {
  bool authenticated = false;
  std::string username;
  std::string uid;
  std::vector<std::string> groups;
  std::map<std::string, std::vector<std::string>> extra;
  std::vector<std::string> audiences;
  std::string error;
};

struct PodInfo {
  std::string name;
  std::string namespace_name;
  std::string uid;
  std::string node_name;  // spec.nodeName, empty until scheduled
  std::string host_ip;    // status.hostIP
  std::map<std::string, std::string> labels;
};

struct NodeInfo {
  std::string name;
  std::string uid;
  std::map<std::string, std::string> labels;
};

// Calls are independent and safe from several threads at once. Errors name the API server and
// the request, with the HTTP status and the Kubernetes Status message when the server sent one:
// NOT_FOUND for 404, FAILED_PRECONDITION when the server refuses this client's credentials
// (401, 403) or the request (other 4xx), UNAVAILABLE for transport failures, 429 and 5xx,
// INTERNAL for an answer that is not the documented JSON.
class KubeClient {
 public:
  // How the client proves who it is; the token file is read again on every call, since
  // projected service account tokens rotate.
  struct Credentials {
    std::string token;
    std::string token_file;
    std::string username;  // basic authentication
    std::string password;
    std::vector<common::Certificate> client_chain;  // leaf first
    std::optional<common::PrivateKey> client_key;
  };
  struct Endpoint {
    bool tls = true;
    std::string host;  // without brackets for IPv6
    int port = 443;
    std::string base_path;  // prefix before /api and /apis, without a trailing '/'
    // Empty with insecure_skip_tls_verify false: the system's trust store.
    std::vector<common::Certificate> cas;
    bool insecure_skip_tls_verify = false;
    std::string tls_server_name;  // name checked in the server certificate; default: host
  };

  // Reads a kubeconfig (YAML): current-context, its cluster and user. INVALID_ARGUMENT naming
  // the file and the missing or invalid key; exec and auth-provider users are not supported.
  static absl::StatusOr<std::unique_ptr<KubeClient>> FromKubeconfig(
      const std::string& path, const KubeClientOptions& options = {});
  // The pod's own service account. INVALID_ARGUMENT when the host or port is unknown or the CA
  // file is unreadable; the token file is read on each call.
  static absl::StatusOr<std::unique_ptr<KubeClient>> InCluster(
      const InClusterOptions& in_cluster, const KubeClientOptions& options = {});
  static std::unique_ptr<KubeClient> FromParts(Endpoint endpoint, Credentials credentials,
                                               const KubeClientOptions& options = {});

  // POST /apis/authentication.k8s.io/v1/tokenreviews.
  absl::StatusOr<TokenReviewStatus> CreateTokenReview(
      const std::string& token, const std::vector<std::string>& audiences) const;
  // GET /api/v1/namespaces/{namespace}/pods/{name}.
  absl::StatusOr<PodInfo> GetPod(const std::string& namespace_name, const std::string& name) const;
  // GET /api/v1/nodes/{name}.
  absl::StatusOr<NodeInfo> GetNode(const std::string& name) const;

  // "https://host:port[/base]", for messages.
  std::string ServerUrl() const;

 private:
  struct Response {
    int status = 0;
    std::string body;
  };
  KubeClient(Endpoint endpoint, Credentials credentials, KubeClientOptions options)
      : endpoint_(std::move(endpoint)), credentials_(std::move(credentials)), options_(options) {}
  // Sends one request; the status is the transport's, the answer may carry any HTTP status.
  absl::StatusOr<Response> Send(const std::string& method, const std::string& path,
                                const std::string& body) const;
  // Send, then any answer but 2xx becomes an error as described above.
  absl::StatusOr<std::string> Call(const std::string& method, const std::string& path,
                                   const std::string& body) const;

  Endpoint endpoint_;
  Credentials credentials_;
  KubeClientOptions options_;
};

}  // namespace trellis::attestors::k8s
