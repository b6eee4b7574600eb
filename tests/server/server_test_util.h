// Shared fixtures for server tests: a fixed start time and a fresh SQLite datastore on a clock.
#pragma once

#include <memory>
#include <string>

#include "common/clock.h"
#include "datastore/datastore.h"
#include "datastore/factory.h"
#include "gtest/gtest.h"
#include "tests/testutil/temp_dir.h"

namespace trellis::server::testing {

// Unix time 1_800_000_000 (2027-01-15): a fixed start keeps test output reproducible.
inline const absl::Time kTestStart = absl::FromUnixSeconds(1800000000);

// A SQLite store in its own temp dir whose timestamps follow `clock`.
inline std::unique_ptr<datastore::DataStore> OpenTestStore(const testutil::TempDir& dir,
                                                           const common::Clock& clock) {
  datastore::DataStoreOptions options;
  options.clock = &clock;
  auto ds = datastore::CreateDataStore("sqlite3", dir.path() + "/datastore.sqlite3", options);
  EXPECT_TRUE(ds.ok()) << ds.status();
  return ds.ok() ? std::move(*ds) : nullptr;
}

}  // namespace trellis::server::testing
