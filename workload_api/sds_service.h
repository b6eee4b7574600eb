// Envoy's Secret Discovery Service (v3) on the Workload API socket: a proxy next to a
// workload receives that workload's X509-SVIDs and trust bundles as Envoy secrets, and new
// ones pushed on its stream when they rotate. Callers are attested from the kernel like any
// Workload API caller; SDS carries no security header.
//
// Resource names, as SPIRE serves them:
//   "default"              the first X509-SVID of the caller (a TlsCertificate)
//   "spiffe://td/path"     the X509-SVID with that SPIFFE ID (a TlsCertificate)
//   "ROOTCA"               the trust domain's own bundle (a validation context)
//   "spiffe://td"          that trust domain's bundle, own or federated (a validation context)
//   "ALL"                  a SPIFFE certificate validator holding every bundle the caller has
// A request naming no resource gets every X509-SVID by SPIFFE ID and every bundle by trust
// domain ID.
#pragma once

#include <grpcpp/grpcpp.h>

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "envoy/extensions/transport_sockets/tls/v3/secret.pb.h"
#include "envoy/service/secret/v3/sds.grpc.pb.h"
#include "workload_api/identity_snapshot.h"
#include "workload_api/identity_source.h"

namespace trellis::workload_api {

class CallerAttestation;
class PeerListener;
class StreamRegistry;
class WorkQueue;

inline constexpr char kSecretTypeUrl[] =
    "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret";
inline constexpr char kSpiffeValidatorName[] = "envoy.tls.cert_validator.spiffe";

// The secrets `names` ask for, of the identities matching `selectors`; names that match
// nothing are left out. UNAVAILABLE before the first sync; PERMISSION_DENIED when the caller
// has no identity.
absl::StatusOr<std::vector<envoy::extensions::transport_sockets::tls::v3::Secret>> RenderSecrets(
    const IdentitySnapshot& snap, const std::vector<std::string>& selectors,
    const std::vector<std::string>& names);

// Overwrites the private keys a set of secrets held.
void WipeSecrets(envoy::service::discovery::v3::DiscoveryResponse* resp);

// Every method on gRPC's callback API, so the agent runs no synchronous-server threads.
// DeltaSecrets (incremental xDS, which Envoy uses only with api_type DELTA_GRPC) answers
// UNIMPLEMENTED saying so.
class SdsService final
    : public envoy::service::secret::v3::SecretDiscoveryService::CallbackService {
 public:
  struct Deps {
    PeerListener* peers;
    IdentitySource* source;
    const CallerAttestation* attestation;
    WorkQueue* work;
    StreamRegistry* registry;  // streams end through it when the server stops
  };
  explicit SdsService(Deps deps) : deps_(deps) {}

  grpc::ServerBidiReactor<envoy::service::discovery::v3::DiscoveryRequest,
                          envoy::service::discovery::v3::DiscoveryResponse>*
  StreamSecrets(grpc::CallbackServerContext* ctx) override;
  grpc::ServerBidiReactor<envoy::service::discovery::v3::DeltaDiscoveryRequest,
                          envoy::service::discovery::v3::DeltaDiscoveryResponse>*
  DeltaSecrets(grpc::CallbackServerContext* ctx) override;
  grpc::ServerUnaryReactor* FetchSecrets(
      grpc::CallbackServerContext* ctx, const envoy::service::discovery::v3::DiscoveryRequest* req,
      envoy::service::discovery::v3::DiscoveryResponse* resp) override;

 private:
  Deps deps_;
};

}  // namespace trellis::workload_api
