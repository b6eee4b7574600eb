// A fake Docker Engine API on a Unix socket for tests: GET /v<version>/containers/<id>/json
// answers the inspect document with Docker's field names, 404 {"message": "No such
// container: <id>"} for an unknown ID.
#pragma once

#include <httplib.h>
#include <sys/socket.h>
#include <unistd.h>

#include <functional>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "gtest/gtest.h"

namespace trellis::attestors::testing {

struct FakeDockerContainer {
  std::string id;  // 64 hex digits
  std::string name = "/web";
  std::string image = "nginx:1.27";  // Config.Image, the name the container was run from
  std::string image_digest =
      "sha256:3b25b682ea82b2db3cc4fd48db818be788ee3f902ac7378090cf2624ec2442df";
  std::map<std::string, std::string> labels;
  std::vector<std::string> env;
};

inline nlohmann::json InspectJson(const FakeDockerContainer& c) {
  nlohmann::json config = {
      {"Hostname", c.id.substr(0, 12)},
      {"Domainname", ""},
      {"User", ""},
      {"AttachStdin", false},
      {"Tty", false},
      {"Env", c.env},
      {"Cmd", {"nginx", "-g", "daemon off;"}},
      {"Image", c.image},
      {"Volumes", nullptr},
      {"WorkingDir", ""},
      {"Entrypoint", {"/docker-entrypoint.sh"}},
      {"OnBuild", nullptr},
      {"Labels", c.labels.empty() ? nlohmann::json::object() : nlohmann::json(c.labels)}};
  return {{"Id", c.id},
          {"Created", "2026-12-01T10:00:00.123456789Z"},
          {"Path", "/docker-entrypoint.sh"},
          {"Args", {"nginx", "-g", "daemon off;"}},
          {"State",
           {{"Status", "running"},
            {"Running", true},
            {"Paused", false},
            {"Restarting", false},
            {"OOMKilled", false},
            {"Dead", false},
            {"Pid", 4242},
            {"ExitCode", 0},
            {"Error", ""},
            {"StartedAt", "2026-12-01T10:00:01.5Z"},
            {"FinishedAt", "0001-01-01T00:00:00Z"}}},
          {"Image", c.image_digest},
          {"Name", c.name},
          {"RestartCount", 0},
          {"Driver", "overlay2"},
          {"Platform", "linux"},
          {"HostConfig", {{"NetworkMode", "default"}, {"Privileged", false}}},
          {"Config", config},
          {"NetworkSettings", {{"Bridge", ""}, {"SandboxID", c.id}}}};
}

class FakeDocker {
 public:
  // Listens on `socket_path` (keep it short: Unix socket paths are limited to 107 bytes) and
  // serves the API as `api_version`; a request naming another version gets Docker's 400.
  static std::unique_ptr<FakeDocker> Start(const std::string& socket_path,
                                           std::string api_version = "1.41") {
    auto d = std::unique_ptr<FakeDocker>(new FakeDocker(socket_path, std::move(api_version)));
    d->Run();
    return d;
  }
  ~FakeDocker() {
    server_.stop();
    if (thread_.joinable()) thread_.join();
    unlink(socket_path_.c_str());
  }

  // "unix://<path>", as docker_socket_path spells it.
  std::string socket_url() const { return "unix://" + socket_path_; }

  void AddContainer(const FakeDockerContainer& c) {
    absl::MutexLock lock(&mu_);
    containers_[c.id] = InspectJson(c).dump();
  }
  // Serves `body` verbatim (with status 200) for `id`, e.g. to send a malformed document.
  void SetRawInspect(const std::string& id, std::string body) {
    absl::MutexLock lock(&mu_);
    containers_[id] = std::move(body);
  }
  // The inspect request for `id` is answered by `streamer`, which fills in the response
  // itself (status, headers, a content provider that sends the body piecemeal).
  using Streamer = std::function<void(httplib::Response&)>;
  void SetStreamer(const std::string& id, Streamer streamer) {
    absl::MutexLock lock(&mu_);
    streamers_[id] = std::move(streamer);
  }
  void RemoveContainer(const std::string& id) {
    absl::MutexLock lock(&mu_);
    containers_.erase(id);
  }
  // The paths requested so far.
  std::vector<std::string> paths() const {
    absl::MutexLock lock(&mu_);
    return paths_;
  }

 private:
  FakeDocker(std::string socket_path, std::string api_version)
      : socket_path_(std::move(socket_path)), api_version_(std::move(api_version)) {}

  void Run() {
    auto inspect = [this](const httplib::Request& req, httplib::Response& res) {
      const bool versioned = req.matches.size() == 3;
      const std::string version = versioned ? std::string(req.matches[1]) : api_version_;
      const std::string id = req.matches[versioned ? 2 : 1];
      std::string body;
      bool found = false;
      Streamer streamer;
      {
        absl::MutexLock lock(&mu_);
        paths_.push_back(req.path);
        auto it = containers_.find(id);
        if (it != containers_.end()) {
          found = true;
          body = it->second;
        }
        if (auto s = streamers_.find(id); s != streamers_.end()) streamer = s->second;
      }
      if (streamer && version == api_version_) {
        streamer(res);
      } else if (version != api_version_) {
        res.status = 400;
        res.set_content(nlohmann::json({{"message", "client version " + version +
                                                        " is not supported; this server speaks " +
                                                        api_version_}})
                            .dump(),
                        "application/json");
      } else if (!found) {
        res.status = 404;
        res.set_content(nlohmann::json({{"message", "No such container: " + id}}).dump(),
                        "application/json");
      } else {
        res.set_content(body, "application/json");
      }
    };
    server_.Get(R"(/v([0-9]+\.[0-9]+)/containers/([^/]+)/json)", inspect);
    server_.Get(R"(/containers/([^/]+)/json)", inspect);
    server_.set_address_family(AF_UNIX);
    unlink(socket_path_.c_str());
    if (!server_.bind_to_port(socket_path_, 80)) {
      ADD_FAILURE() << "the fake Docker daemon cannot listen on " << socket_path_;
      return;
    }
    thread_ = std::thread([this] { server_.listen_after_bind(); });
    // stop() is only heard once the accept loop runs.
    while (!server_.is_running()) absl::SleepFor(absl::Milliseconds(1));
  }

  const std::string socket_path_;
  const std::string api_version_;
  httplib::Server server_;
  std::thread thread_;
  mutable absl::Mutex mu_;
  std::map<std::string, std::string> containers_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, Streamer> streamers_ ABSL_GUARDED_BY(mu_);
  std::vector<std::string> paths_ ABSL_GUARDED_BY(mu_);
};

}  // namespace trellis::attestors::testing
