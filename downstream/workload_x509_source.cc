// Workload API client thread: FetchX509SVID stream, parsing, reconnect with backoff.
#include "downstream/workload_x509_source.h"

#include <grpcpp/grpcpp.h>

#include <algorithm>
#include <thread>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "common/keys.h"
#include "common/status.h"
#include "workload.grpc.pb.h"

namespace trellis::downstream {

namespace {

constexpr absl::Duration kBackoffMin = absl::Milliseconds(200);
constexpr absl::Duration kBackoffMax = absl::Seconds(5);

absl::StatusOr<WorkloadX509Source::Svid> ParseSvid(const X509SVID& s,
                                                   const common::TrustDomain& td) {
  TRELLIS_ASSIGN_OR_RETURN(common::SpiffeId id, common::SpiffeId::Parse(s.spiffe_id()));
  if (!id.MemberOf(td)) {
    return absl::InvalidArgumentError("Workload API SVID " + id.String() +
                                      " is not in trust domain " + td.name());
  }
  TRELLIS_ASSIGN_OR_RETURN(auto chain, common::Certificate::ChainFromDer(s.x509_svid()));
  if (chain.empty()) return absl::InvalidArgumentError("Workload API SVID has no certificate");
  std::string chain_pem;
  for (const auto& c : chain) chain_pem += c.ToPem();
  TRELLIS_ASSIGN_OR_RETURN(common::PrivateKey key,
                           common::PrivateKey::FromPkcs8Der(s.x509_svid_key()));
  TRELLIS_RETURN_IF_ERROR(common::CheckKeyMatchesCertificate(key, chain.front()));
  TRELLIS_ASSIGN_OR_RETURN(common::SecretBytes pem, key.ToPem());
  TRELLIS_ASSIGN_OR_RETURN(auto roots, common::Certificate::ChainFromDer(s.bundle()));
  auto bundle = std::make_shared<common::Bundle>(td);
  for (const auto& r : roots) TRELLIS_RETURN_IF_ERROR(bundle->AddX509Authority(r));
  return WorkloadX509Source::Svid{std::move(id), std::move(chain), std::move(chain_pem),
                                  std::string(pem.view()), std::move(bundle)};
}

}  // namespace

struct WorkloadX509Source::Impl {
  std::string socket_path;
  common::TrustDomain td;
  // Wait() callers block on mu until current is set or stopping.
  mutable absl::Mutex mu;
  std::shared_ptr<const Svid> current ABSL_GUARDED_BY(mu);
  std::string last_error ABSL_GUARDED_BY(mu) = "no response yet";
  bool stopping ABSL_GUARDED_BY(mu) = false;
  grpc::ClientContext* active_ctx ABSL_GUARDED_BY(mu) = nullptr;
  std::function<void()> listener ABSL_GUARDED_BY(mu);
  // Held through Stop(): a second Stop, on another thread, returns once the first has joined.
  absl::Mutex stop_mu;
  std::thread thread ABSL_GUARDED_BY(stop_mu);

  Impl(std::string path, common::TrustDomain t) : socket_path(std::move(path)), td(std::move(t)) {}
  void Run();
};

void WorkloadX509Source::Impl::Run() {
  absl::Duration backoff = kBackoffMin;
  while (true) {
    {
      absl::MutexLock lock(&mu);
      if (stopping) return;
    }
    auto stub = SpiffeWorkloadAPI::NewStub(
        grpc::CreateChannel("unix://" + socket_path, grpc::InsecureChannelCredentials()));
    grpc::ClientContext ctx;
    ctx.AddMetadata("workload.spiffe.io", "true");
    {
      absl::MutexLock lock(&mu);
      if (stopping) return;
      active_ctx = &ctx;
    }
    auto reader = stub->FetchX509SVID(&ctx, X509SVIDRequest());
    X509SVIDResponse resp;
    while (reader->Read(&resp)) {
      if (resp.svids_size() == 0) continue;
      auto svid = ParseSvid(resp.svids(0), td);
      std::function<void()> notify;
      {
        absl::MutexLock lock(&mu);
        if (!svid.ok()) {
          last_error = std::string(svid.status().message());
          continue;
        }
        current = std::make_shared<const Svid>(std::move(*svid));
        notify = listener;
      }
      backoff = kBackoffMin;
      if (notify) notify();
    }
    grpc::Status status = reader->Finish();
    absl::MutexLock lock(&mu);
    active_ctx = nullptr;
    if (stopping) return;
    last_error = status.error_message().empty() ? "stream ended" : status.error_message();
    // Stop() setting stopping ends the wait early; whole milliseconds, as always.
    mu.AwaitWithTimeout(absl::Condition(&stopping), absl::Trunc(backoff, absl::Milliseconds(1)));
    backoff = std::min(backoff * 2, kBackoffMax);
  }
}

WorkloadX509Source::WorkloadX509Source(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

std::unique_ptr<WorkloadX509Source> WorkloadX509Source::Start(std::string socket_path,
                                                              common::TrustDomain td) {
  auto impl = std::make_unique<Impl>(std::move(socket_path), std::move(td));
  Impl* raw = impl.get();
  {
    absl::MutexLock stop(&raw->stop_mu);
    raw->thread = std::thread([raw] { raw->Run(); });
  }
  return std::unique_ptr<WorkloadX509Source>(new WorkloadX509Source(std::move(impl)));
}

WorkloadX509Source::~WorkloadX509Source() { Stop(); }

std::shared_ptr<const WorkloadX509Source::Svid> WorkloadX509Source::Current() const {
  absl::MutexLock lock(&impl_->mu);
  return impl_->current;
}

absl::StatusOr<std::shared_ptr<const WorkloadX509Source::Svid>> WorkloadX509Source::Wait(
    absl::Duration timeout) const {
  absl::MutexLock lock(&impl_->mu);
  auto ready = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(impl_->mu) {
    return impl_->current != nullptr || impl_->stopping;
  };
  // Whole milliseconds, as the wait has always been.
  impl_->mu.AwaitWithTimeout(absl::Condition(&ready),
                             absl::Trunc(timeout, absl::Milliseconds(1)));
  if (impl_->current) return impl_->current;
  return absl::UnavailableError("no X509-SVID from the Workload API at " + impl_->socket_path +
                                " (" + impl_->last_error + ")");
}

void WorkloadX509Source::SetListener(std::function<void()> listener) {
  absl::MutexLock lock(&impl_->mu);
  impl_->listener = std::move(listener);
}

void WorkloadX509Source::Stop() {
  absl::MutexLock stop(&impl_->stop_mu);
  {
    absl::MutexLock lock(&impl_->mu);
    impl_->stopping = true;
    if (impl_->active_ctx) impl_->active_ctx->TryCancel();
  }
  if (impl_->thread.joinable()) impl_->thread.join();
}

}  // namespace trellis::downstream
