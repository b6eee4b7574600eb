// Conversions between the trellis.server.v1 wire messages and the datastore / common types,
// with the input checks the admin and agent APIs share.
#pragma once

#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "common/spiffe_id.h"
#include "datastore/types.h"
#include "trellis/server/v1/types.pb.h"

namespace trellis::common {
class Bundle;
}

namespace trellis::server {

v1::Selector SelectorToProto(const datastore::Selector& s);
// INVALID_ARGUMENT naming `field` when type or value is empty or the type holds ':'.
absl::StatusOr<datastore::Selector> SelectorFromProto(const v1::Selector& s,
                                                      const std::string& field);
// "type:value" (the value may itself hold ':'), as the CLI and SPIRE write selectors.
absl::StatusOr<datastore::Selector> ParseSelector(const std::string& text);

v1::Entry EntryToProto(const datastore::RegistrationEntry& e);
// Checks every field an operator can get wrong: SPIFFE ID and parent ID in `td` (the SPIFFE ID
// with a path), at least one selector, non-negative TTLs, federated trust domains other than
// `td`, DNS names. INVALID_ARGUMENT names the field.
absl::StatusOr<datastore::RegistrationEntry> EntryFromProto(const v1::Entry& e,
                                                            const common::TrustDomain& td);

v1::AttestedNode NodeToProto(const datastore::AttestedNode& n);

v1::Bundle BundleToProto(const datastore::Bundle& b);
v1::Bundle BundleToProto(const common::Bundle& b);
// Parses every authority (CA certificates, SPKI keys). INVALID_ARGUMENT names the defect.
absl::StatusOr<datastore::Bundle> BundleFromProto(const v1::Bundle& b);
// Datastore bundle to the common form (skipping nothing: a bad stored authority is DATA_LOSS).
absl::StatusOr<common::Bundle> CommonBundleFromDatastore(const datastore::Bundle& b);

// Unix seconds for a time; 0 for the infinite future (the wire's "never").
int64_t ToUnixOrZero(absl::Time t);

}  // namespace trellis::server
