// The PostgreSQL backend is a module (trellis-datastore-postgres.so) that trellis-server loads
// when the configuration asks for PostgreSQL: libpq brings twenty-odd shared libraries, which
// every CLI call and every SQLite server would otherwise load at start for nothing. This is
// the contract between the loader (in trellis_datastore) and the module.
#pragma once

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "common/config/shared_config.h"
#include "common/log.h"
#include "datastore/datastore.h"
#include "datastore/options.h"

namespace trellis::datastore {

inline constexpr char kPostgresModuleFile[] = "trellis-datastore-postgres.so";
inline constexpr char kPostgresModuleSymbol[] = "trellis_datastore_postgres_open";

struct PostgresModuleArgs {
  // Digest of the headers the two sides share: a module from another build is refused
  // rather than trusted to lay out these types the same way.
  const char* abi;
  const std::string* connection_string;
  const DataStoreOptions* options;
  // The module keeps its own copy of the log library: the process's format is handed over,
  // and its lines go through the process's level and output (log_file, reopened on SIGHUP).
  common::config::LogLevel log_level;
  common::config::LogFormat log_format;
  common::LogHooks log_hooks;
};

using PostgresModuleOpen = void (*)(const PostgresModuleArgs* args,
                                    absl::StatusOr<std::unique_ptr<DataStore>>* out);

// Finds the module next to the running executable, or in ../lib/trellis from it, loads it
// once and opens a store through it. FAILED_PRECONDITION names where it looked when absent.
absl::StatusOr<std::unique_ptr<DataStore>> OpenPostgresThroughModule(
    const std::string& connection_string, const DataStoreOptions& options);

}  // namespace trellis::datastore
