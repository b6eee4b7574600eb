// SqlDataStore: federation relationships with other trust domains.
#include "absl/strings/str_cat.h"
#include "common/status.h"
#include "datastore/sql/sql_datastore.h"
#include "datastore/sql/sql_rows.h"

namespace trellis::datastore::sql {

using common::SpiffeId;
using common::TrustDomain;

namespace {

absl::StatusOr<FederationRelationship> NormalizeRelationship(FederationRelationship f) {
  TRELLIS_ASSIGN_OR_RETURN(f.trust_domain,
                           NormalizeTrustDomain(f.trust_domain, "federation relationship"));
  if (f.bundle_endpoint_url.rfind("https://", 0) != 0 || f.bundle_endpoint_url.size() <= 8) {
    return absl::InvalidArgumentError("bundle endpoint URL \"" + f.bundle_endpoint_url +
                                      "\" must be an https:// URL");
  }
  if (f.profile == BundleEndpointProfile::kHttpsSpiffe) {
    TRELLIS_ASSIGN_OR_RETURN(f.endpoint_spiffe_id,
                             NormalizeSpiffeId(f.endpoint_spiffe_id, "endpoint SPIFFE ID"));
  } else if (!f.endpoint_spiffe_id.empty()) {
    return absl::InvalidArgumentError("https_web profile takes no endpoint SPIFFE ID");
  }
  return f;
}

absl::StatusOr<FederationRelationship> ReadRelationshipRow(const Row& row) {
  RowReader r(row, "federation_relationships");
  FederationRelationship f;
  f.trust_domain = r.Domain("trust_domain");
  r.SetKey("trust_domain " + f.trust_domain);
  f.bundle_endpoint_url = r.NonEmpty("bundle_endpoint_url");
  f.profile = r.Enum("profile", &ParseBundleEndpointProfile);
  f.endpoint_spiffe_id = r.Text("endpoint_spiffe_id");
  TRELLIS_RETURN_IF_ERROR(r.status());
  if (f.profile == BundleEndpointProfile::kHttpsSpiffe &&
      !SpiffeId::Parse(f.endpoint_spiffe_id).ok()) {
    return absl::DataLossError("stored row of federation_relationships (trust_domain " +
                               f.trust_domain + ") is invalid: column endpoint_spiffe_id holds \"" +
                               f.endpoint_spiffe_id + "\" (not a SPIFFE ID)");
  }
  return f;
}

}  // namespace

// ---- federation relationships ----

absl::StatusOr<FederationRelationship> SqlDataStore::CreateFederationRelationship(
    const FederationRelationship& relationship) {
  TRELLIS_ASSIGN_OR_RETURN(FederationRelationship f, NormalizeRelationship(relationship));
  TRELLIS_RETURN_IF_ERROR(Write([&](Tx& tx, Events&) -> absl::Status {
    TRELLIS_ASSIGN_OR_RETURN(
        Rows rows, tx.Query("SELECT 1 FROM federation_relationships WHERE trust_domain = $1",
                            {f.trust_domain}));
    if (!rows.empty()) {
      return absl::AlreadyExistsError("federation relationship with " + f.trust_domain +
                                      " already exists");
    }
    return tx
        .Exec(
            "INSERT INTO federation_relationships (trust_domain, bundle_endpoint_url,"
            " profile, endpoint_spiffe_id, created_at) VALUES ($1, $2, $3, $4, $5)",
            {f.trust_domain, f.bundle_endpoint_url,
             std::string(BundleEndpointProfileName(f.profile)), f.endpoint_spiffe_id, NowSeconds()})
        .status();
  }));
  return f;
}

absl::StatusOr<FederationRelationship> SqlDataStore::GetFederationRelationship(
    const std::string& trust_domain) {
  TRELLIS_ASSIGN_OR_RETURN(std::string td, NormalizeTrustDomain(trust_domain, "federation"));
  FederationRelationship out;
  TRELLIS_RETURN_IF_ERROR(Read([&](Tx& tx) -> absl::Status {
    TRELLIS_ASSIGN_OR_RETURN(Rows rows,
                             tx.Query("SELECT trust_domain, bundle_endpoint_url, profile,"
                                      " endpoint_spiffe_id FROM federation_relationships"
                                      " WHERE trust_domain = $1",
                                      {td}));
    if (rows.empty()) return absl::NotFoundError("no federation relationship with " + td);
    TRELLIS_ASSIGN_OR_RETURN(out, ReadRelationshipRow(rows[0]));
    return absl::OkStatus();
  }));
  return out;
}

absl::StatusOr<FederationRelationship> SqlDataStore::UpdateFederationRelationship(
    const FederationRelationship& relationship) {
  TRELLIS_ASSIGN_OR_RETURN(FederationRelationship f, NormalizeRelationship(relationship));
  TRELLIS_RETURN_IF_ERROR(Write([&](Tx& tx, Events&) -> absl::Status {
    TRELLIS_ASSIGN_OR_RETURN(
        int64_t n,
        tx.Exec("UPDATE federation_relationships SET bundle_endpoint_url = $2,"
                " profile = $3, endpoint_spiffe_id = $4 WHERE trust_domain = $1",
                {f.trust_domain, f.bundle_endpoint_url,
                 std::string(BundleEndpointProfileName(f.profile)), f.endpoint_spiffe_id}));
    if (n == 0) return absl::NotFoundError("no federation relationship with " + f.trust_domain);
    return absl::OkStatus();
  }));
  return f;
}

absl::Status SqlDataStore::DeleteFederationRelationship(const std::string& trust_domain) {
  TRELLIS_ASSIGN_OR_RETURN(std::string td, NormalizeTrustDomain(trust_domain, "federation"));
  return Write([&](Tx& tx, Events&) -> absl::Status {
    TRELLIS_ASSIGN_OR_RETURN(
        int64_t n, tx.Exec("DELETE FROM federation_relationships WHERE trust_domain = $1", {td}));
    if (n == 0) return absl::NotFoundError("no federation relationship with " + td);
    return absl::OkStatus();
  });
}

absl::StatusOr<std::vector<FederationRelationship>> SqlDataStore::ListFederationRelationships() {
  std::vector<FederationRelationship> out;
  TRELLIS_RETURN_IF_ERROR(Read([&](Tx& tx) -> absl::Status {
    out.clear();
    TRELLIS_ASSIGN_OR_RETURN(Rows rows,
                             tx.Query("SELECT trust_domain, bundle_endpoint_url, profile,"
                                      " endpoint_spiffe_id FROM federation_relationships"
                                      " ORDER BY trust_domain"));
    for (const Row& row : rows) {
      TRELLIS_ASSIGN_OR_RETURN(FederationRelationship f, ReadRelationshipRow(row));
      out.push_back(std::move(f));
    }
    return absl::OkStatus();
  }));
  return out;
}

}  // namespace trellis::datastore::sql
