// UpstreamAuthority "spire": MintX509CA, PublishJWTAuthority and the WatchBundle stream.
#include "downstream/spire_upstream_authority.h"

#include <grpcpp/grpcpp.h>

#include <algorithm>
#include <thread>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "common/csr.h"
#include "common/log.h"
#include "common/status.h"
#include "downstream/workload_x509_source.h"
#include "server/api_convert.h"
#include "transport/grpc_status.h"
#include "transport/spiffe_tls.h"
#include "transport/wire_convert.h"
#include "trellis/server/v1/upstream.grpc.pb.h"

namespace trellis::downstream {

namespace v1 = server::v1;
using common::LogInfo;
using common::LogWarn;

namespace {

constexpr absl::Duration kWatchBackoffMin = absl::Milliseconds(200);
constexpr absl::Duration kWatchBackoffMax = absl::Seconds(5);

std::string Target(const std::string& host, uint16_t port) {
  if (host.find(':') != std::string::npos && host.front() != '[') {
    return "[" + host + "]:" + std::to_string(port);
  }
  return host + ":" + std::to_string(port);
}

void SetDeadline(grpc::ClientContext* ctx, absl::Duration d) {
  ctx->set_deadline(std::chrono::system_clock::now() + absl::ToChronoMilliseconds(d));
}

class SpireUpstreamAuthority final : public server::UpstreamAuthority {
 public:
  SpireUpstreamAuthority(SpireUpstreamOptions options, std::unique_ptr<WorkloadX509Source> source,
                         common::SpiffeId server_id)
      : options_(std::move(options)),
        source_(std::move(source)),
        server_id_(std::move(server_id)) {}
  ~SpireUpstreamAuthority() override { Stop(); }

  absl::StatusOr<MintResult> MintX509Ca(const common::PrivateKey& ca_key,
                                        const common::TrustDomain& td,
                                        absl::Duration ttl) override {
    if (td.name() != options_.trust_domain.name()) {
      return absl::InvalidArgumentError("upstream serves trust domain " +
                                        options_.trust_domain.name() + ", not " + td.name());
    }
    TRELLIS_ASSIGN_OR_RETURN(auto stub, Stub());
    TRELLIS_ASSIGN_OR_RETURN(std::string csr, common::BuildCsr(ca_key));
    v1::MintX509CARequest req;
    req.set_csr(csr);
    req.set_preferred_ttl(absl::ToInt64Seconds(ttl));
    v1::MintX509CAResponse resp;
    grpc::ClientContext ctx;
    SetDeadline(&ctx, options_.mint_timeout);
    grpc::Status s = stub->MintX509CA(&ctx, req, &resp);
    if (!s.ok()) {
      return Annotate(transport::FromGrpcStatus(s), "upstream server " + target());
    }
    MintResult result;
    auto chain = transport::CertificatesFromDer(resp.ca_chain());
    if (!chain.ok()) return Annotate(chain.status(), "CA chain from the upstream server");
    result.ca_chain = *std::move(chain);
    auto roots = transport::CertificatesFromDer(resp.x509_authorities());
    if (!roots.ok()) return Annotate(roots.status(), "roots from the upstream server");
    result.roots = *std::move(roots);
    return result;
  }

  bool OwnsBundle() const override { return true; }

  absl::StatusOr<datastore::Bundle> PublishJwtAuthority(
      const datastore::JwtAuthority& authority) override {
    TRELLIS_ASSIGN_OR_RETURN(auto stub, Stub());
    v1::PublishJWTAuthorityRequest req;
    v1::JWTAuthority* a = req.mutable_authority();
    a->set_key_id(authority.kid);
    a->set_public_key(authority.public_key_der);
    a->set_expires_at(absl::ToUnixSeconds(authority.expires_at));
    v1::PublishJWTAuthorityResponse resp;
    grpc::ClientContext ctx;
    SetDeadline(&ctx, options_.publish_timeout);
    grpc::Status s = stub->PublishJWTAuthority(&ctx, req, &resp);
    if (!s.ok()) return Annotate(transport::FromGrpcStatus(s), "upstream server " + target());
    auto bundle = server::BundleFromProto(resp.bundle());
    if (!bundle.ok()) return Annotate(bundle.status(), "bundle from the upstream server");
    return bundle;
  }

  void WatchBundle(std::function<void(const datastore::Bundle&)> on_bundle) override {
    absl::MutexLock lock(&mu_);
    if (stopping_ || bundle_watch_.thread.joinable()) return;
    bundle_watch_.thread = std::thread([this, cb = std::move(on_bundle)] {
      RunStream<v1::Bundle>(
          "Bundle stream", &bundle_watch_,
          [](v1::Upstream::Stub* stub, grpc::ClientContext* ctx) {
            return stub->WatchBundle(ctx, v1::WatchBundleRequest());
          },
          [&cb](const v1::Bundle& msg) {
            auto bundle = server::BundleFromProto(msg);
            if (!bundle.ok()) {
              LogWarn("Ignoring an unreadable bundle from the upstream server",
                      {{"error", std::string(bundle.status().message())}});
              return;
            }
            cb(*bundle);
          });
    });
  }

  void WatchFederatedBundles(
      std::function<void(const std::vector<datastore::Bundle>&)> on_bundles) override {
    absl::MutexLock lock(&mu_);
    if (stopping_ || federated_watch_.thread.joinable()) return;
    federated_watch_.thread = std::thread([this, cb = std::move(on_bundles)] {
      RunStream<v1::FederatedBundles>(
          "Federated bundle stream", &federated_watch_,
          [](v1::Upstream::Stub* stub, grpc::ClientContext* ctx) {
            return stub->WatchFederatedBundles(ctx, v1::WatchBundleRequest());
          },
          [&cb](const v1::FederatedBundles& msg) {
            std::vector<datastore::Bundle> bundles;
            for (const v1::Bundle& b : msg.bundles()) {
              auto bundle = server::BundleFromProto(b);
              if (!bundle.ok()) {
                // All or nothing: a partial set would read as removals.
                LogWarn("Ignoring unreadable federated bundles from the upstream server",
                        {{"trust_domain", b.trust_domain()},
                         {"error", std::string(bundle.status().message())}});
                return;
              }
              bundles.push_back(*std::move(bundle));
            }
            cb(bundles);
          });
    });
  }

  // The bundle stream is the link: open while the upstream pushes, closed (with the reason)
  // while it is being retried.
  std::optional<LinkState> Link() const override {
    absl::MutexLock lock(&mu_);
    LinkState state;
    state.connected = link_connected_;
    state.last_bundle_update = last_bundle_update_;
    state.detail = link_connected_ ? "bundle stream open to " + target()
                                   : "no bundle stream to " + target() + ": " + link_error_;
    return state;
  }

  void Stop() override {
    // A second Stop, on another thread, returns only once the first has joined the watch.
    absl::MutexLock stop(&stop_mu_);
    std::thread watch;
    std::thread federated;
    {
      absl::MutexLock lock(&mu_);
      stopping_ = true;
      for (Watch* w : {&bundle_watch_, &federated_watch_}) {
        if (w->ctx) w->ctx->TryCancel();
      }
      watch = std::move(bundle_watch_.thread);
      federated = std::move(federated_watch_.thread);
    }
    // First, so a watch thread still waiting for its first SVID returns at once.
    source_->Stop();
    if (watch.joinable()) watch.join();
    if (federated.joinable()) federated.join();
  }

 private:
  std::string target() const { return Target(options_.server_address, options_.server_port); }

  // A stub on a channel authenticated with the current SVID; a new channel after rotation.
  absl::StatusOr<std::shared_ptr<v1::Upstream::Stub>> Stub() {
    TRELLIS_ASSIGN_OR_RETURN(auto svid, source_->Wait(options_.svid_wait));
    absl::MutexLock lock(&mu_);
    if (stub_ && stub_leaf_ == svid->chain.front().der()) return stub_;
    WorkloadX509Source* source = source_.get();
    transport::BundleSource bundle = [source]() -> std::shared_ptr<const common::Bundle> {
      auto current = source->Current();
      return current ? current->bundle : nullptr;
    };
    grpc::ChannelArguments args;
    args.SetInt(GRPC_ARG_KEEPALIVE_TIME_MS, 30000);
    args.SetInt(GRPC_ARG_KEEPALIVE_TIMEOUT_MS, 10000);
    auto channel = grpc::CreateCustomChannel(
        target(),
        transport::SpiffeClientCredentials(transport::TlsIdentity{svid->chain_pem, svid->key_pem},
                                           std::move(bundle), server_id_),
        args);
    stub_ = std::shared_ptr<v1::Upstream::Stub>(v1::Upstream::NewStub(channel));
    if (!stub_leaf_.empty()) {
      LogInfo("Using the rotated SVID for the upstream server", {{"spiffe_id", svid->id.String()}});
    }
    stub_leaf_ = svid->chain.front().der();
    return stub_;
  }

  // One server stream of the upstream, reopened with backoff until Stop(). A stream the
  // upstream does not implement (an older version) is given up after one notice.
  struct Watch {
    std::thread thread;
    grpc::ClientContext* ctx = nullptr;
  };
  template <typename Msg>
  void RunStream(const std::string& what, Watch* w,
                 const std::function<std::unique_ptr<grpc::ClientReader<Msg>>(
                     v1::Upstream::Stub*, grpc::ClientContext*)>& open,
                 const std::function<void(const Msg&)>& on_msg) {
    absl::Duration backoff = kWatchBackoffMin;
    bool failing = false;
    while (true) {
      {
        absl::MutexLock lock(&mu_);
        if (stopping_) return;
      }
      absl::Status ended;
      auto stub = Stub();
      if (stub.ok()) {
        grpc::ClientContext ctx;
        {
          absl::MutexLock lock(&mu_);
          if (stopping_) return;
          w->ctx = &ctx;
        }
        auto reader = open(stub->get(), &ctx);
        Msg msg;
        while (reader->Read(&msg)) {
          if (failing) {
            LogInfo(what + " from the upstream server restored", {{"upstream", target()}});
            failing = false;
          }
          backoff = kWatchBackoffMin;
          on_msg(msg);
          if (w == &bundle_watch_) {
            absl::MutexLock lock(&mu_);
            link_connected_ = true;
            last_bundle_update_ = absl::Now();
          }
        }
        grpc::Status finished = reader->Finish();
        absl::MutexLock lock(&mu_);
        w->ctx = nullptr;
        if (stopping_) return;
        if (finished.error_code() == grpc::StatusCode::UNIMPLEMENTED) {
          LogInfo(what + " is not offered by the upstream server", {{"upstream", target()}});
          return;
        }
        ended = transport::FromGrpcStatus(finished);
      } else {
        ended = stub.status();
      }
      if (!failing) {
        LogWarn(what + " from the upstream server ended; retrying",
                {{"upstream", target()}, {"error", std::string(ended.message())}});
        failing = true;
      }
      absl::MutexLock lock(&mu_);
      if (w == &bundle_watch_) {
        link_connected_ = false;
        link_error_ = std::string(ended.message());
      }
      // Stop() setting stopping_ ends the wait early; whole milliseconds, as always.
      mu_.AwaitWithTimeout(absl::Condition(&stopping_),
                           absl::Trunc(backoff, absl::Milliseconds(1)));
      backoff = std::min(backoff * 2, kWatchBackoffMax);
    }
  }

  SpireUpstreamOptions options_;
  std::unique_ptr<WorkloadX509Source> source_;
  common::SpiffeId server_id_;
  mutable absl::Mutex mu_;
  std::shared_ptr<v1::Upstream::Stub> stub_ ABSL_GUARDED_BY(mu_);
  bool link_connected_ ABSL_GUARDED_BY(mu_) = false;
  std::string link_error_ ABSL_GUARDED_BY(mu_) = "not connected yet";
  absl::Time last_bundle_update_ ABSL_GUARDED_BY(mu_) = absl::InfinitePast();
  std::string stub_leaf_ ABSL_GUARDED_BY(mu_);
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  Watch bundle_watch_ ABSL_GUARDED_BY(mu_);
  Watch federated_watch_ ABSL_GUARDED_BY(mu_);
  absl::Mutex stop_mu_;
};

}  // namespace

absl::StatusOr<std::unique_ptr<server::UpstreamAuthority>> CreateSpireUpstreamAuthority(
    SpireUpstreamOptions options) {
  if (options.server_address.empty() || options.server_port == 0) {
    return absl::InvalidArgumentError(
        "UpstreamAuthority \"spire\" needs server_address and server_port");
  }
  if (options.workload_api_socket.empty()) {
    return absl::InvalidArgumentError("UpstreamAuthority \"spire\" needs workload_api_socket");
  }
  TRELLIS_ASSIGN_OR_RETURN(
      common::SpiffeId server_id,
      common::SpiffeId::Parse("spiffe://" + options.trust_domain.name() + "/spire/server"));
  auto source = WorkloadX509Source::Start(options.workload_api_socket, options.trust_domain);
  return std::unique_ptr<server::UpstreamAuthority>(
      new SpireUpstreamAuthority(std::move(options), std::move(source), std::move(server_id)));
}

}  // namespace trellis::downstream
