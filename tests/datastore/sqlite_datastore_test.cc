// SQLite-specific guarantees: file permissions, WAL and durability, open failures, factory.
#include "datastore/sqlite/sqlite_datastore.h"

#include <fcntl.h>
#include <sqlite3.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>

#include "datastore/factory.h"
#include "gtest/gtest.h"
#include "tests/testutil/temp_dir.h"

namespace trellis::datastore {
namespace {

using testutil::TempDir;

mode_t ModeOf(const std::string& path) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) return 0;
  return st.st_mode & 07777;
}

RegistrationEntry SomeEntry() {
  RegistrationEntry e;
  e.spiffe_id = "spiffe://example.org/w";
  e.parent_id = "spiffe://example.org/a";
  e.selectors = {{"unix", "uid:1"}};
  return e;
}

TEST(SqliteDataStore, DatabaseAndWalFilesAreOwnerOnly) {
  TempDir dir;
  std::string path = dir.path() + "/ds.sqlite3";
  mode_t old = ::umask(0);  // the mode must not depend on the caller's umask
  auto store = SqliteDataStore::Open(path, {});
  ::umask(old);
  ASSERT_TRUE(store.ok()) << store.status();
  ASSERT_TRUE((*store)->CreateEntry(SomeEntry()).ok());
  EXPECT_EQ(ModeOf(path), 0600);
  EXPECT_EQ(ModeOf(path + "-wal"), 0600);
  EXPECT_EQ(ModeOf(path + "-shm"), 0600);
}

TEST(SqliteDataStore, OffersNoChangeNoticesSoReadersPoll) {
  TempDir dir;
  auto store = SqliteDataStore::Open(dir.path() + "/ds.sqlite3", {});
  ASSERT_TRUE(store.ok()) << store.status();
  bool called = false;
  EXPECT_EQ((*store)->SubscribeChanges([&called] { called = true; }), nullptr);
  ASSERT_TRUE((*store)->CreateEntry(SomeEntry()).ok());
  EXPECT_FALSE(called);
}

TEST(SqliteDataStore, TightensLooseExistingFile) {
  TempDir dir;
  std::string path = dir.path() + "/ds.sqlite3";
  int fd = ::open(path.c_str(), O_CREAT | O_WRONLY, 0644);
  ASSERT_GE(fd, 0);
  ::fchmod(fd, 0644);
  ::close(fd);
  auto store = SqliteDataStore::Open(path, {});
  ASSERT_TRUE(store.ok()) << store.status();
  EXPECT_EQ(ModeOf(path), 0600);
}

TEST(SqliteDataStore, RunsInWalWithFullSynchronous) {
  TempDir dir;
  auto store = SqliteDataStore::Open(dir.path() + "/ds.sqlite3", {});
  ASSERT_TRUE(store.ok()) << store.status();
  EXPECT_EQ(*(*store)->JournalMode(), "wal");
  EXPECT_EQ(*(*store)->SynchronousLevel(), 2);
}

TEST(SqliteDataStore, PathInMissingDirectoryIsUnavailable) {
  TempDir dir;
  auto store = SqliteDataStore::Open(dir.path() + "/missing/ds.sqlite3", {});
  EXPECT_EQ(store.status().code(), absl::StatusCode::kUnavailable);
}

TEST(SqliteDataStore, FileThatIsNotADatabaseIsRefused) {
  TempDir dir;
  std::string path = dir.path() + "/ds.sqlite3";
  int fd = ::open(path.c_str(), O_CREAT | O_WRONLY, 0600);
  ASSERT_GE(fd, 0);
  std::string junk(4096, 'x');
  ASSERT_EQ(::write(fd, junk.data(), junk.size()), static_cast<ssize_t>(junk.size()));
  ::close(fd);
  auto store = SqliteDataStore::Open(path, {});
  EXPECT_EQ(store.status().code(), absl::StatusCode::kDataLoss);
}

TEST(SqliteDataStore, WriteWhileAnotherProcessHoldsTheLockIsUnavailable) {
  TempDir dir;
  std::string path = dir.path() + "/ds.sqlite3";
  DataStoreOptions options;
  options.busy_timeout = absl::Milliseconds(50);
  auto store = SqliteDataStore::Open(path, options);
  ASSERT_TRUE(store.ok()) << store.status();
  sqlite3* other = nullptr;
  ASSERT_EQ(sqlite3_open(path.c_str(), &other), SQLITE_OK);
  ASSERT_EQ(sqlite3_exec(other, "BEGIN EXCLUSIVE", nullptr, nullptr, nullptr), SQLITE_OK);
  EXPECT_EQ((*store)->CreateEntry(SomeEntry()).status().code(), absl::StatusCode::kUnavailable);
  sqlite3_exec(other, "ROLLBACK", nullptr, nullptr, nullptr);
  sqlite3_close(other);
  EXPECT_TRUE((*store)->CreateEntry(SomeEntry()).ok());
}

TEST(DataStoreFactory, CreatesSqliteStore) {
  TempDir dir;
  auto store = CreateDataStore("sqlite3", dir.path() + "/ds.sqlite3");
  ASSERT_TRUE(store.ok()) << store.status();
  EXPECT_EQ(*(*store)->CountEntries(), 0);
}

TEST(DataStoreFactory, UnknownDatabaseTypeIsInvalidArgument) {
  EXPECT_EQ(CreateDataStore("mysql", "x").status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(DataStoreFactory, PostgresWithoutItsModuleNamesWhereItLooked) {
  // This test binary has no trellis-datastore-postgres.so beside it.
  auto store = CreateDataStore("postgres", "host=127.0.0.1 port=1 dbname=x");
  EXPECT_EQ(store.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(store.status().message().find("trellis-datastore-postgres.so"), std::string::npos)
      << store.status();
}

}  // namespace
}  // namespace trellis::datastore
