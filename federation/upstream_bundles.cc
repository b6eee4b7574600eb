// Mirroring the upstream's federated bundles into this server's datastore.
#include "federation/upstream_bundles.h"

#include "common/log.h"
#include "common/status.h"

namespace trellis::federation {

using common::LogInfo;
using common::LogWarn;

namespace {

bool SameAuthorities(const datastore::Bundle& a, const datastore::Bundle& b) {
  auto x509 = [](const datastore::Bundle& x) {
    std::set<std::string> out;
    for (const auto& c : x.x509_authorities) out.insert(c.ca_der);
    return out;
  };
  auto jwt = [](const datastore::Bundle& x) {
    std::set<std::pair<std::string, std::string>> out;
    for (const auto& k : x.jwt_authorities) out.insert({k.kid, k.public_key_der});
    return out;
  };
  return x509(a) == x509(b) && jwt(a) == jwt(b);
}

}  // namespace

absl::Status UpstreamBundles::Apply(const std::vector<datastore::Bundle>& bundles) {
  absl::MutexLock lock(&mu_);
  TRELLIS_ASSIGN_OR_RETURN(std::vector<datastore::FederationRelationship> local,
                           ds_->ListFederationRelationships());
  std::set<std::string> own_relationships;
  for (const auto& r : local) own_relationships.insert(r.trust_domain);
  bool wrote = false;
  std::set<std::string> now;
  absl::Status first_error;
  // Each bundle on its own: one the datastore refuses does not hold back the others, nor the
  // removals below.
  for (const datastore::Bundle& b : bundles) {
    if (b.trust_domain == own_.name() || own_relationships.count(b.trust_domain)) continue;
    now.insert(b.trust_domain);
    absl::StatusOr<datastore::Bundle> stored = ds_->GetBundle(b.trust_domain);
    if (stored.ok() && SameAuthorities(*stored, b)) continue;
    absl::Status st = stored.ok() || stored.status().code() == absl::StatusCode::kNotFound
                          ? ds_->SetBundle(b).status()
                          : stored.status();
    if (!st.ok()) {
      if (first_error.ok()) {
        first_error = absl::Status(
            st.code(), "federated bundle of " + b.trust_domain + ": " + std::string(st.message()));
      }
      continue;
    }
    LogInfo("Federated bundle from the upstream server stored", {{"trust_domain", b.trust_domain}});
    wrote = true;
  }
  for (auto it = received_.begin(); it != received_.end();) {
    if (now.count(*it) || own_relationships.count(*it)) {
      ++it;
      continue;
    }
    absl::Status st = ds_->DeleteBundle(*it, datastore::BundleDeleteMode::kRestrict);
    if (st.ok() || st.code() == absl::StatusCode::kNotFound) {
      LogInfo("Federated bundle removed upstream, deleted here", {{"trust_domain", *it}});
      wrote = wrote || st.ok();
      it = received_.erase(it);
      continue;
    }
    LogWarn("Federated bundle removed upstream is kept: entries here still federate with it",
            {{"trust_domain", *it}, {"error", std::string(st.message())}});
    ++it;
  }
  received_.insert(now.begin(), now.end());
  if (wrote && after_write_) after_write_();
  return first_error;
}

}  // namespace trellis::federation
