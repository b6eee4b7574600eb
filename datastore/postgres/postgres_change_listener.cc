// The LISTEN loop: one connection, awaiting notices in short slices so it can stop promptly.
#include "datastore/postgres/postgres_change_listener.h"

#include <algorithm>
#include <pqxx/pqxx>
#include <thread>
#include <utility>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "common/log.h"

namespace trellis::datastore {
namespace {

constexpr absl::Duration kAwaitSlice = absl::Milliseconds(200);
constexpr absl::Duration kBackoffMin = absl::Seconds(1);
constexpr absl::Duration kBackoffMax = absl::Seconds(30);

// Counts the notices for one schema; the loop reads and resets the count after each await.
class SchemaReceiver final : public pqxx::notification_receiver {
 public:
  SchemaReceiver(pqxx::connection& conn, std::string schema)
      : pqxx::notification_receiver(conn, kPostgresChangeChannel), schema_(std::move(schema)) {}
  void operator()(const std::string& payload, int /*backend_pid*/) override {
    if (payload == schema_) ++seen_;
  }
  int Take() { return std::exchange(seen_, 0); }

 private:
  const std::string schema_;
  int seen_ = 0;  // touched by the listener thread only
};

class PostgresChangeListener final : public ChangeSubscription {
 public:
  PostgresChangeListener(std::string dsn, std::function<void()> on_change)
      : dsn_(std::move(dsn)), on_change_(std::move(on_change)) {
    thread_ = std::thread([this] { Run(); });
  }
  ~PostgresChangeListener() override {
    {
      absl::MutexLock lock(&mu_);
      stopping_ = true;
    }
    thread_.join();
  }

 private:
  bool Stopping() const {
    absl::MutexLock lock(&mu_);
    return stopping_;
  }
  // Sleeps up to `d`, ending early when the subscription is being destroyed.
  void Pause(absl::Duration d) {
    absl::MutexLock lock(&mu_);
    mu_.AwaitWithTimeout(absl::Condition(&stopping_), d);
  }

  void Run() {
    absl::Duration backoff = kBackoffMin;
    bool reported_failure = false;
    while (!Stopping()) {
      try {
        pqxx::connection conn(dsn_);
        std::string schema;
        {
          pqxx::nontransaction tx(conn);
          schema = tx.exec1("SELECT current_schema()")[0].as<std::string>();
        }
        SchemaReceiver receiver(conn, schema);
        conn.get_notifs();  // sends the LISTEN before anything is read from the log
        if (reported_failure) {
          common::LogInfo("PostgreSQL change notices restored", {{"component", "datastore"}});
          reported_failure = false;
        }
        backoff = kBackoffMin;
        // Changes made while no one listened are only in the log: read it now.
        on_change_();
        const long slice_us = static_cast<long>(absl::ToInt64Microseconds(kAwaitSlice));
        while (!Stopping()) {
          conn.await_notification(slice_us / 1000000, slice_us % 1000000);
          if (receiver.Take() > 0) on_change_();
        }
        return;
      } catch (const std::exception& e) {
        if (!reported_failure) {
          common::LogWarn("PostgreSQL change notices lost; polling continues meanwhile",
                          {{"component", "datastore"}, {"error", e.what()}});
          reported_failure = true;
        }
      }
      Pause(backoff);
      backoff = std::min(backoff * 2, kBackoffMax);
    }
  }

  const std::string dsn_;
  const std::function<void()> on_change_;
  mutable absl::Mutex mu_;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  std::thread thread_;
};

}  // namespace

std::unique_ptr<ChangeSubscription> ListenForPostgresChanges(std::string dsn,
                                                             std::function<void()> on_change) {
  return std::make_unique<PostgresChangeListener>(std::move(dsn), std::move(on_change));
}

}  // namespace trellis::datastore
