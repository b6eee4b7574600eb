// Conversions between the trellis.server.v1 wire messages and the datastore types, with the
// input checks the admin and agent APIs share. Conversions to and from the common types
// (bundles, chains, selector text, wire times) are transport/wire_convert's.
#pragma once

#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "common/spiffe_id.h"
#include "datastore/types.h"
#include "trellis/server/v1/types.pb.h"

namespace trellis::server {

v1::Selector SelectorToProto(const datastore::Selector& s);
// INVALID_ARGUMENT naming `field` when type or value is empty or the type holds ':'.
absl::StatusOr<datastore::Selector> SelectorFromProto(const v1::Selector& s,
                                                      const std::string& field);

v1::Entry EntryToProto(const datastore::RegistrationEntry& e);
// Checks every field an operator can get wrong: SPIFFE ID and parent ID in `td` (the SPIFFE ID
// with a path), at least one selector, non-negative TTLs, federated trust domains other than
// `td`, DNS names. INVALID_ARGUMENT names the field.
absl::StatusOr<datastore::RegistrationEntry> EntryFromProto(const v1::Entry& e,
                                                            const common::TrustDomain& td);

v1::AttestedNode NodeToProto(const datastore::AttestedNode& n);

// Taint flags and JWT key expiry included.
v1::Bundle BundleToProto(const datastore::Bundle& b);
// Parses every authority (CA certificates, SPKI keys) and checks what an operator can get
// wrong (non-CA certificates, empty or repeated key IDs, a negative refresh hint).
// INVALID_ARGUMENT names the field.
absl::StatusOr<datastore::Bundle> BundleFromProto(const v1::Bundle& b);

}  // namespace trellis::server
