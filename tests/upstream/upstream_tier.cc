// The in-process upstream tier: root CA, Upstream API over mTLS, Workload API on a socket.
#include "tests/upstream/upstream_tier.h"

#include <grpcpp/grpcpp.h>
#include <unistd.h>

#include <chrono>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/keys.h"
#include "common/status.h"
#include "server/disk_key_manager.h"
#include "tests/server/server_test_util.h"
#include "transport/spiffe_tls.h"

namespace trellis::upstream::testing {

namespace {

std::string UidSelector() { return absl::StrCat("unix:uid:", getuid()); }

// Selectors from the kernel's uid of the caller, as the unix attestor gives them.
class UidAttestor final : public attestors::WorkloadAttestor {
 public:
  std::string Name() const override { return "unix"; }
  absl::StatusOr<std::vector<attestors::SelectorString>> Attest(
      const attestors::CallerCredentials& caller) override {
    return std::vector<attestors::SelectorString>{absl::StrCat("unix:uid:", caller.uid)};
  }
};

}  // namespace

PublishedIdentities::PublishedIdentities()
    : current_(std::make_shared<const workload_api::IdentitySnapshot>()) {}

std::shared_ptr<const workload_api::IdentitySnapshot> PublishedIdentities::Snapshot() const {
  absl::MutexLock lock(&mu_);
  return current_;
}

uint64_t PublishedIdentities::Subscribe(Listener listener) {
  absl::MutexLock lock(&mu_);
  const uint64_t id = next_listener_++;
  listeners_[id] = std::move(listener);
  return id;
}

void PublishedIdentities::Unsubscribe(uint64_t id) {
  absl::MutexLock lock(&mu_);
  listeners_.erase(id);
}

void PublishedIdentities::Publish(workload_api::IdentitySnapshot next) {
  absl::MutexLock order(&publish_mu_);
  std::vector<Listener> listeners;
  std::shared_ptr<const workload_api::IdentitySnapshot> snap;
  {
    absl::MutexLock lock(&mu_);
    next.version = current_->version + 1;
    snap = std::make_shared<const workload_api::IdentitySnapshot>(std::move(next));
    current_ = snap;
    for (const auto& [id, l] : listeners_) listeners.push_back(l);
  }
  for (const auto& l : listeners) l(snap);
}

absl::StatusOr<std::unique_ptr<UpstreamTier>> UpstreamTier::Start(Options options) {
  std::unique_ptr<UpstreamTier> t(new UpstreamTier());
  t->options_ = options;
  t->socket_ = t->dir_.Sub("agent.sock");
  {
    absl::MutexLock lock(&t->mu_);
    t->downstream_ids_.insert(kDownstreamId);
  }
  const common::Clock& clock = common::SystemClock::Get();
  t->ds_ = server::testing::OpenTestStore(t->dir_, clock);
  if (t->ds_ == nullptr) return absl::InternalError("no test datastore");
  TRELLIS_ASSIGN_OR_RETURN(t->km_, server::DiskKeyManager::Create(t->dir_.Sub("keys")));
  server::CaManager::Options ca_options(t->td_);
  ca_options.ca_ttl = options.ca_ttl;
  ca_options.default_x509_svid_ttl = absl::Hours(1);
  TRELLIS_ASSIGN_OR_RETURN(
      t->ca_, server::CaManager::Create(ca_options, t->ds_.get(), t->km_.get(), clock));
  TRELLIS_RETURN_IF_ERROR(t->ca_->Start());
  server::ServerSvidRotator::Options svid_options;
  svid_options.data_dir = t->dir_.path();
  TRELLIS_ASSIGN_OR_RETURN(t->svid_,
                           server::ServerSvidRotator::Create(svid_options, t->ca_.get(), clock));
  TRELLIS_RETURN_IF_ERROR(t->svid_->Start());

  UpstreamTier* raw = t.get();
  UpstreamService::Options service_options;
  service_options.authenticate =
      [raw](const grpc::ServerContextBase& ctx) -> absl::StatusOr<common::SpiffeId> {
    TRELLIS_ASSIGN_OR_RETURN(transport::PeerIdentity peer,
                             transport::AuthenticatePeer(ctx, *raw->ca_->Bundle(), absl::Now()));
    absl::MutexLock lock(&raw->mu_);
    raw->last_caller_serial_ = peer.serial_hex;
    return peer.id;
  };
  service_options.is_downstream = [raw](const common::SpiffeId& id) {
    absl::MutexLock lock(&raw->mu_);
    return raw->downstream_ids_.count(id.String()) > 0;
  };
  t->service_ = std::make_unique<UpstreamService>(service_options, t->ca_.get());
  UpstreamService* service = t->service_.get();
  t->ca_->SetBundleListener(
      [service](std::shared_ptr<const common::Bundle>) { service->NotifyBundleChanged(); });

  TRELLIS_ASSIGN_OR_RETURN(auto creds, transport::SpiffeServerCredentials(t->svid_->CertChainPath(),
                                                                          t->svid_->KeyPath()));
  grpc::ServerBuilder builder;
  builder.AddListeningPort("127.0.0.1:0", creds, &t->port_);
  builder.RegisterService(t->service_.get());
  t->server_ = builder.BuildAndStart();
  if (t->server_ == nullptr || t->port_ == 0) {
    return absl::InternalError("the Upstream API did not start");
  }
  t->attestor_ = std::make_unique<UidAttestor>();
  TRELLIS_RETURN_IF_ERROR(t->StartWorkloadApi());
  return t;
}

UpstreamTier::~UpstreamTier() {
  StopWorkloadApi();
  if (service_) service_->Shutdown();
  if (server_) server_->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(2));
  if (ca_) ca_->SetBundleListener(nullptr);
}

absl::Status UpstreamTier::StartWorkloadApi() {
  workload_api::WorkloadApiServer::Options options;
  options.socket_path = socket_;
  options.worker_threads = 1;
  TRELLIS_ASSIGN_OR_RETURN(workload_api_, workload_api::WorkloadApiServer::Start(
                                              options, &identities_, {attestor_.get()}, nullptr,
                                              common::SystemClock::Get()));
  return absl::OkStatus();
}

void UpstreamTier::StopWorkloadApi() {
  if (workload_api_) workload_api_->Stop();
  workload_api_.reset();
}

absl::Status UpstreamTier::RestartWorkloadApi() {
  StopWorkloadApi();
  return StartWorkloadApi();
}

common::Certificate UpstreamTier::ActiveCa() const { return *ca_->ActiveX509Ca(); }

void UpstreamTier::SetDownstream(const std::string& id, bool downstream) {
  absl::MutexLock lock(&mu_);
  if (downstream) {
    downstream_ids_.insert(id);
  } else {
    downstream_ids_.erase(id);
  }
}

std::string UpstreamTier::LastCallerSerial() const {
  absl::MutexLock lock(&mu_);
  return last_caller_serial_;
}

absl::StatusOr<common::Certificate> UpstreamTier::PublishSvid(const std::string& spiffe_id) {
  TRELLIS_ASSIGN_OR_RETURN(common::SpiffeId id, common::SpiffeId::Parse(spiffe_id));
  TRELLIS_ASSIGN_OR_RETURN(common::PrivateKey key, common::PrivateKey::Generate());
  TRELLIS_ASSIGN_OR_RETURN(
      std::vector<std::string> chain,
      ca_->SignX509SvidForKey(key.public_key(), id, options_.workload_svid_ttl));
  TRELLIS_ASSIGN_OR_RETURN(common::Certificate leaf, common::Certificate::FromDer(chain.front()));
  TRELLIS_ASSIGN_OR_RETURN(common::SecretBytes pkcs8, key.ToPkcs8Der());
  // One entry whose SVID each publication replaces, as a renewal does.
  const std::string entry_id = "server-entry";
  workload_api::CachedSvid svid(entry_id, chain, pkcs8.view());
  svid.not_before = leaf.not_before();
  svid.not_after = leaf.not_after();
  uint64_t n;
  {
    absl::MutexLock lock(&mu_);
    n = ++published_;
  }
  workload_api::IdentitySnapshot snap;
  snap.ready = true;
  snap.bundle = workload_api::RenderedBundle::Of(ca_->Bundle());
  snap.entries.Put(std::make_shared<const workload_api::CachedEntry>(workload_api::CachedEntry{
          entry_id, id, {UidSelector()}, {}, "", static_cast<int64_t>(n), 1, 0}));
  snap.svids.Put(std::make_shared<const workload_api::CachedSvid>(std::move(svid)));
  identities_.Publish(std::move(snap));
  return leaf;
}

}  // namespace trellis::upstream::testing
