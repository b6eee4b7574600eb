// Bootstrap from trust_bundle_url: one HTTPS GET verified with the system's Web PKI roots.
#pragma once

#include <string>

#include "absl/status/statusor.h"
#include "common/https_url.h"

namespace trellis::agent {

using common::HttpsUrl;
using common::ParseHttpsUrl;

// GET over TLS (certificate and host name verified against the default trust store); the
// body of a 200 answer, at most 1 MiB. UNAVAILABLE when the server cannot be reached or
// answers otherwise.
absl::StatusOr<std::string> HttpsGet(const std::string& url);

}  // namespace trellis::agent
