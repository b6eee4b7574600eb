// The DataStore interface: everything a Trellis server persists, behind one contract.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "datastore/types.h"

namespace trellis::datastore {

// A live subscription to change notices. Destroying it ends them: no call runs once the
// destructor has returned.
class ChangeSubscription {
 public:
  virtual ~ChangeSubscription() = default;
};

// Every backend honours the same error contract:
//   NOT_FOUND            the addressed row does not exist
//   ALREADY_EXISTS       a unique key is taken (entry id, (spiffe_id, parent_id, selectors),
//                        node SPIFFE ID, join token, bundle, federation relationship)
//   INVALID_ARGUMENT     bad input (SPIFFE ID, empty selector part, negative TTL, ...)
//   FAILED_PRECONDITION  the request conflicts with stored state (expired join token,
//                        revoking an untainted authority, schema newer than the binary)
//   UNAVAILABLE          the database cannot be reached or is busy; safe to retry
//   DATA_LOSS            a stored row holds a value that cannot be valid (named in the
//                        message); the row is never returned half-loaded
// Times are stored with one-second resolution.
class DataStore {
 public:
  virtual ~DataStore() = default;

  // ---- Bundles ----
  // Creates the bundle; ALREADY_EXISTS if the trust domain has one.
  virtual absl::StatusOr<Bundle> CreateBundle(const Bundle& bundle) = 0;
  // Creates or replaces the bundle's authorities and refresh hint.
  virtual absl::StatusOr<Bundle> SetBundle(const Bundle& bundle) = 0;
  // Adds authorities not yet present (creating the bundle if needed).
  virtual absl::StatusOr<Bundle> AppendBundle(const Bundle& bundle) = 0;
  virtual absl::StatusOr<Bundle> GetBundle(const std::string& trust_domain) = 0;
  virtual absl::StatusOr<std::vector<Bundle>> ListBundles() = 0;
  virtual absl::Status DeleteBundle(const std::string& trust_domain, BundleDeleteMode mode) = 0;
  virtual absl::Status TaintX509Authority(const std::string& trust_domain,
                                          const std::string& ca_der) = 0;
  // Removes a tainted X.509 authority; FAILED_PRECONDITION if it is not tainted.
  virtual absl::Status RevokeX509Authority(const std::string& trust_domain,
                                           const std::string& ca_der) = 0;
  virtual absl::Status TaintJwtAuthority(const std::string& trust_domain,
                                         const std::string& kid) = 0;
  virtual absl::Status RevokeJwtAuthority(const std::string& trust_domain,
                                          const std::string& kid) = 0;
  // Drops authorities that expired before `expired_before`; returns whether anything changed.
  // FAILED_PRECONDITION if it would leave the bundle without any X.509 authority.
  virtual absl::StatusOr<bool> PruneBundle(const std::string& trust_domain,
                                           absl::Time expired_before) = 0;

  // ---- Registration entries ----
  virtual absl::StatusOr<RegistrationEntry> CreateEntry(const RegistrationEntry& entry) = 0;
  // All or nothing: on any failure no entry of the batch is stored.
  virtual absl::StatusOr<std::vector<RegistrationEntry>> CreateEntries(
      const std::vector<RegistrationEntry>& entries) = 0;
  virtual absl::StatusOr<RegistrationEntry> GetEntry(const std::string& id) = 0;
  // The entries with these ids that exist (missing ids are left out), in a few statements:
  // readers catching up on the change log re-read thousands of rows at once.
  virtual absl::StatusOr<std::vector<RegistrationEntry>> GetEntries(
      const std::vector<std::string>& ids) = 0;
  // Writes the fields in `mask` (all fields when absent) and bumps revision_number.
  virtual absl::StatusOr<RegistrationEntry> UpdateEntry(const RegistrationEntry& entry,
                                                        const std::optional<EntryMask>& mask) = 0;
  virtual absl::StatusOr<RegistrationEntry> DeleteEntry(const std::string& id) = 0;
  // All or nothing.
  virtual absl::Status DeleteEntries(const std::vector<std::string>& ids) = 0;
  // Entries in a stable order (creation order); pages continue from `page_token`.
  virtual absl::StatusOr<ListEntriesResponse> ListEntries(const ListEntriesRequest& request) = 0;
  virtual absl::StatusOr<int64_t> CountEntries() = 0;

  // ---- Attested nodes ----
  virtual absl::StatusOr<AttestedNode> CreateNode(const AttestedNode& node) = 0;
  virtual absl::StatusOr<AttestedNode> GetNode(const std::string& spiffe_id,
                                               bool fetch_selectors) = 0;
  virtual absl::StatusOr<AttestedNode> UpdateNode(const AttestedNode& node,
                                                  const std::optional<NodeMask>& mask) = 0;
  // Also deletes the node's selectors.
  virtual absl::StatusOr<AttestedNode> DeleteNode(const std::string& spiffe_id) = 0;
  virtual absl::StatusOr<ListNodesResponse> ListNodes(const ListNodesRequest& request) = 0;
  virtual absl::StatusOr<int64_t> CountNodes() = 0;
  // Replaces the node's selectors (the node need not be attested yet).
  virtual absl::Status SetNodeSelectors(const std::string& spiffe_id,
                                        const std::vector<Selector>& selectors) = 0;
  virtual absl::StatusOr<std::vector<Selector>> GetNodeSelectors(const std::string& spiffe_id) = 0;

  // ---- Join tokens ----
  virtual absl::Status CreateJoinToken(const JoinToken& token) = 0;
  // Deletes and returns the token in one transaction: of racing callers exactly one gets it.
  // NOT_FOUND if absent or already used; FAILED_PRECONDITION if expired (it is still
  // removed, since a token is single use).
  virtual absl::StatusOr<JoinToken> ConsumeJoinToken(const std::string& token, absl::Time now) = 0;
  virtual absl::Status DeleteJoinToken(const std::string& token) = 0;
  // Returns how many tokens were removed.
  virtual absl::StatusOr<int64_t> PruneJoinTokens(absl::Time expired_before) = 0;

  // ---- CA journal ----
  // Creates or replaces the record keyed by (server_id, kind, authority_id).
  virtual absl::StatusOr<CaJournalEntry> PutCaJournalEntry(const CaJournalEntry& entry) = 0;
  // The server instance's records, oldest first.
  virtual absl::StatusOr<std::vector<CaJournalEntry>> ListCaJournal(
      const std::string& server_id) = 0;
  virtual absl::Status DeleteCaJournalEntry(const std::string& server_id, AuthorityKind kind,
                                            const std::string& authority_id) = 0;

  // ---- Federation relationships ----
  virtual absl::StatusOr<FederationRelationship> CreateFederationRelationship(
      const FederationRelationship& relationship) = 0;
  virtual absl::StatusOr<FederationRelationship> GetFederationRelationship(
      const std::string& trust_domain) = 0;
  virtual absl::StatusOr<FederationRelationship> UpdateFederationRelationship(
      const FederationRelationship& relationship) = 0;
  virtual absl::Status DeleteFederationRelationship(const std::string& trust_domain) = 0;
  virtual absl::StatusOr<std::vector<FederationRelationship>> ListFederationRelationships() = 0;

  // ---- Change log ----
  // Events with id > after_id in id order, at most `limit` (0: no limit). Every write that
  // changes an entry or node appends its event in the same transaction, and event ids
  // become visible in increasing order.
  virtual absl::StatusOr<std::vector<Event>> ListEvents(int64_t after_id, int32_t limit) = 0;
  // Returns how many events were removed.
  virtual absl::StatusOr<int64_t> PruneEvents(absl::Time older_than) = 0;
  // 0 when the log is empty.
  virtual absl::StatusOr<int64_t> MaxEventId() = 0;

  // ---- Change notices ----
  // Calls `on_change`, from a thread of the store's own, soon after any process sharing the
  // store commits a change-log event (this one included), and once after each reconnection of
  // that channel, when notices may have been missed. A notice only says "read the log now":
  // readers still poll ListEvents as the safety net. nullptr when the backend has no such
  // channel (SQLite: writes by other processes are seen by polling).
  virtual std::unique_ptr<ChangeSubscription> SubscribeChanges(
      std::function<void()> on_change) = 0;

  // The schema version the store runs on.
  virtual absl::StatusOr<int> SchemaVersion() = 0;

  // Transactions run against the backend since the store opened (metrics; benchmarks count
  // what one steady-state sync costs the database).
  virtual int64_t Transactions() const = 0;
};

}  // namespace trellis::datastore
