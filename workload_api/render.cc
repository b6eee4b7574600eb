// Response rendering: bundle encodings come ready from the snapshot, keys are copied once,
// straight from their wiped buffers into the message.
#include "workload_api/render.h"

#include <openssl/crypto.h>

#include "common/jwt.h"

namespace trellis::workload_api {
namespace {

constexpr char kNotReady[] = "agent is not ready: no identities synced yet";

}  // namespace

absl::StatusOr<X509SVIDResponse> RenderX509Svids(const IdentitySnapshot& snap,
                                                 const std::vector<std::string>& selectors) {
  if (!snap.ready) return absl::UnavailableError(kNotReady);
  std::vector<Identity> ids = snap.IdentitiesFor(selectors);
  if (ids.empty()) return absl::PermissionDeniedError("no identity issued");
  X509SVIDResponse resp;
  static const std::string kNoBundle;
  const std::string& own_bundle = snap.bundle ? snap.bundle->x509_der() : kNoBundle;
  for (const Identity& id : ids) {
    X509SVID* svid = resp.add_svids();
    svid->set_spiffe_id(std::string(id.entry->spiffe_id()));
    std::string_view chain = id.svid->chain();
    svid->set_x509_svid(chain.data(), chain.size());
    id.svid->KeyPkcs8Der(svid->mutable_x509_svid_key());
    svid->set_bundle(own_bundle);
    svid->set_hint(std::string(id.entry->hint()));
  }
  for (const auto& [td, bundle] : snap.BundlesFor(ids, /*include_own=*/false)) {
    (*resp.mutable_federated_bundles())[td] = bundle->x509_der();
  }
  return resp;
}

absl::StatusOr<X509BundlesResponse> RenderX509Bundles(const IdentitySnapshot& snap,
                                                      const std::vector<std::string>& selectors) {
  if (!snap.ready) return absl::UnavailableError(kNotReady);
  std::vector<Identity> ids = snap.IdentitiesFor(selectors);
  X509BundlesResponse resp;
  for (const auto& [td, bundle] : snap.BundlesFor(ids, /*include_own=*/true)) {
    (*resp.mutable_bundles())[td] = bundle->x509_der();
  }
  return resp;
}

absl::StatusOr<JWTBundlesResponse> RenderJwtBundles(const IdentitySnapshot& snap,
                                                    const std::vector<std::string>& selectors) {
  if (!snap.ready) return absl::UnavailableError(kNotReady);
  std::vector<Identity> ids = snap.IdentitiesFor(selectors);
  JWTBundlesResponse resp;
  for (const auto& [td, bundle] : snap.BundlesFor(ids, /*include_own=*/true)) {
    auto jwks = common::JwksToJson(bundle->bundle().jwt_authorities());
    if (!jwks.ok()) return jwks.status();
    (*resp.mutable_bundles())[td] = *std::move(jwks);
  }
  return resp;
}

void WipeSecrets(X509SVIDResponse* resp) {
  for (X509SVID& svid : *resp->mutable_svids()) {
    std::string* key = svid.mutable_x509_svid_key();
    if (!key->empty()) OPENSSL_cleanse(key->data(), key->size());
    key->clear();
  }
}

void WipeString(std::string* bytes) {
  if (!bytes->empty()) OPENSSL_cleanse(bytes->data(), bytes->size());
  bytes->clear();
}

}  // namespace trellis::workload_api
