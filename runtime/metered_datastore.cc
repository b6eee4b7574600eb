// MeteredDataStore: every DataStore call forwarded, timed and its failure counted.
#include "runtime/metered_datastore.h"

#include <chrono>
#include <utility>

namespace trellis::runtime {
namespace {

// In the order of DataStore's declarations; the index is the operation's number below.
enum Op : size_t {
  kCreateBundle,
  kSetBundle,
  kAppendBundle,
  kGetBundle,
  kListBundles,
  kDeleteBundle,
  kTaintX509Authority,
  kRevokeX509Authority,
  kTaintJwtAuthority,
  kRevokeJwtAuthority,
  kPruneBundle,
  kCreateEntry,
  kCreateEntries,
  kGetEntry,
  kGetEntries,
  kUpdateEntry,
  kDeleteEntry,
  kDeleteEntries,
  kListEntries,
  kCountEntries,
  kCreateNode,
  kGetNode,
  kUpdateNode,
  kDeleteNode,
  kListNodes,
  kCountNodes,
  kSetNodeSelectors,
  kGetNodeSelectors,
  kCreateJoinToken,
  kConsumeJoinToken,
  kDeleteJoinToken,
  kPruneJoinTokens,
  kPutCaJournalEntry,
  kListCaJournal,
  kDeleteCaJournalEntry,
  kCreateFederationRelationship,
  kGetFederationRelationship,
  kUpdateFederationRelationship,
  kDeleteFederationRelationship,
  kListFederationRelationships,
  kListEvents,
  kPruneEvents,
  kMaxEventId,
  kSchemaVersion,
  kOpCount,
};

const char* const kOpNames[] = {
    "CreateBundle",
    "SetBundle",
    "AppendBundle",
    "GetBundle",
    "ListBundles",
    "DeleteBundle",
    "TaintX509Authority",
    "RevokeX509Authority",
    "TaintJwtAuthority",
    "RevokeJwtAuthority",
    "PruneBundle",
    "CreateEntry",
    "CreateEntries",
    "GetEntry",
    "GetEntries",
    "UpdateEntry",
    "DeleteEntry",
    "DeleteEntries",
    "ListEntries",
    "CountEntries",
    "CreateNode",
    "GetNode",
    "UpdateNode",
    "DeleteNode",
    "ListNodes",
    "CountNodes",
    "SetNodeSelectors",
    "GetNodeSelectors",
    "CreateJoinToken",
    "ConsumeJoinToken",
    "DeleteJoinToken",
    "PruneJoinTokens",
    "PutCaJournalEntry",
    "ListCaJournal",
    "DeleteCaJournalEntry",
    "CreateFederationRelationship",
    "GetFederationRelationship",
    "UpdateFederationRelationship",
    "DeleteFederationRelationship",
    "ListFederationRelationships",
    "ListEvents",
    "PruneEvents",
    "MaxEventId",
    "SchemaVersion",
};
static_assert(sizeof(kOpNames) / sizeof(kOpNames[0]) == kOpCount);

// What is a store failure rather than an answer (see the header).
bool IsFailure(const absl::Status& status) {
  switch (status.code()) {
    case absl::StatusCode::kOk:
    case absl::StatusCode::kNotFound:
    case absl::StatusCode::kAlreadyExists:
    case absl::StatusCode::kInvalidArgument:
    case absl::StatusCode::kFailedPrecondition:
      return false;
    default:
      return true;
  }
}

const absl::Status& StatusOf(const absl::Status& status) { return status; }
template <typename T>
const absl::Status& StatusOf(const absl::StatusOr<T>& result) {
  return result.status();
}

}  // namespace

const std::vector<std::string>& MeteredDataStore::Operations() {
  static const std::vector<std::string>* const names =
      new std::vector<std::string>(std::begin(kOpNames), std::end(kOpNames));
  return *names;
}

MeteredDataStore::MeteredDataStore(std::unique_ptr<datastore::DataStore> inner,
                                   telemetry::Metrics& metrics)
    : inner_(std::move(inner)) {
  instruments_.reserve(kOpCount);
  for (const char* name : kOpNames) {
    instruments_.push_back(
        {metrics.AddHistogram("trellis_server_datastore_call_duration_seconds",
                              "Datastore call latency in seconds, by operation",
                              {{"operation", name}}),
         // Created at zero so every operation's error rate exists before its first failure.
         metrics.AddCounter("trellis_server_datastore_errors_total",
                            "Datastore calls that failed (store unavailable, corrupt row, "
                            "internal error), by operation",
                            {{"operation", name}})});
  }
}

MeteredDataStore::~MeteredDataStore() = default;

template <typename Call>
auto MeteredDataStore::Meter(size_t op, const Call& call) -> decltype(call()) {
  const auto start = std::chrono::steady_clock::now();
  auto result = call();
  const std::chrono::duration<double> took = std::chrono::steady_clock::now() - start;
  Record(op, took.count(), StatusOf(result));
  return result;
}

void MeteredDataStore::Record(size_t op, double seconds, const absl::Status& status) {
  Instruments& in = instruments_[op];
  in.duration.Observe(seconds);
  if (IsFailure(status)) in.errors.Increment();
}

absl::StatusOr<datastore::Bundle> MeteredDataStore::CreateBundle(const datastore::Bundle& bundle) {
  return Meter(kCreateBundle, [&] { return inner_->CreateBundle(bundle); });
}

absl::StatusOr<datastore::Bundle> MeteredDataStore::SetBundle(const datastore::Bundle& bundle) {
  return Meter(kSetBundle, [&] { return inner_->SetBundle(bundle); });
}

absl::StatusOr<datastore::Bundle> MeteredDataStore::AppendBundle(const datastore::Bundle& bundle) {
  return Meter(kAppendBundle, [&] { return inner_->AppendBundle(bundle); });
}

absl::StatusOr<datastore::Bundle> MeteredDataStore::GetBundle(const std::string& trust_domain) {
  return Meter(kGetBundle, [&] { return inner_->GetBundle(trust_domain); });
}

absl::StatusOr<std::vector<datastore::Bundle>> MeteredDataStore::ListBundles() {
  return Meter(kListBundles, [&] { return inner_->ListBundles(); });
}

absl::Status MeteredDataStore::DeleteBundle(const std::string& trust_domain,
                                            datastore::BundleDeleteMode mode) {
  return Meter(kDeleteBundle, [&] { return inner_->DeleteBundle(trust_domain, mode); });
}

absl::Status MeteredDataStore::TaintX509Authority(const std::string& trust_domain,
                                                  const std::string& ca_der) {
  return Meter(kTaintX509Authority,
               [&] { return inner_->TaintX509Authority(trust_domain, ca_der); });
}

absl::Status MeteredDataStore::RevokeX509Authority(const std::string& trust_domain,
                                                   const std::string& ca_der) {
  return Meter(kRevokeX509Authority,
               [&] { return inner_->RevokeX509Authority(trust_domain, ca_der); });
}

absl::Status MeteredDataStore::TaintJwtAuthority(const std::string& trust_domain,
                                                 const std::string& kid) {
  return Meter(kTaintJwtAuthority, [&] { return inner_->TaintJwtAuthority(trust_domain, kid); });
}

absl::Status MeteredDataStore::RevokeJwtAuthority(const std::string& trust_domain,
                                                  const std::string& kid) {
  return Meter(kRevokeJwtAuthority, [&] { return inner_->RevokeJwtAuthority(trust_domain, kid); });
}

absl::StatusOr<bool> MeteredDataStore::PruneBundle(const std::string& trust_domain,
                                                   absl::Time expired_before) {
  return Meter(kPruneBundle, [&] { return inner_->PruneBundle(trust_domain, expired_before); });
}

absl::StatusOr<datastore::RegistrationEntry> MeteredDataStore::CreateEntry(
    const datastore::RegistrationEntry& entry) {
  return Meter(kCreateEntry, [&] { return inner_->CreateEntry(entry); });
}

absl::StatusOr<std::vector<datastore::RegistrationEntry>> MeteredDataStore::CreateEntries(
    const std::vector<datastore::RegistrationEntry>& entries) {
  return Meter(kCreateEntries, [&] { return inner_->CreateEntries(entries); });
}

absl::StatusOr<datastore::RegistrationEntry> MeteredDataStore::GetEntry(const std::string& id) {
  return Meter(kGetEntry, [&] { return inner_->GetEntry(id); });
}

absl::StatusOr<std::vector<datastore::RegistrationEntry>> MeteredDataStore::GetEntries(
    const std::vector<std::string>& ids) {
  return Meter(kGetEntries, [&] { return inner_->GetEntries(ids); });
}

absl::StatusOr<datastore::RegistrationEntry> MeteredDataStore::UpdateEntry(
    const datastore::RegistrationEntry& entry, const std::optional<datastore::EntryMask>& mask) {
  return Meter(kUpdateEntry, [&] { return inner_->UpdateEntry(entry, mask); });
}

absl::StatusOr<datastore::RegistrationEntry> MeteredDataStore::DeleteEntry(const std::string& id) {
  return Meter(kDeleteEntry, [&] { return inner_->DeleteEntry(id); });
}

absl::Status MeteredDataStore::DeleteEntries(const std::vector<std::string>& ids) {
  return Meter(kDeleteEntries, [&] { return inner_->DeleteEntries(ids); });
}

absl::StatusOr<datastore::ListEntriesResponse> MeteredDataStore::ListEntries(
    const datastore::ListEntriesRequest& request) {
  return Meter(kListEntries, [&] { return inner_->ListEntries(request); });
}

absl::StatusOr<int64_t> MeteredDataStore::CountEntries() {
  return Meter(kCountEntries, [&] { return inner_->CountEntries(); });
}

absl::StatusOr<datastore::AttestedNode> MeteredDataStore::CreateNode(
    const datastore::AttestedNode& node) {
  return Meter(kCreateNode, [&] { return inner_->CreateNode(node); });
}

absl::StatusOr<datastore::AttestedNode> MeteredDataStore::GetNode(const std::string& spiffe_id,
                                                                  bool fetch_selectors) {
  return Meter(kGetNode, [&] { return inner_->GetNode(spiffe_id, fetch_selectors); });
}

absl::StatusOr<datastore::AttestedNode> MeteredDataStore::UpdateNode(
    const datastore::AttestedNode& node, const std::optional<datastore::NodeMask>& mask) {
  return Meter(kUpdateNode, [&] { return inner_->UpdateNode(node, mask); });
}

absl::StatusOr<datastore::AttestedNode> MeteredDataStore::DeleteNode(const std::string& spiffe_id) {
  return Meter(kDeleteNode, [&] { return inner_->DeleteNode(spiffe_id); });
}

absl::StatusOr<datastore::ListNodesResponse> MeteredDataStore::ListNodes(
    const datastore::ListNodesRequest& request) {
  return Meter(kListNodes, [&] { return inner_->ListNodes(request); });
}

absl::StatusOr<int64_t> MeteredDataStore::CountNodes() {
  return Meter(kCountNodes, [&] { return inner_->CountNodes(); });
}

absl::Status MeteredDataStore::SetNodeSelectors(const std::string& spiffe_id,
                                                const std::vector<datastore::Selector>& selectors) {
  return Meter(kSetNodeSelectors, [&] { return inner_->SetNodeSelectors(spiffe_id, selectors); });
}

absl::StatusOr<std::vector<datastore::Selector>> MeteredDataStore::GetNodeSelectors(
    const std::string& spiffe_id) {
  return Meter(kGetNodeSelectors, [&] { return inner_->GetNodeSelectors(spiffe_id); });
}

absl::Status MeteredDataStore::CreateJoinToken(const datastore::JoinToken& token) {
  return Meter(kCreateJoinToken, [&] { return inner_->CreateJoinToken(token); });
}

absl::StatusOr<datastore::JoinToken> MeteredDataStore::ConsumeJoinToken(const std::string& token,
                                                                        absl::Time now) {
  return Meter(kConsumeJoinToken, [&] { return inner_->ConsumeJoinToken(token, now); });
}

absl::Status MeteredDataStore::DeleteJoinToken(const std::string& token) {
  return Meter(kDeleteJoinToken, [&] { return inner_->DeleteJoinToken(token); });
}

absl::StatusOr<int64_t> MeteredDataStore::PruneJoinTokens(absl::Time expired_before) {
  return Meter(kPruneJoinTokens, [&] { return inner_->PruneJoinTokens(expired_before); });
}

absl::StatusOr<datastore::CaJournalEntry> MeteredDataStore::PutCaJournalEntry(
    const datastore::CaJournalEntry& entry) {
  return Meter(kPutCaJournalEntry, [&] { return inner_->PutCaJournalEntry(entry); });
}

absl::StatusOr<std::vector<datastore::CaJournalEntry>> MeteredDataStore::ListCaJournal(
    const std::string& server_id) {
  return Meter(kListCaJournal, [&] { return inner_->ListCaJournal(server_id); });
}

absl::Status MeteredDataStore::DeleteCaJournalEntry(const std::string& server_id,
                                                    datastore::AuthorityKind kind,
                                                    const std::string& authority_id) {
  return Meter(kDeleteCaJournalEntry,
               [&] { return inner_->DeleteCaJournalEntry(server_id, kind, authority_id); });
}

absl::StatusOr<datastore::FederationRelationship> MeteredDataStore::CreateFederationRelationship(
    const datastore::FederationRelationship& relationship) {
  return Meter(kCreateFederationRelationship,
               [&] { return inner_->CreateFederationRelationship(relationship); });
}

absl::StatusOr<datastore::FederationRelationship> MeteredDataStore::GetFederationRelationship(
    const std::string& trust_domain) {
  return Meter(kGetFederationRelationship,
               [&] { return inner_->GetFederationRelationship(trust_domain); });
}

absl::StatusOr<datastore::FederationRelationship> MeteredDataStore::UpdateFederationRelationship(
    const datastore::FederationRelationship& relationship) {
  return Meter(kUpdateFederationRelationship,
               [&] { return inner_->UpdateFederationRelationship(relationship); });
}

absl::Status MeteredDataStore::DeleteFederationRelationship(const std::string& trust_domain) {
  return Meter(kDeleteFederationRelationship,
               [&] { return inner_->DeleteFederationRelationship(trust_domain); });
}

absl::StatusOr<std::vector<datastore::FederationRelationship>>
MeteredDataStore::ListFederationRelationships() {
  return Meter(kListFederationRelationships, [&] { return inner_->ListFederationRelationships(); });
}

absl::StatusOr<std::vector<datastore::Event>> MeteredDataStore::ListEvents(int64_t after_id,
                                                                           int32_t limit) {
  return Meter(kListEvents, [&] { return inner_->ListEvents(after_id, limit); });
}

absl::StatusOr<int64_t> MeteredDataStore::PruneEvents(absl::Time older_than) {
  return Meter(kPruneEvents, [&] { return inner_->PruneEvents(older_than); });
}

absl::StatusOr<int64_t> MeteredDataStore::MaxEventId() {
  return Meter(kMaxEventId, [&] { return inner_->MaxEventId(); });
}

std::unique_ptr<datastore::ChangeSubscription> MeteredDataStore::SubscribeChanges(
    std::function<void()> on_change) {
  // Registers a listener: no datastore call to time.
  return inner_->SubscribeChanges(std::move(on_change));
}

absl::StatusOr<int> MeteredDataStore::SchemaVersion() {
  return Meter(kSchemaVersion, [&] { return inner_->SchemaVersion(); });
}

int64_t MeteredDataStore::Transactions() const { return inner_->Transactions(); }

}  // namespace trellis::runtime
