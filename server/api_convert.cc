// Wire <-> storage conversions for the server APIs.
#include "server/api_convert.h"

#include <set>

#include "absl/strings/ascii.h"
#include "common/keys.h"
#include "common/status.h"
#include "common/x509.h"
#include "transport/wire_convert.h"

namespace trellis::server {

using transport::FromUnixOrInfinite;
using transport::ToUnixOrZero;

namespace {

absl::Status Invalid(const std::string& field, const std::string& what) {
  return absl::InvalidArgumentError(field + ": " + what);
}

// Hostnames (optionally a leading "*." wildcard label), as X.509 DNS SANs allow.
bool ValidDnsName(const std::string& name) {
  if (name.empty() || name.size() > 253) return false;
  std::string rest = name;
  if (rest.rfind("*.", 0) == 0) rest = rest.substr(2);
  size_t start = 0;
  while (true) {
    size_t dot = rest.find('.', start);
    std::string label =
        rest.substr(start, dot == std::string::npos ? std::string::npos : dot - start);
    if (label.empty() || label.size() > 63 || label.front() == '-' || label.back() == '-') {
      return false;
    }
    for (char c : label) {
      if (!absl::ascii_isalnum(static_cast<unsigned char>(c)) && c != '-') return false;
    }
    if (dot == std::string::npos) return true;
    start = dot + 1;
  }
}

absl::StatusOr<common::SpiffeId> IdInTrustDomain(const std::string& text,
                                                 const common::TrustDomain& td,
                                                 const std::string& field) {
  if (text.empty()) return Invalid(field, "is required");
  absl::StatusOr<common::SpiffeId> id = common::SpiffeId::Parse(text);
  if (!id.ok()) return Invalid(field, std::string(id.status().message()));
  if (!id->MemberOf(td)) {
    return Invalid(field, "\"" + text + "\" is not in trust domain \"" + td.name() + "\"");
  }
  return id;
}

}  // namespace

v1::Selector SelectorToProto(const datastore::Selector& s) {
  v1::Selector out;
  out.set_type(s.type);
  out.set_value(s.value);
  return out;
}

absl::StatusOr<datastore::Selector> SelectorFromProto(const v1::Selector& s,
                                                      const std::string& field) {
  TRELLIS_RETURN_IF_ERROR(transport::CheckSelector(s, field));
  return datastore::Selector{s.type(), s.value()};
}

v1::Entry EntryToProto(const datastore::RegistrationEntry& e) {
  v1::Entry out;
  out.set_id(e.id);
  out.set_spiffe_id(e.spiffe_id);
  out.set_parent_id(e.parent_id);
  for (const auto& s : e.selectors) *out.add_selectors() = SelectorToProto(s);
  out.set_x509_svid_ttl(e.x509_svid_ttl);
  out.set_jwt_svid_ttl(e.jwt_svid_ttl);
  for (const auto& td : e.federates_with) out.add_federates_with(td);
  out.set_admin(e.admin);
  out.set_downstream(e.downstream);
  for (const auto& d : e.dns_names) out.add_dns_names(d);
  out.set_expires_at(ToUnixOrZero(e.expires_at));
  out.set_revision_number(e.revision_number);
  out.set_hint(e.hint);
  out.set_created_at(absl::ToUnixSeconds(e.created_at));
  return out;
}

absl::StatusOr<datastore::RegistrationEntry> EntryFromProto(const v1::Entry& e,
                                                            const common::TrustDomain& td) {
  datastore::RegistrationEntry out;
  out.id = e.id();
  absl::StatusOr<common::SpiffeId> spiffe_id = IdInTrustDomain(e.spiffe_id(), td, "spiffe_id");
  if (!spiffe_id.ok()) return spiffe_id.status();
  if (spiffe_id->IsTrustDomainId()) return Invalid("spiffe_id", "must have a path");
  absl::StatusOr<common::SpiffeId> parent_id = IdInTrustDomain(e.parent_id(), td, "parent_id");
  if (!parent_id.ok()) return parent_id.status();
  out.spiffe_id = spiffe_id->String();
  out.parent_id = parent_id->String();
  if (e.selectors().empty()) return Invalid("selectors", "at least one selector is required");
  std::set<datastore::Selector> seen;
  for (const auto& s : e.selectors()) {
    absl::StatusOr<datastore::Selector> sel = SelectorFromProto(s, "selectors");
    if (!sel.ok()) return sel.status();
    if (seen.insert(*sel).second) out.selectors.push_back(*sel);
  }
  if (e.x509_svid_ttl() < 0) return Invalid("x509_svid_ttl", "must not be negative");
  if (e.jwt_svid_ttl() < 0) return Invalid("jwt_svid_ttl", "must not be negative");
  out.x509_svid_ttl = e.x509_svid_ttl();
  out.jwt_svid_ttl = e.jwt_svid_ttl();
  for (const auto& name : e.federates_with()) {
    absl::StatusOr<common::TrustDomain> fed = common::TrustDomain::Parse(name);
    if (!fed.ok()) return Invalid("federates_with", std::string(fed.status().message()));
    if (*fed == td) return Invalid("federates_with", "cannot federate with its own trust domain");
    out.federates_with.push_back(fed->name());
  }
  out.admin = e.admin();
  out.downstream = e.downstream();
  for (const auto& d : e.dns_names()) {
    if (!ValidDnsName(d)) return Invalid("dns_names", "\"" + d + "\" is not a valid DNS name");
    out.dns_names.push_back(d);
  }
  if (e.expires_at() < 0) return Invalid("expires_at", "must not be negative");
  out.expires_at = FromUnixOrInfinite(e.expires_at());
  out.hint = e.hint();
  return out;
}

v1::AttestedNode NodeToProto(const datastore::AttestedNode& n) {
  v1::AttestedNode out;
  out.set_spiffe_id(n.spiffe_id);
  out.set_attestation_type(n.attestation_data_type);
  out.set_cert_serial_number(n.cert_serial_number);
  out.set_cert_not_after(absl::ToUnixSeconds(n.cert_not_after));
  out.set_new_cert_serial_number(n.new_cert_serial_number);
  out.set_new_cert_not_after(
      n.new_cert_serial_number.empty() ? 0 : absl::ToUnixSeconds(n.new_cert_not_after));
  out.set_banned(n.banned);
  for (const auto& s : n.selectors) *out.add_selectors() = SelectorToProto(s);
  out.set_can_reattest(n.can_reattest);
  return out;
}

v1::Bundle BundleToProto(const datastore::Bundle& b) {
  v1::Bundle out;
  out.set_trust_domain(b.trust_domain);
  for (const auto& a : b.x509_authorities) {
    v1::X509Authority* x = out.add_x509_authorities();
    x->set_asn1(a.ca_der);
    x->set_tainted(a.tainted);
  }
  for (const auto& a : b.jwt_authorities) {
    v1::JWTAuthority* j = out.add_jwt_authorities();
    j->set_key_id(a.kid);
    j->set_public_key(a.public_key_der);
    j->set_expires_at(ToUnixOrZero(a.expires_at));
    j->set_tainted(a.tainted);
  }
  out.set_sequence_number(static_cast<uint64_t>(b.sequence_number));
  out.set_refresh_hint(b.refresh_hint_seconds);
  return out;
}

absl::StatusOr<datastore::Bundle> BundleFromProto(const v1::Bundle& b) {
  absl::StatusOr<common::TrustDomain> td = common::TrustDomain::Parse(b.trust_domain());
  if (!td.ok()) return Invalid("trust_domain", std::string(td.status().message()));
  datastore::Bundle out;
  out.trust_domain = td->name();
  if (b.refresh_hint() < 0) return Invalid("refresh_hint", "must not be negative");
  out.refresh_hint_seconds = b.refresh_hint();
  // Informational on input: stores assign their own sequence numbers.
  out.sequence_number = static_cast<int64_t>(b.sequence_number());
  for (int i = 0; i < b.x509_authorities_size(); ++i) {
    const std::string field = "x509_authorities[" + std::to_string(i) + "]";
    absl::StatusOr<common::Certificate> cert =
        common::Certificate::FromDer(b.x509_authorities(i).asn1());
    if (!cert.ok()) return Invalid(field, std::string(cert.status().message()));
    if (!cert->IsCa()) return Invalid(field, "is not a CA certificate");
    out.x509_authorities.push_back(
        {cert->der(), cert->not_after(), b.x509_authorities(i).tainted()});
  }
  std::set<std::string> kids;
  for (int i = 0; i < b.jwt_authorities_size(); ++i) {
    const v1::JWTAuthority& j = b.jwt_authorities(i);
    const std::string field = "jwt_authorities[" + std::to_string(i) + "]";
    if (j.key_id().empty()) return Invalid(field, "key_id is empty");
    if (!kids.insert(j.key_id()).second) return Invalid(field, "key_id repeats");
    absl::StatusOr<common::PublicKey> key = common::PublicKey::FromSpkiDer(j.public_key());
    if (!key.ok()) return Invalid(field, std::string(key.status().message()));
    out.jwt_authorities.push_back(
        {j.key_id(), j.public_key(), FromUnixOrInfinite(j.expires_at()), j.tainted()});
  }
  return out;
}

}  // namespace trellis::server
