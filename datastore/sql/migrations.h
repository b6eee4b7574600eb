// Internal: the versioned schema, as ordered SQL steps per backend, and the runner.
#pragma once

#include <string>
#include <vector>

#include "absl/status/status.h"
#include "datastore/sql/sql_engine.h"

namespace trellis::datastore::sql {

// The newest schema version this binary knows.
inline constexpr int kLatestSchemaVersion = 3;

// The statements that take a schema from version - 1 to `version` on `dialect`.
std::vector<std::string> MigrationSteps(Dialect dialect, int version);

// Brings the schema to `target` (0: latest) in one transaction. FAILED_PRECONDITION when the
// database is newer than the target, naming both versions.
absl::Status Migrate(Engine& engine, int target);

// The version recorded in the database (0 when it has no schema yet).
absl::StatusOr<int> ReadSchemaVersion(Tx& tx);

}  // namespace trellis::datastore::sql
