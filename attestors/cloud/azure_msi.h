// azure_msi node attestation: an Azure VM proves itself with an access token for its managed
// identity, minted by the Instance Metadata Service (IMDS) and signed by Microsoft Entra ID.
//
// Server side: the token's tenant ("tid") must be configured; the token is verified against
// that tenant's signing keys (RS256), issuer https://sts.windows.net/<tid>/, audience the
// tenant's resource_id, exp/nbf/iat. Any user or service principal of a tenant can get a token
// for a resource, so the token must also be a managed identity's: it must carry "xms_mirid",
// the Azure resource ID of the identity (/subscriptions/<sub>/resourcegroups/<rg>/providers/
// <namespace>/<type>/<name>), which Entra ID puts only in managed identity tokens. The
// identity's principal is the "sub" claim.
// Agent ID spiffe://<td>/spire/agent/azure_msi/<tenant>/<principal> (or agent_path_template).
// Selectors, type "azure_msi": subscription-id:<sub> (SPIRE's name) and, when the identity is
// a VM's system-assigned one (Microsoft.Compute/virtualMachines), vm-name:<rg>:<vm name>
// (SPIRE's name). tenant-id:<tid> and principal-id:<sub> are Trellis's own selectors; since
// every managed identity of a tenant shares its tenant-id, entries should not be written against
// tenant-id alone. SPIRE's further selectors (network security groups, subnets, virtual
// networks) need the Azure Resource Manager API and are not produced here.
#pragma once

#include <map>
#include <memory>
#include <string>

#include "attestors/cloud/jwt_keys.h"
#include "attestors/node/node_attestor.h"
#include "common/clock.h"
#include "common/config/attestor_config.h"

namespace trellis::attestors {

inline constexpr char kAzureMsiName[] = "azure_msi";
inline constexpr char kAzureMsiDefaultResource[] = "https://management.azure.com/";
inline constexpr char kAzureMsiDefaultAgentPathTemplate[] =
    "/{{ .PluginName }}/{{ .TenantID }}/{{ .PrincipalID }}";
// The IMDS API version the agent asks for.
inline constexpr char kAzureImdsApiVersion[] = "2018-02-01";

class AzureMsiServerAttestor final : public ServerNodeAttestor {
 public:
  // INVALID_ARGUMENT for no tenants, a tenant ID that cannot be put in a URL or path, a
  // jwks_url that is neither https:// nor a file path, or a bad agent_path_template. `http`
  // reaches the key endpoints.
  static absl::StatusOr<std::unique_ptr<AzureMsiServerAttestor>> Create(
      common::TrustDomain td, common::config::AzureMsiServerAttestorConfig config,
      const common::Clock& clock, cloud_jwt::HttpOptions http = {});

  std::string Name() const override { return kAzureMsiName; }
  // `payload` is the JSON {"token": "<access token>"}; there is no challenge.
  absl::StatusOr<Result> Attest(
      std::string_view payload,
      const std::function<absl::StatusOr<std::string>(std::string)>& challenge) override;

 private:
  struct Tenant {
    std::string resource_id;
    std::unique_ptr<cloud_jwt::JwtKeyCache> keys;
  };
  AzureMsiServerAttestor(common::TrustDomain td, std::string agent_path_template,
                         bool allow_reattestation, std::map<std::string, Tenant> tenants,
                         const common::Clock& clock)
      : td_(std::move(td)),
        agent_path_template_(std::move(agent_path_template)),
        allow_reattestation_(allow_reattestation),
        tenants_(std::move(tenants)),
        clock_(clock) {}

  const common::TrustDomain td_;
  const std::string agent_path_template_;
  const bool allow_reattestation_;
  const std::map<std::string, Tenant> tenants_;
  const common::Clock& clock_;
};

// Asks IMDS for an access token for `resource_id` with the VM's managed identity.
class AzureMsiAgentAttestor final : public AgentNodeAttestor {
 public:
  // INVALID_ARGUMENT for a metadata_endpoint that is not an http(s):// URL or an empty
  // resource_id.
  static absl::StatusOr<std::unique_ptr<AzureMsiAgentAttestor>> Create(
      const common::config::AzureMsiAgentAttestorConfig& config, cloud_jwt::HttpOptions http = {});

  std::string Name() const override { return kAzureMsiName; }
  // {"token": "<access token>"}. UNAVAILABLE when IMDS cannot be reached or refuses.
  absl::StatusOr<std::string> Payload() override;
  absl::StatusOr<std::string> Answer(std::string_view challenge) override;

 private:
  AzureMsiAgentAttestor(std::string url, cloud_jwt::HttpOptions http)
      : url_(std::move(url)), http_(std::move(http)) {}
  const std::string url_;
  const cloud_jwt::HttpOptions http_;
};

}  // namespace trellis::attestors
