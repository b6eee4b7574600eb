// Enum names and whole-record masks for the DataStore value types.
#include "datastore/types.h"

#include <initializer_list>

namespace trellis::datastore {
namespace {

// The value among `all` whose name is `text`.
template <typename E>
std::optional<E> ParseName(absl::string_view text, const char* (*name)(E),
                           std::initializer_list<E> all) {
  for (E e : all) {
    if (text == name(e)) return e;
  }
  return std::nullopt;
}

}  // namespace

EntryMask EntryMask::All() {
  return EntryMask{true, true, true, true, true, true, true, true, true, true, true};
}
NodeMask NodeMask::All() { return NodeMask{true, true, true, true, true, true, true}; }

const char* MatchModeName(MatchMode m) {
  switch (m) {
    case MatchMode::kExact:
      return "exact";
    case MatchMode::kSubset:
      return "subset";
    case MatchMode::kSuperset:
      return "superset";
    case MatchMode::kAny:
      return "any";
  }
  return "?";
}
const char* EventKindName(EventKind k) {
  switch (k) {
    case EventKind::kEntryCreated:
      return "entry_created";
    case EventKind::kEntryUpdated:
      return "entry_updated";
    case EventKind::kEntryDeleted:
      return "entry_deleted";
    case EventKind::kNodeCreated:
      return "node_created";
    case EventKind::kNodeUpdated:
      return "node_updated";
    case EventKind::kNodeDeleted:
      return "node_deleted";
    case EventKind::kBundleUpdated:
      return "bundle_updated";
  }
  return "?";
}
const char* AuthorityKindName(AuthorityKind k) {
  return k == AuthorityKind::kX509 ? "x509" : "jwt";
}
const char* AuthorityStatusName(AuthorityStatus s) {
  switch (s) {
    case AuthorityStatus::kPrepared:
      return "prepared";
    case AuthorityStatus::kActive:
      return "active";
    case AuthorityStatus::kOld:
      return "old";
  }
  return "?";
}
const char* BundleEndpointProfileName(BundleEndpointProfile p) {
  return p == BundleEndpointProfile::kHttpsWeb ? "https_web" : "https_spiffe";
}

std::optional<EventKind> ParseEventKind(absl::string_view name) {
  return ParseName(name, &EventKindName,
                   {EventKind::kEntryCreated, EventKind::kEntryUpdated, EventKind::kEntryDeleted,
                    EventKind::kNodeCreated, EventKind::kNodeUpdated, EventKind::kNodeDeleted,
                    EventKind::kBundleUpdated});
}
std::optional<AuthorityKind> ParseAuthorityKind(absl::string_view name) {
  return ParseName(name, &AuthorityKindName, {AuthorityKind::kX509, AuthorityKind::kJwt});
}
std::optional<AuthorityStatus> ParseAuthorityStatus(absl::string_view name) {
  return ParseName(name, &AuthorityStatusName,
                   {AuthorityStatus::kPrepared, AuthorityStatus::kActive, AuthorityStatus::kOld});
}
std::optional<BundleEndpointProfile> ParseBundleEndpointProfile(absl::string_view name) {
  return ParseName(name, &BundleEndpointProfileName,
                   {BundleEndpointProfile::kHttpsWeb, BundleEndpointProfile::kHttpsSpiffe});
}

}  // namespace trellis::datastore
