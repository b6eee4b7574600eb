// Builds the DataStore named by the server configuration (`DataStore "sql"` plugin).
#pragma once

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "datastore/datastore.h"
#include "datastore/options.h"

namespace trellis::datastore {

// database_type: "sqlite3" (connection_string is a file path) or "postgres"
// (connection_string is a libpq connection string). Migrates the schema before returning.
absl::StatusOr<std::unique_ptr<DataStore>> CreateDataStore(const std::string& database_type,
                                                           const std::string& connection_string,
                                                           const DataStoreOptions& options = {});

}  // namespace trellis::datastore
