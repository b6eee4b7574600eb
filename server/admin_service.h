// trellis.server.v1.Admin over the DataStore: entries, join tokens, agents, bundles, health.
// Served only on the local Unix socket; its file permissions are the access control.
#pragma once

#include <functional>
#include <map>
#include <optional>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "common/clock.h"
#include "common/config/shared_config.h"
#include "common/log.h"
#include "common/spiffe_id.h"
#include "datastore/types.h"
#include "trellis/server/v1/admin.grpc.pb.h"


namespace trellis::datastore {
class DataStore;
}

namespace trellis::server {

class CaManager;

// The refresh state of one federation relationship as the admin API returns it (times in
// unix seconds, 0 for never).
v1::FederationRefreshState FederationStateToProto(absl::Time last_attempt, absl::Time last_success,
                                                  absl::Time next_attempt,
                                                  const std::string& last_error,
                                                  std::optional<uint64_t> last_sequence);

class AdminService final : public ::trellis::server::v1::Admin::Service {
 public:
  struct SubsystemHealth {
    bool healthy = true;
    std::string detail;
  };
  struct Options {
    explicit Options(common::TrustDomain td) : trust_domain(std::move(td)) {}
    common::TrustDomain trust_domain;
    const common::Clock* clock = nullptr;  // nullptr: the system clock
    // Called after every write to entries, nodes or bundles, so the entry index (and through
    // it the agents' watch streams and the federated bundles) learns of the change at once
    // instead of at the next poll.
    std::function<void()> after_write;
    // Health of the subsystems besides the datastore (CA, entry index, ...).
    std::function<std::map<std::string, SubsystemHealth>()> health;
    // Local and upstream authority operations; UNAVAILABLE when null.
    CaManager* ca = nullptr;
    // The federated bundle refresher: fetch a relationship's bundle now, report its state,
    // and hear that the relationships changed. RefreshFederationRelationship answers
    // UNAVAILABLE without `refresh_federation`.
    std::function<absl::Status(const std::string& trust_domain)> refresh_federation;
    std::function<std::optional<v1::FederationRefreshState>(const std::string& trust_domain)>
        federation_state;
    std::function<void()> federation_changed;
    // The uid of the local process a call came from, named on the call's log lines; nullopt
    // when unknown.
    std::function<std::optional<uint32_t>(const grpc::ServerContext&)> caller_uid;
    // The level log_level set at launch: GetLogger reports it, ResetLogLevel returns to it.
    common::config::LogLevel launch_log_level = common::config::LogLevel::kInfo;
  };

  AdminService(datastore::DataStore* ds, Options options);

  using ServerContext = ::grpc::ServerContext;
  grpc::Status BatchCreateEntry(ServerContext*, const v1::BatchCreateEntryRequest*,
                                v1::BatchCreateEntryResponse*) override;
  grpc::Status BatchUpdateEntry(ServerContext*, const v1::BatchUpdateEntryRequest*,
                                v1::BatchUpdateEntryResponse*) override;
  grpc::Status BatchDeleteEntry(ServerContext*, const v1::BatchDeleteEntryRequest*,
                                v1::BatchDeleteEntryResponse*) override;
  grpc::Status GetEntry(ServerContext*, const v1::GetEntryRequest*, v1::Entry*) override;
  grpc::Status ListEntries(ServerContext*, const v1::ListEntriesRequest*,
                           v1::ListEntriesResponse*) override;
  grpc::Status CountEntries(ServerContext*, const v1::CountEntriesRequest*,
                            v1::CountEntriesResponse*) override;
  grpc::Status CreateJoinToken(ServerContext*, const v1::CreateJoinTokenRequest*,
                               v1::CreateJoinTokenResponse*) override;
  grpc::Status ListAgents(ServerContext*, const v1::ListAgentsRequest*,
                          v1::ListAgentsResponse*) override;
  grpc::Status GetAgent(ServerContext*, const v1::AgentIdRequest*, v1::AttestedNode*) override;
  grpc::Status CountAgents(ServerContext*, const v1::CountAgentsRequest*,
                           v1::CountAgentsResponse*) override;
  grpc::Status BanAgent(ServerContext*, const v1::AgentIdRequest*, v1::Empty*) override;
  grpc::Status EvictAgent(ServerContext*, const v1::AgentIdRequest*, v1::Empty*) override;
  grpc::Status GetBundle(ServerContext*, const v1::GetBundleRequestAdmin*, v1::Bundle*) override;
  grpc::Status ListFederatedBundles(ServerContext*, const v1::ListFederatedBundlesRequest*,
                                    v1::ListFederatedBundlesResponse*) override;
  grpc::Status SetFederatedBundle(ServerContext*, const v1::SetFederatedBundleRequest*,
                                  v1::Bundle*) override;
  grpc::Status DeleteFederatedBundle(ServerContext*, const v1::DeleteFederatedBundleRequest*,
                                     v1::Empty*) override;
  grpc::Status ListFederationRelationships(ServerContext*,
                                           const v1::ListFederationRelationshipsRequest*,
                                           v1::ListFederationRelationshipsResponse*) override;
  grpc::Status GetFederationRelationship(ServerContext*, const v1::FederationRelationshipRequest*,
                                         v1::FederationRelationship*) override;
  grpc::Status CreateFederationRelationship(ServerContext*, const v1::FederationRelationship*,
                                            v1::FederationRelationship*) override;
  grpc::Status UpdateFederationRelationship(ServerContext*, const v1::FederationRelationship*,
                                            v1::FederationRelationship*) override;
  grpc::Status DeleteFederationRelationship(ServerContext*,
                                            const v1::FederationRelationshipRequest*,
                                            v1::Empty*) override;
  grpc::Status RefreshFederationRelationship(ServerContext*,
                                             const v1::FederationRelationshipRequest*,
                                             v1::Empty*) override;
  grpc::Status GetAuthorityState(ServerContext*, const v1::GetAuthorityStateRequest*,
                                 v1::GetAuthorityStateResponse*) override;
  grpc::Status PrepareAuthority(ServerContext*, const v1::AuthorityRequest*,
                                v1::AuthorityResponse*) override;
  grpc::Status ActivateAuthority(ServerContext*, const v1::AuthorityRequest*,
                                 v1::AuthorityResponse*) override;
  grpc::Status TaintAuthority(ServerContext*, const v1::AuthorityRequest*,
                              v1::AuthorityResponse*) override;
  grpc::Status RevokeAuthority(ServerContext*, const v1::AuthorityRequest*,
                               v1::AuthorityResponse*) override;
  grpc::Status TaintUpstreamAuthority(ServerContext*, const v1::UpstreamAuthorityRequest*,
                                      v1::UpstreamAuthorityResponse*) override;
  grpc::Status RevokeUpstreamAuthority(ServerContext*, const v1::UpstreamAuthorityRequest*,
                                       v1::UpstreamAuthorityResponse*) override;
  grpc::Status Health(ServerContext*, const v1::HealthRequest*, v1::HealthResponse*) override;
  grpc::Status GetLogger(ServerContext*, const v1::GetLoggerRequest*, v1::Logger*) override;
  grpc::Status SetLogLevel(ServerContext*, const v1::SetLogLevelRequest*, v1::Logger*) override;
  grpc::Status ResetLogLevel(ServerContext*, const v1::ResetLogLevelRequest*, v1::Logger*) override;

 private:
  struct RelationshipWrite {
    datastore::FederationRelationship relationship;
    std::optional<datastore::Bundle> bundle;
  };
  absl::StatusOr<RelationshipWrite> CheckRelationship(const v1::FederationRelationship& req) const;
  v1::FederationRelationship RelationshipToProto(const datastore::FederationRelationship& r) const;
  grpc::Status WriteRelationship(bool create, const v1::FederationRelationship& req,
                                 v1::FederationRelationship* resp);
  void AfterWrite();
  // Names the call and its caller on every line logged while serving it.
  common::RpcLogScope Rpc(const ServerContext& ctx, std::string_view method) const;
  void FillLogger(v1::Logger* out) const;
  absl::StatusOr<std::string> AgentIdArg(const std::string& spiffe_id) const;

  datastore::DataStore* ds_;
  Options options_;
  const common::Clock& clock_;
};

// Join tokens: 128 random bits as 32 lowercase hex characters.
std::string GenerateJoinToken();
inline constexpr int kDefaultJoinTokenTtlSeconds = 600;

}  // namespace trellis::server
