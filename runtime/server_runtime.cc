// Server wiring, listeners, maintenance loop and signal handling.
#include "runtime/server_runtime.h"

#include <grpcpp/grpcpp.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <set>
#include <string>
#include <thread>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "attestors/node/node_attestor_factory.h"
#include "common/file_util.h"
#include "common/health.h"
#include "common/log.h"
#include "common/status.h"
#include "datastore/datastore.h"
#include "datastore/factory.h"
#include "federation/bundle_endpoint.h"
#include "federation/bundle_refresher.h"
#include "federation/upstream_bundles.h"
#include "oidc/discovery.h"
#include "runtime/ca_manager_options.h"
#include "runtime/metered_datastore.h"
#include "runtime/stop_signals.h"
#include "server/admin_service.h"
#include "server/agent_service.h"
#include "server/ca_manager.h"
#include "server/entry_index.h"
#include "server/key_manager_factory.h"
#include "server/server_svid.h"
#include "telemetry/metrics.h"
#include "transport/grpc_log.h"
#include "transport/spiffe_tls.h"
#include "transport/unix_peer_listener.h"
#include "upstream/upstream_service.h"

namespace trellis::runtime {

using common::LogDebug;
using common::LogInfo;
using common::LogWarn;
using common::SetLogFormat;
using common::SetLogLevel;
using server::AdminService;
using server::AgentService;
using server::CallerIdentity;
using server::CaManager;
using server::CreateKeyManager;
using server::EntryIndex;
using server::GenerateJoinToken;
using server::KeyManager;
using server::ServerSvidRotator;
using server::UpstreamAuthority;
namespace {

namespace config = common::config;
using common::HealthListener;
using common::HealthReport;

constexpr absl::Duration kMaintenancePeriod = absl::Seconds(1);
constexpr absl::Duration kMaintenanceStalledAfter = absl::Minutes(10);
// The server SVID is checked as often as the CA rotates (CaRotator::kCheckPeriod).
constexpr absl::Duration kSvidTickPeriod = absl::Seconds(1);
constexpr absl::Duration kPrunePeriod = absl::Minutes(1);
constexpr absl::Duration kFederatedRefreshPeriod = absl::Seconds(5);
// Change-log events older than this are dropped; every server's index polls every second.
constexpr absl::Duration kEventRetention = absl::Hours(1);
constexpr absl::Duration kShutdownGrace = absl::Seconds(5);

std::string DatabaseTypeName(config::DatabaseType t) {
  return t == config::DatabaseType::kPostgres ? "postgres" : "sqlite3";
}

// A stable id for this server's CA journal records, so servers sharing one datastore keep
// separate journals and a restart finds its own.
absl::StatusOr<std::string> LoadOrCreateInstanceId(const std::string& data_dir) {
  const std::string path = data_dir + "/server_instance_id";
  absl::StatusOr<std::string> existing = common::ReadFile(path);
  if (existing.ok()) {
    std::string id = *existing;
    while (!id.empty() && (id.back() == '\n' || id.back() == '\r')) id.pop_back();
    if (!id.empty()) return id;
  }
  std::string id = "server-" + GenerateJoinToken().substr(0, 16);
  TRELLIS_RETURN_IF_ERROR(common::WritePrivateFile(path, id + "\n"));
  return id;
}

// Creates the socket's directory (0770 when we create it) and removes a stale socket file.
// A socket another live server answers on is left alone: FAILED_PRECONDITION.
absl::Status PrepareSocketPath(const std::string& path) {
  if (path.empty()) return absl::InvalidArgumentError("socket_path is empty");
  if (path.size() >= sizeof(sockaddr_un::sun_path)) {
    return absl::InvalidArgumentError("socket_path \"" + path + "\" is too long for a Unix socket");
  }
  std::filesystem::path dir = std::filesystem::path(path).parent_path();
  if (!dir.empty()) {
    std::error_code ec;
    if (!std::filesystem::exists(dir, ec)) {
      std::filesystem::create_directories(dir, ec);
      if (ec) {
        return absl::FailedPreconditionError("cannot create socket directory " + dir.string() +
                                             ": " + ec.message());
      }
      if (::chmod(dir.c_str(), 0770) != 0) {
        return absl::FailedPreconditionError("cannot chmod socket directory " + dir.string() +
                                             ": " + std::strerror(errno));
      }
    }
  }
  struct stat st;
  if (::lstat(path.c_str(), &st) != 0) return absl::OkStatus();
  if (!S_ISSOCK(st.st_mode)) {
    return absl::FailedPreconditionError("socket_path " + path + " exists and is not a socket");
  }
  int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return absl::InternalError(std::string("socket: ") + std::strerror(errno));
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::strncpy(addr.sun_path, path.c_str(), sizeof(addr.sun_path) - 1);
  int rc = ::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr));
  ::close(fd);
  if (rc == 0) {
    return absl::FailedPreconditionError("another server is listening on " + path);
  }
  if (::unlink(path.c_str()) != 0 && errno != ENOENT) {
    return absl::FailedPreconditionError("cannot remove stale socket " + path + ": " +
                                         std::strerror(errno));
  }
  return absl::OkStatus();
}

std::string HostPort(const std::string& host, int port) {
  if (host.find(':') != std::string::npos && host.front() != '[') {
    return "[" + host + "]:" + std::to_string(port);
  }
  return host + ":" + std::to_string(port);
}

void AddKeepalive(grpc::ServerBuilder& b) {
  // Agents hold WatchChanges open for hours: find dead peers, and accept agents' own pings.
  b.AddChannelArgument(GRPC_ARG_KEEPALIVE_TIME_MS, 30000);
  b.AddChannelArgument(GRPC_ARG_KEEPALIVE_TIMEOUT_MS, 10000);
  b.AddChannelArgument(GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, 1);
  b.AddChannelArgument(GRPC_ARG_HTTP2_MIN_RECV_PING_INTERVAL_WITHOUT_DATA_MS, 5000);
  b.AddChannelArgument(GRPC_ARG_HTTP2_MAX_PING_STRIKES, 0);
}

}  // namespace

namespace {

// The configuration's federates_with blocks are written to the datastore at start (created,
// or updated where they differ), so every replica and the admin API see the same set.
absl::Status ApplyConfiguredRelationships(const config::FederationConfig& fed,
                                          datastore::DataStore* ds) {
  for (const config::FederatesWithConfig& fw : fed.federates_with) {
    datastore::FederationRelationship want;
    want.trust_domain = fw.trust_domain.name();
    want.bundle_endpoint_url = fw.bundle_endpoint_url;
    want.profile = fw.profile == config::BundleEndpointProfile::kHttpsSpiffe
                       ? datastore::BundleEndpointProfile::kHttpsSpiffe
                       : datastore::BundleEndpointProfile::kHttpsWeb;
    want.endpoint_spiffe_id = fw.endpoint_spiffe_id ? fw.endpoint_spiffe_id->String() : "";
    absl::StatusOr<datastore::FederationRelationship> have =
        ds->GetFederationRelationship(want.trust_domain);
    if (have.ok() && have->bundle_endpoint_url == want.bundle_endpoint_url &&
        have->profile == want.profile && have->endpoint_spiffe_id == want.endpoint_spiffe_id) {
      continue;
    }
    if (have.ok()) {
      TRELLIS_RETURN_IF_ERROR(ds->UpdateFederationRelationship(want).status());
    } else if (have.status().code() == absl::StatusCode::kNotFound) {
      absl::StatusOr<datastore::FederationRelationship> created =
          ds->CreateFederationRelationship(want);
      // Another replica may have written it first.
      if (!created.ok() && created.status().code() != absl::StatusCode::kAlreadyExists) {
        return created.status();
      }
    } else {
      return have.status();
    }
    LogInfo(
        "Federation relationship from configuration",
        {{"trust_domain", want.trust_domain}, {"bundle_endpoint_url", want.bundle_endpoint_url}});
  }
  return absl::OkStatus();
}

}  // namespace

struct Server::Impl {
  explicit Impl(const config::ServerConfig& c) : cfg(c) {}
  // The upstream's threads call into the CA manager: stop them before anything is destroyed.
  ~Impl() {
    if (upstream) upstream->Stop();
  }
  config::ServerConfig cfg;
  // UpstreamAuthority (disk or spire), shared with the CaManager; null for a self-signed root.
  std::shared_ptr<UpstreamAuthority> upstream;
  const common::Clock& clock = common::SystemClock::Get();
  // Created first and destroyed last: the datastore, the CA and the services record into it
  // until they are gone, and the gRPC servers it instruments go before it.
  std::unique_ptr<telemetry::Metrics> metrics;
  telemetry::Counter x509_signed;
  telemetry::Counter jwt_signed;
  telemetry::Counter x509_rotations;
  telemetry::Counter jwt_rotations;
  telemetry::Counter attestation_refused;
  telemetry::Counter signing_refused;
  std::unique_ptr<datastore::DataStore> ds;
  std::unique_ptr<KeyManager> km;
  std::unique_ptr<CaManager> ca;
  std::unique_ptr<ServerSvidRotator> svid;
  std::unique_ptr<EntryIndex> index;
  std::unique_ptr<AgentService> agent_service;
  std::unique_ptr<AdminService> admin_service;
  std::unique_ptr<trellis::upstream::UpstreamService> upstream_service;
  std::unique_ptr<HealthListener> health;
  std::unique_ptr<federation::BundleRefresher> refresher;
  // Written by the upstream's federated bundle stream until upstream->Stop().
  std::unique_ptr<federation::UpstreamBundles> upstream_bundles;
  std::unique_ptr<federation::BundleEndpoint> bundle_endpoint;
  std::unique_ptr<oidc::DiscoveryServer> oidc_discovery;
  std::unique_ptr<grpc::Server> agent_server;
  std::unique_ptr<grpc::Server> admin_server;
  // Accepts the admin socket's connections so the admin API knows each caller's uid.
  std::unique_ptr<transport::UnixPeerListener> admin_listener;
  int agent_port = 0;

  std::atomic<bool> ca_activated{false};
  // The maintenance thread waits on mu for stopping or a wake request.
  absl::Mutex mu;
  bool stopping ABSL_GUARDED_BY(mu) = false;
  // Set by a change notice from the store or by a CA activation.
  bool wake_requested ABSL_GUARDED_BY(mu) = false;
  bool ShouldWake() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) { return stopping || wake_requested; }
  // Notices of writes by other servers sharing the datastore (PostgreSQL); null on SQLite,
  // where the index's 1 s poll is the only way to hear them.
  std::unique_ptr<datastore::ChangeSubscription> changes;
  bool stopped ABSL_GUARDED_BY(mu) = false;
  std::thread maintenance;
  std::atomic<bool> index_healthy{true};
  // Unix nanoseconds of the maintenance loop's last turn (0: not started), for liveness.
  std::atomic<int64_t> maintained_ns{0};

  void Maintain();
  absl::Status CreateMetrics();
  absl::Status StartMetrics();
  // What the health listener's /ready reports; also the `ready` gauge.
  // `ask_datastore`: query the datastore now (health probes); without it the last poll of the
  // entry index stands for it (metric scrapes, which must not wait on a database).
  HealthReport Readiness(bool ask_datastore = true) const;
  absl::Status StartBundleEndpoint();
  absl::Status StartOidcDiscovery();
  std::map<std::string, AdminService::SubsystemHealth> Health() const;
};

std::map<std::string, AdminService::SubsystemHealth> Server::Impl::Health() const {
  std::map<std::string, AdminService::SubsystemHealth> out;
  std::optional<common::Certificate> active = ca->ActiveX509Ca();
  if (!active) {
    out["ca"] = {false, "no active X.509 CA"};
  } else if (active->not_after() <= clock.Now()) {
    out["ca"] = {false, "the active X.509 CA has expired"};
  } else {
    out["ca"] = {true, "ok"};
  }
  out["entry_index"] = {index_healthy.load(), index_healthy.load() ? "ok" : "poll failing"};
  // The maintenance loop rotates the CA's SVID, prunes, refreshes and polls: a loop that has
  // not turned for minutes is stuck, and only a restart helps. Its turns are a second apart;
  // the margin covers a datastore call waiting out its timeouts, which is an outage, not a
  // stuck process.
  if (const int64_t last = maintained_ns.load(); last == 0) {
    out["maintenance"] = {true, "not started"};
  } else {
    const absl::Duration since = absl::Now() - absl::FromUnixNanos(last);
    const bool turning = since < kMaintenanceStalledAfter;
    out["maintenance"] = {turning,
                          turning ? "ok"
                                  : "loop has not turned for " +
                                        absl::FormatDuration(absl::Trunc(since, absl::Seconds(1)))};
  }
  return out;
}

HealthReport Server::Impl::Readiness(bool ask_datastore) const {
  HealthReport r;
  for (const auto& [name, h] : Health()) r.subsystems[name] = {h.healthy, h.detail};
  if (ask_datastore) {
    absl::StatusOr<int> v = ds->SchemaVersion();
    // A datastore outage makes the server not ready, but it stays live: restarting it would
    // not bring the database back.
    r.subsystems["datastore"] = {v.ok(), v.ok() ? "ok" : std::string(v.status().message())};
  }
  r.live_excludes = {"datastore", "entry_index", "upstream"};
  if (upstream) {
    // A nested server whose tier above is unreachable keeps issuing from its current CA, but
    // cannot rotate it or publish keys: not ready, still live.
    if (auto link = upstream->Link()) {
      std::string detail = link->detail;
      if (link->last_bundle_update != absl::InfinitePast()) {
        detail += "; last bundle update " +
                  absl::FormatDuration(
                      absl::Trunc(absl::Now() - link->last_bundle_update, absl::Seconds(1))) +
                  " ago";
      }
      r.subsystems["upstream"] = {link->connected, detail};
    }
  }
  return r;
}

void Server::Impl::Maintain() {
  maintained_ns = absl::ToUnixNanos(absl::Now());
  absl::Time now = clock.Now();
  absl::Time next_svid = now + kSvidTickPeriod;
  absl::Time next_prune = now + kPrunePeriod;
  absl::Time next_federated = now + kFederatedRefreshPeriod;
  bool poll_failing = false;
  while (true) {
    {
      absl::MutexLock lock(&mu);
      mu.AwaitWithTimeout(absl::Condition(this, &Impl::ShouldWake), kMaintenancePeriod);
      if (stopping) return;
      wake_requested = false;
    }
    maintained_ns = absl::ToUnixNanos(absl::Now());
    now = clock.Now();
    // Catches writes by other servers sharing the datastore.
    absl::Status st = index->Poll();
    if (!st.ok() && !poll_failing) {
      LogWarn("Entry index poll failed", {{"error", std::string(st.message())}});
    } else if (st.ok() && poll_failing) {
      LogInfo("Entry index poll recovered");
    }
    poll_failing = !st.ok();
    index_healthy = st.ok();
    // The CA rotates on its own thread; the server SVID follows each activation at once.
    if (ca_activated.exchange(false) || now >= next_svid) {
      if (absl::Status t = svid->Tick(); !t.ok()) {
        LogWarn("Server SVID rotation failed", {{"error", std::string(t.message())}});
      }
      next_svid = now + kSvidTickPeriod;
    }
    if (now >= next_federated) {
      if (absl::Status f = agent_service->RefreshFederatedBundles(); !f.ok()) {
        LogWarn("Federated bundle refresh failed", {{"error", std::string(f.message())}});
      }
      upstream_service->NotifyBundleChanged();
      next_federated = now + kFederatedRefreshPeriod;
    }
    if (now >= next_prune) {
      absl::StatusOr<int64_t> tokens = ds->PruneJoinTokens(now);
      if (tokens.ok() && *tokens > 0) {
        LogDebug("Pruned expired join tokens", {{"count", std::to_string(*tokens)}});
      }
      absl::StatusOr<int64_t> events = ds->PruneEvents(now - kEventRetention);
      if (!events.ok()) {
        LogWarn("Event pruning failed", {{"error", std::string(events.status().message())}});
      }
      next_prune = now + kPrunePeriod;
    }
  }
}

Server::Server(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

Server::~Server() { Shutdown(); }

int Server::agent_port() const { return impl_->agent_port; }
const std::string& Server::socket_path() const { return impl_->cfg.socket_path; }
int Server::metrics_port() const { return impl_->metrics ? impl_->metrics->port() : 0; }

absl::StatusOr<std::unique_ptr<Server>> Server::Create(const config::ServerConfig& cfg) {
  SetLogLevel(cfg.log_level);
  SetLogFormat(cfg.log_format);
  if (!cfg.log_file.empty()) TRELLIS_RETURN_IF_ERROR(common::SetLogFile(cfg.log_file));
  transport::RouteGrpcLogs();
  auto impl = std::make_unique<Impl>(cfg);
  Impl& s = *impl;
  const common::TrustDomain& td = cfg.trust_domain;

  TRELLIS_RETURN_IF_ERROR(common::EnsurePrivateDir(cfg.data_dir));
  TRELLIS_RETURN_IF_ERROR(s.CreateMetrics());
  {
    TRELLIS_ASSIGN_OR_RETURN(
        std::unique_ptr<datastore::DataStore> store,
        datastore::CreateDataStore(DatabaseTypeName(cfg.data_store.database_type),
                                   cfg.data_store.connection_string));
    s.ds = std::make_unique<MeteredDataStore>(std::move(store), *s.metrics);
  }
  TRELLIS_ASSIGN_OR_RETURN(std::string instance_id, LoadOrCreateInstanceId(cfg.data_dir));
  TRELLIS_ASSIGN_OR_RETURN(s.km, CreateKeyManager(cfg.key_manager, cfg.data_dir));

  TRELLIS_ASSIGN_OR_RETURN(CaManager::Options ca_opts, CaManagerOptionsFromConfig(cfg, s.clock));
  ca_opts.server_instance_id = instance_id;
  ca_opts.agent_svid_ttl = cfg.EffectiveAgentTtl();
  ca_opts.authority_activated = [x509 = s.x509_rotations,
                                 jwt = s.jwt_rotations](datastore::AuthorityKind kind) mutable {
    (kind == datastore::AuthorityKind::kX509 ? x509 : jwt).Increment();
  };
  if (cfg.upstream_authority) {
    if (const auto* spire =
            std::get_if<config::SpireUpstreamAuthorityConfig>(&*cfg.upstream_authority)) {
      LogInfo("Nested under an upstream server",
              {{"upstream", HostPort(spire->server_address, spire->server_port)},
               {"workload_api_socket", spire->workload_api_socket}});
    }
  }
  s.upstream = ca_opts.upstream;
  TRELLIS_ASSIGN_OR_RETURN(s.ca, CaManager::Create(ca_opts, s.ds.get(), s.km.get(), s.clock));
  TRELLIS_RETURN_IF_ERROR(s.ca->Start());
  if (s.upstream) {
    CaManager* ca_for_upstream = s.ca.get();
    s.upstream->WatchBundle([ca_for_upstream](const datastore::Bundle& b) {
      if (absl::Status st = ca_for_upstream->ApplyUpstreamBundle(b); !st.ok()) {
        LogWarn("Applying the upstream bundle failed", {{"error", std::string(st.message())}});
      }
    });
  }

  ServerSvidRotator::Options svid_opts;
  svid_opts.data_dir = cfg.data_dir;
  svid_opts.key_type = common::KeyType::kEcP256;
  TRELLIS_ASSIGN_OR_RETURN(s.svid, ServerSvidRotator::Create(svid_opts, s.ca.get(), s.clock));
  TRELLIS_RETURN_IF_ERROR(s.svid->Start());

  {
    absl::Time load_start = absl::Now();
    TRELLIS_ASSIGN_OR_RETURN(s.index, EntryIndex::Create(s.ds.get(), s.clock));
    LogInfo("Loaded the entry index",
            {{"entries", std::to_string(s.index->EntryCount())},
             {"nodes", std::to_string(s.index->NodeCount())},
             {"took_ms", std::to_string(absl::ToInt64Milliseconds(absl::Now() - load_start))}});
  }

  std::vector<std::shared_ptr<attestors::ServerNodeAttestor>> attestors;
  for (const auto& a : cfg.node_attestors) {
    TRELLIS_ASSIGN_OR_RETURN(std::unique_ptr<attestors::ServerNodeAttestor> created,
                             attestors::CreateServerNodeAttestor(a, td, s.ds.get(), s.clock));
    attestors.push_back(std::move(created));
  }

  AgentService::Options agent_opts{td};
  agent_opts.agent_ttl = cfg.EffectiveAgentTtl();
  agent_opts.default_x509_svid_ttl = cfg.default_x509_svid_ttl;
  agent_opts.default_jwt_svid_ttl = cfg.default_jwt_svid_ttl;
  agent_opts.rate_limits.attestation_enabled = cfg.ratelimit.attestation;
  agent_opts.rate_limits.signing_enabled = cfg.ratelimit.signing;
  agent_opts.rate_limits.attestation.refused = [c = s.attestation_refused]() mutable {
    c.Increment();
  };
  agent_opts.rate_limits.signing.refused = [c = s.signing_refused]() mutable { c.Increment(); };
  agent_opts.clock = &s.clock;
  CaManager* ca = s.ca.get();
  const common::Clock* clock = &s.clock;
  agent_opts.authenticate =
      [ca, clock](const grpc::ServerContextBase& ctx) -> absl::StatusOr<CallerIdentity> {
    std::shared_ptr<const common::Bundle> bundle = ca->Bundle();
    if (!bundle) return absl::UnavailableError("the trust bundle is not ready");
    TRELLIS_ASSIGN_OR_RETURN(transport::PeerIdentity peer,
                             transport::AuthenticatePeer(ctx, *bundle, clock->Now()));
    return CallerIdentity{peer.id, peer.serial_hex, peer.not_after};
  };
  agent_opts.peer_address = [](const grpc::ServerContextBase& ctx) {
    return transport::PeerAddress(ctx);
  };
  Impl* raw = impl.get();
  agent_opts.x509_svid_signed = [raw] { raw->x509_signed.Increment(); };
  agent_opts.jwt_svid_signed = [raw] { raw->jwt_signed.Increment(); };
  s.agent_service = std::make_unique<AgentService>(agent_opts, s.ds.get(), s.ca.get(),
                                                   s.index.get(), std::move(attestors));
  AgentService* agents = s.agent_service.get();
  EntryIndex* index = s.index.get();
  trellis::upstream::UpstreamService::Options upstream_opts;
  upstream_opts.authenticate =
      [ca, clock](const grpc::ServerContextBase& ctx) -> absl::StatusOr<common::SpiffeId> {
    std::shared_ptr<const common::Bundle> bundle = ca->Bundle();
    if (!bundle) return absl::UnavailableError("the trust bundle is not ready");
    TRELLIS_ASSIGN_OR_RETURN(transport::PeerIdentity peer,
                             transport::AuthenticatePeer(ctx, *bundle, clock->Now()));
    return peer.id;
  };
  upstream_opts.is_downstream = [index](const common::SpiffeId& id) {
    for (const auto& e : index->EntriesBySpiffeId(id.String())) {
      if (e.downstream) return true;
    }
    return false;
  };
  AgentService* federated_source = s.agent_service.get();
  upstream_opts.federated_generation = [federated_source] {
    return federated_source->FederatedGeneration();
  };
  upstream_opts.federated_bundles = [federated_source] {
    return federated_source->FederatedBundles();
  };
  s.upstream_service =
      std::make_unique<trellis::upstream::UpstreamService>(upstream_opts, s.ca.get());
  trellis::upstream::UpstreamService* downstreams = s.upstream_service.get();
  // An entry or node change wakes only the agents it concerns; downstream streams re-check
  // that their caller is still registered as a downstream server.
  CaManager* ca_for_bundles = s.ca.get();
  const std::string own_td = td.name();
  s.index->SetChangeListener(
      [agents, downstreams, ca_for_bundles, own_td](uint64_t, const EntryIndex::Change& change) {
        if (!change.agents.empty()) {
          agents->NotifyAgents(change.agents);
          downstreams->NotifyEntriesChanged();
        }
        // A bundle row written through any replica: ours is re-read (its listener then wakes the
        // agents and downstream servers), federated ones are refreshed.
        bool federated = false;
        for (const auto& bundle_td : change.bundles) {
          if (bundle_td != own_td) {
            federated = true;
          } else if (absl::Status st = ca_for_bundles->ReloadBundle(); !st.ok()) {
            LogWarn("Re-reading the trust bundle failed", {{"error", std::string(st.message())}});
          }
        }
        if (federated) {
          if (absl::Status st = agents->RefreshFederatedBundles(); !st.ok()) {
            LogWarn("Federated bundle refresh failed", {{"error", std::string(st.message())}});
          }
          downstreams->NotifyBundleChanged();
        }
      });
  s.ca->SetBundleListener([agents, downstreams](std::shared_ptr<const common::Bundle>) {
    agents->NotifyChange();
    downstreams->NotifyBundleChanged();
  });
  s.ca->SetX509ActivationListener([raw, agents] {
    // The maintenance thread wakes and reissues the server's own SVID under the new CA.
    raw->ca_activated = true;
    {
      absl::MutexLock lock(&raw->mu);
      raw->wake_requested = true;
    }
    agents->NotifyChange();
  });
  if (absl::Status f = s.agent_service->RefreshFederatedBundles(); !f.ok()) {
    LogWarn("Federated bundle load failed", {{"error", std::string(f.message())}});
  }
  TRELLIS_RETURN_IF_ERROR(ApplyConfiguredRelationships(cfg.federation, s.ds.get()));
  if (s.upstream) {
    // A nested server trusts the foreign trust domains of the tier above.
    s.upstream_bundles = std::make_unique<federation::UpstreamBundles>(td, s.ds.get(), [index] {
      if (absl::Status st = index->Poll(); !st.ok()) {
        LogWarn("Entry index poll failed", {{"error", std::string(st.message())}});
      }
    });
    federation::UpstreamBundles* mirror = s.upstream_bundles.get();
    s.upstream->WatchFederatedBundles([mirror](const std::vector<datastore::Bundle>& bundles) {
      if (absl::Status st = mirror->Apply(bundles); !st.ok()) {
        LogWarn("Storing the upstream's federated bundles failed",
                {{"error", std::string(st.message())}});
      }
    });
  }
  federation::BundleRefresher::Options refresher_opts(td);
  refresher_opts.own_bundle = [ca] { return ca->Bundle(); };
  refresher_opts.after_write = [index] {
    if (absl::Status st = index->Poll(); !st.ok()) {
      LogWarn("Entry index poll failed", {{"error", std::string(st.message())}});
    }
  };
  refresher_opts.clock = &s.clock;
  s.refresher = std::make_unique<federation::BundleRefresher>(refresher_opts, s.ds.get());

  AdminService::Options admin_opts{td};
  admin_opts.clock = &s.clock;
  admin_opts.after_write = [index] {
    if (absl::Status st = index->Poll(); !st.ok()) {
      LogWarn("Entry index poll failed", {{"error", std::string(st.message())}});
    }
  };
  admin_opts.health = [raw] { return raw->Health(); };
  admin_opts.ca = s.ca.get();
  federation::BundleRefresher* refresher = s.refresher.get();
  admin_opts.refresh_federation = [refresher](const std::string& td) {
    return refresher->RefreshNow(td);
  };
  admin_opts.federation_state =
      [refresher](const std::string& td) -> std::optional<server::v1::FederationRefreshState> {
    std::optional<federation::BundleRefresher::State> st = refresher->StateOf(td);
    if (!st) return std::nullopt;
    return server::FederationStateToProto(st->last_attempt, st->last_success, st->next_attempt,
                                          st->last_error, st->last_sequence);
  };
  admin_opts.federation_changed = [refresher] { refresher->Wake(); };
  // Calls come only after Start() set the listener up.
  admin_opts.caller_uid = [raw](const grpc::ServerContext& ctx) -> std::optional<uint32_t> {
    if (!raw->admin_listener) return std::nullopt;
    std::optional<transport::PeerCredentials> creds = raw->admin_listener->Lookup(ctx.peer());
    if (!creds) return std::nullopt;
    return static_cast<uint32_t>(creds->uid);
  };
  admin_opts.launch_log_level = cfg.log_level;
  s.admin_service = std::make_unique<AdminService>(s.ds.get(), admin_opts);
  return std::unique_ptr<Server>(new Server(std::move(impl)));
}

// Serves this trust domain's bundle to the servers that federate with it.
absl::Status Server::Impl::StartBundleEndpoint() {
  const config::BundleEndpointConfig& be = *cfg.federation.bundle_endpoint;
  federation::BundleEndpoint::Options o;
  o.address = be.address;
  o.port = be.port;
  if (be.profile == config::BundleEndpointProfile::kHttpsWeb) {
    o.identity = std::make_shared<web::TlsFiles>(be.cert_file_path, be.key_file_path);
  } else {
    o.identity = std::make_shared<web::TlsFiles>(svid->CertChainPath(), svid->KeyPath());
  }
  CaManager* authority = ca.get();
  o.document = [authority]() -> absl::StatusOr<std::string> {
    std::shared_ptr<const common::Bundle> bundle = authority->Bundle();
    if (!bundle) return absl::UnavailableError("the trust bundle is not ready");
    return common::SpiffeBundleToJson(*bundle);
  };
  TRELLIS_ASSIGN_OR_RETURN(bundle_endpoint, federation::BundleEndpoint::Start(std::move(o)));
  return absl::OkStatus();
}

// Publishes the trust domain's JWT keys for OIDC relying parties.
absl::Status Server::Impl::StartOidcDiscovery() {
  const config::OidcDiscoveryConfig& c = *cfg.oidc_discovery;
  oidc::DiscoveryServer::Options o;
  o.address = c.address;
  o.port = c.port;
  if (!c.cert_file_path.empty()) {
    o.tls = std::make_shared<web::TlsFiles>(c.cert_file_path, c.key_file_path);
  }
  o.issuer = cfg.jwt_issuer;
  o.jwks_uri = c.jwks_uri;
  o.domains = c.domains;
  CaManager* authority = ca.get();
  o.authorities = [authority]() -> absl::StatusOr<std::vector<datastore::JwtAuthority>> {
    TRELLIS_ASSIGN_OR_RETURN(datastore::Bundle stored, authority->StoredBundle());
    return stored.jwt_authorities;
  };
  const common::Clock* now_clock = &clock;
  o.now = [now_clock] { return now_clock->Now(); };
  TRELLIS_ASSIGN_OR_RETURN(oidc_discovery, oidc::DiscoveryServer::Start(std::move(o)));
  return absl::OkStatus();
}

// Serves /metrics when configured (docs/metrics.md lists what). The counters exist from here
// on, before anything they count can happen; the gauges read parts created later.
absl::Status Server::Impl::CreateMetrics() {
  Impl& s = *this;
  TRELLIS_ASSIGN_OR_RETURN(s.metrics,
                           telemetry::Metrics::Create(s.cfg.telemetry, "trellis_server"));
  s.x509_signed = s.metrics->AddCounter("trellis_server_x509_svids_signed_total",
                                        "X.509-SVIDs signed for agents and workloads");
  s.jwt_signed = s.metrics->AddCounter("trellis_server_jwt_svids_signed_total",
                                       "JWT-SVIDs signed for workloads");
  const std::string rotations_help = "New signing authorities activated, by kind";
  s.x509_rotations = s.metrics->AddCounter("trellis_server_authority_rotations_total",
                                           rotations_help, {{"kind", "x509"}});
  s.jwt_rotations = s.metrics->AddCounter("trellis_server_authority_rotations_total",
                                          rotations_help, {{"kind", "jwt"}});
  const std::string refused_help = "Agent API calls refused by a per-IP rate limit, by limiter";
  s.attestation_refused = s.metrics->AddCounter("trellis_server_rate_limited_total", refused_help,
                                                {{"limiter", "attestation"}});
  s.signing_refused = s.metrics->AddCounter("trellis_server_rate_limited_total", refused_help,
                                            {{"limiter", "signing"}});
  return absl::OkStatus();
}

// The gauges, read at scrape time from their owners; Shutdown() drops them first.
absl::Status Server::Impl::StartMetrics() {
  Impl& s = *this;
  EntryIndex* index = s.index.get();
  s.metrics->AddGaugeCallback("trellis_server_entries", "Registration entries in the index",
                              [index] { return static_cast<double>(index->EntryCount()); });
  datastore::DataStore* ds = s.ds.get();
  s.metrics->AddCounterCallback("trellis_server_datastore_transactions_total",
                                "Datastore transactions since start", {},
                                [ds] { return static_cast<double>(ds->Transactions()); });
  AgentService* agents = s.agent_service.get();
  s.metrics->AddGaugeCallback("trellis_server_agents_connected",
                              "Open WatchChanges streams (agents connected)",
                              [agents] { return static_cast<double>(agents->OpenWatches()); });
  const Impl* self = this;
  s.metrics->AddGaugeCallback(
      "trellis_server_ready", "1 when /ready would answer 200, else 0", [self] {
        for (const auto& [name, sub] : self->Readiness(/*ask_datastore=*/false).subsystems) {
          if (!sub.healthy) return 0.0;
        }
        return 1.0;
      });
  CaManager* ca = s.ca.get();
  const common::Clock* clock = &s.clock;
  using States = CaManager::AuthorityStates;
  using Slot = std::optional<CaManager::AuthorityInfo> States::*;
  const std::pair<const char*, Slot> slots[] = {
      {"active", &States::active}, {"prepared", &States::prepared}, {"old", &States::old}};
  for (const bool x509 : {true, false}) {
    for (const auto& [state, slot] : slots) {
      s.metrics->AddGaugeCallback(
          "trellis_server_authority_remaining_lifetime_seconds",
          "Seconds until each signing authority expires, by kind and rotation state",
          {{"kind", x509 ? "x509" : "jwt"}, {"state", state}},
          [ca, clock, x509, slot = slot]() -> std::optional<double> {
            const States states = x509 ? ca->X509Authorities() : ca->JwtAuthorities();
            const std::optional<CaManager::AuthorityInfo>& info = states.*slot;
            if (!info) return std::nullopt;
            return absl::ToDoubleSeconds(info->expires_at - clock->Now());
          });
    }
  }
  // A nested server: the link to the tier above.
  if (s.upstream && s.upstream->Link()) {
    const UpstreamAuthority* up = s.upstream.get();
    s.metrics->AddGaugeCallback("trellis_server_upstream_connected",
                                "1 while the bundle stream to the upstream server is open", [up] {
                                  std::optional<UpstreamAuthority::LinkState> link = up->Link();
                                  return link && link->connected ? 1.0 : 0.0;
                                });
    s.metrics->AddGaugeCallback(
        "trellis_server_upstream_bundle_age_seconds",
        "Seconds since the upstream server last delivered the bundle", {},
        [up]() -> std::optional<double> {
          std::optional<UpstreamAuthority::LinkState> link = up->Link();
          if (!link || link->last_bundle_update == absl::InfinitePast()) return std::nullopt;
          return absl::ToDoubleSeconds(absl::Now() - link->last_bundle_update);
        });
  }
  if (s.metrics->port() != 0) {
    LogInfo("Serving Prometheus metrics",
            {{"address", HostPort(s.cfg.telemetry.prometheus->host, s.metrics->port())}});
  }
  return absl::OkStatus();
}

absl::Status Server::Start() {
  Impl& s = *impl_;
  TRELLIS_ASSIGN_OR_RETURN(
      std::shared_ptr<grpc::ServerCredentials> creds,
      transport::SpiffeServerCredentials(s.svid->CertChainPath(), s.svid->KeyPath()));
  TRELLIS_RETURN_IF_ERROR(s.StartMetrics());
  {
    grpc::ServerBuilder b;
    AddKeepalive(b);
    s.metrics->Instrument(b);
    b.AddListeningPort(HostPort(s.cfg.bind_address, s.cfg.bind_port), creds, &s.agent_port);
    b.RegisterService(s.agent_service.get());
    b.RegisterService(s.upstream_service.get());
    s.agent_server = b.BuildAndStart();
    if (!s.agent_server || s.agent_port == 0) {
      s.agent_server.reset();
      return absl::UnavailableError("cannot listen for agents on " +
                                    HostPort(s.cfg.bind_address, s.cfg.bind_port));
    }
  }
  TRELLIS_RETURN_IF_ERROR(PrepareSocketPath(s.cfg.socket_path));
  {
    TRELLIS_ASSIGN_OR_RETURN(s.admin_listener,
                             transport::UnixPeerListener::Bind(s.cfg.socket_path, 0770));
    grpc::ServerBuilder b;
    s.metrics->Instrument(b);
    b.RegisterService(s.admin_service.get());
    s.admin_server = b.BuildAndStart();
    if (!s.admin_server) {
      return absl::UnavailableError("cannot serve the admin API on " + s.cfg.socket_path);
    }
    s.admin_listener->Start(s.admin_server.get());
  }
  if (s.cfg.health_checks.listener_enabled) {
    Impl* raw = impl_.get();
    TRELLIS_ASSIGN_OR_RETURN(
        s.health, HealthListener::Start(s.cfg.health_checks, [raw] { return raw->Readiness(); }));
  }
  if (s.cfg.federation.bundle_endpoint) TRELLIS_RETURN_IF_ERROR(s.StartBundleEndpoint());
  if (s.cfg.oidc_discovery) TRELLIS_RETURN_IF_ERROR(s.StartOidcDiscovery());
  s.refresher->Start();
  s.ca->StartRotation();
  s.maintenance = std::thread([&s] { s.Maintain(); });
  // A write through another replica wakes the maintenance loop, whose index poll reads it at
  // once instead of at the next period.
  s.changes = s.ds->SubscribeChanges([&s] {
    absl::MutexLock lock(&s.mu);
    s.wake_requested = true;
  });
  LogInfo("Server started", {{"trust_domain", s.cfg.trust_domain.name()},
                             {"agent_address", HostPort(s.cfg.bind_address, s.agent_port)},
                             {"socket_path", s.cfg.socket_path}});
  return absl::OkStatus();
}

void Server::Shutdown() {
  Impl& s = *impl_;
  {
    // Releasing the lock wakes the maintenance thread waiting on stopping.
    absl::MutexLock lock(&s.mu);
    if (s.stopped) return;
    s.stopped = true;
    s.stopping = true;
  }
  if (s.agent_service) s.agent_service->Shutdown();
  if (s.upstream_service) s.upstream_service->Shutdown();
  // No upstream bundle may arrive (and rotate from the upstream's thread) while the services
  // below are torn down; then the CA's own rotation loop stops.
  if (s.upstream) s.upstream->Stop();
  if (s.ca) s.ca->StopRotation();
  auto deadline = std::chrono::system_clock::now() + absl::ToChronoMilliseconds(kShutdownGrace);
  if (s.agent_server) s.agent_server->Shutdown(deadline);
  if (s.admin_listener) s.admin_listener->StopAccepting();
  if (s.admin_server) s.admin_server->Shutdown(deadline);
  s.changes.reset();
  if (s.maintenance.joinable()) s.maintenance.join();
  if (s.bundle_endpoint) s.bundle_endpoint->Stop();
  if (s.oidc_discovery) s.oidc_discovery->Stop();
  if (s.refresher) s.refresher->Stop();
  if (s.health) s.health->Stop();
  if (s.agent_server) s.agent_server->Wait();
  // The listener removes the socket file it bound, and only that one.
  if (s.admin_server) s.admin_server->Wait();
  s.agent_server.reset();
  s.admin_server.reset();
  s.admin_listener.reset();
  s.health.reset();
  // Scrapes read the index, the CA and the agent service: drop those gauges before they go.
  if (s.metrics) s.metrics->ClearCallbacks();
  // Nothing may call into the services once they are gone.
  if (s.index) s.index->SetChangeListener(nullptr);
  if (s.ca) {
    s.ca->SetBundleListener(nullptr);
    s.ca->SetX509ActivationListener(nullptr);
  }
  s.admin_service.reset();
  s.bundle_endpoint.reset();
  s.oidc_discovery.reset();
  s.refresher.reset();
  s.upstream_service.reset();
  s.agent_service.reset();
  s.index.reset();
  s.svid.reset();
  s.ca.reset();
  s.km.reset();
  s.ds.reset();
  s.metrics.reset();
  if (s.agent_port != 0) LogInfo("Server stopped");
}

absl::Status RunServerUntilSignal(const config::ServerConfig& config) {
  // Block the signals before any thread starts so every thread inherits the mask and only
  // the wait below receives them.
  sigset_t signals = ProcessSignals();
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
  // A client vanishing mid-write must not kill the process.
  signal(SIGPIPE, SIG_IGN);
  TRELLIS_ASSIGN_OR_RETURN(std::unique_ptr<Server> server, Server::Create(config));
  TRELLIS_RETURN_IF_ERROR(server->Start());
  int sig = WaitForStopSignal();
  LogInfo("Stopping", {{"signal", sig == SIGTERM ? "SIGTERM" : "SIGINT"}});
  server->Shutdown();
  return absl::OkStatus();
}

}  // namespace trellis::runtime
