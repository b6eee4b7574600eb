// Maps the typed server configuration onto CaManager::Options.
#include "runtime/ca_manager_options.h"

#include <utility>
#include <variant>

#include "common/status.h"
#include "runtime/upstream_authority_factory.h"

namespace trellis::runtime {

using server::CaManager;

namespace {

common::KeyType FromConfigKeyType(common::config::KeyType t) {
  switch (t) {
    case common::config::KeyType::kEcP256:
      return common::KeyType::kEcP256;
    case common::config::KeyType::kEcP384:
      return common::KeyType::kEcP384;
    case common::config::KeyType::kRsa2048:
      return common::KeyType::kRsa2048;
    case common::config::KeyType::kRsa4096:
      return common::KeyType::kRsa4096;
  }
  return common::KeyType::kEcP256;
}

}  // namespace

absl::StatusOr<CaManager::Options> CaManagerOptionsFromConfig(
    const common::config::ServerConfig& config, const common::Clock& clock) {
  CaManager::Options o(config.trust_domain);
  o.ca_ttl = config.ca_ttl;
  o.default_x509_svid_ttl = config.default_x509_svid_ttl;
  o.default_jwt_svid_ttl = config.default_jwt_svid_ttl;
  o.ca_key_type = FromConfigKeyType(config.ca_key_type);
  o.jwt_key_type = FromConfigKeyType(config.jwt_key_type);
  // Our CA subject holds one value per attribute; SPIRE's lists rarely carry more.
  o.ca_subject.country = config.ca_subject.country.empty() ? "" : config.ca_subject.country.front();
  o.ca_subject.organization =
      config.ca_subject.organization.empty() ? "" : config.ca_subject.organization.front();
  o.ca_subject.common_name = config.ca_subject.common_name;
  o.jwt_issuer = config.jwt_issuer;
  if (config.federation.bundle_endpoint &&
      config.federation.bundle_endpoint->refresh_hint > absl::ZeroDuration()) {
    o.refresh_hint = config.federation.bundle_endpoint->refresh_hint;
  }
  if (config.upstream_authority) {
    TRELLIS_ASSIGN_OR_RETURN(o.upstream, CreateUpstreamAuthority(*config.upstream_authority,
                                                                 config.trust_domain, clock));
  }
  return o;
}

}  // namespace trellis::runtime
