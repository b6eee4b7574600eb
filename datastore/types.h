// Value types the DataStore reads and writes: bundles, entries, nodes, tokens, CA journal.
#pragma once

#include <compare>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/strings/string_view.h"
#include "absl/time/time.h"

namespace trellis::datastore {

// A (type, value) pair such as ("unix", "uid:1000"); both parts non-empty.
struct Selector {
  std::string type;
  std::string value;
  auto operator<=>(const Selector&) const = default;
};

// How a filter's set relates to the set stored on a row.
enum class MatchMode {
  kExact,     // row's set equals the filter's set
  kSubset,    // row's set is a subset of the filter's set
  kSuperset,  // row's set contains every element of the filter's set
  kAny,       // row's set shares at least one element with the filter's set
};

struct SelectorFilter {
  std::vector<Selector> selectors;
  MatchMode match = MatchMode::kSuperset;
};

struct FederatesWithFilter {
  std::vector<std::string> trust_domains;
  MatchMode match = MatchMode::kSuperset;
};

// ---- Bundles -------------------------------------------------------------------------------

struct X509Authority {
  std::string ca_der;  // DER of one CA certificate
  absl::Time expires_at = absl::UnixEpoch();
  bool tainted = false;
  bool operator==(const X509Authority&) const = default;
};

struct JwtAuthority {
  std::string kid;
  std::string public_key_der;  // SubjectPublicKeyInfo DER
  absl::Time expires_at = absl::UnixEpoch();
  bool tainted = false;
  bool operator==(const JwtAuthority&) const = default;
};

// The trust anchors of one trust domain (ours or a federated one).
struct Bundle {
  std::string trust_domain;  // bare name, e.g. "example.org"
  std::vector<X509Authority> x509_authorities;
  std::vector<JwtAuthority> jwt_authorities;
  int64_t refresh_hint_seconds = 0;
  // Set by the store; increases on every change to the bundle.
  int64_t sequence_number = 0;
};

// What DeleteBundle does with entries that federate with the deleted trust domain.
enum class BundleDeleteMode {
  kRestrict,    // refuse with FAILED_PRECONDITION while any entry federates with it
  kDissociate,  // drop the trust domain from those entries' federates_with
  kDelete,      // delete those entries
};

// ---- Registration entries -----------------------------------------------------------------

struct RegistrationEntry {
  std::string id;  // generated (UUID form) when empty on create
  std::string spiffe_id;
  std::string parent_id;
  std::vector<Selector> selectors;          // at least one
  int32_t x509_svid_ttl = 0;                // seconds; 0 means the server default
  int32_t jwt_svid_ttl = 0;                 // seconds; 0 means the server default
  std::vector<std::string> federates_with;  // trust domain names
  bool admin = false;
  bool downstream = false;
  std::vector<std::string> dns_names;
  absl::Time expires_at = absl::InfiniteFuture();  // InfiniteFuture: never expires
  std::string hint;
  // Set by the store.
  int64_t revision_number = 0;
  absl::Time created_at = absl::UnixEpoch();
};

// Which fields UpdateEntry writes; unset fields keep their stored value.
struct EntryMask {
  bool spiffe_id = false;
  bool parent_id = false;
  bool selectors = false;
  bool x509_svid_ttl = false;
  bool jwt_svid_ttl = false;
  bool federates_with = false;
  bool admin = false;
  bool downstream = false;
  bool dns_names = false;
  bool expires_at = false;
  bool hint = false;
  static EntryMask All();
};

struct ListEntriesRequest {
  std::optional<std::string> by_spiffe_id;
  std::optional<std::string> by_parent_id;
  std::optional<SelectorFilter> by_selectors;
  std::optional<FederatesWithFilter> by_federates_with;
  std::optional<bool> by_downstream;
  std::optional<std::string> by_hint;
  std::string page_token;  // empty: first page
  int32_t page_size = 0;   // 0: everything
};

struct ListEntriesResponse {
  std::vector<RegistrationEntry> entries;
  std::string next_page_token;  // empty when there is nothing more
};

// ---- Attested nodes -----------------------------------------------------------------------

struct AttestedNode {
  std::string spiffe_id;
  std::string attestation_data_type;  // e.g. "join_token", "x509pop"
  std::string cert_serial_number;
  absl::Time cert_not_after = absl::UnixEpoch();
  std::string new_cert_serial_number;  // set while a renewal is in flight
  absl::Time new_cert_not_after = absl::UnixEpoch();
  bool banned = false;
  bool can_reattest = false;
  // Filled by GetNode/ListNodes only when asked for; written with SetNodeSelectors.
  std::vector<Selector> selectors;
};

struct NodeMask {
  bool attestation_data_type = false;
  bool cert_serial_number = false;
  bool cert_not_after = false;
  bool new_cert_serial_number = false;
  bool new_cert_not_after = false;
  bool banned = false;
  bool can_reattest = false;
  static NodeMask All();
};

struct ListNodesRequest {
  std::optional<bool> by_banned;
  std::optional<std::string> by_attestation_type;
  std::optional<SelectorFilter> by_selectors;
  std::optional<absl::Time> by_expires_before;  // cert_not_after < this
  bool fetch_selectors = false;
  std::string page_token;
  int32_t page_size = 0;
};

struct ListNodesResponse {
  std::vector<AttestedNode> nodes;
  std::string next_page_token;
};

// ---- Join tokens --------------------------------------------------------------------------

struct JoinToken {
  std::string token;
  absl::Time expires_at = absl::UnixEpoch();
};

// ---- CA journal ---------------------------------------------------------------------------

enum class AuthorityKind { kX509, kJwt };
enum class AuthorityStatus { kPrepared, kActive, kOld };

// One X.509 CA or JWT key a server instance prepared, activated or retired; `data` is the
// server's own opaque record (chain, key reference) so it can resume after a restart.
struct CaJournalEntry {
  std::string server_id;
  AuthorityKind kind = AuthorityKind::kX509;
  std::string authority_id;
  AuthorityStatus status = AuthorityStatus::kPrepared;
  std::string data;
  absl::Time not_after = absl::UnixEpoch();
  // Set by the store.
  absl::Time created_at = absl::UnixEpoch();
  absl::Time updated_at = absl::UnixEpoch();
};

// ---- Federation ---------------------------------------------------------------------------

enum class BundleEndpointProfile { kHttpsWeb, kHttpsSpiffe };

struct FederationRelationship {
  std::string trust_domain;
  std::string bundle_endpoint_url;  // https://...
  BundleEndpointProfile profile = BundleEndpointProfile::kHttpsWeb;
  std::string endpoint_spiffe_id;  // required for https_spiffe, empty for https_web
};

// ---- Change log ---------------------------------------------------------------------------

enum class EventKind {
  kEntryCreated,
  kEntryUpdated,
  kEntryDeleted,
  kNodeCreated,
  kNodeUpdated,
  kNodeDeleted,
  // A trust bundle row was written or deleted (own trust domain or federated).
  kBundleUpdated,
};

struct Event {
  int64_t id = 0;
  EventKind kind = EventKind::kEntryCreated;
  std::string entry_id;        // for entry events
  std::string node_spiffe_id;  // for node events
  std::string trust_domain;    // for bundle events
  absl::Time created_at = absl::UnixEpoch();
};

// Text forms used in storage and messages.
const char* MatchModeName(MatchMode m);
const char* EventKindName(EventKind k);
const char* AuthorityKindName(AuthorityKind k);
const char* AuthorityStatusName(AuthorityStatus s);
const char* BundleEndpointProfileName(BundleEndpointProfile p);

// The inverses of the names above; nullopt for any other text.
std::optional<EventKind> ParseEventKind(absl::string_view name);
std::optional<AuthorityKind> ParseAuthorityKind(absl::string_view name);
std::optional<AuthorityStatus> ParseAuthorityStatus(absl::string_view name);
std::optional<BundleEndpointProfile> ParseBundleEndpointProfile(absl::string_view name);

}  // namespace trellis::datastore
