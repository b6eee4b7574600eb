// SqlDataStore: bundles and their X.509/JWT authorities.
#include <algorithm>
#include <set>

#include "absl/strings/str_cat.h"
#include "common/status.h"
#include "datastore/sql/sql_datastore.h"
#include "datastore/sql/sql_rows.h"

namespace trellis::datastore::sql {

using common::SpiffeId;
using common::TrustDomain;

namespace {

absl::StatusOr<Bundle> NormalizeBundle(Bundle b) {
  TRELLIS_ASSIGN_OR_RETURN(b.trust_domain, NormalizeTrustDomain(b.trust_domain, "bundle"));
  if (b.refresh_hint_seconds < 0) {
    return absl::InvalidArgumentError("bundle refresh hint must not be negative");
  }
  std::set<std::string> ders, kids;
  for (const X509Authority& a : b.x509_authorities) {
    if (a.ca_der.empty()) return absl::InvalidArgumentError("X.509 authority with empty DER");
    if (!ders.insert(a.ca_der).second) {
      return absl::InvalidArgumentError("bundle lists one X.509 authority twice");
    }
  }
  for (const JwtAuthority& a : b.jwt_authorities) {
    if (a.kid.empty()) return absl::InvalidArgumentError("JWT authority without a kid");
    if (a.public_key_der.empty()) {
      return absl::InvalidArgumentError("JWT authority " + a.kid + " has no public key");
    }
    if (!kids.insert(a.kid).second) {
      return absl::InvalidArgumentError("bundle lists JWT kid " + a.kid + " twice");
    }
  }
  return b;
}

absl::StatusOr<std::optional<Bundle>> LoadBundle(Tx& tx, const std::string& td,
                                                 const std::string& for_update) {
  TRELLIS_ASSIGN_OR_RETURN(
      Rows rows, tx.Query("SELECT trust_domain, refresh_hint, sequence_number FROM bundles"
                          " WHERE trust_domain = $1" +
                              for_update,
                          {td}));
  if (rows.empty()) return std::optional<Bundle>();
  Bundle b;
  RowReader r(rows[0], "bundles");
  r.SetKey("trust_domain " + td);
  b.trust_domain = r.Domain("trust_domain");
  b.refresh_hint_seconds = r.NonNegative("refresh_hint");
  b.sequence_number = r.NonNegative("sequence_number");
  TRELLIS_RETURN_IF_ERROR(r.status());
  TRELLIS_ASSIGN_OR_RETURN(Rows xs,
                           tx.Query("SELECT ca_der, expires_at, tainted FROM x509_authorities"
                                    " WHERE trust_domain = $1 ORDER BY expires_at, fingerprint",
                                    {td}));
  for (const Row& row : xs) {
    RowReader ar(row, "x509_authorities");
    ar.SetKey("trust_domain " + td);
    X509Authority a;
    a.ca_der = ar.NonEmpty("ca_der");
    a.expires_at = ar.Time("expires_at");
    a.tainted = ar.Bool("tainted");
    TRELLIS_RETURN_IF_ERROR(ar.status());
    b.x509_authorities.push_back(std::move(a));
  }
  TRELLIS_ASSIGN_OR_RETURN(
      Rows js, tx.Query("SELECT kid, public_key, expires_at, tainted FROM jwt_authorities"
                        " WHERE trust_domain = $1 ORDER BY expires_at, kid",
                        {td}));
  for (const Row& row : js) {
    RowReader ar(row, "jwt_authorities");
    ar.SetKey("trust_domain " + td);
    JwtAuthority a;
    a.kid = ar.NonEmpty("kid");
    a.public_key_der = ar.NonEmpty("public_key");
    a.expires_at = ar.Time("expires_at");
    a.tainted = ar.Bool("tainted");
    TRELLIS_RETURN_IF_ERROR(ar.status());
    b.jwt_authorities.push_back(std::move(a));
  }
  return std::optional<Bundle>(std::move(b));
}

// Applies `change` to the stored bundle and bumps its sequence number.
// `write` runs a write transaction that logs the events it is handed (SqlDataStore::Write).
template <typename W, typename F>
absl::Status MutateBundle(W write, const std::string& trust_domain, const std::string& for_update,
                          F change, const std::function<absl::Status(Tx&, const Bundle&)>& store) {
  TRELLIS_ASSIGN_OR_RETURN(std::string td, NormalizeTrustDomain(trust_domain, "bundle"));
  return write([&](Tx& tx, auto& events) -> absl::Status {
    TRELLIS_ASSIGN_OR_RETURN(auto b, LoadBundle(tx, td, for_update));
    if (!b || b->sequence_number == 0) return absl::NotFoundError("no bundle for " + td);
    bool changed = false;
    TRELLIS_RETURN_IF_ERROR(change(*b, changed));
    if (!changed) return absl::OkStatus();
    b->sequence_number++;
    events.push_back({EventKind::kBundleUpdated, td});
    return store(tx, *b);
  });
}

}  // namespace

// ---- bundles ----

absl::Status SqlDataStore::StoreBundle(Tx& tx, const Bundle& b) {
  TRELLIS_RETURN_IF_ERROR(
      tx.Exec("INSERT INTO bundles (trust_domain, refresh_hint, sequence_number)"
              " VALUES ($1, $2, $3) ON CONFLICT (trust_domain) DO UPDATE SET"
              " refresh_hint = excluded.refresh_hint, sequence_number = excluded.sequence_number",
              {b.trust_domain, b.refresh_hint_seconds, b.sequence_number})
          .status());
  TRELLIS_RETURN_IF_ERROR(
      tx.Exec("DELETE FROM x509_authorities WHERE trust_domain = $1", {b.trust_domain}).status());
  TRELLIS_RETURN_IF_ERROR(
      tx.Exec("DELETE FROM jwt_authorities WHERE trust_domain = $1", {b.trust_domain}).status());
  for (const X509Authority& a : b.x509_authorities) {
    TRELLIS_RETURN_IF_ERROR(
        tx.Exec("INSERT INTO x509_authorities (trust_domain, fingerprint, ca_der, expires_at,"
                " tainted) VALUES ($1, $2, $3, $4, $5)",
                {b.trust_domain, Sha256Hex(a.ca_der), Blob{a.ca_der}, Sec(a.expires_at),
                 B(a.tainted)})
            .status());
  }
  for (const JwtAuthority& a : b.jwt_authorities) {
    TRELLIS_RETURN_IF_ERROR(
        tx.Exec("INSERT INTO jwt_authorities (trust_domain, kid, public_key, expires_at, tainted)"
                " VALUES ($1, $2, $3, $4, $5)",
                {b.trust_domain, a.kid, Blob{a.public_key_der}, Sec(a.expires_at), B(a.tainted)})
            .status());
  }
  return absl::OkStatus();
}

absl::StatusOr<std::optional<Bundle>> SqlDataStore::LockBundle(Tx& tx, const std::string& td,
                                                               int64_t refresh_hint) {
  if (engine_->dialect() == Dialect::kPostgres) {
    // A row must exist for FOR UPDATE to serialise writers of a new bundle too; the
    // placeholder (sequence 0) counts as absent and never commits as such.
    TRELLIS_RETURN_IF_ERROR(tx.Exec("INSERT INTO bundles (trust_domain, refresh_hint,"
                                    " sequence_number) VALUES ($1, $2, 0)"
                                    " ON CONFLICT (trust_domain) DO NOTHING",
                                    {td, refresh_hint})
                                .status());
  }
  TRELLIS_ASSIGN_OR_RETURN(auto existing, LoadBundle(tx, td, ForUpdate()));
  if (existing && existing->sequence_number == 0) return std::optional<Bundle>();
  return existing;
}

absl::StatusOr<Bundle> SqlDataStore::StoreAndReload(Tx& tx, const Bundle& b) {
  TRELLIS_RETURN_IF_ERROR(StoreBundle(tx, b));
  TRELLIS_ASSIGN_OR_RETURN(auto stored, LoadBundle(tx, b.trust_domain, ""));
  if (!stored) return absl::InternalError("bundle vanished while being written");
  return std::move(*stored);
}

absl::StatusOr<Bundle> SqlDataStore::PutBundle(const Bundle& bundle, const BundleChange& change) {
  TRELLIS_ASSIGN_OR_RETURN(Bundle b, NormalizeBundle(bundle));
  Bundle out;
  TRELLIS_RETURN_IF_ERROR(Write([&](Tx& tx, Events& events) -> absl::Status {
    TRELLIS_ASSIGN_OR_RETURN(auto existing, LockBundle(tx, b.trust_domain, 0));
    TRELLIS_ASSIGN_OR_RETURN(std::optional<Bundle> next, change(b, existing));
    if (!next) {
      out = std::move(*existing);
      return absl::OkStatus();
    }
    next->sequence_number = existing ? existing->sequence_number + 1 : 1;
    events.push_back({EventKind::kBundleUpdated, b.trust_domain});
    TRELLIS_ASSIGN_OR_RETURN(out, StoreAndReload(tx, *next));
    return absl::OkStatus();
  }));
  return out;
}

absl::StatusOr<Bundle> SqlDataStore::CreateBundle(const Bundle& bundle) {
  return PutBundle(bundle, [](const Bundle& b, const std::optional<Bundle>& existing)
                               -> absl::StatusOr<std::optional<Bundle>> {
    if (existing) return absl::AlreadyExistsError("bundle for " + b.trust_domain + " exists");
    return b;
  });
}

absl::StatusOr<Bundle> SqlDataStore::SetBundle(const Bundle& bundle) {
  return PutBundle(bundle, [](const Bundle& b, const std::optional<Bundle>&)
                               -> absl::StatusOr<std::optional<Bundle>> { return b; });
}

absl::StatusOr<Bundle> SqlDataStore::AppendBundle(const Bundle& bundle) {
  return PutBundle(bundle, [](const Bundle& b, const std::optional<Bundle>& existing)
                               -> absl::StatusOr<std::optional<Bundle>> {
    if (!existing) return b;
    Bundle merged = *existing;
    bool changed = false;
    for (const X509Authority& a : b.x509_authorities) {
      auto same = [&](const X509Authority& x) { return x.ca_der == a.ca_der; };
      if (std::none_of(merged.x509_authorities.begin(), merged.x509_authorities.end(), same)) {
        merged.x509_authorities.push_back(a);
        changed = true;
      }
    }
    for (const JwtAuthority& a : b.jwt_authorities) {
      auto same = [&](const JwtAuthority& x) { return x.kid == a.kid; };
      if (std::none_of(merged.jwt_authorities.begin(), merged.jwt_authorities.end(), same)) {
        merged.jwt_authorities.push_back(a);
        changed = true;
      }
    }
    if (!changed) return std::optional<Bundle>();
    return merged;
  });
}

absl::StatusOr<Bundle> SqlDataStore::GetBundle(const std::string& trust_domain) {
  TRELLIS_ASSIGN_OR_RETURN(std::string td, NormalizeTrustDomain(trust_domain, "bundle"));
  Bundle out;
  TRELLIS_RETURN_IF_ERROR(Read([&](Tx& tx) -> absl::Status {
    TRELLIS_ASSIGN_OR_RETURN(auto b, LoadBundle(tx, td, ""));
    if (!b || b->sequence_number == 0) return absl::NotFoundError("no bundle for " + td);
    out = std::move(*b);
    return absl::OkStatus();
  }));
  return out;
}

absl::StatusOr<std::vector<Bundle>> SqlDataStore::ListBundles() {
  std::vector<Bundle> out;
  TRELLIS_RETURN_IF_ERROR(Read([&](Tx& tx) -> absl::Status {
    out.clear();
    TRELLIS_ASSIGN_OR_RETURN(Rows rows,
                             tx.Query("SELECT trust_domain FROM bundles WHERE sequence_number > 0"
                                      " ORDER BY trust_domain"));
    for (const Row& row : rows) {
      std::string td = row[0].value_or("");
      TRELLIS_ASSIGN_OR_RETURN(auto b, LoadBundle(tx, td, ""));
      if (b) out.push_back(std::move(*b));
    }
    return absl::OkStatus();
  }));
  return out;
}

absl::Status SqlDataStore::DeleteBundle(const std::string& trust_domain, BundleDeleteMode mode) {
  TRELLIS_ASSIGN_OR_RETURN(std::string td, NormalizeTrustDomain(trust_domain, "bundle"));
  return Write([&](Tx& tx, Events& events) -> absl::Status {
    TRELLIS_ASSIGN_OR_RETURN(auto existing, LoadBundle(tx, td, ForUpdate()));
    if (!existing || existing->sequence_number == 0) {
      return absl::NotFoundError("no bundle for " + td);
    }
    TRELLIS_ASSIGN_OR_RETURN(
        Rows rows, tx.Query("SELECT e.id FROM entries e JOIN entry_federates_with f"
                            " ON f.entry_seq = e.seq WHERE f.trust_domain = $1 ORDER BY e.seq",
                            {td}));
    if (!rows.empty()) {
      if (mode == BundleDeleteMode::kRestrict) {
        return absl::FailedPreconditionError(
            absl::StrCat("bundle for ", td, " is federated with by ", rows.size(), " entries"));
      }
      for (const Row& row : rows) {
        std::string id = row[0].value_or("");
        if (mode == BundleDeleteMode::kDelete) {
          TRELLIS_RETURN_IF_ERROR(DeleteEntryTx(tx, events, id).status());
        } else {
          TRELLIS_RETURN_IF_ERROR(
              tx.Exec("DELETE FROM entry_federates_with WHERE trust_domain = $1 AND entry_seq ="
                      " (SELECT seq FROM entries WHERE id = $2)",
                      {td, id})
                  .status());
          TRELLIS_RETURN_IF_ERROR(
              tx.Exec("UPDATE entries SET revision_number = revision_number + 1 WHERE id = $1",
                      {id})
                  .status());
          events.push_back({EventKind::kEntryUpdated, id});
        }
      }
    }
    events.push_back({EventKind::kBundleUpdated, td});
    return tx.Exec("DELETE FROM bundles WHERE trust_domain = $1", {td}).status();
  });
}

#define TRELLIS_BUNDLE_MUTATION(td, body)                                                 \
  MutateBundle([this](const auto& fn) { return Write(fn); }, td, ForUpdate(), body, \
               [this](Tx& tx, const Bundle& b) { return StoreBundle(tx, b); })

absl::Status SqlDataStore::TaintX509Authority(const std::string& trust_domain,
                                              const std::string& ca_der) {
  return TRELLIS_BUNDLE_MUTATION(trust_domain, [&](Bundle& b, bool& changed) -> absl::Status {
    for (X509Authority& a : b.x509_authorities) {
      if (a.ca_der != ca_der) continue;
      if (a.tainted) return absl::FailedPreconditionError("X.509 authority is already tainted");
      a.tainted = changed = true;
      return absl::OkStatus();
    }
    return absl::NotFoundError("no such X.509 authority in the bundle of " + b.trust_domain);
  });
}

absl::Status SqlDataStore::RevokeX509Authority(const std::string& trust_domain,
                                               const std::string& ca_der) {
  return TRELLIS_BUNDLE_MUTATION(trust_domain, [&](Bundle& b, bool& changed) -> absl::Status {
    auto& v = b.x509_authorities;
    for (auto it = v.begin(); it != v.end(); ++it) {
      if (it->ca_der != ca_der) continue;
      if (!it->tainted) {
        return absl::FailedPreconditionError("X.509 authority must be tainted before revocation");
      }
      v.erase(it);
      changed = true;
      return absl::OkStatus();
    }
    return absl::NotFoundError("no such X.509 authority in the bundle of " + b.trust_domain);
  });
}

absl::Status SqlDataStore::TaintJwtAuthority(const std::string& trust_domain,
                                             const std::string& kid) {
  return TRELLIS_BUNDLE_MUTATION(trust_domain, [&](Bundle& b, bool& changed) -> absl::Status {
    for (JwtAuthority& a : b.jwt_authorities) {
      if (a.kid != kid) continue;
      if (a.tainted) return absl::FailedPreconditionError("JWT authority " + kid + " is tainted");
      a.tainted = changed = true;
      return absl::OkStatus();
    }
    return absl::NotFoundError("no JWT authority " + kid + " in the bundle of " + b.trust_domain);
  });
}

absl::Status SqlDataStore::RevokeJwtAuthority(const std::string& trust_domain,
                                              const std::string& kid) {
  return TRELLIS_BUNDLE_MUTATION(trust_domain, [&](Bundle& b, bool& changed) -> absl::Status {
    auto& v = b.jwt_authorities;
    for (auto it = v.begin(); it != v.end(); ++it) {
      if (it->kid != kid) continue;
      if (!it->tainted) {
        return absl::FailedPreconditionError("JWT authority " + kid +
                                             " must be tainted before revocation");
      }
      v.erase(it);
      changed = true;
      return absl::OkStatus();
    }
    return absl::NotFoundError("no JWT authority " + kid + " in the bundle of " + b.trust_domain);
  });
}

absl::StatusOr<bool> SqlDataStore::PruneBundle(const std::string& trust_domain,
                                               absl::Time expired_before) {
  bool pruned = false;
  TRELLIS_RETURN_IF_ERROR(
      TRELLIS_BUNDLE_MUTATION(trust_domain, [&](Bundle& b, bool& changed) -> absl::Status {
        pruned = false;
        auto& x = b.x509_authorities;
        size_t had = x.size();
        x.erase(
            std::remove_if(x.begin(), x.end(),
                           [&](const X509Authority& a) { return a.expires_at < expired_before; }),
            x.end());
        if (had > 0 && x.empty()) {
          return absl::FailedPreconditionError("pruning would remove every X.509 authority of " +
                                               b.trust_domain);
        }
        auto& j = b.jwt_authorities;
        size_t had_jwt = j.size();
        j.erase(
            std::remove_if(j.begin(), j.end(),
                           [&](const JwtAuthority& a) { return a.expires_at < expired_before; }),
            j.end());
        changed = pruned = x.size() != had || j.size() != had_jwt;
        return absl::OkStatus();
      }));
  return pruned;
}

#undef TRELLIS_BUNDLE_MUTATION

}  // namespace trellis::datastore::sql
