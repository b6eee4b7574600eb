// A DataStore decorator that times every call of the store it wraps and counts its failures,
// so /metrics sees every backend's calls in one place.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "datastore/datastore.h"
#include "telemetry/metrics.h"

namespace trellis::runtime {

// Records `trellis_server_datastore_call_duration_seconds{operation}` for every call and
// `trellis_server_datastore_errors_total{operation}` for every call that failed for another
// reason than the answer itself: NOT_FOUND, ALREADY_EXISTS, INVALID_ARGUMENT and
// FAILED_PRECONDITION are the contract's answers about the request, not store failures.
// Every operation's series is created at zero up front. Thread-safe as the wrapped store is;
// `metrics` must outlive the decorator.
class MeteredDataStore final : public datastore::DataStore {
 public:
  // The operation label of every metered call: the DataStore method's name.
  static const std::vector<std::string>& Operations();

  MeteredDataStore(std::unique_ptr<datastore::DataStore> inner, telemetry::Metrics& metrics);
  ~MeteredDataStore() override;

  absl::StatusOr<datastore::Bundle> CreateBundle(const datastore::Bundle& bundle) override;
  absl::StatusOr<datastore::Bundle> SetBundle(const datastore::Bundle& bundle) override;
  absl::StatusOr<datastore::Bundle> AppendBundle(const datastore::Bundle& bundle) override;
  absl::StatusOr<datastore::Bundle> GetBundle(const std::string& trust_domain) override;
  absl::StatusOr<std::vector<datastore::Bundle>> ListBundles() override;
  absl::Status DeleteBundle(const std::string& trust_domain,
                            datastore::BundleDeleteMode mode) override;
  absl::Status TaintX509Authority(const std::string& trust_domain,
                                  const std::string& ca_der) override;
  absl::Status RevokeX509Authority(const std::string& trust_domain,
                                   const std::string& ca_der) override;
  absl::Status TaintJwtAuthority(const std::string& trust_domain, const std::string& kid) override;
  absl::Status RevokeJwtAuthority(const std::string& trust_domain, const std::string& kid) override;
  absl::StatusOr<bool> PruneBundle(const std::string& trust_domain,
                                   absl::Time expired_before) override;
  absl::StatusOr<datastore::RegistrationEntry> CreateEntry(
      const datastore::RegistrationEntry& entry) override;
  absl::StatusOr<std::vector<datastore::RegistrationEntry>> CreateEntries(
      const std::vector<datastore::RegistrationEntry>& entries) override;
  absl::StatusOr<datastore::RegistrationEntry> GetEntry(const std::string& id) override;
  absl::StatusOr<std::vector<datastore::RegistrationEntry>> GetEntries(
      const std::vector<std::string>& ids) override;
  absl::StatusOr<datastore::RegistrationEntry> UpdateEntry(
      const datastore::RegistrationEntry& entry,
      const std::optional<datastore::EntryMask>& mask) override;
  absl::StatusOr<datastore::RegistrationEntry> DeleteEntry(const std::string& id) override;
  absl::Status DeleteEntries(const std::vector<std::string>& ids) override;
  absl::StatusOr<datastore::ListEntriesResponse> ListEntries(
      const datastore::ListEntriesRequest& request) override;
  absl::StatusOr<int64_t> CountEntries() override;
  absl::StatusOr<datastore::AttestedNode> CreateNode(const datastore::AttestedNode& node) override;
  absl::StatusOr<datastore::AttestedNode> GetNode(const std::string& spiffe_id,
                                                  bool fetch_selectors) override;
  absl::StatusOr<datastore::AttestedNode> UpdateNode(
      const datastore::AttestedNode& node, const std::optional<datastore::NodeMask>& mask) override;
  absl::StatusOr<datastore::AttestedNode> DeleteNode(const std::string& spiffe_id) override;
  absl::StatusOr<datastore::ListNodesResponse> ListNodes(
      const datastore::ListNodesRequest& request) override;
  absl::StatusOr<int64_t> CountNodes() override;
  absl::Status SetNodeSelectors(const std::string& spiffe_id,
                                const std::vector<datastore::Selector>& selectors) override;
  absl::StatusOr<std::vector<datastore::Selector>> GetNodeSelectors(
      const std::string& spiffe_id) override;
  absl::Status CreateJoinToken(const datastore::JoinToken& token) override;
  absl::StatusOr<datastore::JoinToken> ConsumeJoinToken(const std::string& token,
                                                        absl::Time now) override;
  absl::Status DeleteJoinToken(const std::string& token) override;
  absl::StatusOr<int64_t> PruneJoinTokens(absl::Time expired_before) override;
  absl::StatusOr<datastore::CaJournalEntry> PutCaJournalEntry(
      const datastore::CaJournalEntry& entry) override;
  absl::StatusOr<std::vector<datastore::CaJournalEntry>> ListCaJournal(
      const std::string& server_id) override;
  absl::Status DeleteCaJournalEntry(const std::string& server_id, datastore::AuthorityKind kind,
                                    const std::string& authority_id) override;
  absl::StatusOr<datastore::FederationRelationship> CreateFederationRelationship(
      const datastore::FederationRelationship& relationship) override;
  absl::StatusOr<datastore::FederationRelationship> GetFederationRelationship(
      const std::string& trust_domain) override;
  absl::StatusOr<datastore::FederationRelationship> UpdateFederationRelationship(
      const datastore::FederationRelationship& relationship) override;
  absl::Status DeleteFederationRelationship(const std::string& trust_domain) override;
  absl::StatusOr<std::vector<datastore::FederationRelationship>> ListFederationRelationships()
      override;
  absl::StatusOr<std::vector<datastore::Event>> ListEvents(int64_t after_id,
                                                           int32_t limit) override;
  absl::StatusOr<int64_t> PruneEvents(absl::Time older_than) override;
  absl::StatusOr<int64_t> MaxEventId() override;
  std::unique_ptr<datastore::ChangeSubscription> SubscribeChanges(
      std::function<void()> on_change) override;
  absl::StatusOr<int> SchemaVersion() override;
  int64_t Transactions() const override;

 private:
  struct Instruments {
    telemetry::Histogram duration;
    telemetry::Counter errors;
  };
  // Runs `call` (one wrapped call) and records it under operation `op`.
  template <typename Call>
  auto Meter(size_t op, const Call& call) -> decltype(call());
  void Record(size_t op, double seconds, const absl::Status& status);

  std::unique_ptr<datastore::DataStore> inner_;
  std::vector<Instruments> instruments_;  // by operation, fixed after construction
};

}  // namespace trellis::runtime
