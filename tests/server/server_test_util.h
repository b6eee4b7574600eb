// Shared fixtures for server tests: a temp dir and a fresh SQLite datastore on a fake clock.
#pragma once

#include <stdlib.h>

#include <filesystem>
#include <memory>
#include <string>

#include "common/clock.h"
#include "datastore/datastore.h"
#include "datastore/factory.h"
#include "gtest/gtest.h"

namespace trellis::server::testing {

// Unix time 1_800_000_000 (2027-01-15): a fixed start keeps test output reproducible.
inline const absl::Time kTestStart = absl::FromUnixSeconds(1800000000);

class TempDir {
 public:
  TempDir() {
    const char* base = getenv("TEST_TMPDIR");
    std::string tmpl = std::string(base ? base : "/tmp") + "/trellis-server-test-XXXXXX";
    char* p = mkdtemp(tmpl.data());
    path_ = p ? p : "";
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

// A SQLite store in its own temp dir whose timestamps follow `clock`.
inline std::unique_ptr<datastore::DataStore> OpenTestStore(const TempDir& dir,
                                                           const common::Clock& clock) {
  datastore::DataStoreOptions options;
  options.clock = &clock;
  auto ds = datastore::CreateDataStore("sqlite3", dir.path() + "/datastore.sqlite3", options);
  EXPECT_TRUE(ds.ok()) << ds.status();
  return ds.ok() ? std::move(*ds) : nullptr;
}

}  // namespace trellis::server::testing
