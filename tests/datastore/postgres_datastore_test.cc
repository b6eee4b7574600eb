// PostgreSQL-specific guarantees against a real server: the pool bound and connection errors.
#include "datastore/postgres/postgres_datastore.h"

#include <unistd.h>

#include <atomic>
#include <functional>
#include <pqxx/pqxx>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
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

TEST_F(PostgresDataStoreTest, PoolNeverOpensMoreThanItsSize) {
  auto store = Open(2);
  ASSERT_TRUE(store.ok()) << store.status();
  std::atomic<int> max_open{0}, failures{0};
  std::atomic<bool> done{false};
  std::atomic<int64_t> max_server{0};
  // Samples what the server itself sees while the workers run.
  std::thread sampler([&] {
    while (!done.load()) {
      auto n = backend_->ServerConnections();
      if (n.ok() && *n > max_server.load()) max_server = *n;
    }
  });
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
  done = true;
  sampler.join();
  EXPECT_EQ(failures.load(), 0);
  EXPECT_LE(max_open.load(), 2);
  EXPECT_LE(max_server.load(), 2);
  EXPECT_GE(max_server.load(), 1);
  EXPECT_GE(max_open.load(), 1);
  EXPECT_EQ(*(*store)->CountEntries(), 60);
}

// Counts notifications for one schema on the channel the store announces events on (tests
// running in parallel share the channel, each under its own schema).
class EventListener : public pqxx::notification_receiver {
 public:
  EventListener(pqxx::connection_base& c, std::string schema)
      : pqxx::notification_receiver(c, "trellis_events"), schema_(std::move(schema)) {}
  void operator()(const std::string& payload, int) override {
    if (payload == schema_) mine++;
  }
  int mine = 0;

 private:
  std::string schema_;
};

TEST_F(PostgresDataStoreTest, CommittedEntryWriteIsAnnouncedToListeners) {
  auto store = Open(1);
  ASSERT_TRUE(store.ok()) << store.status();
  pqxx::connection listen_conn(backend_->ConnectionString());
  std::string schema;
  {
    pqxx::nontransaction q(listen_conn);
    schema = q.exec("SELECT current_schema()")[0][0].c_str();
  }
  EventListener listener(listen_conn, schema);
  listen_conn.get_notifs();  // sends LISTEN
  ASSERT_TRUE((*store)->CreateEntry(EntryNumber(1)).ok());
  for (int i = 0; i < 10 && listener.mine == 0; ++i) listen_conn.await_notification(1, 0);
  EXPECT_EQ(listener.mine, 1);
}

// Counts the notices a subscription delivers; waits with a deadline, never a fixed sleep.
class NoticeCounter {
 public:
  std::function<void()> Callback() {
    return [this] {
      absl::MutexLock lock(&mu_);
      ++count_;
    };
  }
  int Count() {
    absl::MutexLock lock(&mu_);
    return count_;
  }
  // True once the count reaches `n` within 30 s.
  bool AwaitAtLeast(int n) {
    absl::MutexLock lock(&mu_);
    auto reached = [this, n]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return count_ >= n; };
    return mu_.AwaitWithTimeout(absl::Condition(&reached), absl::Seconds(30));
  }

 private:
  absl::Mutex mu_;
  int count_ ABSL_GUARDED_BY(mu_) = 0;
};

TEST_F(PostgresDataStoreTest, AnotherStoresWriteReachesASubscriberOfTheSameSchemaOnly) {
  auto writer = Open(1);
  auto reader = Open(1);
  ASSERT_TRUE(writer.ok()) << writer.status();
  ASSERT_TRUE(reader.ok()) << reader.status();
  auto other_backend = testing::MakeTestBackend("Postgres");
  ASSERT_TRUE(other_backend.ok()) << other_backend.status();
  DataStoreOptions options;
  auto other = PostgresDataStore::Open((*other_backend)->ConnectionString(), options);
  ASSERT_TRUE(other.ok()) << other.status();

  NoticeCounter notices;
  std::unique_ptr<ChangeSubscription> sub = (*reader)->SubscribeChanges(notices.Callback());
  ASSERT_NE(sub, nullptr);
  // The first notice comes once the channel is listening: read the log now.
  ASSERT_TRUE(notices.AwaitAtLeast(1));
  const int before = notices.Count();
  // A write in another schema is not ours; the write after it is, and comes after it.
  ASSERT_TRUE((*other)->CreateEntry(EntryNumber(1)).ok());
  ASSERT_TRUE((*writer)->CreateEntry(EntryNumber(2)).ok());
  ASSERT_TRUE(notices.AwaitAtLeast(before + 1));
  EXPECT_EQ(notices.Count(), before + 1);
  // Ending the subscription stops its thread (this would hang otherwise).
  sub.reset();
}

TEST_F(PostgresDataStoreTest, UnreachableServerIsUnavailable) {
  DataStoreOptions options;
  // Port 1 on loopback: nothing listens there.
  auto store = PostgresDataStore::Open("host=127.0.0.1 port=1 dbname=x connect_timeout=5", options);
  EXPECT_EQ(store.status().code(), absl::StatusCode::kUnavailable);
}

TEST_F(PostgresDataStoreTest, ZeroPoolSizeIsInvalidArgument) {
  auto store = Open(0);
  EXPECT_EQ(store.status().code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace trellis::datastore
