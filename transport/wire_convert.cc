// Wire <-> common conversions for the trellis.server.v1 messages.
#include "transport/wire_convert.h"

#include "common/keys.h"
#include "common/spiffe_id.h"
#include "common/status.h"

namespace trellis::transport {

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

v1::Bundle BundleToProto(const common::Bundle& bundle) {
  v1::Bundle out;
  out.set_trust_domain(bundle.trust_domain().name());
  for (const auto& c : bundle.x509_authorities()) out.add_x509_authorities()->set_asn1(c.der());
  for (const auto& [kid, key] : bundle.jwt_authorities()) {
    v1::JWTAuthority* j = out.add_jwt_authorities();
    j->set_key_id(kid);
    j->set_public_key(key.spki_der());
  }
  out.set_sequence_number(bundle.sequence());
  out.set_refresh_hint(bundle.refresh_hint_seconds().value_or(0));
  return out;
}

absl::StatusOr<std::vector<common::Certificate>> CertificatesFromDer(
    const google::protobuf::RepeatedPtrField<std::string>& ders) {
  std::vector<common::Certificate> out;
  out.reserve(ders.size());
  for (const std::string& der : ders) {
    TRELLIS_ASSIGN_OR_RETURN(common::Certificate cert, common::Certificate::FromDer(der));
    out.push_back(std::move(cert));
  }
  return out;
}

absl::StatusOr<std::vector<common::Certificate>> ChainFromProto(const v1::X509SVID& svid) {
  TRELLIS_ASSIGN_OR_RETURN(std::vector<common::Certificate> chain,
                           CertificatesFromDer(svid.cert_chain()));
  if (chain.empty()) return absl::InvalidArgumentError("server returned an empty SVID chain");
  return chain;
}

std::string SelectorText(const v1::Selector& selector) {
  return selector.type() + ":" + selector.value();
}

absl::StatusOr<v1::Selector> SelectorFromText(const std::string& text) {
  size_t colon = text.find(':');
  if (colon == std::string::npos || colon == 0 || colon + 1 == text.size()) {
    return absl::InvalidArgumentError("selector \"" + text + "\" is not of the form type:value");
  }
  v1::Selector out;
  out.set_type(text.substr(0, colon));
  out.set_value(text.substr(colon + 1));
  return out;
}

absl::Status CheckSelector(const v1::Selector& selector, const std::string& field) {
  const std::string& type = selector.type();
  if (type.empty()) return absl::InvalidArgumentError(field + ": selector type is empty");
  if (type.find(':') != std::string::npos) {
    return absl::InvalidArgumentError(field + ": selector type \"" + type + "\" holds ':'");
  }
  if (selector.value().empty()) {
    return absl::InvalidArgumentError(field + ": selector \"" + type + "\" has an empty value");
  }
  return absl::OkStatus();
}

int64_t ToUnixOrZero(absl::Time t) {
  return t == absl::InfiniteFuture() ? 0 : absl::ToUnixSeconds(t);
}

absl::Time FromUnixOrInfinite(int64_t seconds) {
  return seconds == 0 ? absl::InfiniteFuture() : absl::FromUnixSeconds(seconds);
}

}  // namespace trellis::transport
