// Entry creation throughput of each DataStore backend against a raw-insert floor measured on
// the same backend in the same run (same schema, same durability settings).
//
//   datastore_bench                                   SQLite only
//   scripts/with-postgres.sh build/bench/datastore_bench   SQLite and PostgreSQL
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <sqlite3.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <functional>
#include <memory>
#include <pqxx/pqxx>
#include <string>
#include <vector>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "datastore/datastore.h"
#include "datastore/postgres/postgres_datastore.h"
#include "datastore/sqlite/sqlite_datastore.h"

namespace trellis::datastore {
namespace {

constexpr double kSecondsPerRun = 1.5;
constexpr int kBatch = 100;
constexpr double kTargetRatio = 0.8;

using Clock = std::chrono::steady_clock;

// Calls `step` (which creates `per_step` entries) until the time budget is spent.
// Returns entries per second, or a negative value when a step failed.
double Measure(int per_step, const std::function<bool(int)>& step) {
  static int counter = 0;
  auto start = Clock::now();
  int64_t done = 0;
  double elapsed = 0;
  do {
    if (!step(counter++)) return -1;
    done += per_step;
    elapsed = std::chrono::duration<double>(Clock::now() - start).count();
  } while (elapsed < kSecondsPerRun);
  return done / elapsed;
}

RegistrationEntry Entry(const std::string& tag, int step, int i) {
  RegistrationEntry e;
  e.spiffe_id = absl::StrCat("spiffe://example.org/", tag, "/w", step, "-", i);
  e.parent_id = "spiffe://example.org/spire/agent/join_token/x";
  e.selectors = {{"unix", absl::StrCat("uid:", i)}};
  e.x509_svid_ttl = 3600;
  return e;
}

// The floor's rows carry what the store's rows carry: a random UUID id and a SHA-256 hex
// uniqueness key. Random keys spread index writes over the B-trees, which costs real I/O,
// so a floor with sequential keys would not be an equivalent row.
std::string RandomId() {
  unsigned char b[16];
  RAND_bytes(b, sizeof(b));
  return absl::BytesToHexString(std::string(reinterpret_cast<char*>(b), sizeof(b)));
}
std::string DigestKey(const RegistrationEntry& e) {
  std::string s = e.spiffe_id + e.parent_id + e.selectors[0].type + e.selectors[0].value;
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  EVP_Digest(s.data(), s.size(), md, &len, EVP_sha256(), nullptr);
  return absl::BytesToHexString(std::string(reinterpret_cast<char*>(md), len));
}

struct Result {
  std::string name;
  double store = 0;
  double raw = 0;
};

// Measures store and raw floor alternately, twice each, keeping the better run of each so a
// burst of load from other processes hurts neither side alone.
Result Compare(const std::string& name, int per_step, const std::function<bool(int)>& store,
               const std::function<bool(int)>& raw) {
  Result r{name, 0, 0};
  for (int rep = 0; rep < 2; ++rep) {
    r.raw = std::max(r.raw, Measure(per_step, raw));
    r.store = std::max(r.store, Measure(per_step, store));
  }
  return r;
}

bool Print(const Result& r) {
  if (r.store <= 0 || r.raw <= 0) {
    std::printf("%-28s FAILED\n", r.name.c_str());
    return false;
  }
  double ratio = r.store / r.raw;
  std::printf("%-28s store %10.0f entries/s   raw floor %10.0f entries/s   ratio %.2f %s\n",
              r.name.c_str(), r.store, r.raw, ratio, ratio >= kTargetRatio ? "ok" : "BELOW 0.8");
  return ratio >= kTargetRatio;
}

// ---- SQLite ----

struct SqliteRaw {
  sqlite3* db = nullptr;
  sqlite3_stmt* entry = nullptr;
  sqlite3_stmt* selector = nullptr;
  ~SqliteRaw() {
    sqlite3_finalize(entry);
    sqlite3_finalize(selector);
    sqlite3_close(db);
  }
  bool Exec(const char* sql) { return sqlite3_exec(db, sql, nullptr, nullptr, nullptr) == 0; }
  bool Insert(const RegistrationEntry& e, const std::string& id, const std::string& key) {
    sqlite3_bind_text(entry, 1, id.c_str(), -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(entry, 2, e.spiffe_id.c_str(), -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(entry, 3, e.parent_id.c_str(), -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(entry, 4, key.c_str(), -1, SQLITE_TRANSIENT);
    sqlite3_bind_int64(entry, 5, e.x509_svid_ttl);
    bool ok = sqlite3_step(entry) == SQLITE_ROW;
    int64_t seq = sqlite3_column_int64(entry, 0);
    sqlite3_reset(entry);
    if (!ok) return false;
    sqlite3_bind_int64(selector, 1, seq);
    sqlite3_bind_text(selector, 2, e.selectors[0].type.c_str(), -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(selector, 3, e.selectors[0].value.c_str(), -1, SQLITE_TRANSIENT);
    ok = sqlite3_step(selector) == SQLITE_DONE;
    sqlite3_reset(selector);
    return ok;
  }
};

bool RunSqlite(const std::string& dir) {
  std::string store_path = dir + "/store.sqlite3";
  std::string raw_path = dir + "/raw.sqlite3";
  auto store = SqliteDataStore::Open(store_path, {});
  // The floor gets the same schema and indexes, created by the store, then plain inserts.
  auto schema_only = SqliteDataStore::Open(raw_path, {});
  if (!store.ok() || !schema_only.ok()) {
    std::printf("sqlite: cannot open: %s\n",
                (!store.ok() ? store.status() : schema_only.status()).ToString().c_str());
    return false;
  }
  schema_only->reset();
  SqliteRaw raw;
  if (sqlite3_open(raw_path.c_str(), &raw.db) != SQLITE_OK ||
      !raw.Exec("PRAGMA journal_mode = WAL") || !raw.Exec("PRAGMA synchronous = FULL") ||
      !raw.Exec("PRAGMA foreign_keys = ON") ||
      sqlite3_prepare_v2(raw.db,
                         "INSERT INTO entries (id, spiffe_id, parent_id, unique_key,"
                         " x509_svid_ttl, jwt_svid_ttl, admin, downstream, expires_at,"
                         " revision_number, created_at, hint) VALUES (?1, ?2, ?3, ?4, ?5, 0, 0,"
                         " 0, 0, 0, 1800000000, '') RETURNING seq",
                         -1, &raw.entry, nullptr) != SQLITE_OK ||
      sqlite3_prepare_v2(raw.db,
                         "INSERT INTO entry_selectors (entry_seq, type, value) VALUES (?1, ?2, ?3)",
                         -1, &raw.selector, nullptr) != SQLITE_OK) {
    std::printf("sqlite: raw setup failed: %s\n", sqlite3_errmsg(raw.db));
    return false;
  }
  auto raw_step = [&](int step, int n) {
    if (!raw.Exec("BEGIN IMMEDIATE")) return false;
    for (int i = 0; i < n; ++i) {
      RegistrationEntry e = Entry("raw", step, i);
      if (!raw.Insert(e, RandomId(), DigestKey(e))) {
        raw.Exec("ROLLBACK");
        return false;
      }
    }
    return raw.Exec("COMMIT");
  };
  DataStore& ds = **store;
  bool ok = Print(Compare(
      "sqlite one-by-one", 1, [&](int s) { return ds.CreateEntry(Entry("one", s, 0)).ok(); },
      [&](int s) { return raw_step(s, 1); }));
  ok &= Print(Compare(
      absl::StrCat("sqlite batch of ", kBatch), kBatch,
      [&](int s) {
        std::vector<RegistrationEntry> batch;
        for (int i = 0; i < kBatch; ++i) batch.push_back(Entry("batch", s, i));
        return ds.CreateEntries(batch).ok();
      },
      [&](int s) { return raw_step(s, kBatch); }));
  return ok;
}

// ---- PostgreSQL ----

bool RunPostgres(const std::string& dsn) {
  std::string suffix = absl::StrCat(::getpid());
  std::string store_schema = "bench_store_" + suffix, raw_schema = "bench_raw_" + suffix;
  try {
    pqxx::connection admin(dsn);
    pqxx::nontransaction tx(admin);
    tx.exec("CREATE SCHEMA " + store_schema + "; CREATE SCHEMA " + raw_schema);
  } catch (const std::exception& e) {
    std::printf("postgres: setup failed: %s\n", e.what());
    return false;
  }
  auto with_schema = [&](const std::string& schema) {
    return absl::StrCat(dsn, " options='-csearch_path=", schema, "'");
  };
  DataStoreOptions options;
  options.pool_size = 1;  // one writer, like the floor
  auto store = PostgresDataStore::Open(with_schema(store_schema), options);
  auto schema_only = PostgresDataStore::Open(with_schema(raw_schema), options);
  bool ok = store.ok() && schema_only.ok();
  if (!ok) {
    std::printf("postgres: cannot open: %s\n",
                (!store.ok() ? store.status() : schema_only.status()).ToString().c_str());
  }
  if (ok) {
    schema_only->reset();
    try {
      pqxx::connection conn(with_schema(raw_schema));
      conn.prepare("entry",
                   "INSERT INTO entries (id, spiffe_id, parent_id, unique_key, x509_svid_ttl,"
                   " jwt_svid_ttl, admin, downstream, expires_at, revision_number, created_at,"
                   " hint) VALUES ($1, $2, $3, $4, $5, 0, 0, 0, 0, 0, 1800000000, '')"
                   " RETURNING seq");
      conn.prepare("selector",
                   "INSERT INTO entry_selectors (entry_seq, type, value) VALUES ($1, $2, $3)");
      auto raw_step = [&](int step, int n) {
        pqxx::work w(conn);
        for (int i = 0; i < n; ++i) {
          RegistrationEntry e = Entry("raw", step, i);
          pqxx::result r = w.exec_prepared("entry", RandomId(), e.spiffe_id, e.parent_id,
                                           DigestKey(e), e.x509_svid_ttl);
          w.exec_prepared("selector", r[0][0].as<int64_t>(), e.selectors[0].type,
                          e.selectors[0].value);
        }
        w.commit();
        return true;
      };
      DataStore& ds = **store;
      ok &= Print(Compare(
          "postgres one-by-one", 1, [&](int s) { return ds.CreateEntry(Entry("one", s, 0)).ok(); },
          [&](int s) { return raw_step(s, 1); }));
      ok &= Print(Compare(
          absl::StrCat("postgres batch of ", kBatch), kBatch,
          [&](int s) {
            std::vector<RegistrationEntry> batch;
            for (int i = 0; i < kBatch; ++i) batch.push_back(Entry("batch", s, i));
            return ds.CreateEntries(batch).ok();
          },
          [&](int s) { return raw_step(s, kBatch); }));
    } catch (const std::exception& e) {
      std::printf("postgres: raw floor failed: %s\n", e.what());
      ok = false;
    }
  }
  store = absl::UnknownError("closed");
  try {
    pqxx::connection admin(dsn);
    pqxx::nontransaction tx(admin);
    tx.exec("DROP SCHEMA " + store_schema + " CASCADE; DROP SCHEMA " + raw_schema + " CASCADE");
  } catch (const std::exception&) {
  }
  return ok;
}

}  // namespace
}  // namespace trellis::datastore

int main() {
  std::string tmpl = (std::filesystem::temp_directory_path() / "trellis-bench-XXXXXX").string();
  if (::mkdtemp(tmpl.data()) == nullptr) {
    std::perror("mkdtemp");
    return 1;
  }
  std::printf("DataStore entry creation, target ratio >= %.1f of a raw insert floor\n",
              trellis::datastore::kTargetRatio);
  bool ok = trellis::datastore::RunSqlite(tmpl);
  std::error_code ec;
  std::filesystem::remove_all(tmpl, ec);
  const char* dsn = std::getenv("TRELLIS_TEST_POSTGRES_DSN");
  if (dsn != nullptr && *dsn != '\0') {
    ok &= trellis::datastore::RunPostgres(dsn);
  } else {
    std::printf(
        "postgres: not measured (TRELLIS_TEST_POSTGRES_DSN unset; run through "
        "scripts/with-postgres.sh)\n");
  }
  return ok ? 0 : 1;
}
