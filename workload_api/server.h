// The SPIFFE Workload API server: a Unix socket open to every local user, callers identified
// by the kernel (SO_PEERCRED on each accepted connection), answers from an IdentitySource.
#pragma once

#include <atomic>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "attestors/workload/workload_attestor.h"
#include "common/clock.h"
#include "workload_api/identity_source.h"
#include "workload_api/service.h"

namespace grpc {
class Server;
class ServerBuilder;
}

namespace trellis::workload_api {

class CallQueue;
class CallerAttestation;
class PeerListener;
class SdsService;
class StreamRegistry;
class WorkQueue;

class WorkloadApiServer {
 public:
  using JwtMinter = workload_api::JwtMinter;

  struct Options {
    std::string socket_path;
    // Threads for attestation that may block and for JWT minting, so neither holds up the
    // threads that answer calls.
    int worker_threads = 2;
    // Adjusts the gRPC server before it starts (e.g. adds metrics interceptors).
    std::function<void(grpc::ServerBuilder&)> configure_builder = nullptr;
  };

  // Binds the socket (parent directory created 0755, socket 0777; a stale socket file is
  // replaced), starts the accept loop and the gRPC server: the Workload API and Envoy's SDS. `source` outlives the server.
  static absl::StatusOr<std::unique_ptr<WorkloadApiServer>> Start(
      Options options, IdentitySource* source, std::vector<attestors::WorkloadAttestor*> attestors,
      JwtMinter minter, const common::Clock& clock);
  ~WorkloadApiServer();

  // Ends every stream (UNAVAILABLE), stops accepting, shuts gRPC down, removes the socket.
  void Stop();

  // Connections whose credentials are still recorded (for leak checks).
  size_t TrackedConnections();

 private:
  WorkloadApiServer() = default;

  // Declared in dependency order: each is destroyed after everything that calls it.
  std::unique_ptr<PeerListener> listener_;
  std::unique_ptr<CallerAttestation> attestation_;
  std::unique_ptr<StreamRegistry> streams_;
  std::unique_ptr<WorkQueue> work_;
  std::unique_ptr<SpiffeWorkloadAPI::AsyncService> async_service_;
  // Envoy SDS on the same socket.
  std::unique_ptr<SdsService> sds_;
  // The queue outlives the server (gRPC's order: server shut down, queue drained, server
  // destroyed, then the queue).
  std::unique_ptr<CallQueue> calls_;
  std::unique_ptr<WorkloadApiService> service_;
  std::unique_ptr<grpc::Server> server_;
  std::atomic<bool> stopped_{false};
};

}  // namespace trellis::workload_api
