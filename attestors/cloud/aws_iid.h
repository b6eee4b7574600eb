// aws_iid node attestation: the EC2 instance identity document, signed by AWS, read by the
// agent from the instance metadata service (IMDSv2) and verified by the server against AWS's
// regional certificates; optionally enriched through the EC2 and IAM APIs (SigV4-signed).
#pragma once

#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/time/time.h"
#include "attestors/node/node_attestor.h"
#include "common/clock.h"
#include "common/config/attestor_config.h"
#include "common/openssl_util.h"

namespace trellis::attestors {

inline constexpr char kAwsIidName[] = "aws_iid";
// SPIRE's default: the agent ID path after "/spire/agent/".
inline constexpr char kAwsIidDefaultAgentPathTemplate[] =
    "{{ .PluginName }}/{{ .AccountID }}/{{ .Region }}/{{ .InstanceID }}";
// Root volume and primary network interface attached further apart than this mean the root
// volume was swapped after launch (the check that skip_block_device turns off).
inline constexpr absl::Duration kAwsMaxDeviceAttachSkew = absl::Seconds(60);

// ---- AWS Signature Version 4 ----

struct AwsCredentials {
  std::string access_key_id;
  std::string secret_access_key;
};

struct AwsSigV4Request {
  std::string method = "GET";
  std::string host;        // the Host header exactly as sent ("host" or "host:port")
  std::string path = "/";  // absolute path, already URI-encoded
  // Query parameters, not encoded; signed and sent in canonical (sorted, encoded) order.
  std::vector<std::pair<std::string, std::string>> query;
  // Further headers to sign besides host and x-amz-date (which are always signed).
  std::vector<std::pair<std::string, std::string>> headers;
  std::string payload;
};

struct AwsSigV4Signature {
  std::string amz_date;         // X-Amz-Date header value, "YYYYMMDDTHHMMSSZ"
  std::string canonical_query;  // the query string to send (and that was signed)
  std::string canonical_request;
  std::string string_to_sign;
  std::string signature;      // lowercase hex
  std::string authorization;  // Authorization header value
};

// Signs `request` for `service` in `region` at `now` (AWS4-HMAC-SHA256, header form).
AwsSigV4Signature AwsSigV4Sign(const AwsSigV4Request& request, const AwsCredentials& credentials,
                               std::string_view region, std::string_view service, absl::Time now);

// ---- Server side ----

// Verifies the document's signature against the AWS certificates configured for its region:
// the RSA-2048 PKCS#7 signature when present, else the base64 RSA SHA-256 signature. AWS's
// certificates are pinned keys (self-signed), so no chain is built. Trellis carries no
// built-in AWS certificates: aws_ca_cert_paths is required. An entry "<region>=<path>" pins
// the file's certificates to that region; a bare path's certificates serve every region.
//
// Agent ID: spiffe://<td>/spire/agent/ + agent_path_template (default
// kAwsIidDefaultAgentPathTemplate; fields PluginName, AccountID, Region, InstanceID,
// AvailabilityZone, ImageID, and Tags.<key> when DescribeInstances is used).
// Selectors (type "aws_iid"): az:, image:id:, instance:id:, region:; with access_key_id set,
// EC2 DescribeInstances adds tag:<key>:<value>, sg:id:, sg:name: and, unless
// disable_instance_profile_selectors, iamrole:<role ARN> for each role of the instance
// profile (IAM GetInstanceProfile).
class AwsIidServerAttestor final : public ServerNodeAttestor {
 public:
  // Reads the certificates of config.aws_ca_cert_paths. INVALID_ARGUMENT for a bad
  // configuration (no certificates, unreadable files, half-set credentials, bad endpoints,
  // a bad agent_path_template).
  static absl::StatusOr<std::unique_ptr<AwsIidServerAttestor>> Create(
      common::TrustDomain td, const common::config::AwsIidServerAttestorConfig& config,
      const common::Clock& clock);
  // As Create, with further certificates given as PEM text keyed by region ("" for every
  // region), in addition to those of config.aws_ca_cert_paths.
  static absl::StatusOr<std::unique_ptr<AwsIidServerAttestor>> CreateWithCertificates(
      common::TrustDomain td, const common::config::AwsIidServerAttestorConfig& config,
      const std::map<std::string, std::string>& pem_by_region, const common::Clock& clock);
  ~AwsIidServerAttestor() override;

  std::string Name() const override { return kAwsIidName; }
  absl::StatusOr<Result> Attest(
      std::string_view payload,
      const std::function<absl::StatusOr<std::string>(std::string)>& challenge) override;

 private:
  struct Instance;  // what DescribeInstances told
  AwsIidServerAttestor(common::TrustDomain td, common::config::AwsIidServerAttestorConfig config,
                       const common::Clock& clock)
      : td_(std::move(td)), config_(std::move(config)), clock_(clock) {}
  absl::Status VerifySignature(const std::string& region, const std::string& document,
                               const std::string& rsa2048, const std::string& signature) const;
  std::vector<X509*> CertificatesFor(const std::string& region) const;
  absl::StatusOr<Instance> DescribeInstance(const std::string& region,
                                            const std::string& account_id,
                                            const std::string& instance_id) const;
  absl::StatusOr<std::vector<std::string>> InstanceProfileRoles(const std::string& region,
                                                                const std::string& arn) const;

  common::TrustDomain td_;
  const common::config::AwsIidServerAttestorConfig config_;
  const common::Clock& clock_;
  // Region -> certificates; "" holds those accepted for every region. Read-only once built.
  std::map<std::string, std::vector<common::X509Ptr>> certs_;
};

// ---- Agent side ----

// Reads the identity document and its signatures from IMDSv2 (a session token first) and
// sends them as JSON {"document", "signature", "rsa2048_signature"}. No challenge.
class AwsIidAgentAttestor final : public AgentNodeAttestor {
 public:
  // INVALID_ARGUMENT for an ec2_metadata_endpoint that is not http(s)://host[:port].
  static absl::StatusOr<std::unique_ptr<AwsIidAgentAttestor>> Create(
      const common::config::AwsIidAgentAttestorConfig& config);

  std::string Name() const override { return kAwsIidName; }
  // UNAVAILABLE when the metadata service cannot be reached or refuses.
  absl::StatusOr<std::string> Payload() override;
  absl::StatusOr<std::string> Answer(std::string_view challenge) override;

 private:
  explicit AwsIidAgentAttestor(std::string endpoint) : endpoint_(std::move(endpoint)) {}
  std::string endpoint_;  // scheme://host[:port]
};

}  // namespace trellis::attestors
