// Fetching a foreign trust domain's bundle from its bundle endpoint, under either profile
// of the SPIFFE federation spec.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "common/bundle.h"
#include "common/spiffe_id.h"
#include "common/x509.h"

namespace trellis::federation {

enum class EndpointProfile { kHttpsWeb, kHttpsSpiffe };

struct BundleEndpointSpec {
  std::string url;  // https://host[:port][/path]
  EndpointProfile profile = EndpointProfile::kHttpsWeb;
  // https_spiffe: the SPIFFE ID the endpoint's X509-SVID must carry, and the X.509
  // authorities of that ID's trust domain that its chain must lead to.
  std::optional<common::SpiffeId> endpoint_spiffe_id;
  std::vector<common::Certificate> endpoint_authorities;
};

// GET of the endpoint, the answer parsed as `trust_domain`'s bundle and checked with
// CheckFetchedBundle. https_web verifies the server against the system's Web PKI roots (the
// OpenSSL default paths, so SSL_CERT_FILE and SSL_CERT_DIR apply) and the URL's host name;
// https_spiffe verifies the server's X509-SVID against `endpoint_authorities` and requires
// exactly `endpoint_spiffe_id`. UNAVAILABLE when the endpoint cannot be reached, fails TLS
// verification or answers other than 200; INVALID_ARGUMENT for a document that is not a
// valid bundle of `trust_domain`.
absl::StatusOr<common::Bundle> FetchBundle(const common::TrustDomain& trust_domain,
                                           const BundleEndpointSpec& spec, absl::Time now,
                                           absl::Duration timeout = absl::Seconds(10));

// A fetched document must be a bundle of `trust_domain`: at least one authority, and no
// X.509 authority naming another trust domain in its URI SAN (CA certificates of a SPIFFE
// trust domain carry spiffe://<trust domain>). INVALID_ARGUMENT naming what is wrong.
absl::Status CheckFetchedBundle(const common::TrustDomain& trust_domain,
                                const common::Bundle& bundle);

}  // namespace trellis::federation
