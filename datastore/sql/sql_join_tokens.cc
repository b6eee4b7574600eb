// SqlDataStore: single-use join tokens.
#include "absl/strings/str_cat.h"
#include "common/status.h"
#include "datastore/sql/sql_datastore.h"
#include "datastore/sql/sql_rows.h"

namespace trellis::datastore::sql {

// ---- join tokens ----

absl::Status SqlDataStore::CreateJoinToken(const JoinToken& token) {
  if (token.token.empty()) return absl::InvalidArgumentError("join token is empty");
  return Write([&](Tx& tx, Events&) -> absl::Status {
    TRELLIS_ASSIGN_OR_RETURN(Rows rows,
                             tx.Query("SELECT 1 FROM join_tokens WHERE token = $1", {token.token}));
    if (!rows.empty()) return absl::AlreadyExistsError("join token already exists");
    return tx
        .Exec("INSERT INTO join_tokens (token, expires_at) VALUES ($1, $2)",
              {token.token, Sec(token.expires_at)})
        .status();
  });
}

absl::StatusOr<JoinToken> SqlDataStore::ConsumeJoinToken(const std::string& token, absl::Time now) {
  if (token.empty()) return absl::InvalidArgumentError("join token is empty");
  JoinToken out;
  bool expired = false;
  TRELLIS_RETURN_IF_ERROR(Write([&](Tx& tx, Events&) -> absl::Status {
    // A single DELETE ... RETURNING: of concurrent consumers only one sees the row.
    TRELLIS_ASSIGN_OR_RETURN(
        Rows rows,
        tx.Query("DELETE FROM join_tokens WHERE token = $1 RETURNING expires_at", {token}));
    if (rows.empty()) return absl::NotFoundError("join token not found or already used");
    RowReader r(rows[0], "join_tokens");
    out.token = token;
    out.expires_at = r.Time("expires_at");
    TRELLIS_RETURN_IF_ERROR(r.status());
    expired = out.expires_at <= now;
    return absl::OkStatus();
  }));
  if (expired) return absl::FailedPreconditionError("join token expired");
  return out;
}

absl::Status SqlDataStore::DeleteJoinToken(const std::string& token) {
  return Write([&](Tx& tx, Events&) -> absl::Status {
    TRELLIS_ASSIGN_OR_RETURN(int64_t n,
                             tx.Exec("DELETE FROM join_tokens WHERE token = $1", {token}));
    if (n == 0) return absl::NotFoundError("join token not found");
    return absl::OkStatus();
  });
}

absl::StatusOr<int64_t> SqlDataStore::PruneJoinTokens(absl::Time expired_before) {
  int64_t n = 0;
  TRELLIS_RETURN_IF_ERROR(Write([&](Tx& tx, Events&) -> absl::Status {
    TRELLIS_ASSIGN_OR_RETURN(
        n, tx.Exec("DELETE FROM join_tokens WHERE expires_at < $1", {Sec(expired_before)}));
    return absl::OkStatus();
  }));
  return n;
}

}  // namespace trellis::datastore::sql
