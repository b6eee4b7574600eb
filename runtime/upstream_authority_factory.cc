// CreateUpstreamAuthority: maps the UpstreamAuthority plugin block to an implementation.
#include "runtime/upstream_authority_factory.h"

#include <type_traits>
#include <variant>

#include "downstream/spire_upstream_authority.h"
#include "upstream/disk_upstream_authority.h"

namespace trellis::runtime {

namespace config = common::config;

absl::StatusOr<std::unique_ptr<server::UpstreamAuthority>> CreateUpstreamAuthority(
    const config::UpstreamAuthorityConfig& config, const common::TrustDomain& td,
    const common::Clock& clock) {
  return std::visit(
      [&](const auto& c) -> absl::StatusOr<std::unique_ptr<server::UpstreamAuthority>> {
        using T = std::decay_t<decltype(c)>;
        if constexpr (std::is_same_v<T, config::DiskUpstreamAuthorityConfig>) {
          return upstream::CreateDiskUpstreamAuthority(
              {c.cert_file_path, c.key_file_path, c.bundle_file_path}, clock);
        } else {
          static_assert(std::is_same_v<T, config::SpireUpstreamAuthorityConfig>,
                        "every UpstreamAuthority configuration needs its branch here");
          downstream::SpireUpstreamOptions options(td);
          options.server_address = c.server_address;
          options.server_port = c.server_port;
          options.workload_api_socket = c.workload_api_socket;
          return downstream::CreateSpireUpstreamAuthority(std::move(options));
        }
      },
      config);
}

}  // namespace trellis::runtime
