// Test harness backends: temp-dir SQLite files and throwaway PostgreSQL schemas.
#include "tests/datastore/test_backends.h"

#include <sqlite3.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <pqxx/pqxx>
#include <random>

#include "absl/strings/str_cat.h"
#include "datastore/factory.h"
#include "datastore/postgres/postgres_datastore.h"
#include "tests/testutil/temp_dir.h"

namespace trellis::datastore::testing {
namespace {

std::string RandomSuffix() {
  std::random_device rd;
  std::mt19937_64 gen((static_cast<uint64_t>(rd()) << 32) ^ rd() ^ ::getpid());
  return absl::StrCat(::getpid(), "_", gen() % 1000000000);
}

class SqliteTestBackend final : public TestBackend {
 public:
  SqliteTestBackend() : dir_("trellis-ds"), path_(dir_.Sub("datastore.sqlite3")) {}
  std::string Type() const override { return "sqlite3"; }
  std::string ConnectionString() const override { return path_; }
  absl::Status ExecRaw(const std::string& sql) override {
    sqlite3* db = nullptr;
    int rc = sqlite3_open(path_.c_str(), &db);
    if (rc == SQLITE_OK) {
      sqlite3_busy_timeout(db, 10000);
      char* err = nullptr;
      rc = sqlite3_exec(db, sql.c_str(), nullptr, nullptr, &err);
      std::string msg = err ? err : "";
      sqlite3_free(err);
      sqlite3_close(db);
      if (rc == SQLITE_OK) return absl::OkStatus();
      return absl::InternalError("raw sqlite: " + msg);
    }
    sqlite3_close(db);
    return absl::InternalError("raw sqlite: cannot open " + path_);
  }

 private:
  testutil::TempDir dir_;
  std::string path_;
};

class PostgresTestBackend final : public TestBackend {
 public:
  PostgresTestBackend(std::string dsn, std::string schema)
      : dsn_(std::move(dsn)), schema_(std::move(schema)) {}
  ~PostgresTestBackend() override { (void)Raw("DROP SCHEMA IF EXISTS " + schema_ + " CASCADE"); }
  std::string Type() const override { return "postgres"; }
  std::string ConnectionString() const override {
    return absl::StrCat(dsn_, " application_name=", schema_, " options='-csearch_path=", schema_,
                        "'");
  }
  absl::Status ExecRaw(const std::string& sql) override {
    return Raw("SET search_path TO " + schema_ + "; " + sql);
  }
  absl::Status Raw(const std::string& sql) {
    try {
      pqxx::connection c(dsn_);
      pqxx::nontransaction tx(c);
      tx.exec(sql);
      return absl::OkStatus();
    } catch (const std::exception& e) {
      return absl::InternalError(std::string("raw postgres: ") + e.what());
    }
  }
  absl::StatusOr<int64_t> ServerConnections() override {
    try {
      pqxx::connection c(dsn_);
      pqxx::nontransaction tx(c);
      pqxx::result r = tx.exec("SELECT count(*) FROM pg_stat_activity WHERE application_name = " +
                               tx.quote(schema_));
      return r[0][0].as<int64_t>();
    } catch (const std::exception& e) {
      return absl::InternalError(std::string("raw postgres: ") + e.what());
    }
  }
  const std::string& schema() const { return schema_; }

 private:
  std::string dsn_;
  std::string schema_;
};

}  // namespace

absl::StatusOr<std::unique_ptr<DataStore>> TestBackend::Open(const DataStoreOptions& options) {
  // PostgreSQL directly: trellis-server reaches it through its module, which lives next to
  // trellis-server, not next to this test.
  if (Type() == "postgres") {
    auto store = PostgresDataStore::Open(ConnectionString(), options);
    if (!store.ok()) return store.status();
    return std::unique_ptr<DataStore>(std::move(*store));
  }
  return CreateDataStore(Type(), ConnectionString(), options);
}

absl::StatusOr<std::string> PostgresTestDsn() {
  const char* dsn = std::getenv("TRELLIS_TEST_POSTGRES_DSN");
  if (dsn == nullptr || *dsn == '\0') {
    return absl::FailedPreconditionError(
        "TRELLIS_TEST_POSTGRES_DSN is not set: run the PostgreSQL tests through "
        "scripts/with-postgres.sh, e.g. scripts/with-postgres.sh ctest -L postgres");
  }
  return std::string(dsn);
}

absl::StatusOr<std::unique_ptr<TestBackend>> MakeTestBackend(const std::string& name) {
  if (name == "Sqlite") return std::make_unique<SqliteTestBackend>();
  if (name == "Postgres") {
    auto dsn = PostgresTestDsn();
    if (!dsn.ok()) return dsn.status();
    auto backend = std::make_unique<PostgresTestBackend>(*dsn, "t_" + RandomSuffix());
    absl::Status s = backend->Raw("CREATE SCHEMA " + backend->schema());
    if (!s.ok()) return s;
    return backend;
  }
  return absl::InvalidArgumentError("unknown test backend " + name);
}

}  // namespace trellis::datastore::testing
