// Internal: DataStore written once over the SQL surface that both backends provide.
#pragma once

#include <functional>
#include <memory>
#include <optional>

#include "datastore/datastore.h"
#include "datastore/options.h"
#include "datastore/sql/sql_engine.h"

namespace trellis::datastore::sql {

class SqlDataStore : public DataStore {
 public:
  ~SqlDataStore() override;

  absl::StatusOr<Bundle> CreateBundle(const Bundle& bundle) override;
  absl::StatusOr<Bundle> SetBundle(const Bundle& bundle) override;
  absl::StatusOr<Bundle> AppendBundle(const Bundle& bundle) override;
  absl::StatusOr<Bundle> GetBundle(const std::string& trust_domain) override;
  absl::StatusOr<std::vector<Bundle>> ListBundles() override;
  absl::Status DeleteBundle(const std::string& trust_domain, BundleDeleteMode mode) override;
  absl::Status TaintX509Authority(const std::string& trust_domain,
                                  const std::string& ca_der) override;
  absl::Status RevokeX509Authority(const std::string& trust_domain,
                                   const std::string& ca_der) override;
  absl::Status TaintJwtAuthority(const std::string& trust_domain, const std::string& kid) override;
  absl::Status RevokeJwtAuthority(const std::string& trust_domain, const std::string& kid) override;
  absl::StatusOr<bool> PruneBundle(const std::string& trust_domain,
                                   absl::Time expired_before) override;

  absl::StatusOr<RegistrationEntry> CreateEntry(const RegistrationEntry& entry) override;
  absl::StatusOr<std::vector<RegistrationEntry>> CreateEntries(
      const std::vector<RegistrationEntry>& entries) override;
  absl::StatusOr<RegistrationEntry> GetEntry(const std::string& id) override;
  absl::StatusOr<std::vector<RegistrationEntry>> GetEntries(
      const std::vector<std::string>& ids) override;
  absl::StatusOr<RegistrationEntry> UpdateEntry(const RegistrationEntry& entry,
                                                const std::optional<EntryMask>& mask) override;
  absl::StatusOr<RegistrationEntry> DeleteEntry(const std::string& id) override;
  absl::Status DeleteEntries(const std::vector<std::string>& ids) override;
  absl::StatusOr<ListEntriesResponse> ListEntries(const ListEntriesRequest& request) override;
  absl::StatusOr<int64_t> CountEntries() override;

  absl::StatusOr<AttestedNode> CreateNode(const AttestedNode& node) override;
  absl::StatusOr<AttestedNode> GetNode(const std::string& spiffe_id, bool fetch_selectors) override;
  absl::StatusOr<AttestedNode> UpdateNode(const AttestedNode& node,
                                          const std::optional<NodeMask>& mask) override;
  absl::StatusOr<AttestedNode> DeleteNode(const std::string& spiffe_id) override;
  absl::StatusOr<ListNodesResponse> ListNodes(const ListNodesRequest& request) override;
  absl::StatusOr<int64_t> CountNodes() override;
  absl::Status SetNodeSelectors(const std::string& spiffe_id,
                                const std::vector<Selector>& selectors) override;
  absl::StatusOr<std::vector<Selector>> GetNodeSelectors(const std::string& spiffe_id) override;

  absl::Status CreateJoinToken(const JoinToken& token) override;
  absl::StatusOr<JoinToken> ConsumeJoinToken(const std::string& token, absl::Time now) override;
  absl::Status DeleteJoinToken(const std::string& token) override;
  absl::StatusOr<int64_t> PruneJoinTokens(absl::Time expired_before) override;

  absl::StatusOr<CaJournalEntry> PutCaJournalEntry(const CaJournalEntry& entry) override;
  absl::StatusOr<std::vector<CaJournalEntry>> ListCaJournal(const std::string& server_id) override;
  absl::Status DeleteCaJournalEntry(const std::string& server_id, AuthorityKind kind,
                                    const std::string& authority_id) override;

  absl::StatusOr<FederationRelationship> CreateFederationRelationship(
      const FederationRelationship& relationship) override;
  absl::StatusOr<FederationRelationship> GetFederationRelationship(
      const std::string& trust_domain) override;
  absl::StatusOr<FederationRelationship> UpdateFederationRelationship(
      const FederationRelationship& relationship) override;
  absl::Status DeleteFederationRelationship(const std::string& trust_domain) override;
  absl::StatusOr<std::vector<FederationRelationship>> ListFederationRelationships() override;

  absl::StatusOr<std::vector<Event>> ListEvents(int64_t after_id, int32_t limit) override;
  absl::StatusOr<int64_t> PruneEvents(absl::Time older_than) override;
  absl::StatusOr<int64_t> MaxEventId() override;

  std::unique_ptr<ChangeSubscription> SubscribeChanges(std::function<void()> on_change) override {
    return engine_->SubscribeChanges(std::move(on_change));
  }
  absl::StatusOr<int> SchemaVersion() override;
  int64_t Transactions() const override { return engine_->Transactions(); }

 protected:
  SqlDataStore(std::unique_ptr<Engine> engine, const DataStoreOptions& options);
  // Applies migrations up to options.target_schema_version; call once after construction.
  absl::Status Initialize();
  Engine& engine() { return *engine_; }

 private:
  // Row count of one table (a fixed name, never caller input).
  absl::StatusOr<int64_t> CountRows(const std::string& table);
  struct PendingEvent {
    EventKind kind;
    std::string id;
  };
  using Events = std::vector<PendingEvent>;

  // A write transaction; the events `fn` queues are appended last, under the log lock.
  absl::Status Write(const std::function<absl::Status(Tx&, Events&)>& fn);
  absl::Status Read(const std::function<absl::Status(Tx&)>& fn);
  absl::Status FlushEvents(Tx& tx, const Events& events);
  int64_t NowSeconds() const;
  std::string ForUpdate() const;

  absl::StatusOr<RegistrationEntry> CreateEntryTx(Tx& tx, Events& events,
                                                  const RegistrationEntry& entry);
  absl::StatusOr<RegistrationEntry> DeleteEntryTx(Tx& tx, Events& events, const std::string& id);
  absl::Status StoreBundle(Tx& tx, const Bundle& bundle);
  // Locks the trust domain's bundle row for this transaction; nullopt when there is none.
  absl::StatusOr<std::optional<Bundle>> LockBundle(Tx& tx, const std::string& td,
                                                   int64_t refresh_hint);
  absl::StatusOr<Bundle> StoreAndReload(Tx& tx, const Bundle& bundle);
  // What a bundle write makes of the normalized input and the stored bundle (if any): the
  // bundle to store, or nullopt to keep the stored one unchanged.
  using BundleChange = std::function<absl::StatusOr<std::optional<Bundle>>(
      const Bundle& in, const std::optional<Bundle>& stored)>;
  // Normalizes `bundle`, locks the stored one and stores what `change` returns under the next
  // sequence number; returns the bundle as stored.
  absl::StatusOr<Bundle> PutBundle(const Bundle& bundle, const BundleChange& change);

  std::unique_ptr<Engine> engine_;
  DataStoreOptions options_;
};

}  // namespace trellis::datastore::sql
