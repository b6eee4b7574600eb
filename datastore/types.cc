// Enum names and whole-record masks for the DataStore value types.
#include "datastore/types.h"

namespace trellis::datastore {

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

}  // namespace trellis::datastore
