// The `health_checks` HTTP listener: GET live_path / ready_path answer 200 or 500 with a JSON
// body per subsystem (SPIRE's convention), served by one small thread.
#pragma once

#include <atomic>
#include <functional>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <thread>

#include "absl/status/statusor.h"
#include "common/config/shared_config.h"

namespace trellis::common {

struct HealthReport {
  struct Subsystem {
    bool healthy = true;
    std::string detail;
  };
  std::map<std::string, Subsystem> subsystems;
  // Subsystems whose failure makes the server not ready but leaves it live (a datastore
  // outage: a restart would not fix it).
  std::set<std::string> live_excludes;
};

// HTTP status and JSON body for `path` (live or ready), or 404 for anything else.
std::pair<int, std::string> RenderHealth(const HealthReport& report, bool live);

class HealthListener {
 public:
  static absl::StatusOr<std::unique_ptr<HealthListener>> Start(
      const common::config::HealthChecksConfig& config, std::function<HealthReport()> report);
  ~HealthListener();
  void Stop();
  int port() const { return port_; }

 private:
  HealthListener() = default;
  void Serve();
  void Answer(int fd);

  common::config::HealthChecksConfig config_;
  std::function<HealthReport()> report_;
  int listen_fd_ = -1;
  int wake_fd_[2] = {-1, -1};
  int port_ = 0;
  std::thread thread_;
  std::atomic<bool> stopped_{false};
};

}  // namespace trellis::common
