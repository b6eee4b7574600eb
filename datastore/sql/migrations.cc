// Schema migrations. Each version is written once with {ID}/{INT}/{BLOB} standing for the
// backend's auto-increment key, 64-bit integer and byte-string types.
#include "datastore/sql/migrations.h"

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "common/status.h"

namespace trellis::datastore::sql {
namespace {

// Version 1: the base schema.
const char* const kV1[] = {
    "CREATE TABLE bundles ("
    " trust_domain TEXT PRIMARY KEY,"
    " refresh_hint {INT} NOT NULL,"
    " sequence_number {INT} NOT NULL)",

    "CREATE TABLE x509_authorities ("
    " trust_domain TEXT NOT NULL REFERENCES bundles(trust_domain) ON DELETE CASCADE,"
    " fingerprint TEXT NOT NULL,"
    " ca_der {BLOB} NOT NULL,"
    " expires_at {INT} NOT NULL,"
    " tainted {INT} NOT NULL,"
    " PRIMARY KEY (trust_domain, fingerprint))",

    "CREATE TABLE jwt_authorities ("
    " trust_domain TEXT NOT NULL REFERENCES bundles(trust_domain) ON DELETE CASCADE,"
    " kid TEXT NOT NULL,"
    " public_key {BLOB} NOT NULL,"
    " expires_at {INT} NOT NULL,"
    " tainted {INT} NOT NULL,"
    " PRIMARY KEY (trust_domain, kid))",

    // unique_key is a digest of (spiffe_id, parent_id, sorted selectors) so the database
    // itself enforces SPIRE's uniqueness rule, also between servers sharing it.
    "CREATE TABLE entries ("
    " seq {ID},"
    " id TEXT NOT NULL UNIQUE,"
    " spiffe_id TEXT NOT NULL,"
    " parent_id TEXT NOT NULL,"
    " unique_key TEXT NOT NULL UNIQUE,"
    " x509_svid_ttl {INT} NOT NULL,"
    " jwt_svid_ttl {INT} NOT NULL,"
    " admin {INT} NOT NULL,"
    " downstream {INT} NOT NULL,"
    " expires_at {INT} NOT NULL,"
    " revision_number {INT} NOT NULL,"
    " created_at {INT} NOT NULL)",
    "CREATE INDEX entries_spiffe_id ON entries(spiffe_id)",
    "CREATE INDEX entries_parent_id ON entries(parent_id)",

    "CREATE TABLE entry_selectors ("
    " entry_seq {INT} NOT NULL REFERENCES entries(seq) ON DELETE CASCADE,"
    " type TEXT NOT NULL,"
    " value TEXT NOT NULL,"
    " PRIMARY KEY (entry_seq, type, value))",
    "CREATE INDEX entry_selectors_type_value ON entry_selectors(type, value)",

    "CREATE TABLE entry_federates_with ("
    " entry_seq {INT} NOT NULL REFERENCES entries(seq) ON DELETE CASCADE,"
    " trust_domain TEXT NOT NULL,"
    " PRIMARY KEY (entry_seq, trust_domain))",
    "CREATE INDEX entry_federates_with_td ON entry_federates_with(trust_domain)",

    "CREATE TABLE entry_dns_names ("
    " entry_seq {INT} NOT NULL REFERENCES entries(seq) ON DELETE CASCADE,"
    " position {INT} NOT NULL,"
    " name TEXT NOT NULL,"
    " PRIMARY KEY (entry_seq, position))",

    "CREATE TABLE attested_nodes ("
    " seq {ID},"
    " spiffe_id TEXT NOT NULL UNIQUE,"
    " attestation_data_type TEXT NOT NULL,"
    " cert_serial_number TEXT NOT NULL,"
    " cert_not_after {INT} NOT NULL,"
    " new_cert_serial_number TEXT NOT NULL,"
    " new_cert_not_after {INT} NOT NULL,"
    " banned {INT} NOT NULL,"
    " can_reattest {INT} NOT NULL,"
    " created_at {INT} NOT NULL)",

    "CREATE TABLE node_selectors ("
    " spiffe_id TEXT NOT NULL,"
    " type TEXT NOT NULL,"
    " value TEXT NOT NULL,"
    " PRIMARY KEY (spiffe_id, type, value))",
    "CREATE INDEX node_selectors_type_value ON node_selectors(type, value)",

    "CREATE TABLE join_tokens ("
    " token TEXT PRIMARY KEY,"
    " expires_at {INT} NOT NULL)",

    "CREATE TABLE ca_journal ("
    " seq {ID},"
    " server_id TEXT NOT NULL,"
    " kind TEXT NOT NULL,"
    " authority_id TEXT NOT NULL,"
    " status TEXT NOT NULL,"
    " data {BLOB} NOT NULL,"
    " not_after {INT} NOT NULL,"
    " created_at {INT} NOT NULL,"
    " updated_at {INT} NOT NULL,"
    " UNIQUE (server_id, kind, authority_id))",

    "CREATE TABLE federation_relationships ("
    " trust_domain TEXT PRIMARY KEY,"
    " bundle_endpoint_url TEXT NOT NULL,"
    " profile TEXT NOT NULL,"
    " endpoint_spiffe_id TEXT NOT NULL,"
    " created_at {INT} NOT NULL)",

    "CREATE TABLE events ("
    " id {ID},"
    " kind TEXT NOT NULL,"
    " entry_id TEXT NOT NULL,"
    " node_spiffe_id TEXT NOT NULL,"
    " created_at {INT} NOT NULL)",
};

// Version 2: the entry hint (SPIFFE Workload API `hint`) and an index for event pruning.
const char* const kV2[] = {
    "ALTER TABLE entries ADD COLUMN hint TEXT NOT NULL DEFAULT ''",
    "CREATE INDEX entries_hint ON entries(hint)",
    "CREATE INDEX events_created_at ON events(created_at)",
};

// Version 3: bundle changes join the change log, so replicas hear of them at once.
const char* const kV3[] = {
    "ALTER TABLE events ADD COLUMN trust_domain TEXT NOT NULL DEFAULT ''",
};

std::string Expand(const char* sql, Dialect dialect) {
  if (dialect == Dialect::kSqlite) {
    return absl::StrReplaceAll(
        sql,
        {{"{ID}", "INTEGER PRIMARY KEY AUTOINCREMENT"}, {"{INT}", "INTEGER"}, {"{BLOB}", "BLOB"}});
  }
  return absl::StrReplaceAll(
      sql, {{"{ID}", "BIGSERIAL PRIMARY KEY"}, {"{INT}", "BIGINT"}, {"{BLOB}", "BYTEA"}});
}

}  // namespace

std::vector<std::string> MigrationSteps(Dialect dialect, int version) {
  std::vector<std::string> out;
  auto add = [&](const auto& steps) {
    for (const char* s : steps) out.push_back(Expand(s, dialect));
  };
  if (version == 1) add(kV1);
  if (version == 2) add(kV2);
  if (version == 3) add(kV3);
  return out;
}

absl::StatusOr<int> ReadSchemaVersion(Tx& tx) {
  TRELLIS_ASSIGN_OR_RETURN(Rows rows, tx.Query("SELECT version FROM schema_version WHERE id = 1"));
  if (rows.empty()) return 0;
  int version = 0;
  if (!rows[0][0] || !absl::SimpleAtoi(*rows[0][0], &version) || version < 0) {
    return absl::DataLossError("schema_version.version holds an invalid value");
  }
  return version;
}

absl::Status Migrate(Engine& engine, int target) {
  if (target == 0) target = kLatestSchemaVersion;
  if (target < 0 || target > kLatestSchemaVersion) {
    return absl::InvalidArgumentError(absl::StrCat("unknown target schema version ", target,
                                                   " (this binary knows 1..", kLatestSchemaVersion,
                                                   ")"));
  }
  return engine.Run(true, [&](Tx& tx) -> absl::Status {
    if (engine.dialect() == Dialect::kPostgres) {
      // Servers starting together on one database take turns migrating it.
      TRELLIS_RETURN_IF_ERROR(
          tx.Query("SELECT pg_advisory_xact_lock(hashtext(current_schema()))").status());
    }
    TRELLIS_RETURN_IF_ERROR(
        tx.Exec("CREATE TABLE IF NOT EXISTS schema_version ("
                " id INTEGER PRIMARY KEY CHECK (id = 1), version INTEGER NOT NULL)")
            .status());
    TRELLIS_ASSIGN_OR_RETURN(int current, ReadSchemaVersion(tx));
    if (current > target) {
      return absl::FailedPreconditionError(
          absl::StrCat("database schema version ", current, " is newer than version ", target,
                       " that this binary runs; refusing to start"));
    }
    for (int v = current + 1; v <= target; ++v) {
      for (const std::string& step : MigrationSteps(engine.dialect(), v)) {
        absl::Status s = tx.Exec(step).status();
        if (!s.ok()) return Annotate(s, absl::StrCat("schema migration to version ", v));
      }
    }
    if (current != target) {
      TRELLIS_RETURN_IF_ERROR(tx.Exec("INSERT INTO schema_version (id, version) VALUES (1, $1)"
                                      " ON CONFLICT (id) DO UPDATE SET version = excluded.version",
                                      {int64_t{target}})
                                  .status());
    }
    return absl::OkStatus();
  });
}

}  // namespace trellis::datastore::sql
