// Kubernetes API calls over cpp-httplib, with kubeconfig (yaml-cpp) and in-cluster set-up.
#include "attestors/k8s/kube_client.h"

#include <arpa/inet.h>
#include <httplib.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509_vfy.h>
#include <yaml-cpp/yaml.h>

#include <atomic>
#include <cstdlib>
#include <filesystem>
#include <functional>
#include <nlohmann/json.hpp>
#include <thread>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "common/file_util.h"
#include "common/https_url.h"
#include "common/status.h"

namespace trellis::attestors::k8s {
namespace {

using Json = nlohmann::json;

// A pod or node object is a few kilobytes; this leaves room for large label and status sets.
constexpr size_t kMaxResponseBytes = 4 * 1024 * 1024;
constexpr size_t kMaxStatusMessage = 512;

// ---- URLs --------------------------------------------------------------------------------

bool IsIpLiteral(const std::string& host) {
  unsigned char buf[16];
  return inet_pton(AF_INET, host.c_str(), buf) == 1 || inet_pton(AF_INET6, host.c_str(), buf) == 1;
}

// http(s)://host[:port][/path] as kubeconfig's cluster.server.
absl::Status ParseServerUrl(const std::string& url, KubeClient::Endpoint* out) {
  auto bad = [&](const std::string& why) {
    return absl::InvalidArgumentError("server \"" + url + "\" " + why);
  };
  std::string rest;
  if (url.rfind("https://", 0) == 0) {
    out->tls = true;
    out->port = 443;
    rest = url.substr(8);
  } else if (url.rfind("http://", 0) == 0) {
    out->tls = false;
    out->port = 80;
    rest = url.substr(7);
  } else {
    return bad("is not an http:// or https:// URL");
  }
  for (char c : rest) {
    if (absl::ascii_isspace(static_cast<unsigned char>(c)) || c == '?' || c == '#' || c == '@') {
      return bad("must be scheme://host[:port][/path] without credentials, query or fragment");
    }
  }
  const size_t slash = rest.find('/');
  std::string authority = rest.substr(0, slash);
  std::string path = slash == std::string::npos ? "" : rest.substr(slash);
  while (!path.empty() && path.back() == '/') path.pop_back();
  std::optional<std::string> port;
  if (!authority.empty() && authority.front() == '[') {
    const size_t close = authority.find(']');
    if (close == std::string::npos) return bad("has an unclosed '[' in its host");
    out->host = authority.substr(1, close - 1);
    const std::string after = authority.substr(close + 1);
    if (!after.empty()) {
      if (after.front() != ':') return bad("has text after its IPv6 host");
      port = after.substr(1);
    }
  } else {
    const size_t colon = authority.find(':');
    out->host = authority.substr(0, colon);
    if (colon != std::string::npos) port = authority.substr(colon + 1);
  }
  if (out->host.empty()) return bad("has no host");
  if (port) {
    int n = 0;
    if (!absl::SimpleAtoi(*port, &n) || n <= 0 || n > 65535) return bad("has an invalid port");
    out->port = n;
  }
  out->base_path = path;
  return absl::OkStatus();
}

// ---- kubeconfig (YAML) -------------------------------------------------------------------

class KubeconfigReader {
 public:
  explicit KubeconfigReader(std::string path) : path_(std::move(path)) {}

  absl::Status Error(const std::string& what) const {
    return absl::InvalidArgumentError("kubeconfig " + path_ + ": " + what);
  }

  // A scalar at `key` of `map`; nullopt when absent or null.
  absl::StatusOr<std::optional<std::string>> String(const YAML::Node& map, const std::string& key,
                                                    const std::string& where) const {
    if (!map.IsMap()) return Error(where + " is not a mapping");
    const YAML::Node v = map[key];
    if (!v.IsDefined() || v.IsNull()) return std::optional<std::string>();
    if (!v.IsScalar()) return Error(where + "." + key + " is not a string");
    return std::optional<std::string>(v.Scalar());
  }

  absl::StatusOr<bool> Bool(const YAML::Node& map, const std::string& key,
                            const std::string& where) const {
    TRELLIS_ASSIGN_OR_RETURN(std::optional<std::string> s, String(map, key, where));
    if (!s) return false;
    const std::string v = absl::AsciiStrToLower(*s);
    if (v == "true") return true;
    if (v == "false") return false;
    return Error(where + "." + key + " is \"" + *s + "\", not true or false");
  }

  // The `field` mapping of the entry named `name` in the list `list` of the document.
  absl::StatusOr<YAML::Node> Named(const YAML::Node& root, const std::string& list,
                                   const std::string& field, const std::string& name) const {
    const YAML::Node entries = root[list];
    if (!entries.IsDefined() || entries.IsNull()) {
      return Error("no " + list + " list, so " + field + " \"" + name + "\" is not defined");
    }
    if (!entries.IsSequence()) return Error(list + " is not a list");
    for (const YAML::Node& entry : entries) {
      if (!entry.IsMap()) return Error(list + " holds an entry that is not a mapping");
      TRELLIS_ASSIGN_OR_RETURN(std::optional<std::string> n, String(entry, "name", list + "[]"));
      if (!n || *n != name) continue;
      const YAML::Node body = entry[field];
      if (!body.IsDefined() || body.IsNull()) {
        // An entry with nothing set (a user without credentials) is an empty mapping.
        return YAML::Node(YAML::NodeType::Map);
      }
      if (!body.IsMap()) return Error(list + " \"" + name + "\"." + field + " is not a mapping");
      return body;
    }
    return Error(field + " \"" + name + "\" is not in " + list);
  }

  // Paths in a kubeconfig are relative to the file's own directory.
  std::string Resolve(const std::string& p) const {
    std::filesystem::path fp(p);
    if (fp.is_absolute()) return p;
    return (std::filesystem::path(path_).parent_path() / fp).string();
  }

  absl::StatusOr<std::string> DataOrFile(const YAML::Node& map, const std::string& key,
                                         const std::string& where, bool* present) const {
    TRELLIS_ASSIGN_OR_RETURN(std::optional<std::string> data, String(map, key + "-data", where));
    TRELLIS_ASSIGN_OR_RETURN(std::optional<std::string> file, String(map, key, where));
    *present = data.has_value() || file.has_value();
    if (data) {
      std::string decoded;
      if (!absl::Base64Unescape(*data, &decoded) || decoded.empty()) {
        return Error(where + "." + key + "-data is not valid base64");
      }
      return decoded;
    }
    if (file) {
      const std::string resolved = Resolve(*file);
      absl::StatusOr<std::string> content = common::ReadFile(resolved);
      if (!content.ok()) {
        return Error(where + "." + key + ": " + std::string(content.status().message()));
      }
      return *content;
    }
    return std::string();
  }

 private:
  std::string path_;
};

absl::Status ParseKubeconfig(const std::string& path, KubeClient::Endpoint* endpoint,
                             KubeClient::Credentials* creds) {
  KubeconfigReader r(path);
  absl::StatusOr<std::string> text = common::ReadFile(path);
  if (!text.ok()) return r.Error(std::string(text.status().message()));
  YAML::Node root;
  try {
    root = YAML::Load(*text);
  } catch (const YAML::Exception& e) {
    return r.Error(std::string("not valid YAML: ") + e.what());
  }
  if (!root.IsMap()) return r.Error("not a kubeconfig document (expected a mapping)");
  TRELLIS_ASSIGN_OR_RETURN(std::optional<std::string> current,
                           r.String(root, "current-context", "document"));
  if (!current || current->empty()) return r.Error("current-context is not set");
  TRELLIS_ASSIGN_OR_RETURN(YAML::Node context, r.Named(root, "contexts", "context", *current));
  const std::string ctx_where = "context \"" + *current + "\"";
  TRELLIS_ASSIGN_OR_RETURN(std::optional<std::string> cluster_name,
                           r.String(context, "cluster", ctx_where));
  if (!cluster_name || cluster_name->empty()) return r.Error(ctx_where + " names no cluster");
  TRELLIS_ASSIGN_OR_RETURN(std::optional<std::string> user_name,
                           r.String(context, "user", ctx_where));

  // Cluster: server, trust and name checking.
  TRELLIS_ASSIGN_OR_RETURN(YAML::Node cluster, r.Named(root, "clusters", "cluster", *cluster_name));
  const std::string cl_where = "cluster \"" + *cluster_name + "\"";
  TRELLIS_ASSIGN_OR_RETURN(std::optional<std::string> server,
                           r.String(cluster, "server", cl_where));
  if (!server || server->empty()) return r.Error(cl_where + ".server is not set");
  if (absl::Status s = ParseServerUrl(*server, endpoint); !s.ok()) {
    return r.Error(cl_where + "." + std::string(s.message()));
  }
  TRELLIS_ASSIGN_OR_RETURN(endpoint->insecure_skip_tls_verify,
                           r.Bool(cluster, "insecure-skip-tls-verify", cl_where));
  TRELLIS_ASSIGN_OR_RETURN(std::optional<std::string> server_name,
                           r.String(cluster, "tls-server-name", cl_where));
  if (server_name) endpoint->tls_server_name = *server_name;
  bool has_ca = false;
  TRELLIS_ASSIGN_OR_RETURN(std::string ca_pem,
                           r.DataOrFile(cluster, "certificate-authority", cl_where, &has_ca));
  if (has_ca) {
    if (endpoint->insecure_skip_tls_verify) {
      return r.Error(cl_where + " sets both a certificate authority and insecure-skip-tls-verify");
    }
    absl::StatusOr<std::vector<common::Certificate>> cas =
        common::Certificate::ChainFromPem(ca_pem);
    if (!cas.ok() || cas->empty()) {
      return r.Error(cl_where + ".certificate-authority holds no PEM certificate" +
                     (cas.ok() ? "" : ": " + std::string(cas.status().message())));
    }
    endpoint->cas = std::move(*cas);
  }

  // User: one way of authenticating.
  if (!user_name || user_name->empty()) return absl::OkStatus();  // anonymous
  TRELLIS_ASSIGN_OR_RETURN(YAML::Node user, r.Named(root, "users", "user", *user_name));
  const std::string u_where = "user \"" + *user_name + "\"";
  for (const char* unsupported : {"exec", "auth-provider"}) {
    const YAML::Node n = user[unsupported];
    if (n.IsDefined() && !n.IsNull()) {
      return r.Error(u_where + " uses " + unsupported +
                     ", which is not supported: use token, tokenFile or a client certificate");
    }
  }
  TRELLIS_ASSIGN_OR_RETURN(std::optional<std::string> token, r.String(user, "token", u_where));
  TRELLIS_ASSIGN_OR_RETURN(std::optional<std::string> token_file,
                           r.String(user, "tokenFile", u_where));
  if (token && !token->empty()) {
    creds->token = std::string(absl::StripAsciiWhitespace(*token));
  } else if (token_file && !token_file->empty()) {
    creds->token_file = r.Resolve(*token_file);
    absl::StatusOr<std::string> t = common::ReadFile(creds->token_file);
    if (!t.ok()) return r.Error(u_where + ".tokenFile: " + std::string(t.status().message()));
  }
  bool has_cert = false;
  bool has_key = false;
  TRELLIS_ASSIGN_OR_RETURN(std::string cert_pem,
                           r.DataOrFile(user, "client-certificate", u_where, &has_cert));
  TRELLIS_ASSIGN_OR_RETURN(std::string key_pem,
                           r.DataOrFile(user, "client-key", u_where, &has_key));
  if (has_cert != has_key) {
    return r.Error(u_where + " sets " +
                   (has_cert ? "client-certificate without client-key"
                             : "client-key without client-certificate"));
  }
  if (has_cert) {
    absl::StatusOr<std::vector<common::Certificate>> chain =
        common::Certificate::ChainFromPem(cert_pem);
    if (!chain.ok() || chain->empty()) {
      return r.Error(u_where + ".client-certificate holds no PEM certificate" +
                     (chain.ok() ? "" : ": " + std::string(chain.status().message())));
    }
    absl::StatusOr<common::PrivateKey> key = common::PrivateKey::FromPem(key_pem);
    if (!key.ok()) {
      return r.Error(u_where + ".client-key: " + std::string(key.status().message()));
    }
    if (!common::CheckKeyMatchesCertificate(*key, chain->front()).ok()) {
      return r.Error(u_where + ".client-key does not match client-certificate");
    }
    creds->client_chain = std::move(*chain);
    creds->client_key = std::move(*key);
  }
  TRELLIS_ASSIGN_OR_RETURN(std::optional<std::string> username,
                           r.String(user, "username", u_where));
  TRELLIS_ASSIGN_OR_RETURN(std::optional<std::string> password,
                           r.String(user, "password", u_where));
  if (username && !username->empty()) {
    creds->username = *username;
    creds->password = password.value_or("");
  }
  return absl::OkStatus();
}

// ---- Responses ---------------------------------------------------------------------------

// The message of a Kubernetes Status object in `body`, if it is one.
std::string StatusMessage(const std::string& body) {
  Json j = Json::parse(body, nullptr, /*allow_exceptions=*/false);
  if (!j.is_object()) return "";
  auto kind = j.find("kind");
  auto message = j.find("message");
  if (kind == j.end() || !kind->is_string() || *kind != "Status") return "";
  if (message == j.end() || !message->is_string()) return "";
  std::string m = message->get<std::string>();
  if (m.size() > kMaxStatusMessage) m = m.substr(0, kMaxStatusMessage) + "...";
  return m;
}

// Typed reads of a decoded object; absent fields read as empty, wrong types are errors.
class Reader {
 public:
  explicit Reader(std::string what) : what_(std::move(what)) {}

  absl::Status Error(const std::string& why) const {
    return absl::InternalError(what_ + " is not a valid answer: " + why);
  }

  absl::StatusOr<const Json*> Object(const Json& parent, const char* key,
                                     const std::string& where) const {
    auto it = parent.find(key);
    if (it == parent.end() || it->is_null()) return nullptr;
    if (!it->is_object()) return Error(where + "." + key + " is not an object");
    return &*it;
  }

  absl::StatusOr<std::string> String(const Json* parent, const char* key,
                                     const std::string& where) const {
    if (parent == nullptr) return std::string();
    auto it = parent->find(key);
    if (it == parent->end() || it->is_null()) return std::string();
    if (!it->is_string()) return Error(where + "." + key + " is not a string");
    return it->get<std::string>();
  }

  absl::StatusOr<std::vector<std::string>> Strings(const Json& value,
                                                   const std::string& where) const {
    std::vector<std::string> out;
    if (value.is_null()) return out;
    if (!value.is_array()) return Error(where + " is not a list");
    for (const Json& v : value) {
      if (!v.is_string()) return Error(where + " holds a value that is not a string");
      out.push_back(v.get<std::string>());
    }
    return out;
  }

  absl::StatusOr<std::map<std::string, std::string>> Labels(const Json* metadata) const {
    std::map<std::string, std::string> out;
    if (metadata == nullptr) return out;
    auto it = metadata->find("labels");
    if (it == metadata->end() || it->is_null()) return out;
    if (!it->is_object()) return Error("metadata.labels is not an object");
    for (auto& [k, v] : it->items()) {
      if (!v.is_string()) return Error("metadata.labels[\"" + k + "\"] is not a string");
      out.emplace(k, v.get<std::string>());
    }
    return out;
  }

  absl::StatusOr<Json> Parse(const std::string& body, const char* kind) const {
    Json j = Json::parse(body, nullptr, /*allow_exceptions=*/false);
    if (j.is_discarded()) return Error("malformed JSON");
    if (!j.is_object()) return Error("not a JSON object");
    auto k = j.find("kind");
    if (k != j.end() && (!k->is_string() || *k != kind)) {
      return Error("kind is " + k->dump() + ", expected \"" + kind + "\"");
    }
    return j;
  }

 private:
  std::string what_;
};

// Once `deadline` passes, calls `stop` (which shuts the request's socket down) until Finish(),
// so a server that sends its answer a byte at a time, headers included, cannot hold a call
// past the deadline. The socket may not exist yet when the deadline passes (the connection
// or the handshake is still under way), hence the repeated calls.
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

int VerifyServerCertificate(X509_STORE_CTX* store, void* arg) {
  const int ok = X509_verify_cert(store);
  if (ok != 1) {
    *static_cast<std::string*>(arg) =
        X509_verify_cert_error_string(X509_STORE_CTX_get_error(store));
    return 0;
  }
  return 1;
}

std::string DescribeTransport(httplib::Error e) {
  switch (e) {
    case httplib::Error::Connection:
      return "cannot connect";
    case httplib::Error::ConnectionTimeout:
      return "connection timed out";
    case httplib::Error::Read:
      return "read failed or timed out";
    case httplib::Error::Write:
      return "write failed or timed out";
    case httplib::Error::SSLConnection:
      return "TLS handshake failed";
    case httplib::Error::Canceled:
      return "answer larger than 4 MiB";
    default:
      return httplib::to_string(e);
  }
}

}  // namespace

// ---- Construction ------------------------------------------------------------------------

absl::StatusOr<std::unique_ptr<KubeClient>> KubeClient::FromKubeconfig(
    const std::string& path, const KubeClientOptions& options) {
  if (path.empty()) return absl::InvalidArgumentError("kubeconfig path is empty");
  Endpoint endpoint;
  Credentials creds;
  TRELLIS_RETURN_IF_ERROR(ParseKubeconfig(path, &endpoint, &creds));
  return FromParts(std::move(endpoint), std::move(creds), options);
}

absl::StatusOr<std::unique_ptr<KubeClient>> KubeClient::InCluster(
    const InClusterOptions& in_cluster, const KubeClientOptions& options) {
  auto env = [](const char* name) {
    const char* v = std::getenv(name);
    return std::string(v ? v : "");
  };
  std::string host =
      in_cluster.service_host.empty() ? env("KUBERNETES_SERVICE_HOST") : in_cluster.service_host;
  std::string port =
      in_cluster.service_port.empty() ? env("KUBERNETES_SERVICE_PORT") : in_cluster.service_port;
  if (host.empty() || port.empty()) {
    return absl::InvalidArgumentError(
        "not running in a Kubernetes cluster: KUBERNETES_SERVICE_HOST and "
        "KUBERNETES_SERVICE_PORT must be set (or configure a kubeconfig file)");
  }
  Endpoint endpoint;
  endpoint.host = host;
  if (!absl::SimpleAtoi(port, &endpoint.port) || endpoint.port <= 0 || endpoint.port > 65535) {
    return absl::InvalidArgumentError("KUBERNETES_SERVICE_PORT \"" + port +
                                      "\" is not a port number");
  }
  absl::StatusOr<std::string> ca_pem = common::ReadFile(in_cluster.ca_path);
  if (!ca_pem.ok()) {
    return absl::InvalidArgumentError("in-cluster CA file: " +
                                      std::string(ca_pem.status().message()));
  }
  absl::StatusOr<std::vector<common::Certificate>> cas = common::Certificate::ChainFromPem(*ca_pem);
  if (!cas.ok() || cas->empty()) {
    return absl::InvalidArgumentError("in-cluster CA file " + in_cluster.ca_path +
                                      " holds no PEM certificate");
  }
  endpoint.cas = std::move(*cas);
  Credentials creds;
  creds.token_file = in_cluster.token_path;
  return FromParts(std::move(endpoint), std::move(creds), options);
}

std::unique_ptr<KubeClient> KubeClient::FromParts(Endpoint endpoint, Credentials credentials,
                                                  const KubeClientOptions& options) {
  return std::unique_ptr<KubeClient>(
      new KubeClient(std::move(endpoint), std::move(credentials), options));
}

std::string KubeClient::ServerUrl() const {
  const bool v6 = endpoint_.host.find(':') != std::string::npos;
  return absl::StrCat(endpoint_.tls ? "https://" : "http://", v6 ? "[" : "", endpoint_.host,
                      v6 ? "]" : "", ":", endpoint_.port, endpoint_.base_path);
}

// ---- Requests ----------------------------------------------------------------------------

absl::StatusOr<KubeClient::Response> KubeClient::Send(const std::string& method,
                                                      const std::string& path,
                                                      const std::string& body) const {
  const std::string what = "Kubernetes API " + ServerUrl() + " " + method + " " + path;
  httplib::Headers headers = {{"Accept", "application/json"}};
  if (!credentials_.token_file.empty()) {
    absl::StatusOr<std::string> token = common::ReadFile(credentials_.token_file);
    if (!token.ok()) {
      return absl::FailedPreconditionError(
          what + ": cannot read the token file: " + std::string(token.status().message()));
    }
    std::string t(absl::StripAsciiWhitespace(*token));
    if (t.empty()) {
      return absl::FailedPreconditionError(what + ": token file " + credentials_.token_file +
                                           " is empty");
    }
    headers.emplace("Authorization", "Bearer " + t);
  } else if (!credentials_.token.empty()) {
    headers.emplace("Authorization", "Bearer " + credentials_.token);
  }

  std::unique_ptr<httplib::ClientImpl> client;
  std::string verify_error;
  if (endpoint_.tls) {
    auto ssl = std::make_unique<httplib::SSLClient>(endpoint_.host, endpoint_.port);
    if (!ssl->is_valid()) return absl::InternalError(what + ": cannot create a TLS client");
    SSL_CTX* ctx = ssl->ssl_context();
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    // OpenSSL checks the chain and the name itself, against the configured authorities only;
    // httplib's own check would add the system's trust store.
    ssl->enable_server_certificate_verification(false);
    if (endpoint_.insecure_skip_tls_verify) {
      SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, nullptr);
    } else {
      if (endpoint_.cas.empty()) {
        SSL_CTX_set_default_verify_paths(ctx);
      } else {
        X509_STORE* store = X509_STORE_new();
        if (store == nullptr) return absl::ResourceExhaustedError(what + ": out of memory");
        for (const common::Certificate& ca : endpoint_.cas) X509_STORE_add_cert(store, ca.x509());
        SSL_CTX_set_cert_store(ctx, store);  // the context owns it now
      }
      const std::string& name =
          endpoint_.tls_server_name.empty() ? endpoint_.host : endpoint_.tls_server_name;
      X509_VERIFY_PARAM* param = SSL_CTX_get0_param(ctx);
      const int set = IsIpLiteral(name) ? X509_VERIFY_PARAM_set1_ip_asc(param, name.c_str())
                                        : X509_VERIFY_PARAM_set1_host(param, name.c_str(), 0);
      if (set != 1) {
        ERR_clear_error();
        return absl::InternalError(what + ": cannot set the server name to check");
      }
      SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, nullptr);
      SSL_CTX_set_cert_verify_callback(ctx, &VerifyServerCertificate, &verify_error);
    }
    if (!credentials_.client_chain.empty() && credentials_.client_key) {
      if (SSL_CTX_use_certificate(ctx, credentials_.client_chain.front().x509()) != 1 ||
          SSL_CTX_use_PrivateKey(ctx, credentials_.client_key->pkey()) != 1) {
        ERR_clear_error();
        return absl::InternalError(what + ": cannot load the client certificate");
      }
      for (size_t i = 1; i < credentials_.client_chain.size(); ++i) {
        SSL_CTX_add1_chain_cert(ctx, credentials_.client_chain[i].x509());
      }
    }
    client = std::move(ssl);
  } else {
    client = std::make_unique<httplib::ClientImpl>(endpoint_.host, endpoint_.port);
  }
  if (!credentials_.username.empty()) {
    client->set_basic_auth(credentials_.username.c_str(), credentials_.password.c_str());
  }
  const auto seconds = absl::ToInt64Seconds(options_.timeout);
  const auto micros = absl::ToInt64Microseconds(options_.timeout - absl::Seconds(seconds));
  client->set_connection_timeout(static_cast<time_t>(seconds), static_cast<time_t>(micros));
  client->set_read_timeout(static_cast<time_t>(seconds), static_cast<time_t>(micros));
  client->set_write_timeout(static_cast<time_t>(seconds), static_cast<time_t>(micros));
  client->set_keep_alive(false);

  httplib::Request req;
  req.method = method;
  req.path = endpoint_.base_path + path;
  req.headers = std::move(headers);
  if (!body.empty()) {
    req.body = body;
    req.headers.emplace("Content-Type", "application/json");
  }
  Response out;
  bool late = false;
  const absl::Time deadline = absl::Now() + options_.deadline;
  req.content_receiver = [&](const char* data, size_t len, uint64_t, uint64_t) {
    if (absl::Now() >= deadline) {
      late = true;
      return false;
    }
    if (out.body.size() + len > kMaxResponseBytes) return false;
    out.body.append(data, len);
    return true;
  };
  req.progress = [&](uint64_t, uint64_t) {
    if (absl::Now() < deadline) return true;
    late = true;
    return false;
  };
  Watchdog watchdog(deadline, [&client] { client->stop(); });
  httplib::Result res = client->send(req);
  watchdog.Finish();
  if (late || (!res && (watchdog.fired() || absl::Now() >= deadline))) {
    return absl::UnavailableError(what + ": no complete answer within the call deadline of " +
                                  absl::FormatDuration(options_.deadline));
  }
  if (!res) {
    std::string why = DescribeTransport(res.error());
    if (!verify_error.empty()) why += ": server certificate does not verify: " + verify_error;
    return absl::UnavailableError(what + ": " + why);
  }
  out.status = res->status;
  return out;
}

absl::StatusOr<std::string> KubeClient::Call(const std::string& method, const std::string& path,
                                             const std::string& body) const {
  TRELLIS_ASSIGN_OR_RETURN(Response res, Send(method, path, body));
  if (res.status >= 200 && res.status < 300) return std::move(res.body);
  std::string msg = "Kubernetes API " + ServerUrl() + " " + method + " " + path + ": HTTP " +
                    std::to_string(res.status);
  if (std::string detail = StatusMessage(res.body); !detail.empty()) msg += ": " + detail;
  if (res.status == 404) return absl::NotFoundError(msg);
  if (res.status == 401 || res.status == 403) {
    return absl::FailedPreconditionError(msg + " (the API refused this server's credentials)");
  }
  if (res.status == 429 || res.status >= 500) return absl::UnavailableError(msg);
  return absl::FailedPreconditionError(msg);
}

absl::StatusOr<TokenReviewStatus> KubeClient::CreateTokenReview(
    const std::string& token, const std::vector<std::string>& audiences) const {
  static constexpr char kPath[] = "/apis/authentication.k8s.io/v1/tokenreviews";
  Json spec = {{"token", token}};
  if (!audiences.empty()) spec["audiences"] = audiences;
  Json request = {
      {"apiVersion", "authentication.k8s.io/v1"}, {"kind", "TokenReview"}, {"spec", spec}};
  std::string encoded;
  try {
    encoded = request.dump();
  } catch (const Json::exception&) {
    return absl::InvalidArgumentError("TokenReview: token or audiences are not valid UTF-8");
  }
  TRELLIS_ASSIGN_OR_RETURN(std::string body, Call("POST", kPath, encoded));
  Reader r("TokenReview from " + ServerUrl());
  TRELLIS_ASSIGN_OR_RETURN(Json j, r.Parse(body, "TokenReview"));
  TRELLIS_ASSIGN_OR_RETURN(const Json* status, r.Object(j, "status", "TokenReview"));
  if (status == nullptr) return r.Error("no status");
  TokenReviewStatus out;
  if (auto a = status->find("authenticated"); a != status->end() && !a->is_null()) {
    if (!a->is_boolean()) return r.Error("status.authenticated is not a boolean");
    out.authenticated = a->get<bool>();
  }
  TRELLIS_ASSIGN_OR_RETURN(out.error, r.String(status, "error", "status"));
  if (auto a = status->find("audiences"); a != status->end()) {
    TRELLIS_ASSIGN_OR_RETURN(out.audiences, r.Strings(*a, "status.audiences"));
  }
  TRELLIS_ASSIGN_OR_RETURN(const Json* user, r.Object(*status, "user", "status"));
  TRELLIS_ASSIGN_OR_RETURN(out.username, r.String(user, "username", "status.user"));
  TRELLIS_ASSIGN_OR_RETURN(out.uid, r.String(user, "uid", "status.user"));
  if (user != nullptr) {
    if (auto g = user->find("groups"); g != user->end()) {
      TRELLIS_ASSIGN_OR_RETURN(out.groups, r.Strings(*g, "status.user.groups"));
    }
    TRELLIS_ASSIGN_OR_RETURN(const Json* extra, r.Object(*user, "extra", "status.user"));
    if (extra != nullptr) {
      for (auto& [k, v] : extra->items()) {
        TRELLIS_ASSIGN_OR_RETURN(out.extra[k], r.Strings(v, "status.user.extra[\"" + k + "\"]"));
      }
    }
  }
  return out;
}

absl::StatusOr<PodInfo> KubeClient::GetPod(const std::string& namespace_name,
                                           const std::string& name) const {
  if (namespace_name.empty() || name.empty()) {
    return absl::InvalidArgumentError("a pod needs a namespace and a name");
  }
  const std::string path = "/api/v1/namespaces/" + common::PercentEncode(namespace_name) +
                           "/pods/" + common::PercentEncode(name);
  TRELLIS_ASSIGN_OR_RETURN(std::string body, Call("GET", path, ""));
  Reader r("pod " + namespace_name + "/" + name + " from " + ServerUrl());
  TRELLIS_ASSIGN_OR_RETURN(Json j, r.Parse(body, "Pod"));
  TRELLIS_ASSIGN_OR_RETURN(const Json* metadata, r.Object(j, "metadata", "Pod"));
  TRELLIS_ASSIGN_OR_RETURN(const Json* spec, r.Object(j, "spec", "Pod"));
  TRELLIS_ASSIGN_OR_RETURN(const Json* status, r.Object(j, "status", "Pod"));
  PodInfo pod;
  TRELLIS_ASSIGN_OR_RETURN(pod.name, r.String(metadata, "name", "metadata"));
  TRELLIS_ASSIGN_OR_RETURN(pod.namespace_name, r.String(metadata, "namespace", "metadata"));
  TRELLIS_ASSIGN_OR_RETURN(pod.uid, r.String(metadata, "uid", "metadata"));
  TRELLIS_ASSIGN_OR_RETURN(pod.labels, r.Labels(metadata));
  TRELLIS_ASSIGN_OR_RETURN(pod.node_name, r.String(spec, "nodeName", "spec"));
  TRELLIS_ASSIGN_OR_RETURN(pod.host_ip, r.String(status, "hostIP", "status"));
  if (pod.uid.empty()) return r.Error("metadata.uid is missing");
  if (pod.name != name || pod.namespace_name != namespace_name) {
    return r.Error("it describes pod " + pod.namespace_name + "/" + pod.name);
  }
  return pod;
}

absl::StatusOr<NodeInfo> KubeClient::GetNode(const std::string& name) const {
  if (name.empty()) return absl::InvalidArgumentError("a node needs a name");
  const std::string path = "/api/v1/nodes/" + common::PercentEncode(name);
  TRELLIS_ASSIGN_OR_RETURN(std::string body, Call("GET", path, ""));
  Reader r("node " + name + " from " + ServerUrl());
  TRELLIS_ASSIGN_OR_RETURN(Json j, r.Parse(body, "Node"));
  TRELLIS_ASSIGN_OR_RETURN(const Json* metadata, r.Object(j, "metadata", "Node"));
  NodeInfo node;
  TRELLIS_ASSIGN_OR_RETURN(node.name, r.String(metadata, "name", "metadata"));
  TRELLIS_ASSIGN_OR_RETURN(node.uid, r.String(metadata, "uid", "metadata"));
  TRELLIS_ASSIGN_OR_RETURN(node.labels, r.Labels(metadata));
  if (node.uid.empty()) return r.Error("metadata.uid is missing");
  if (node.name != name) return r.Error("it describes node " + node.name);
  return node;
}

}  // namespace trellis::attestors::k8s
