// trellis.server.v1.Agent: node attestation, agent SVID renewal, SVID minting for authorised
// entries, entry sync and change push. Every call but AttestAgent and GetBundle authenticates
// the caller's agent SVID and re-checks its node (exists, not banned, serial current or new).
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <set>
#include <memory>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/clock.h"
#include "common/spiffe_id.h"
#include "datastore/types.h"
#include "server/push_streams.h"
#include "server/rate_limiter.h"
#include "trellis/server/v1/agent.grpc.pb.h"

namespace trellis::datastore {
class DataStore;
}
namespace trellis::attestors {
class ServerNodeAttestor;
}

namespace trellis::server {

class CaManager;
class EntryIndex;

// Who is calling, as proven by the TLS client certificate.
struct CallerIdentity {
  common::SpiffeId id;
  std::string serial_hex;
  absl::Time not_after;
};
// Authenticates the caller of one call: UNAUTHENTICATED without a valid X509-SVID of the
// trust domain. The runtime wires transport::AuthenticatePeer against the current bundle.
using Authenticator =
    std::function<absl::StatusOr<CallerIdentity>(const grpc::ServerContextBase&)>;
// The caller's address for per-IP rate limits.
using PeerAddressFunc = std::function<std::string(const grpc::ServerContextBase&)>;

// What an agent syncs, reduced to numbers: a WatchChanges notice goes out when one moves.
struct AgentWatchState {
  uint64_t entries = 0;  // fingerprint of the authorised (entry id, revision) pairs
  uint64_t bundle_sequence = 0;
  uint64_t federated = 0;        // federated bundle generation
  uint64_t x509_generation = 0;  // bumps when a new X.509 CA becomes active
  bool operator==(const AgentWatchState&) const = default;
};

// WatchChanges runs on gRPC's callback API (an open stream holds no thread); the rest is
// synchronous.
class AgentService final
    : public ::trellis::server::v1::Agent::WithCallbackMethod_WatchChanges<
          ::trellis::server::v1::Agent::Service> {
 public:
  struct Options {
    explicit Options(common::TrustDomain td) : trust_domain(std::move(td)) {}
    common::TrustDomain trust_domain;
    absl::Duration agent_ttl = absl::Hours(1);
    absl::Duration default_x509_svid_ttl = absl::Hours(1);
    absl::Duration default_jwt_svid_ttl = absl::Minutes(5);
    RateLimits rate_limits;
    const common::Clock* clock = nullptr;  // nullptr: the system clock
    Authenticator authenticate;
    PeerAddressFunc peer_address;
    // Called once for every X.509-SVID / JWT-SVID this service signs (for metrics).
    std::function<void()> x509_svid_signed;
    std::function<void()> jwt_svid_signed;
  };

  AgentService(Options options, datastore::DataStore* ds, CaManager* ca, EntryIndex* index,
               std::vector<std::shared_ptr<attestors::ServerNodeAttestor>> attestors);
  ~AgentService() override;

  // Wakes every WatchChanges stream (the bundle, a CA or a federated bundle changed).
  void NotifyChange();
  // Wakes only these agents' streams (their entries or their node changed); each sends a
  // notice if what the agent syncs moved, or ends if the agent was banned or evicted.
  void NotifyAgents(const std::set<std::string>& agent_ids);
  // Re-reads federated bundles from the datastore; notifies watchers when one changed.
  absl::Status RefreshFederatedBundles();
  // The federated bundles as last read, and a number that moves whenever they change.
  uint64_t FederatedGeneration() const;
  std::vector<std::shared_ptr<const v1::Bundle>> FederatedBundles() const;
  // Ends every WatchChanges stream (OK) and refuses new ones: the server is stopping.
  void Shutdown();
  // WatchChanges streams currently open: roughly the agents connected right now.
  int64_t OpenWatches() const { return watches_.OpenCount(); }
  // How many times a stream's state was computed (each wake of each stream).
  int64_t WatchEvaluations() const { return watches_.Evaluations(); }

  using ServerContext = ::grpc::ServerContext;
  grpc::Status AttestAgent(
      ServerContext* ctx,
      grpc::ServerReaderWriter<v1::AttestAgentResponse, v1::AttestAgentRequest>* stream) override;
  grpc::Status RenewAgent(ServerContext* ctx, const v1::RenewAgentRequest* req,
                          v1::RenewAgentResponse* resp) override;
  grpc::Status BatchNewX509SVID(ServerContext* ctx, const v1::BatchNewX509SVIDRequest* req,
                                v1::BatchNewX509SVIDResponse* resp) override;
  grpc::Status NewJWTSVID(ServerContext* ctx, const v1::NewJWTSVIDRequest* req,
                          v1::NewJWTSVIDResponse* resp) override;
  grpc::Status SyncAuthorizedEntries(ServerContext* ctx,
                                     const v1::SyncAuthorizedEntriesRequest* req,
                                     v1::SyncAuthorizedEntriesResponse* resp) override;
  grpc::ServerWriteReactor<v1::ChangeNotice>* WatchChanges(
      grpc::CallbackServerContext* ctx, const v1::WatchChangesRequest* req) override;
  grpc::Status GetBundle(ServerContext* ctx, const v1::GetBundleRequest* req,
                         v1::Bundle* resp) override;

 private:
  // Authenticates the caller and re-checks its node; promotes a new serial to current.
  absl::StatusOr<common::SpiffeId> AuthorizeAgent(const grpc::ServerContextBase& ctx);
  absl::Status CheckNode(const CallerIdentity& caller);
  absl::Status TakeSigning(const grpc::ServerContextBase& ctx, double cost);
  absl::StatusOr<v1::AttestAgentResponse::Result> Attest(
      const ServerContext& ctx,
      grpc::ServerReaderWriter<v1::AttestAgentResponse, v1::AttestAgentRequest>* stream);
  absl::Duration X509Ttl(const datastore::RegistrationEntry& e) const;
  void CountX509Signed() const {
    if (options_.x509_svid_signed) options_.x509_svid_signed();
  }
  // Changes whenever the agent's authorised entries (ids or revisions) change.
  uint64_t EntriesFingerprint(const common::SpiffeId& agent) const;
  // The agent's watch state, or PERMISSION_DENIED once it is banned or evicted.
  absl::StatusOr<AgentWatchState> WatchState(const std::string& agent_id) const;

  Options options_;
  datastore::DataStore* ds_;
  CaManager* ca_;
  EntryIndex* index_;
  std::map<std::string, std::shared_ptr<attestors::ServerNodeAttestor>> attestors_;
  const common::Clock& clock_;
  RateLimiter attestation_limiter_;
  RateLimiter signing_limiter_;

  mutable absl::Mutex mu_;
  // Bumps when a federated bundle changes.
  uint64_t federated_generation_ ABSL_GUARDED_BY(mu_) = 0;
  // Federated bundles by trust domain name, re-read by RefreshFederatedBundles.
  std::map<std::string, std::shared_ptr<const v1::Bundle>> federated_ ABSL_GUARDED_BY(mu_);
  // Open WatchChanges streams, filed by agent SPIFFE ID. Last member: its notifier thread
  // reads the members above, so it stops first.
  PushStreams<v1::ChangeNotice, AgentWatchState> watches_;
};

}  // namespace trellis::server
