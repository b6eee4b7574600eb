// Parsing of the bundles, chains and entries the server sends.
#include "agent/proto_convert.h"

#include "common/status.h"

namespace trellis::agent {

namespace v1 = ::trellis::server::v1;

absl::StatusOr<common::Bundle> BundleFromProto(const v1::Bundle& proto) {
  TRELLIS_ASSIGN_OR_RETURN(common::TrustDomain td,
                           common::TrustDomain::Parse(proto.trust_domain()));
  common::Bundle bundle(td);
  for (const auto& a : proto.x509_authorities()) {
    TRELLIS_ASSIGN_OR_RETURN(common::Certificate cert, common::Certificate::FromDer(a.asn1()));
    TRELLIS_RETURN_IF_ERROR(bundle.AddX509Authority(cert));
  }
  for (const auto& a : proto.jwt_authorities()) {
    TRELLIS_ASSIGN_OR_RETURN(common::PublicKey key, common::PublicKey::FromSpkiDer(a.public_key()));
    TRELLIS_RETURN_IF_ERROR(bundle.AddJwtAuthority(a.key_id(), key));
  }
  bundle.set_sequence(proto.sequence_number());
  if (proto.refresh_hint() > 0) bundle.set_refresh_hint_seconds(proto.refresh_hint());
  return bundle;
}

absl::StatusOr<std::vector<common::Certificate>> ChainFromProto(const v1::X509SVID& svid) {
  std::vector<common::Certificate> chain;
  for (const std::string& der : svid.cert_chain()) {
    TRELLIS_ASSIGN_OR_RETURN(common::Certificate cert, common::Certificate::FromDer(der));
    chain.push_back(std::move(cert));
  }
  if (chain.empty()) return absl::InvalidArgumentError("server returned an empty SVID chain");
  return chain;
}

absl::StatusOr<workload_api::CachedEntry> EntryFromProto(const v1::Entry& e) {
  TRELLIS_ASSIGN_OR_RETURN(common::SpiffeId id, common::SpiffeId::Parse(e.spiffe_id()));
  workload_api::CachedEntry entry{
      e.id(), id, {}, {}, e.hint(), e.revision_number(), e.created_at(), e.jwt_svid_ttl()};
  for (const auto& s : e.selectors()) entry.selectors.push_back(s.type() + ":" + s.value());
  for (const auto& td : e.federates_with()) {
    auto parsed = common::TrustDomain::Parse(td);
    entry.federates_with.push_back(parsed.ok() ? parsed->name() : td);
  }
  return entry;
}

}  // namespace trellis::agent
