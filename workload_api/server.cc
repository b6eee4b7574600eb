// Wiring of the Workload API: listener, attestation, worker pool, service and gRPC server,
// started in dependency order and stopped in reverse.
#include "workload_api/server.h"

#include <grpcpp/grpcpp.h>

#include <algorithm>
#include <chrono>

#include "workload_api/async_call.h"
#include "workload_api/caller_attestation.h"
#include "workload_api/identity_stream.h"
#include "workload_api/peer_listener.h"
#include "workload_api/sds_service.h"
#include "workload_api/work_queue.h"

namespace trellis::workload_api {

absl::StatusOr<std::unique_ptr<WorkloadApiServer>> WorkloadApiServer::Start(
    Options options, IdentitySource* source, std::vector<attestors::WorkloadAttestor*> attestors,
    JwtMinter minter, const common::Clock& clock) {
  std::unique_ptr<WorkloadApiServer> s(new WorkloadApiServer());
  auto listener = PeerListener::Bind(options.socket_path);
  if (!listener.ok()) return listener.status();
  s->listener_ = *std::move(listener);
  s->attestation_ = std::make_unique<CallerAttestation>(std::move(attestors));
  s->streams_ = std::make_unique<StreamRegistry>();
  s->work_ = std::make_unique<WorkQueue>(std::max(1, options.worker_threads));
  s->async_service_ = std::make_unique<SpiffeWorkloadAPI::AsyncService>();
  s->sds_ = std::make_unique<SdsService>(SdsService::Deps{
      s->listener_.get(), source, s->attestation_.get(), s->work_.get(), s->streams_.get()});
  grpc::ServerBuilder builder;
  builder.RegisterService(s->async_service_.get());
  builder.RegisterService(s->sds_.get());
  if (options.configure_builder) options.configure_builder(builder);
  s->calls_ = std::make_unique<CallQueue>(builder.AddCompletionQueue());
  s->server_ = builder.BuildAndStart();
  if (!s->server_) return absl::InternalError("cannot start the Workload API gRPC server");
  s->service_ = std::make_unique<WorkloadApiService>(
      CallDeps{s->async_service_.get(), s->calls_.get(), s->listener_.get(), source,
               s->attestation_.get(), s->work_.get(), s->streams_.get()},
      std::move(minter), clock);
  s->service_->AwaitCalls();
  // Two threads answer calls (anything that may block goes to the workers): with one, a new
  // call could wait behind the teardown of the call before it; measured, a first message
  // came 1.15-1.20x the plain gRPC floor with two and 1.14-1.34x with one.
  s->calls_->Start(2);
  s->listener_->Start(s->server_.get());
  return s;
}

WorkloadApiServer::~WorkloadApiServer() { Stop(); }

void WorkloadApiServer::Stop() {
  if (stopped_.exchange(true)) return;
  if (listener_) listener_->StopAccepting();
  if (streams_) streams_->CloseAll();
  if (server_) server_->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(2));
  if (work_) work_->Stop();
  if (calls_) calls_->ShutdownAndJoin();
  if (listener_) listener_->Close();
}

size_t WorkloadApiServer::TrackedConnections() { return listener_->TrackedConnections(); }

}  // namespace trellis::workload_api
