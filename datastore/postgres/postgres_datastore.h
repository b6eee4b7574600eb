// PostgresDataStore: the shared backend for several servers (HA), over libpqxx.
#pragma once

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "datastore/options.h"
#include "datastore/sql/sql_datastore.h"

namespace trellis::datastore {

class PostgresEngine;

// A bounded pool of connections (options.pool_size), opened on demand. A call that finds its
// connection broken (server restarted, network cut) drops it and runs once more on a fresh
// one, so the first call after the server is back succeeds. Transactions run at READ
// COMMITTED with explicit row locks (SELECT ... FOR UPDATE) where they read then write;
// join tokens are consumed by one DELETE ... RETURNING.
class PostgresDataStore final : public sql::SqlDataStore {
 public:
  // `connection_string` is a libpq string ("host=... dbname=..." or a postgresql:// URI).
  static absl::StatusOr<std::unique_ptr<PostgresDataStore>> Open(
      const std::string& connection_string, const DataStoreOptions& options);

  // Connections currently open, idle or in use; never above options.pool_size.
  int OpenConnections() const;
  // Connections dropped because they broke (or were idle when another one broke).
  int64_t DiscardedConnections() const;

 private:
  PostgresDataStore(std::unique_ptr<PostgresEngine> engine, const DataStoreOptions& options,
                    PostgresEngine* raw);
  PostgresEngine* pg_;  // owned by the base class
};

}  // namespace trellis::datastore
