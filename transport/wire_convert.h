// trellis.server.v1 wire messages to and from the common types, shared by the agent and the
// server: trust bundles, certificate chains, selectors as "type:value" text, wire times.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "common/bundle.h"
#include "common/x509.h"
#include "trellis/server/v1/types.pb.h"

namespace trellis::transport {

// Every authority parsed into a common::Bundle (a repeated CA certificate is kept once);
// sequence kept, refresh hint when positive. The first defect fails with the error of the
// parser or of common::Bundle that found it.
absl::StatusOr<common::Bundle> BundleFromProto(const server::v1::Bundle& proto);
// The authorities, sequence and refresh hint (0 without one). A common::Bundle holds no taint
// flags or JWT key expiry, so the message carries none.
server::v1::Bundle BundleToProto(const common::Bundle& bundle);

// Each DER certificate parsed, in order; the first that does not parse fails with its error.
absl::StatusOr<std::vector<common::Certificate>> CertificatesFromDer(
    const google::protobuf::RepeatedPtrField<std::string>& ders);
// An SVID's chain, leaf first. INVALID_ARGUMENT for an empty chain or a certificate that does
// not parse.
absl::StatusOr<std::vector<common::Certificate>> ChainFromProto(const server::v1::X509SVID& svid);

// "type:value", as the CLI, SPIRE and the Workload API's entries write selectors.
std::string SelectorText(const server::v1::Selector& selector);
// Splits at the first ':' (the value may itself hold ':'). INVALID_ARGUMENT when either side
// is empty or there is no ':'.
absl::StatusOr<server::v1::Selector> SelectorFromText(const std::string& text);
// INVALID_ARGUMENT naming `field` when the type or the value is empty or the type holds ':'.
absl::Status CheckSelector(const server::v1::Selector& selector, const std::string& field);

// Wire times are Unix seconds with 0 for "never" (the infinite future).
int64_t ToUnixOrZero(absl::Time t);
absl::Time FromUnixOrInfinite(int64_t seconds);

}  // namespace trellis::transport
