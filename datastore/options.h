// Options shared by every DataStore backend.
#pragma once

#include "absl/time/time.h"
#include "common/clock.h"

namespace trellis::datastore {

struct DataStoreOptions {
  // PostgreSQL: most connections the store opens at once.
  int pool_size = 4;
  // How long a call waits for a lock (SQLite busy_timeout) or a free pooled connection.
  absl::Duration busy_timeout = absl::Seconds(10);
  // Schema version to migrate to; 0 means the newest this binary knows. Older values exist
  // so the upgrade path from a previous release can be exercised.
  int target_schema_version = 0;
  // Source of created_at/updated_at and event timestamps; nullptr means the system clock.
  const common::Clock* clock = nullptr;
};

}  // namespace trellis::datastore
