// SqliteDataStore: the embedded default backend, one SQLite file in WAL mode.
#pragma once

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "datastore/options.h"
#include "datastore/sql/sql_datastore.h"

namespace trellis::datastore {

// One connection behind a mutex: SQLite allows a single writer anyway, and serialising
// readers on the connection keeps the statement cache simple. Other processes may still
// read the file concurrently thanks to WAL. Durability: synchronous=FULL, so a commit that
// returned survives power loss (a consumed join token must never come back).
class SqliteDataStore final : public sql::SqlDataStore {
 public:
  // Opens or creates `path` (mode 0600, also its -wal/-shm) and migrates the schema.
  static absl::StatusOr<std::unique_ptr<SqliteDataStore>> Open(const std::string& path,
                                                               const DataStoreOptions& options);

  // The journal mode in effect, "wal" in normal operation.
  absl::StatusOr<std::string> JournalMode();
  // The PRAGMA synchronous level in effect (2 = FULL).
  absl::StatusOr<int> SynchronousLevel();

 private:
  using SqlDataStore::SqlDataStore;
};

}  // namespace trellis::datastore
