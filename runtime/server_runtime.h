// The trellis-server process: wires datastore, keys, CA, server SVID, entry index, attestors
// and the agent/admin services from a ServerConfig, runs maintenance, and stops cleanly.
#pragma once

#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "common/config/server_config.h"

namespace trellis::runtime {

class Server {
 public:
  // Opens the datastore (migrating it), loads or creates the CA and keys, issues the server
  // SVID and loads the entry index. Only /metrics (when configured) listens yet, so start-up
  // is metered from the datastore's first call.
  static absl::StatusOr<std::unique_ptr<Server>> Create(const common::config::ServerConfig& config);
  ~Server();

  // Listens for agents (TLS on bind_address:bind_port) and for the admin API (Unix socket
  // socket_path), and starts the maintenance thread.
  absl::Status Start();
  // Ends watch streams, stops accepting, waits for in-flight calls (bounded), stops the
  // maintenance thread, removes the socket and closes the datastore. Idempotent.
  void Shutdown();

  // The agent API port actually bound (useful with bind_port 0).
  int agent_port() const;
  const std::string& socket_path() const;
  // The port /metrics is served on after Create(); 0 without `telemetry { Prometheus {} }`.
  int metrics_port() const;

 private:
  struct Impl;
  explicit Server(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

// `trellis-server run`: Create, Start, then block until SIGTERM or SIGINT and Shutdown.
// Returns OK after a clean stop.
absl::Status RunServerUntilSignal(const common::config::ServerConfig& config);

}  // namespace trellis::runtime
