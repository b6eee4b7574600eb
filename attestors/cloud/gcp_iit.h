// gcp_iit node attestation: a GCE instance proves itself with the instance identity token
// (a Google-signed JWT) its metadata server mints for a given audience.
//
// Server side: the token is verified against Google's signing keys (RS256), issuer
// accounts.google.com, the configured audience, exp/iat; its google.compute_engine claims
// name the project, zone and instance. Agent ID spiffe://<td>/spire/agent/gcp_iit/<project
// id>/<instance id> (or agent_path_template). Selectors, type "gcp_iit", with SPIRE's names:
// project-id:, zone:, instance-name:, and with use_instance_metadata the instance's
// tag:, sa:, label:<k>:<v> and metadata:<k>:<v> read from the Compute Engine API with a
// service account key (OAuth 2.0 JWT bearer grant); the instance found by name must carry
// the token's instance ID.
#pragma once

#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "attestors/cloud/jwt_keys.h"
#include "attestors/node/node_attestor.h"
#include "common/clock.h"
#include "common/config/attestor_config.h"
#include "common/keys.h"

namespace trellis::attestors {

inline constexpr char kGcpIitName[] = "gcp_iit";
// The audience the agent asks the metadata server for (SPIRE's).
inline constexpr char kGcpIitAudience[] = "spire-gcp-node-attestor";
inline constexpr char kGcpIitDefaultAgentPathTemplate[] =
    "{{ .PluginName }}/{{ .ProjectID }}/{{ .InstanceID }}";
// The OAuth scope the server asks for when reading instances.
inline constexpr char kGcpComputeReadonlyScope[] =
    "https://www.googleapis.com/auth/compute.readonly";

class GcpIitServerAttestor final : public ServerNodeAttestor {
 public:
  // INVALID_ARGUMENT for a configuration that cannot work: empty projectid_allow_list, bad
  // google_certs_url or compute_endpoint, a bad agent_path_template, use_instance_metadata
  // without a readable service account key file. `http` reaches Google's services (keys,
  // OAuth token endpoint, Compute API).
  static absl::StatusOr<std::unique_ptr<GcpIitServerAttestor>> Create(
      common::TrustDomain td, common::config::GcpIitServerAttestorConfig config,
      const common::Clock& clock, cloud_jwt::HttpOptions http = {});

  std::string Name() const override { return kGcpIitName; }
  // `payload` is the identity token itself; there is no challenge.
  absl::StatusOr<Result> Attest(
      std::string_view payload,
      const std::function<absl::StatusOr<std::string>(std::string)>& challenge) override;

 private:
  struct ServiceAccount {
    std::string email;
    std::string key_id;
    std::string token_uri;
    common::PrivateKey key;
  };
  GcpIitServerAttestor(common::TrustDomain td, common::config::GcpIitServerAttestorConfig config,
                       const common::Clock& clock, cloud_jwt::HttpOptions http,
                       std::unique_ptr<cloud_jwt::JwtKeyCache> keys,
                       std::optional<ServiceAccount> account)
      : td_(std::move(td)),
        config_(std::move(config)),
        clock_(clock),
        http_(std::move(http)),
        keys_(std::move(keys)),
        account_(std::move(account)) {}

  // An OAuth access token for the Compute API, cached until shortly before it expires. No lock
  // is held while one is fetched.
  absl::StatusOr<std::string> AccessToken();
  // tag:, sa:, label: and metadata: selectors of one instance, looked up by name.
  // PERMISSION_DENIED when the instance of that name is not `instance_id`.
  absl::StatusOr<std::vector<datastore::Selector>> InstanceSelectors(
      const std::string& project, const std::string& zone, const std::string& name,
      const std::string& instance_id);

  const common::TrustDomain td_;
  const common::config::GcpIitServerAttestorConfig config_;
  const common::Clock& clock_;
  const cloud_jwt::HttpOptions http_;
  const std::unique_ptr<cloud_jwt::JwtKeyCache> keys_;
  const std::optional<ServiceAccount> account_;
  absl::Mutex token_mu_;
  std::string access_token_ ABSL_GUARDED_BY(token_mu_);
  absl::Time access_token_expiry_ ABSL_GUARDED_BY(token_mu_) = absl::InfinitePast();
};

// Asks the metadata server for a full-format identity token with audience kGcpIitAudience.
class GcpIitAgentAttestor final : public AgentNodeAttestor {
 public:
  // INVALID_ARGUMENT for an identity_token_host that is not a host[:port] or an empty
  // service_account.
  static absl::StatusOr<std::unique_ptr<GcpIitAgentAttestor>> Create(
      const common::config::GcpIitAgentAttestorConfig& config, cloud_jwt::HttpOptions http = {});

  std::string Name() const override { return kGcpIitName; }
  // The identity token. UNAVAILABLE when the metadata server cannot be reached or refuses.
  absl::StatusOr<std::string> Payload() override;
  absl::StatusOr<std::string> Answer(std::string_view challenge) override;

 private:
  GcpIitAgentAttestor(std::string url, cloud_jwt::HttpOptions http)
      : url_(std::move(url)), http_(std::move(http)) {}
  const std::string url_;
  const cloud_jwt::HttpOptions http_;
};

}  // namespace trellis::attestors
