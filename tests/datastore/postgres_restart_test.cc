// PostgreSQL recovery: the server restarts (or stops and starts) under an open store.
// Its own binary so ctest can run it alone (RUN_SERIAL): the restart cuts every client.
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "datastore/postgres/postgres_datastore.h"
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

TEST(PostgresServerRestart, NextCallAfterServerRestartSucceeds) {
  auto backend = testing::MakeTestBackend("Postgres");
  ASSERT_TRUE(backend.ok()) << backend.status();
  DataStoreOptions options;
  options.pool_size = 2;
  auto store = PostgresDataStore::Open((*backend)->ConnectionString(), options);
  ASSERT_TRUE(store.ok()) << store.status();
  ASSERT_TRUE((*store)->CreateEntry(EntryNumber(1)).ok());
  ASSERT_GE((*store)->OpenConnections(), 1);  // an idle pooled connection the restart kills
  ASSERT_EQ(RunPgCtl({"restart", "-w", "-t", "60", "-m", "fast"}), 0)
      << "pg_ctl restart failed; run through scripts/with-postgres.sh";
  auto count = (*store)->CountEntries();
  ASSERT_TRUE(count.ok()) << count.status();
  EXPECT_EQ(*count, 1);
  // The call went through the recovery path: the dead pooled connection was dropped.
  EXPECT_GE((*store)->DiscardedConnections(), 1);
  EXPECT_TRUE((*store)->CreateEntry(EntryNumber(2)).ok());
}

TEST(PostgresServerRestart, CallWhileServerIsDownIsUnavailableThenRecovers) {
  auto backend = testing::MakeTestBackend("Postgres");
  ASSERT_TRUE(backend.ok()) << backend.status();
  DataStoreOptions options;
  options.pool_size = 2;
  auto store = PostgresDataStore::Open((*backend)->ConnectionString(), options);
  ASSERT_TRUE(store.ok()) << store.status();
  ASSERT_TRUE((*store)->CreateEntry(EntryNumber(1)).ok());
  ASSERT_EQ(RunPgCtl({"stop", "-w", "-t", "60", "-m", "fast"}), 0);
  auto down = (*store)->CountEntries();
  int started = RunPgCtl({"start", "-w", "-t", "60"});
  ASSERT_EQ(started, 0) << "could not start the server again";
  EXPECT_EQ(down.status().code(), absl::StatusCode::kUnavailable) << down.status();
  auto up = (*store)->CountEntries();
  ASSERT_TRUE(up.ok()) << up.status();
  EXPECT_EQ(*up, 1);
}

TEST(PostgresServerRestart, ChangeNoticesResumeAfterARestart) {
  auto backend = testing::MakeTestBackend("Postgres");
  ASSERT_TRUE(backend.ok()) << backend.status();
  DataStoreOptions options;
  auto writer = PostgresDataStore::Open((*backend)->ConnectionString(), options);
  ASSERT_TRUE(writer.ok()) << writer.status();
  auto reader = PostgresDataStore::Open((*backend)->ConnectionString(), options);
  ASSERT_TRUE(reader.ok()) << reader.status();
  absl::Mutex mu;
  int notices = 0;
  auto await_at_least = [&](int n) {
    absl::MutexLock lock(&mu);
    auto reached = [&] { return notices >= n; };
    // The listener reconnects with backoff (1 s, 2 s, ...): a generous deadline.
    return mu.AwaitWithTimeout(absl::Condition(&reached), absl::Seconds(90));
  };
  std::unique_ptr<ChangeSubscription> sub = (*reader)->SubscribeChanges([&] {
    absl::MutexLock lock(&mu);
    ++notices;
  });
  ASSERT_NE(sub, nullptr);
  ASSERT_TRUE(await_at_least(1));  // listening
  ASSERT_EQ(RunPgCtl({"restart", "-w", "-t", "60", "-m", "fast"}), 0)
      << "pg_ctl restart failed; run through scripts/with-postgres.sh";
  // Reconnected: one notice says "read the log", since writes may have been missed.
  ASSERT_TRUE(await_at_least(2));
  int before;
  {
    absl::MutexLock lock(&mu);
    before = notices;
  }
  // And writes are announced again.
  ASSERT_TRUE((*writer)->CreateEntry(EntryNumber(1)).ok());
  EXPECT_TRUE(await_at_least(before + 1));
  sub.reset();
}

}  // namespace
}  // namespace trellis::datastore
