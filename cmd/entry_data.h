// Entry files for bulk commands, in the JSON shape SPIRE's CLI reads: `entry create|update
// -data FILE` ({"entries": [...]}) and `entry delete -file FILE` ({"ids": [...]}).
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "trellis/server/v1/types.pb.h"

namespace trellis::cmd {

// Each entry may carry: id, spiffe_id and parent_id (a "spiffe://..." string, or SPIRE's
// {"trust_domain": ..., "path": ...} object), selectors ([{"type", "value"}]), x509_svid_ttl
// (or the older "ttl"), jwt_svid_ttl, federates_with, admin, downstream, dns_names,
// expires_at, hint. An unknown key, a wrong type or a missing required field is
// INVALID_ARGUMENT naming the entry's position and the key; `for_update` requires ids.
absl::StatusOr<std::vector<server::v1::Entry>> ParseEntryData(std::string_view json,
                                                              bool for_update);

// {"ids": ["...", ...]}: the ids of the entries to delete.
absl::StatusOr<std::vector<std::string>> ParseEntryIds(std::string_view json);

// The file's contents, or standard input for "-".
absl::StatusOr<std::string> ReadDataFile(const std::string& path);

}  // namespace trellis::cmd
