// trellis.server.v1.Admin: federation relationships.
#include "absl/time/time.h"
#include "common/log.h"
#include "datastore/datastore.h"
#include "server/admin_service.h"
#include "server/api_convert.h"
#include "transport/grpc_status.h"

namespace trellis::server {

using common::LogInfo;
using transport::ToGrpcStatus;

namespace {

int64_t UnixOrZero(absl::Time t) { return t == absl::InfinitePast() ? 0 : absl::ToUnixSeconds(t); }

absl::StatusOr<std::string> TrustDomainArg(const std::string& text) {
  absl::StatusOr<common::TrustDomain> td = common::TrustDomain::Parse(text);
  if (!td.ok()) {
    return absl::InvalidArgumentError("trust_domain: " + std::string(td.status().message()));
  }
  return td->name();
}

}  // namespace

v1::FederationRelationship AdminService::RelationshipToProto(
    const datastore::FederationRelationship& r) const {
  v1::FederationRelationship out;
  out.set_trust_domain(r.trust_domain);
  out.set_bundle_endpoint_url(r.bundle_endpoint_url);
  out.set_bundle_endpoint_profile(r.profile == datastore::BundleEndpointProfile::kHttpsSpiffe
                                      ? v1::HTTPS_SPIFFE
                                      : v1::HTTPS_WEB);
  out.set_endpoint_spiffe_id(r.endpoint_spiffe_id);
  if (options_.federation_state) {
    if (auto state = options_.federation_state(r.trust_domain)) {
      *out.mutable_refresh_state() = *state;
    }
  }
  return out;
}

// Checks a relationship (and its optional bundle) as given: nothing is written before all
// of it is known to be acceptable.
absl::StatusOr<AdminService::RelationshipWrite> AdminService::CheckRelationship(
    const v1::FederationRelationship& req) const {
  RelationshipWrite w;
  absl::StatusOr<std::string> td = TrustDomainArg(req.trust_domain());
  if (!td.ok()) return td.status();
  if (*td == options_.trust_domain.name()) {
    return absl::InvalidArgumentError(
        "trust_domain: a server cannot federate with its own trust domain");
  }
  w.relationship.trust_domain = *td;
  w.relationship.bundle_endpoint_url = req.bundle_endpoint_url();
  switch (req.bundle_endpoint_profile()) {
    case v1::HTTPS_WEB:
      w.relationship.profile = datastore::BundleEndpointProfile::kHttpsWeb;
      break;
    case v1::HTTPS_SPIFFE:
      w.relationship.profile = datastore::BundleEndpointProfile::kHttpsSpiffe;
      break;
    default:
      return absl::InvalidArgumentError("bundle_endpoint_profile: unknown profile");
  }
  w.relationship.endpoint_spiffe_id = req.endpoint_spiffe_id();
  if (req.has_trust_domain_bundle()) {
    absl::StatusOr<datastore::Bundle> bundle = BundleFromProto(req.trust_domain_bundle());
    if (!bundle.ok()) {
      return absl::InvalidArgumentError("trust_domain_bundle: " +
                                        std::string(bundle.status().message()));
    }
    if (bundle->trust_domain != *td) {
      return absl::InvalidArgumentError("trust_domain_bundle: is the bundle of " +
                                        bundle->trust_domain + ", not of " + *td);
    }
    if (bundle->x509_authorities.empty() && bundle->jwt_authorities.empty()) {
      return absl::InvalidArgumentError("trust_domain_bundle: holds no authorities");
    }
    w.bundle = *std::move(bundle);
  }
  return w;
}

grpc::Status AdminService::ListFederationRelationships(
    ServerContext* ctx, const v1::ListFederationRelationshipsRequest*,
    v1::ListFederationRelationshipsResponse* resp) {
  common::RpcLogScope rpc = Rpc(*ctx, "ListFederationRelationships");
  auto list = ds_->ListFederationRelationships();
  if (!list.ok()) return ToGrpcStatus(list.status());
  for (const auto& r : *list) *resp->add_relationships() = RelationshipToProto(r);
  return grpc::Status::OK;
}

grpc::Status AdminService::GetFederationRelationship(ServerContext* ctx,
                                                     const v1::FederationRelationshipRequest* req,
                                                     v1::FederationRelationship* resp) {
  common::RpcLogScope rpc = Rpc(*ctx, "GetFederationRelationship");
  absl::StatusOr<std::string> td = TrustDomainArg(req->trust_domain());
  if (!td.ok()) return ToGrpcStatus(td.status());
  auto r = ds_->GetFederationRelationship(*td);
  if (!r.ok()) return ToGrpcStatus(r.status());
  *resp = RelationshipToProto(*r);
  return grpc::Status::OK;
}

// Create and update: the relationship, then its bundle if one came with it, undoing the
// first write when the second fails so the call writes all or nothing.
grpc::Status AdminService::WriteRelationship(bool create, const v1::FederationRelationship& req,
                                             v1::FederationRelationship* resp) {
  absl::StatusOr<RelationshipWrite> w = CheckRelationship(req);
  if (!w.ok()) return ToGrpcStatus(w.status());
  absl::StatusOr<datastore::FederationRelationship> before;
  if (!create) {
    before = ds_->GetFederationRelationship(w->relationship.trust_domain);
    if (!before.ok()) return ToGrpcStatus(before.status());
  }
  absl::StatusOr<datastore::FederationRelationship> written =
      create ? ds_->CreateFederationRelationship(w->relationship)
             : ds_->UpdateFederationRelationship(w->relationship);
  if (!written.ok()) return ToGrpcStatus(written.status());
  if (w->bundle) {
    if (auto stored = ds_->SetBundle(*w->bundle); !stored.ok()) {
      absl::Status undone = create ? ds_->DeleteFederationRelationship(written->trust_domain)
                                   : ds_->UpdateFederationRelationship(*before).status();
      if (!undone.ok()) {
        common::LogWarn(
            "Could not undo a federation relationship write",
            {{"trust_domain", written->trust_domain}, {"error", std::string(undone.message())}});
      }
      return ToGrpcStatus(stored.status());
    }
    AfterWrite();
  }
  LogInfo(create ? "Federation relationship created" : "Federation relationship updated",
          {{"trust_domain", written->trust_domain},
           {"bundle_endpoint_url", written->bundle_endpoint_url}});
  if (options_.federation_changed) options_.federation_changed();
  *resp = RelationshipToProto(*written);
  return grpc::Status::OK;
}

grpc::Status AdminService::CreateFederationRelationship(ServerContext* ctx,
                                                        const v1::FederationRelationship* req,
                                                        v1::FederationRelationship* resp) {
  common::RpcLogScope rpc = Rpc(*ctx, "CreateFederationRelationship");
  return WriteRelationship(/*create=*/true, *req, resp);
}

grpc::Status AdminService::UpdateFederationRelationship(ServerContext* ctx,
                                                        const v1::FederationRelationship* req,
                                                        v1::FederationRelationship* resp) {
  common::RpcLogScope rpc = Rpc(*ctx, "UpdateFederationRelationship");
  return WriteRelationship(/*create=*/false, *req, resp);
}

grpc::Status AdminService::DeleteFederationRelationship(
    ServerContext* ctx, const v1::FederationRelationshipRequest* req, v1::Empty*) {
  common::RpcLogScope rpc = Rpc(*ctx, "DeleteFederationRelationship");
  absl::StatusOr<std::string> td = TrustDomainArg(req->trust_domain());
  if (!td.ok()) return ToGrpcStatus(td.status());
  if (absl::Status st = ds_->DeleteFederationRelationship(*td); !st.ok()) return ToGrpcStatus(st);
  // The bundle stays: entries may federate with the trust domain, and `bundle delete`
  // removes it when it should go.
  LogInfo("Federation relationship deleted", {{"trust_domain", *td}});
  if (options_.federation_changed) options_.federation_changed();
  return grpc::Status::OK;
}

grpc::Status AdminService::RefreshFederationRelationship(
    ServerContext* ctx, const v1::FederationRelationshipRequest* req, v1::Empty*) {
  common::RpcLogScope rpc = Rpc(*ctx, "RefreshFederationRelationship");
  absl::StatusOr<std::string> td = TrustDomainArg(req->trust_domain());
  if (!td.ok()) return ToGrpcStatus(td.status());
  if (!options_.refresh_federation) {
    return ToGrpcStatus(absl::UnavailableError("this server does not fetch federated bundles"));
  }
  absl::Status fetched = options_.refresh_federation(*td);
  // An endpoint that cannot be reached is this call's failed precondition; UNAVAILABLE would
  // read as this server being unreachable.
  if (fetched.code() == absl::StatusCode::kUnavailable) {
    fetched = absl::FailedPreconditionError(std::string(fetched.message()));
  }
  return ToGrpcStatus(fetched);
}

v1::FederationRefreshState FederationStateToProto(absl::Time last_attempt, absl::Time last_success,
                                                  absl::Time next_attempt,
                                                  const std::string& last_error,
                                                  std::optional<uint64_t> last_sequence) {
  v1::FederationRefreshState out;
  out.set_last_attempt(UnixOrZero(last_attempt));
  out.set_last_success(UnixOrZero(last_success));
  out.set_next_attempt(UnixOrZero(next_attempt));
  out.set_last_error(last_error);
  out.set_has_sequence(last_sequence.has_value());
  out.set_last_sequence(last_sequence.value_or(0));
  return out;
}

}  // namespace trellis::server
