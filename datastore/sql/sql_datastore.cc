// SqlDataStore construction, transactions and the change log shared by every table.
#include "datastore/sql/sql_datastore.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "common/status.h"
#include "datastore/sql/migrations.h"
#include "datastore/sql/sql_rows.h"

namespace trellis::datastore::sql {

SqlDataStore::SqlDataStore(std::unique_ptr<Engine> engine, const DataStoreOptions& options)
    : engine_(std::move(engine)), options_(options) {}

SqlDataStore::~SqlDataStore() = default;

absl::Status SqlDataStore::Initialize() {
  return Migrate(*engine_, options_.target_schema_version);
}

int64_t SqlDataStore::NowSeconds() const {
  return Sec(options_.clock != nullptr ? options_.clock->Now() : absl::Now());
}

std::string SqlDataStore::ForUpdate() const {
  return engine_->dialect() == Dialect::kPostgres ? " FOR UPDATE" : "";
}

absl::Status SqlDataStore::Write(const std::function<absl::Status(Tx&, Events&)>& fn) {
  return engine_->Run(true, [&](Tx& tx) -> absl::Status {
    Events events;
    TRELLIS_RETURN_IF_ERROR(fn(tx, events));
    return FlushEvents(tx, events);
  });
}

absl::Status SqlDataStore::Read(const std::function<absl::Status(Tx&)>& fn) {
  return engine_->Run(false, fn);
}

absl::Status SqlDataStore::FlushEvents(Tx& tx, const Events& events) {
  if (events.empty()) return absl::OkStatus();
  const bool pg = engine_->dialect() == Dialect::kPostgres;
  // Multi-row inserts in chunks of a fixed size keep batches to a few statements while the
  // set of distinct statement texts (and so the statement cache) stays small.
  constexpr size_t kChunk = 32;
  int64_t now = NowSeconds();
  for (size_t begin = 0; begin < events.size(); begin += kChunk) {
    size_t end = std::min(events.size(), begin + kChunk);
    std::string sql = "INSERT INTO events (kind, entry_id, node_spiffe_id, trust_domain, created_at) ";
    if (pg && begin == 0) {
      // On PostgreSQL the first insert takes, in the same round trip, an advisory lock held
      // to commit, so event ids become visible in increasing order: a reader that has seen
      // id N never later finds a committed id below N. No row (and so no id) exists before
      // the lock is granted. It is taken last in the transaction to avoid deadlocks. The
      // notification goes out at commit, so servers sharing the database can LISTEN on
      // trellis_events instead of polling the log.
      sql +=
          "SELECT v.kind, v.entry_id, v.node_spiffe_id, v.trust_domain, v.created_at FROM (SELECT"
          " pg_advisory_xact_lock(hashtext(current_schema() || '.events')),"
          " pg_notify('trellis_events', current_schema())) AS l, (VALUES ";
    } else {
      sql += "VALUES ";
    }
    Params params;
    params.reserve((end - begin) * 5);
    for (size_t i = begin; i < end; ++i) {
      const PendingEvent& e = events[i];
      bool entry = e.kind == EventKind::kEntryCreated || e.kind == EventKind::kEntryUpdated ||
                   e.kind == EventKind::kEntryDeleted;
      bool bundle = e.kind == EventKind::kBundleUpdated;
      size_t n = params.size();
      absl::StrAppend(&sql, i == begin ? "" : ", ", "($", n + 1, ", $", n + 2, ", $", n + 3, ", $",
                      n + 4, ", $", n + 5, pg ? "::bigint)" : ")");
      params.emplace_back(std::in_place_type<std::string>, EventKindName(e.kind));
      params.emplace_back(std::in_place_type<std::string>, entry ? e.id : "");
      params.emplace_back(std::in_place_type<std::string>, entry || bundle ? "" : e.id);
      params.emplace_back(std::in_place_type<std::string>, bundle ? e.id : "");
      params.emplace_back(std::in_place_type<int64_t>, now);
    }
    if (pg && begin == 0) sql += ") AS v (kind, entry_id, node_spiffe_id, trust_domain, created_at)";
    TRELLIS_RETURN_IF_ERROR(tx.Exec(sql, params).status());
  }
  return absl::OkStatus();
}

absl::StatusOr<int> SqlDataStore::SchemaVersion() {
  int version = 0;
  TRELLIS_RETURN_IF_ERROR(Read([&](Tx& tx) -> absl::Status {
    TRELLIS_ASSIGN_OR_RETURN(version, ReadSchemaVersion(tx));
    return absl::OkStatus();
  }));
  return version;
}

// ---- change log ----

absl::StatusOr<std::vector<Event>> SqlDataStore::ListEvents(int64_t after_id, int32_t limit) {
  if (limit < 0) return absl::InvalidArgumentError("event limit must not be negative");
  Params params{after_id};
  std::string sql =
      "SELECT id, kind, entry_id, node_spiffe_id, trust_domain, created_at FROM events"
      " WHERE id > $1"
      " ORDER BY id";
  if (limit > 0) {
    sql += " LIMIT $2";
    params.push_back(int64_t{limit});
  }
  std::vector<Event> out;
  TRELLIS_RETURN_IF_ERROR(Read([&](Tx& tx) -> absl::Status {
    out.clear();
    TRELLIS_ASSIGN_OR_RETURN(Rows rows, tx.Query(sql, params));
    for (const Row& row : rows) {
      RowReader r(row, "events");
      Event e;
      e.id = r.Int("id");
      r.SetKey(absl::StrCat("id ", e.id));
      e.kind = r.Enum("kind", &ParseEventKind);
      e.entry_id = r.Text("entry_id");
      e.node_spiffe_id = r.Text("node_spiffe_id");
      e.trust_domain = r.Text("trust_domain");
      e.created_at = r.Time("created_at");
      TRELLIS_RETURN_IF_ERROR(r.status());
      out.push_back(std::move(e));
    }
    return absl::OkStatus();
  }));
  return out;
}

absl::StatusOr<int64_t> SqlDataStore::PruneEvents(absl::Time older_than) {
  int64_t n = 0;
  TRELLIS_RETURN_IF_ERROR(Write([&](Tx& tx, Events&) -> absl::Status {
    // The newest event always stays so MaxEventId never moves backwards.
    TRELLIS_ASSIGN_OR_RETURN(n, tx.Exec("DELETE FROM events WHERE created_at < $1 AND"
                                        " id < (SELECT MAX(id) FROM events)",
                                        {Sec(older_than)}));
    return absl::OkStatus();
  }));
  return n;
}

absl::StatusOr<int64_t> SqlDataStore::MaxEventId() {
  int64_t n = 0;
  TRELLIS_RETURN_IF_ERROR(Read([&](Tx& tx) -> absl::Status {
    TRELLIS_ASSIGN_OR_RETURN(Rows rows, tx.Query("SELECT COALESCE(MAX(id), 0) FROM events"));
    RowReader r(rows.at(0), "events");
    n = r.Int("max(id)");
    return r.status();
  }));
  return n;
}

absl::StatusOr<int64_t> SqlDataStore::CountRows(const std::string& table) {
  int64_t n = 0;
  TRELLIS_RETURN_IF_ERROR(Read([&](Tx& tx) -> absl::Status {
    TRELLIS_ASSIGN_OR_RETURN(Rows rows, tx.Query("SELECT COUNT(*) FROM " + table));
    RowReader r(rows.at(0), table);
    n = r.Int("count");
    return r.status();
  }));
  return n;
}

}  // namespace trellis::datastore::sql
