// Docker workload attestation: GET /containers/<id>/json on the daemon's Unix socket.
#include "attestors/container/docker_attestor.h"

#include <httplib.h>
#include <sys/socket.h>

#include <algorithm>
#include <nlohmann/json.hpp>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"

namespace trellis::attestors {
namespace {

using nlohmann::json;

constexpr char kPrefix[] = "docker: ";
constexpr char kUnixScheme[] = "unix://";
constexpr time_t kConnectTimeoutSeconds = 5;
constexpr time_t kReadTimeoutSeconds = 10;
constexpr size_t kMaxQuoted = 200;
// An inspect document is a few KiB; labels and environment make it larger, not megabytes.
constexpr size_t kMaxInspectBytes = size_t{4} << 20;
constexpr char kMaxInspectText[] = "4 MiB";

absl::Status Unavailable(const std::string& message) {
  return absl::UnavailableError(kPrefix + message);
}

std::string Quote(std::string s) {
  s.resize(std::min(s.size(), kMaxQuoted));
  for (char& c : s) {
    if (!absl::ascii_isprint(static_cast<unsigned char>(c))) c = '?';
  }
  return s;
}

// Docker's error bodies are {"message": "..."}.
std::string ErrorMessage(const std::string& body) {
  json j = json::parse(body, nullptr, /*allow_exceptions=*/false);
  if (j.is_object()) {
    auto it = j.find("message");
    if (it != j.end() && it->is_string()) return Quote(it->get<std::string>());
  }
  return Quote(body);
}

bool IsApiVersion(const std::string& v) {
  std::vector<std::string> parts = absl::StrSplit(v, '.');
  return parts.size() == 2 && std::all_of(parts.begin(), parts.end(), [](const std::string& p) {
           return !p.empty() &&
                  std::all_of(p.begin(), p.end(), [](char c) { return c >= '0' && c <= '9'; });
         });
}

}  // namespace

absl::StatusOr<std::unique_ptr<DockerWorkloadAttestor>> DockerWorkloadAttestor::Create(
    const common::config::DockerWorkloadAttestorConfig& config) {
  return Create(config, Options{});
}

absl::StatusOr<std::unique_ptr<DockerWorkloadAttestor>> DockerWorkloadAttestor::Create(
    const common::config::DockerWorkloadAttestorConfig& config, Options options) {
  auto bad = [](const std::string& why) { return absl::InvalidArgumentError(kPrefix + why); };
  std::string socket = config.docker_socket_path;
  if (absl::StartsWith(socket, kUnixScheme)) {
    socket = socket.substr(sizeof(kUnixScheme) - 1);
  } else if (absl::StrContains(socket, "://")) {
    return bad(absl::StrCat("docker_socket_path \"", config.docker_socket_path,
                            "\" is not a unix:// socket"));
  }
  if (!absl::StartsWith(socket, "/")) {
    return bad(absl::StrCat("docker_socket_path \"", config.docker_socket_path,
                            "\" is not an absolute socket path"));
  }
  std::string api_prefix;
  if (!config.docker_version.empty()) {
    if (!IsApiVersion(config.docker_version)) {
      return bad(absl::StrCat("docker_version \"", config.docker_version,
                              "\" is not an API version such as 1.41"));
    }
    api_prefix = "/v" + config.docker_version;
  }
  auto matcher = cgroups::ContainerIdMatcher::Create(config.container_id_cgroup_matchers);
  if (!matcher.ok()) return bad(std::string(matcher.status().message()));
  if (options.proc_root.empty()) return bad("the proc root is empty");
  if (options.query_deadline <= absl::ZeroDuration()) {
    return bad("the query deadline must be positive");
  }
  return std::unique_ptr<DockerWorkloadAttestor>(new DockerWorkloadAttestor(
      std::move(socket), std::move(api_prefix), *std::move(matcher), std::move(options)));
}

absl::StatusOr<std::vector<SelectorString>> DockerWorkloadAttestor::Attest(
    const CallerCredentials& caller) {
  auto pin = ProcessPin::Pin(caller.pid);
  if (!pin.ok()) return pin.status();
  return AttestCgroups(*pin);
}

absl::StatusOr<std::vector<SelectorString>> DockerWorkloadAttestor::AttestPinned(
    const CallerCredentials& /*caller*/, const ProcessPin& pin) {
  return AttestCgroups(pin);
}

absl::StatusOr<std::vector<SelectorString>> DockerWorkloadAttestor::AttestCgroups(
    const ProcessPin& pin) {
  auto entries = cgroups::ReadCgroups(options_.proc_root, pin.pid());
  // Checked before asking Docker: the cgroups stand for the caller only while it holds the pid.
  if (absl::Status s = pin.Check(); !s.ok()) return s;
  if (!entries.ok()) {
    if (entries.status().code() == absl::StatusCode::kNotFound) {
      return Unavailable(std::string(entries.status().message()));
    }
    return absl::InvalidArgumentError(kPrefix + std::string(entries.status().message()));
  }
  auto id = cgroups::FindDockerContainerId(*entries, &matcher_);
  if (!id.ok()) return absl::InvalidArgumentError(kPrefix + std::string(id.status().message()));
  if (!id->has_value()) return std::vector<SelectorString>{};  // not in a container
  return InspectContainer(**id);
}

absl::StatusOr<std::vector<SelectorString>> DockerWorkloadAttestor::InspectContainer(
    const std::string& id) const {
  // A matcher may capture any element: keep the request path to what an ID can be.
  if (id.empty() || !std::all_of(id.begin(), id.end(), [](char c) {
        return absl::ascii_isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '-' ||
               c == '.';
      })) {
    return absl::InvalidArgumentError(
        absl::StrCat(kPrefix, "container ID \"", Quote(id), "\" has characters IDs never have"));
  }
  httplib::Client client(socket_path_, 80);
  client.set_address_family(AF_UNIX);
  client.set_connection_timeout(kConnectTimeoutSeconds);
  client.set_read_timeout(kReadTimeoutSeconds);
  client.set_keep_alive(false);
  const std::string path = absl::StrCat(api_prefix_, "/containers/", id, "/json");
  // The body is taken through callbacks that stop the transfer past the size limit or the
  // query's deadline: httplib itself would read any amount for any time, a byte per read
  // timeout keeping it going.
  const common::Clock& now =
      options_.clock != nullptr ? *options_.clock : common::SystemClock::Get();
  const absl::Time deadline = now.Now() + options_.query_deadline;
  std::string body;
  std::string cut_off;  // why a callback stopped the transfer
  auto too_large = [&] {
    cut_off = absl::StrCat("the answer is larger than the ", kMaxInspectText, " limit");
    return false;
  };
  auto in_time = [&] {
    if (now.Now() < deadline) return true;
    cut_off = absl::StrCat("no complete answer within the query deadline of ",
                           absl::FormatDuration(options_.query_deadline));
    return false;
  };
  // The default Host header would be the socket's path, which is no host name.
  httplib::Result res = client.Get(
      path, {{"Host", "docker"}},
      [&](const httplib::Response& response) {
        uint64_t length = 0;
        if (absl::SimpleAtoi(response.get_header_value("Content-Length"), &length) &&
            length > kMaxInspectBytes) {
          return too_large();
        }
        return in_time();
      },
      [&](const char* data, size_t size) {
        if (size > kMaxInspectBytes - body.size()) return too_large();
        if (!in_time()) return false;
        body.append(data, size);
        return true;
      },
      [&](uint64_t /*current*/, uint64_t /*total*/) { return in_time(); });
  if (!res && !cut_off.empty()) return Unavailable(absl::StrCat("GET ", path, ": ", cut_off));
  if (!res) {
    return Unavailable(absl::StrCat("cannot reach the Docker daemon at unix://", socket_path_, ": ",
                                    httplib::to_string(res.error())));
  }
  if (res->status == 404) {
    return absl::NotFoundError(
        absl::StrCat(kPrefix, "container ", id,
                     " is not known to the Docker daemon (it exited?): ", ErrorMessage(body)));
  }
  if (res->status != 200) {
    return Unavailable(
        absl::StrCat("GET ", path, " answered HTTP ", res->status, ": ", ErrorMessage(body)));
  }
  auto malformed = [&](const std::string& what) {
    return Unavailable(absl::StrCat("malformed answer to GET ", path, ": ", what));
  };
  json doc = json::parse(body, nullptr, /*allow_exceptions=*/false);
  if (doc.is_discarded()) return malformed("not valid JSON");
  if (!doc.is_object()) return malformed("not an object");
  auto config_it = doc.find("Config");
  if (config_it == doc.end() || !config_it->is_object()) return malformed("no Config object");
  const json& config = *config_it;

  std::vector<SelectorString> out;
  if (auto labels = config.find("Labels"); labels != config.end() && !labels->is_null()) {
    if (!labels->is_object()) return malformed("Config.Labels is not an object");
    for (const auto& [key, value] : labels->items()) {
      if (!value.is_string()) return malformed("Config.Labels." + key + " is not a string");
      out.push_back(absl::StrCat("docker:label:", key, ":", value.get<std::string>()));
    }
  }
  if (auto image = config.find("Image"); image != config.end() && !image->is_null()) {
    if (!image->is_string()) return malformed("Config.Image is not a string");
    if (!image->get<std::string>().empty()) {
      out.push_back("docker:image_id:" + image->get<std::string>());
    }
  }
  if (auto env = config.find("Env"); env != config.end() && !env->is_null()) {
    if (!env->is_array()) return malformed("Config.Env is not an array");
    for (const json& e : *env) {
      if (!e.is_string()) return malformed("Config.Env holds a value that is not a string");
      out.push_back("docker:env:" + e.get<std::string>());
    }
  }
  return out;
}

}  // namespace trellis::attestors
