// The AttestAgent stream, driven from the agent side.
#include "agent/attestation_call.h"

#include <grpcpp/grpcpp.h>

#include <optional>

#include "common/csr.h"
#include "common/status.h"
#include "transport/grpc_status.h"
#include "transport/wire_convert.h"

namespace trellis::agent {

namespace v1 = ::trellis::server::v1;

absl::StatusOr<AttestationResult> AttestOnce(ServerConnection& conn,
                                             attestors::AgentNodeAttestor& attestor,
                                             const std::string& target, bool insecure,
                                             const common::TrustDomain& td,
                                             const common::Clock& clock) {
  TRELLIS_ASSIGN_OR_RETURN(common::PrivateKey key, common::PrivateKey::Generate());
  TRELLIS_ASSIGN_OR_RETURN(std::string csr, common::BuildCsr(key));
  TRELLIS_ASSIGN_OR_RETURN(std::string payload, attestor.Payload());

  auto stub = conn.AnonymousStub(target, insecure);
  grpc::ClientContext ctx;
  SetDeadline(&ctx, absl::Seconds(30));
  auto stream = stub->AttestAgent(&ctx);
  v1::AttestAgentRequest req;
  req.mutable_params()->mutable_data()->set_type(attestor.Name());
  req.mutable_params()->mutable_data()->set_payload(payload);
  req.mutable_params()->set_csr(csr);
  std::optional<v1::AttestAgentResponse::Result> result;
  if (stream->Write(req)) {
    v1::AttestAgentResponse resp;
    while (stream->Read(&resp)) {
      if (resp.has_challenge()) {
        auto answer = attestor.Answer(resp.challenge());
        if (!answer.ok()) {
          ctx.TryCancel();
          return answer.status();
        }
        v1::AttestAgentRequest step;
        step.set_challenge_response(*answer);
        if (!stream->Write(step)) break;
      } else if (resp.has_result()) {
        result = resp.result();
      }
    }
  }
  stream->WritesDone();
  grpc::Status status = stream->Finish();
  if (!status.ok()) return transport::FromGrpcStatus(status);
  if (!result) return absl::UnavailableError("server ended attestation without a result");

  TRELLIS_ASSIGN_OR_RETURN(common::Bundle bundle, transport::BundleFromProto(result->bundle()));
  if (bundle.trust_domain() != td) {
    return absl::PermissionDeniedError("server returned a bundle for " +
                                       bundle.trust_domain().name());
  }
  TRELLIS_ASSIGN_OR_RETURN(auto chain, transport::ChainFromProto(result->svid()));
  // The issued SVID must verify against the bundle we will trust from now on.
  auto verified = common::VerifyX509Svid(chain, bundle, clock.Now());
  if (!verified.ok()) return Annotate(verified.status(), "agent SVID from the server");
  return AttestationResult{std::move(chain), std::move(key), std::move(bundle),
                           result->reattestable()};
}

}  // namespace trellis::agent
