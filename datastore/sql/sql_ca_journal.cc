// SqlDataStore: the CA journal of prepared, active and old authorities.
#include "absl/strings/str_cat.h"
#include "common/status.h"
#include "datastore/sql/sql_datastore.h"
#include "datastore/sql/sql_rows.h"

namespace trellis::datastore::sql {

namespace {

absl::StatusOr<CaJournalEntry> ReadJournalRow(const Row& row) {
  RowReader r(row, "ca_journal");
  CaJournalEntry e;
  e.server_id = r.NonEmpty("server_id");
  e.kind = r.Enum("kind", &ParseAuthorityKind);
  e.authority_id = r.NonEmpty("authority_id");
  r.SetKey("server_id " + e.server_id + ", authority_id " + e.authority_id);
  e.status = r.Enum("status", &ParseAuthorityStatus);
  e.data = r.Text("data");
  e.not_after = r.Time("not_after");
  e.created_at = r.Time("created_at");
  e.updated_at = r.Time("updated_at");
  TRELLIS_RETURN_IF_ERROR(r.status());
  return e;
}

}  // namespace

// ---- CA journal ----

absl::StatusOr<CaJournalEntry> SqlDataStore::PutCaJournalEntry(const CaJournalEntry& entry) {
  if (entry.server_id.empty() || entry.authority_id.empty()) {
    return absl::InvalidArgumentError("CA journal entry needs a server_id and authority_id");
  }
  CaJournalEntry out;
  TRELLIS_RETURN_IF_ERROR(Write([&](Tx& tx, Events&) -> absl::Status {
    int64_t now = NowSeconds();
    TRELLIS_ASSIGN_OR_RETURN(
        Rows rows,
        tx.Query("INSERT INTO ca_journal (server_id, kind, authority_id, status, data, not_after,"
                 " created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $7)"
                 " ON CONFLICT (server_id, kind, authority_id) DO UPDATE SET"
                 " status = excluded.status, data = excluded.data,"
                 " not_after = excluded.not_after, updated_at = excluded.updated_at"
                 " RETURNING server_id, kind, authority_id, status, data, not_after, created_at,"
                 " updated_at",
                 {entry.server_id, std::string(AuthorityKindName(entry.kind)), entry.authority_id,
                  std::string(AuthorityStatusName(entry.status)), Blob{entry.data},
                  Sec(entry.not_after), now}));
    if (rows.empty()) return absl::InternalError("CA journal upsert returned no row");
    TRELLIS_ASSIGN_OR_RETURN(out, ReadJournalRow(rows[0]));
    return absl::OkStatus();
  }));
  return out;
}

absl::StatusOr<std::vector<CaJournalEntry>> SqlDataStore::ListCaJournal(
    const std::string& server_id) {
  std::vector<CaJournalEntry> out;
  TRELLIS_RETURN_IF_ERROR(Read([&](Tx& tx) -> absl::Status {
    out.clear();
    TRELLIS_ASSIGN_OR_RETURN(
        Rows rows, tx.Query("SELECT server_id, kind, authority_id, status, data, not_after,"
                            " created_at, updated_at FROM ca_journal WHERE server_id = $1"
                            " ORDER BY seq",
                            {server_id}));
    for (const Row& row : rows) {
      TRELLIS_ASSIGN_OR_RETURN(CaJournalEntry e, ReadJournalRow(row));
      out.push_back(std::move(e));
    }
    return absl::OkStatus();
  }));
  return out;
}

absl::Status SqlDataStore::DeleteCaJournalEntry(const std::string& server_id, AuthorityKind kind,
                                                const std::string& authority_id) {
  return Write([&](Tx& tx, Events&) -> absl::Status {
    TRELLIS_ASSIGN_OR_RETURN(
        int64_t n, tx.Exec("DELETE FROM ca_journal WHERE server_id = $1 AND kind = $2 AND"
                           " authority_id = $3",
                           {server_id, std::string(AuthorityKindName(kind)), authority_id}));
    if (n == 0) return absl::NotFoundError("no CA journal entry " + authority_id);
    return absl::OkStatus();
  });
}

}  // namespace trellis::datastore::sql
