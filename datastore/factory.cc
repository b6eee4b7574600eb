// Picks the backend for CreateDataStore.
#include "datastore/factory.h"

#include "datastore/postgres_module.h"
#include "datastore/sqlite/sqlite_datastore.h"

namespace trellis::datastore {

absl::StatusOr<std::unique_ptr<DataStore>> CreateDataStore(const std::string& database_type,
                                                           const std::string& connection_string,
                                                           const DataStoreOptions& options) {
  if (database_type == "sqlite3") {
    auto store = SqliteDataStore::Open(connection_string, options);
    if (!store.ok()) return store.status();
    return std::unique_ptr<DataStore>(std::move(*store));
  }
  if (database_type == "postgres") return OpenPostgresThroughModule(connection_string, options);
  return absl::InvalidArgumentError("unknown database_type \"" + database_type +
                                    "\" (want sqlite3 or postgres)");
}

}  // namespace trellis::datastore
