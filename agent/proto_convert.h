// trellis.server.v1 messages the agent receives, turned into common and Workload API types.
#pragma once

#include <vector>

#include "absl/status/statusor.h"
#include "common/bundle.h"
#include "common/x509.h"
#include "trellis/server/v1/types.pb.h"
#include "workload_api/identity_snapshot.h"

namespace trellis::agent {

// Every authority parsed; sequence and refresh hint kept.
absl::StatusOr<common::Bundle> BundleFromProto(const server::v1::Bundle& proto);
// INVALID_ARGUMENT for an empty chain or a certificate that does not parse.
absl::StatusOr<std::vector<common::Certificate>> ChainFromProto(const server::v1::X509SVID& svid);
// Selectors as "type:value"; federated trust domains by name.
absl::StatusOr<workload_api::CachedEntry> EntryFromProto(const server::v1::Entry& e);

}  // namespace trellis::agent
