// UpstreamAuthority "disk": the X.509 CA signed by an operator-held certificate and key.
#pragma once

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "common/clock.h"
#include "server/upstream_authority.h"

namespace trellis::upstream {

// UpstreamAuthority "disk": an operator-held CA certificate and key on disk. The bundle file
// holds the roots when the certificate is itself an intermediate; without it the certificate
// must be self-signed and is the root.
struct DiskUpstreamOptions {
  std::string cert_file_path;
  std::string key_file_path;
  std::string bundle_file_path;  // optional
};
absl::StatusOr<std::unique_ptr<server::UpstreamAuthority>> CreateDiskUpstreamAuthority(
    const DiskUpstreamOptions& options, const common::Clock& clock);

}  // namespace trellis::upstream
