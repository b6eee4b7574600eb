// Kubernetes workload attestation: the kubelet's pod list, matched by pod UID and container ID.
#include "attestors/container/k8s_attestor.h"

#include <arpa/inet.h>
#include <httplib.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include <cstdlib>
#include <nlohmann/json.hpp>
#include <set>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "attestors/container/cgroups.h"
#include "common/file_util.h"
#include "common/openssl_util.h"

namespace trellis::attestors {
namespace {

using nlohmann::json;

constexpr char kPrefix[] = "k8s: ";
constexpr time_t kConnectTimeoutSeconds = 5;
constexpr time_t kReadTimeoutSeconds = 10;
constexpr size_t kMaxQuotedBody = 200;
// A node runs at most a few hundred pods; their list is a few MiB at most.
constexpr size_t kMaxPodListBytes = size_t{64} << 20;
constexpr char kMaxPodListText[] = "64 MiB";

absl::Status Unavailable(const std::string& message) {
  return absl::UnavailableError(kPrefix + message);
}

// Reading the pod list: every field is optional (absent or null), but one that is present
// must have its documented type, else the answer is not a PodList.
class PodListReader {
 public:
  absl::Status Malformed(const std::string& where, const std::string& what) const {
    return Unavailable(absl::StrCat("malformed pod list from the kubelet: ", where, " ", what));
  }
  absl::StatusOr<std::string> String(const json& object, const char* key,
                                     const std::string& where) const {
    auto it = object.find(key);
    if (it == object.end() || it->is_null()) return std::string();
    if (!it->is_string()) return Malformed(absl::StrCat(where, ".", key), "is not a string");
    return it->get<std::string>();
  }
  // nullptr when absent or null.
  absl::StatusOr<const json*> Object(const json& object, const char* key,
                                     const std::string& where) const {
    auto it = object.find(key);
    if (it == object.end() || it->is_null()) return nullptr;
    if (!it->is_object()) return Malformed(absl::StrCat(where, ".", key), "is not an object");
    return &*it;
  }
  absl::StatusOr<const json*> Array(const json& object, const char* key,
                                    const std::string& where) const {
    auto it = object.find(key);
    if (it == object.end() || it->is_null()) return nullptr;
    if (!it->is_array()) return Malformed(absl::StrCat(where, ".", key), "is not an array");
    return &*it;
  }
};

struct ContainerStatus {
  std::string name;
  std::string image;
  std::string image_id;
  std::string container_id;  // without the runtime's "<runtime>://" prefix
};

absl::StatusOr<std::vector<ContainerStatus>> ReadStatuses(const PodListReader& r,
                                                          const json& status, const char* key,
                                                          const std::string& where) {
  std::vector<ContainerStatus> out;
  auto list = r.Array(status, key, where);
  if (!list.ok()) return list.status();
  if (*list == nullptr) return out;
  for (size_t i = 0; i < (*list)->size(); ++i) {
    const json& item = (**list)[i];
    const std::string at = absl::StrCat(where, ".", key, "[", i, "]");
    if (!item.is_object()) return r.Malformed(at, "is not an object");
    ContainerStatus cs;
    auto name = r.String(item, "name", at);
    auto image = r.String(item, "image", at);
    auto image_id = r.String(item, "imageID", at);
    auto container_id = r.String(item, "containerID", at);
    for (const auto* s : {&name, &image, &image_id, &container_id}) {
      if (!s->ok()) return s->status();
    }
    cs.name = *name;
    cs.image = *image;
    cs.image_id = *image_id;
    // "containerd://<id>", "cri-o://<id>", "docker://<id>"; empty until the container exists.
    if (!container_id->empty()) {
      size_t sep = container_id->find("://");
      if (sep == std::string::npos || sep == 0) {
        return r.Malformed(at + ".containerID", "is not of the form <runtime>://<id>");
      }
      cs.container_id = container_id->substr(sep + 3);
    }
    out.push_back(std::move(cs));
  }
  return out;
}

enum class Found { kNoPod, kNoContainer, kYes };

struct Lookup {
  Found found = Found::kNoPod;
  std::vector<SelectorString> selectors;
};

// Finds the caller's pod and container in the kubelet's answer and turns them into selectors.
absl::StatusOr<Lookup> FindInPodList(const std::string& body, const cgroups::PodContainer& want,
                                     bool container_selectors) {
  PodListReader r;
  json list = json::parse(body, nullptr, /*allow_exceptions=*/false);
  if (list.is_discarded()) return Unavailable("the kubelet's pod list is not valid JSON");
  if (!list.is_object()) return r.Malformed("the document", "is not an object");
  auto items = r.Array(list, "items", "PodList");
  if (!items.ok()) return items.status();
  Lookup out;
  if (*items == nullptr) return out;
  for (size_t i = 0; i < (*items)->size(); ++i) {
    const json& pod = (**items)[i];
    const std::string at = absl::StrCat("items[", i, "]");
    if (!pod.is_object()) return r.Malformed(at, "is not an object");
    auto metadata = r.Object(pod, "metadata", at);
    if (!metadata.ok()) return metadata.status();
    if (*metadata == nullptr) return r.Malformed(at, "has no metadata");
    const std::string meta_at = at + ".metadata";
    auto uid = r.String(**metadata, "uid", meta_at);
    if (!uid.ok()) return uid.status();
    if (*uid != want.pod_uid) continue;

    auto spec = r.Object(pod, "spec", at);
    if (!spec.ok()) return spec.status();
    auto status = r.Object(pod, "status", at);
    if (!status.ok()) return status.status();
    static const json kEmpty = json::object();
    const json& spec_j = *spec ? **spec : kEmpty;
    const json& status_j = *status ? **status : kEmpty;
    const std::string status_at = at + ".status";
    auto containers = ReadStatuses(r, status_j, "containerStatuses", status_at);
    if (!containers.ok()) return containers.status();
    auto inits = ReadStatuses(r, status_j, "initContainerStatuses", status_at);
    if (!inits.ok()) return inits.status();
    auto ephemerals = ReadStatuses(r, status_j, "ephemeralContainerStatuses", status_at);
    if (!ephemerals.ok()) return ephemerals.status();

    const ContainerStatus* mine = nullptr;
    for (const auto* group : {&*containers, &*inits, &*ephemerals}) {
      for (const ContainerStatus& cs : *group) {
        if (cs.container_id == want.container_id) mine = &cs;
      }
    }
    // The cgroup already places the caller in this pod: without container selectors the pod
    // alone is the answer, even while its status does not list the container yet.
    if (mine == nullptr && container_selectors) {
      out.found = Found::kNoContainer;
      return out;
    }

    auto name = r.String(**metadata, "name", meta_at);
    auto ns = r.String(**metadata, "namespace", meta_at);
    auto sa = r.String(spec_j, "serviceAccountName", at + ".spec");
    auto node = r.String(spec_j, "nodeName", at + ".spec");
    for (const auto* s : {&name, &ns, &sa, &node}) {
      if (!s->ok()) return s->status();
    }
    std::vector<SelectorString> sel;
    auto add = [&](const std::string& type, const std::string& value) {
      if (!value.empty()) sel.push_back(absl::StrCat("k8s:", type, ":", value));
    };
    add("sa", *sa);
    add("ns", *ns);
    add("node-name", *node);
    add("pod-uid", *uid);
    add("pod-name", *name);

    auto labels = r.Object(**metadata, "labels", meta_at);
    if (!labels.ok()) return labels.status();
    if (*labels != nullptr) {
      for (const auto& [key, value] : (*labels)->items()) {
        if (!value.is_string()) {
          return r.Malformed(absl::StrCat(meta_at, ".labels.", key), "is not a string");
        }
        add("pod-label", absl::StrCat(key, ":", value.get<std::string>()));
      }
    }
    auto owners = r.Array(**metadata, "ownerReferences", meta_at);
    if (!owners.ok()) return owners.status();
    if (*owners != nullptr) {
      for (size_t k = 0; k < (*owners)->size(); ++k) {
        const json& owner = (**owners)[k];
        const std::string owner_at = absl::StrCat(meta_at, ".ownerReferences[", k, "]");
        if (!owner.is_object()) return r.Malformed(owner_at, "is not an object");
        auto kind = r.String(owner, "kind", owner_at);
        auto owner_name = r.String(owner, "name", owner_at);
        auto owner_uid = r.String(owner, "uid", owner_at);
        for (const auto* s : {&kind, &owner_name, &owner_uid}) {
          if (!s->ok()) return s->status();
        }
        add("pod-owner", absl::StrCat(*kind, ":", *owner_name));
        add("pod-owner-uid", absl::StrCat(*kind, ":", *owner_uid));
      }
    }
    for (const ContainerStatus& cs : *containers) {
      add("pod-image", cs.image);
      add("pod-image", cs.image_id);
    }
    add("pod-image-count", absl::StrCat(containers->size()));
    for (const ContainerStatus& cs : *inits) {
      add("pod-init-image", cs.image);
      add("pod-init-image", cs.image_id);
    }
    add("pod-init-image-count", absl::StrCat(inits->size()));
    if (container_selectors && mine != nullptr) {
      add("container-image", mine->image);
      add("container-image", mine->image_id);
      add("container-name", mine->name);
    }
    // One selector per value: an image and its ID may be spelled alike, containers may share
    // an image.
    std::set<SelectorString> seen;
    for (SelectorString& s : sel) {
      if (seen.insert(s).second) out.selectors.push_back(std::move(s));
    }
    out.found = Found::kYes;
    return out;
  }
  return out;
}

bool IsIpAddress(const std::string& host) {
  unsigned char buf[16];
  return inet_pton(AF_INET, host.c_str(), buf) == 1 || inet_pton(AF_INET6, host.c_str(), buf) == 1;
}

std::string Quote(const std::string& body) {
  std::string out = body.substr(0, kMaxQuotedBody);
  for (char& c : out) {
    if (!absl::ascii_isprint(static_cast<unsigned char>(c))) c = '?';
  }
  return out;
}

}  // namespace

absl::StatusOr<std::unique_ptr<K8sWorkloadAttestor>> K8sWorkloadAttestor::Create(
    const common::config::K8sWorkloadAttestorConfig& config) {
  return Create(config, Options{});
}

absl::StatusOr<std::unique_ptr<K8sWorkloadAttestor>> K8sWorkloadAttestor::Create(
    const common::config::K8sWorkloadAttestorConfig& config, Options options) {
  auto bad = [](const std::string& why) { return absl::InvalidArgumentError(kPrefix + why); };
  if (config.kubelet_host.empty()) return bad("kubelet_host is empty");
  if (config.kubelet_read_only_port == 0 && config.kubelet_secure_port == 0) {
    return bad("neither kubelet_read_only_port nor kubelet_secure_port is set");
  }
  if (config.max_poll_attempts < 1) return bad("max_poll_attempts must be at least 1");
  if (config.poll_retry_interval < absl::ZeroDuration()) {
    return bad("poll_retry_interval must not be negative");
  }
  if (config.kubelet_read_only_port == 0) {
    if (config.certificate_path.empty() != config.private_key_path.empty()) {
      return bad("certificate_path and private_key_path must be set together");
    }
    if (!config.skip_kubelet_verification && config.kubelet_ca_path.empty()) {
      return bad("kubelet_ca_path is empty and skip_kubelet_verification is not set");
    }
    if (config.certificate_path.empty() && !config.use_anonymous_authentication &&
        config.token_path.empty()) {
      return bad(
          "no kubelet credentials: set token_path, certificate_path and "
          "private_key_path, or use_anonymous_authentication");
    }
  }
  if (options.proc_root.empty()) return bad("the proc root is empty");
  if (options.query_deadline <= absl::ZeroDuration()) {
    return bad("the query deadline must be positive");
  }
  if (!options.sleep) options.sleep = [](absl::Duration d) { absl::SleepFor(d); };
  std::string server_name = config.node_name;
  if (server_name.empty() && !config.node_name_env.empty()) {
    if (const char* env = std::getenv(config.node_name_env.c_str())) server_name = env;
  }
  if (server_name.empty()) server_name = config.kubelet_host;
  return std::unique_ptr<K8sWorkloadAttestor>(
      new K8sWorkloadAttestor(config, std::move(options), std::move(server_name)));
}

absl::StatusOr<std::vector<SelectorString>> K8sWorkloadAttestor::Attest(
    const CallerCredentials& caller) {
  auto pin = ProcessPin::Pin(caller.pid);
  if (!pin.ok()) return pin.status();
  return AttestCgroups(*pin);
}

absl::StatusOr<std::vector<SelectorString>> K8sWorkloadAttestor::AttestPinned(
    const CallerCredentials& /*caller*/, const ProcessPin& pin) {
  return AttestCgroups(pin);
}

absl::StatusOr<std::vector<SelectorString>> K8sWorkloadAttestor::AttestCgroups(
    const ProcessPin& pin) {
  auto entries = cgroups::ReadCgroups(options_.proc_root, pin.pid());
  // What was read describes the pinned process only if it still holds the pid; checked now,
  // before the slow kubelet queries, even when the caller checks again at the end.
  if (absl::Status s = pin.Check(); !s.ok()) return s;
  if (!entries.ok()) {
    if (entries.status().code() == absl::StatusCode::kNotFound) {
      return Unavailable(std::string(entries.status().message()));
    }
    return absl::InvalidArgumentError(kPrefix + std::string(entries.status().message()));
  }
  auto where = cgroups::FindPodContainer(*entries);
  if (!where.ok()) {
    return absl::InvalidArgumentError(kPrefix + std::string(where.status().message()));
  }
  if (!where->has_value()) return std::vector<SelectorString>{};  // not in a pod

  const cgroups::PodContainer& want = **where;
  // Polling ends after max_poll_attempts queries, or earlier once the time they may take at
  // most has passed: a wait per attempt plus a query deadline per attempt.
  const absl::Duration limit =
      config_.max_poll_attempts * (config_.poll_retry_interval + options_.query_deadline);
  const absl::Time give_up = clock().Now() + limit;
  Found last = Found::kNoPod;
  int64_t attempts = 0;
  bool out_of_time = false;
  while (attempts < config_.max_poll_attempts) {
    if (attempts > 0) {
      options_.sleep(config_.poll_retry_interval);
      if (clock().Now() >= give_up) {
        out_of_time = true;
        break;
      }
    }
    ++attempts;
    auto body = FetchPods();
    if (!body.ok()) return body.status();
    auto lookup = FindInPodList(*body, want, !config_.disable_container_selectors);
    if (!lookup.ok()) return lookup.status();
    if (lookup->found == Found::kYes) return std::move(lookup->selectors);
    last = lookup->found;
  }
  std::string tried = absl::StrCat(attempts, " attempts");
  if (out_of_time) {
    absl::StrAppend(&tried, " (polling stops after ", absl::FormatDuration(limit),
                    ", max_poll_attempts x (poll_retry_interval + query deadline))");
  }
  if (last == Found::kNoPod) {
    return Unavailable(
        absl::StrCat("the kubelet does not list pod ", want.pod_uid, " after ", tried));
  }
  return Unavailable(absl::StrCat("pod ", want.pod_uid, " has no status for container ",
                                  want.container_id, " after ", tried, " (is it still starting?)"));
}

absl::StatusOr<std::string> K8sWorkloadAttestor::FetchPods() const {
  std::unique_ptr<httplib::ClientImpl> client;
  httplib::Headers headers;
  std::string url;
  if (config_.kubelet_read_only_port != 0) {
    url =
        absl::StrCat("http://", config_.kubelet_host, ":", config_.kubelet_read_only_port, "/pods");
    client =
        std::make_unique<httplib::ClientImpl>(config_.kubelet_host, config_.kubelet_read_only_port);
  } else {
    url = absl::StrCat("https://", config_.kubelet_host, ":", config_.kubelet_secure_port, "/pods");
    auto tls =
        std::make_unique<httplib::SSLClient>(config_.kubelet_host, config_.kubelet_secure_port);
    SSL_CTX* ctx = tls->ssl_context();
    if (ctx == nullptr) return Unavailable("cannot set up TLS to the kubelet");
    common::ClearOpenSslErrors();
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    // httplib would check the name against kubelet_host; OpenSSL checks it against the node
    // name instead, as part of the chain verification.
    tls->enable_server_certificate_verification(false);
    if (config_.skip_kubelet_verification) {
      SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, nullptr);
    } else {
      auto ca = common::ReadFile(config_.kubelet_ca_path);
      if (!ca.ok()) {
        return Unavailable(absl::StrCat("cannot read kubelet_ca_path ", config_.kubelet_ca_path,
                                        ": ", ca.status().message()));
      }
      if (SSL_CTX_load_verify_locations(ctx, config_.kubelet_ca_path.c_str(), nullptr) != 1) {
        return common::OpenSslError(absl::StatusCode::kUnavailable,
                                    absl::StrCat(kPrefix, "no CA certificate in kubelet_ca_path ",
                                                 config_.kubelet_ca_path));
      }
      X509_VERIFY_PARAM* param = SSL_CTX_get0_param(ctx);
      int set = IsIpAddress(server_name_)
                    ? X509_VERIFY_PARAM_set1_ip_asc(param, server_name_.c_str())
                    : X509_VERIFY_PARAM_set1_host(param, server_name_.c_str(), 0);
      if (set != 1) {
        return common::OpenSslError(
            absl::StatusCode::kUnavailable,
            absl::StrCat(kPrefix, "cannot check the kubelet's name ", server_name_));
      }
      SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, nullptr);
    }
    if (!config_.certificate_path.empty()) {
      if (SSL_CTX_use_certificate_chain_file(ctx, config_.certificate_path.c_str()) != 1) {
        return common::OpenSslError(
            absl::StatusCode::kUnavailable,
            absl::StrCat(kPrefix, "cannot load certificate_path ", config_.certificate_path));
      }
      if (SSL_CTX_use_PrivateKey_file(ctx, config_.private_key_path.c_str(), SSL_FILETYPE_PEM) !=
              1 ||
          SSL_CTX_check_private_key(ctx) != 1) {
        return common::OpenSslError(
            absl::StatusCode::kUnavailable,
            absl::StrCat(kPrefix, "cannot load private_key_path ", config_.private_key_path,
                         " as the key of ", config_.certificate_path));
      }
    } else if (!config_.use_anonymous_authentication) {
      // Re-read on every query: projected service account tokens are rotated on disk.
      auto token = common::ReadFile(config_.token_path);
      if (!token.ok()) {
        return Unavailable(absl::StrCat("cannot read token_path ", config_.token_path, ": ",
                                        token.status().message()));
      }
      std::string bearer(absl::StripAsciiWhitespace(*token));
      if (bearer.empty()) {
        return Unavailable(absl::StrCat("token_path ", config_.token_path, " is empty"));
      }
      headers.emplace("Authorization", "Bearer " + bearer);
    }
    client = std::move(tls);
  }
  client->set_connection_timeout(kConnectTimeoutSeconds);
  client->set_read_timeout(kReadTimeoutSeconds);
  client->set_keep_alive(false);
  headers.emplace("Accept", "application/json");
  // The body is taken through callbacks that stop the transfer past the size limit or the
  // query's deadline: httplib itself would read any amount for any time, a byte per read
  // timeout keeping it going.
  const common::Clock& now = clock();
  const absl::Time deadline = now.Now() + options_.query_deadline;
  std::string body;
  std::string cut_off;  // why a callback stopped the transfer
  auto too_large = [&] {
    cut_off = absl::StrCat("the answer is larger than the ", kMaxPodListText, " limit");
    return false;
  };
  auto in_time = [&] {
    if (now.Now() < deadline) return true;
    cut_off = absl::StrCat("no complete answer within the query deadline of ",
                           absl::FormatDuration(options_.query_deadline));
    return false;
  };
  httplib::Result res = client->Get(
      "/pods", headers,
      [&](const httplib::Response& response) {
        uint64_t length = 0;
        if (absl::SimpleAtoi(response.get_header_value("Content-Length"), &length) &&
            length > kMaxPodListBytes) {
          return too_large();
        }
        return in_time();
      },
      [&](const char* data, size_t size) {
        if (size > kMaxPodListBytes - body.size()) return too_large();
        if (!in_time()) return false;
        body.append(data, size);
        return true;
      },
      [&](uint64_t /*current*/, uint64_t /*total*/) { return in_time(); });
  if (!res && !cut_off.empty()) return Unavailable(absl::StrCat("GET ", url, ": ", cut_off));
  if (!res) {
    std::string detail = httplib::to_string(res.error());
    if (res.error() == httplib::Error::SSLConnection) {
      detail +=
          " (TLS handshake failed; is the kubelet's certificate issued by kubelet_ca_path "
          "for " +
          server_name_ + "?)";
    }
    return Unavailable(absl::StrCat("cannot GET ", url, ": ", detail));
  }
  if (res->status == 401 || res->status == 403) {
    return Unavailable(absl::StrCat("the kubelet refused our credentials for GET ", url, " (HTTP ",
                                    res->status, "): ", Quote(body)));
  }
  if (res->status != 200) {
    return Unavailable(absl::StrCat("the kubelet answered GET ", url, " with HTTP ", res->status,
                                    ": ", Quote(body)));
  }
  return body;
}

}  // namespace trellis::attestors
