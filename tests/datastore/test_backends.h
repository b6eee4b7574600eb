// Test harness: a fresh database per test on each backend, plus raw SQL access to it.
#pragma once

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "datastore/datastore.h"
#include "datastore/options.h"

namespace trellis::datastore::testing {

// One isolated database: a temp SQLite file, or a fresh schema in the test PostgreSQL.
class TestBackend {
 public:
  virtual ~TestBackend() = default;
  // "sqlite3" or "postgres", as CreateDataStore takes it.
  virtual std::string Type() const = 0;
  virtual std::string ConnectionString() const = 0;
  absl::StatusOr<std::unique_ptr<DataStore>> Open(const DataStoreOptions& options);
  // Runs SQL beside the store, e.g. to plant rows the store would never write.
  virtual absl::Status ExecRaw(const std::string& sql) = 0;
  // Client connections the database server sees from stores opened on this backend.
  virtual absl::StatusOr<int64_t> ServerConnections() { return 0; }
};

// "Sqlite" or "Postgres". Postgres needs TRELLIS_TEST_POSTGRES_DSN; without it this returns
// FAILED_PRECONDITION telling to run the tests through scripts/with-postgres.sh.
absl::StatusOr<std::unique_ptr<TestBackend>> MakeTestBackend(const std::string& name);

// The DSN from TRELLIS_TEST_POSTGRES_DSN, or FAILED_PRECONDITION saying how to get one.
absl::StatusOr<std::string> PostgresTestDsn();

}  // namespace trellis::datastore::testing
