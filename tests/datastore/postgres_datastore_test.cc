// PostgreSQL-specific guarantees against a real server: restart recovery and the pool bound.
#include "datastore/postgres/postgres_datastore.h"

#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "tests/datastore/test_backends.h"

namespace trellis::datastore {
namespace {

RegistrationEntry EntryNumber(int i) {
  RegistrationEntry e;
  e.spiffe_id = absl::StrCat("spiffe://example.org/w", i);
  e.parent_id = "spiffe://example.org/a";
  e.selectors = {{"unix", "uid:1"}};
  return e;
}

// Runs pg_ctl (as the cluster owner when we are root) and returns its exit status.
int RunPgCtl(const std::vector<std::string>& args) {
  const char* pg_ctl = std::getenv("TRELLIS_TEST_PG_CTL");
  const char* pgdata = std::getenv("TRELLIS_TEST_PGDATA");
  if (pg_ctl == nullptr || pgdata == nullptr) return -1;
  std::vector<std::string> argv;
  if (::geteuid() == 0) argv = {"runuser", "-u", "postgres", "--"};
  argv.push_back(pg_ctl);
  argv.push_back("-D");
  argv.push_back(pgdata);
  if (const char* log = std::getenv("TRELLIS_TEST_PG_LOG")) {
    argv.push_back("-l");
    argv.push_back(log);
  }
  argv.insert(argv.end(), args.begin(), args.end());
  pid_t pid = ::fork();
  if (pid == 0) {
    std::vector<char*> cargv;
    for (auto& a : argv) cargv.push_back(a.data());
    cargv.push_back(nullptr);
    ::execvp(cargv[0], cargv.data());
    ::_exit(127);
  }
  int status = 0;
  if (pid < 0 || ::waitpid(pid, &status, 0) != pid) return -1;
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

class PostgresDataStoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto backend = testing::MakeTestBackend("Postgres");
    ASSERT_TRUE(backend.ok()) << backend.status();
    backend_ = std::move(*backend);
  }
  absl::StatusOr<std::unique_ptr<PostgresDataStore>> Open(int pool_size) {
    DataStoreOptions options;
    options.pool_size = pool_size;
    return PostgresDataStore::Open(backend_->ConnectionString(), options);
  }
  std::unique_ptr<testing::TestBackend> backend_;
};

TEST_F(PostgresDataStoreTest, NextCallAfterServerRestartSucceeds) {
  auto store = Open(2);
  ASSERT_TRUE(store.ok()) << store.status();
  ASSERT_TRUE((*store)->CreateEntry(EntryNumber(1)).ok());
  ASSERT_EQ(RunPgCtl({"restart", "-w", "-t", "60", "-m", "fast"}), 0)
      << "pg_ctl restart failed; run through scripts/with-postgres.sh";
  auto count = (*store)->CountEntries();
  ASSERT_TRUE(count.ok()) << count.status();
  EXPECT_EQ(*count, 1);
  EXPECT_TRUE((*store)->CreateEntry(EntryNumber(2)).ok());
}

TEST_F(PostgresDataStoreTest, PoolNeverOpensMoreThanItsSize) {
  auto store = Open(2);
  ASSERT_TRUE(store.ok()) << store.status();
  std::atomic<int> max_open{0}, failures{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 6; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 10; ++i) {
        if (!(*store)->CreateEntry(EntryNumber(t * 100 + i)).ok()) failures++;
        if (!(*store)->CountEntries().ok()) failures++;
        int open = (*store)->OpenConnections();
        int prev = max_open.load();
        while (open > prev && !max_open.compare_exchange_weak(prev, open)) {
        }
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(failures.load(), 0);
  EXPECT_LE(max_open.load(), 2);
  EXPECT_GE(max_open.load(), 1);
  EXPECT_EQ(*(*store)->CountEntries(), 60);
}

TEST_F(PostgresDataStoreTest, UnreachableServerIsUnavailable) {
  DataStoreOptions options;
  // Port 1 on loopback: nothing listens there.
  auto store = PostgresDataStore::Open("host=127.0.0.1 port=1 dbname=x connect_timeout=5",
                                       options);
  EXPECT_EQ(store.status().code(), absl::StatusCode::kUnavailable);
}

TEST_F(PostgresDataStoreTest, ZeroPoolSizeIsInvalidArgument) {
  auto store = Open(0);
  EXPECT_EQ(store.status().code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace trellis::datastore
