// Parsing of the entries the server sends.
#include "agent/proto_convert.h"

#include "common/spiffe_id.h"
#include "common/status.h"

#include "transport/wire_convert.h"

namespace trellis::agent {

namespace v1 = ::trellis::server::v1;

absl::StatusOr<std::shared_ptr<const workload_api::CachedEntry>> EntryFromProto(
    const v1::Entry& e) {
  TRELLIS_ASSIGN_OR_RETURN(common::SpiffeId id, common::SpiffeId::Parse(e.spiffe_id()));
  std::vector<std::string> selectors, federates_with;
  selectors.reserve(e.selectors_size());
  for (const auto& s : e.selectors()) selectors.push_back(transport::SelectorText(s));
  for (const auto& td : e.federates_with()) federates_with.push_back(TrustDomainName(td));
  return std::make_shared<const workload_api::CachedEntry>(
      e.id(), id, selectors, federates_with, e.hint(), e.revision_number(), e.created_at(),
      e.jwt_svid_ttl());
}

std::string TrustDomainName(const std::string& name) {
  absl::StatusOr<common::TrustDomain> parsed = common::TrustDomain::Parse(name);
  return parsed.ok() ? parsed->name() : name;
}

}  // namespace trellis::agent
