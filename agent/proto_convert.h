// trellis.server.v1 entries the agent receives, turned into the Workload API's entries. Bundles
// and chains go through transport/wire_convert.
#pragma once

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "trellis/server/v1/types.pb.h"
#include "workload_api/identity_snapshot.h"

namespace trellis::agent {

// Selectors as "type:value"; federated trust domains by name.
absl::StatusOr<std::shared_ptr<const workload_api::CachedEntry>> EntryFromProto(
    const server::v1::Entry& e);
// A trust domain's canonical name, or `name` itself when it does not parse (the server's
// spelling is kept so the entry still names it).
std::string TrustDomainName(const std::string& name);

}  // namespace trellis::agent
