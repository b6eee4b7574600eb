// Building Workload API responses from a snapshot, and wiping the private keys a response
// held once it has been sent.
#pragma once

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "workload.pb.h"
#include "workload_api/identity_snapshot.h"

namespace trellis::workload_api {

// UNAVAILABLE before the first sync; PERMISSION_DENIED when no identity matches.
absl::StatusOr<X509SVIDResponse> RenderX509Svids(const IdentitySnapshot& snap,
                                                 const std::vector<std::string>& selectors);
// UNAVAILABLE before the first sync.
absl::StatusOr<X509BundlesResponse> RenderX509Bundles(const IdentitySnapshot& snap,
                                                      const std::vector<std::string>& selectors);
absl::StatusOr<JWTBundlesResponse> RenderJwtBundles(const IdentitySnapshot& snap,
                                                    const std::vector<std::string>& selectors);

// Overwrites secret bytes in place (X.509-SVID private keys); other responses hold none.
void WipeSecrets(X509SVIDResponse* resp);
inline void WipeSecrets(X509BundlesResponse*) {}
inline void WipeSecrets(JWTBundlesResponse*) {}
// Overwrites then clears a string that held a serialised response.
void WipeString(std::string* bytes);

}  // namespace trellis::workload_api
