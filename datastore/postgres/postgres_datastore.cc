// PostgreSQL backend: connection pool, per-connection prepared statements, reconnection.
#include "datastore/postgres/postgres_datastore.h"

#include <deque>
#include <pqxx/pqxx>
#include <unordered_map>

#include "absl/base/thread_annotations.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "common/status.h"
#include "datastore/postgres/postgres_change_listener.h"

namespace trellis::datastore {
namespace {

using sql::Blob;
using sql::Params;
using sql::Row;
using sql::Rows;

constexpr pqxx::oid kByteaOid = 17;

struct Connection {
  std::unique_ptr<pqxx::connection> conn;
  std::unordered_map<std::string, std::string> prepared;  // SQL text -> statement name
};

bool IsConnectionState(const std::string& sqlstate) {
  // 08: connection exception; 57P: operator intervention (shutdown, restart).
  return sqlstate.rfind("08", 0) == 0 || sqlstate.rfind("57P", 0) == 0;
}

}  // namespace

class PostgresEngine final : public sql::Engine {
 public:
  PostgresEngine(std::string dsn, int pool_size, absl::Duration acquire_timeout)
      : dsn_(std::move(dsn)), pool_size_(pool_size), acquire_timeout_(acquire_timeout) {}

  sql::Dialect dialect() const override { return sql::Dialect::kPostgres; }

  std::unique_ptr<ChangeSubscription> SubscribeChanges(std::function<void()> on_change) override {
    return ListenForPostgresChanges(dsn_, std::move(on_change));
  }

  int OpenConnections() const {
    absl::MutexLock lock(&mu_);
    return open_;
  }
  int64_t DiscardedConnections() const {
    absl::MutexLock lock(&mu_);
    return discarded_;
  }

  absl::Status Run(bool write, const std::function<absl::Status(sql::Tx&)>& fn) override {
    CountTransaction();
    absl::Status last;
    bool reconnected = false;
    for (int attempt = 0; attempt < 4; ++attempt) {
      auto conn = Acquire(/*fresh=*/reconnected);
      if (!conn.ok()) return conn.status();
      bool broken = false;
      last = RunOnce(**conn, fn, broken);
      Release(std::move(*conn), broken);
      if (last.ok()) return last;
      if (broken) {
        // One retry on a fresh connection: the server may have restarted under us.
        if (reconnected) return last;
        reconnected = true;
        continue;
      }
      // Deadlocks and serialisation failures are transient; anything else is final.
      if (last.code() != absl::StatusCode::kAborted) return last;
    }
    return last;
  }

 private:
  class TxImpl final : public sql::Tx {
   public:
    TxImpl(pqxx::work& work, Connection& conn) : work_(work), conn_(conn) {}
    bool broken() const { return broken_; }

    absl::StatusOr<Rows> Query(const std::string& sql, const Params& params) override {
      auto r = Execute(sql, params);
      if (!r.ok()) return r.status();
      Rows rows;
      rows.reserve(r->size());
      for (const auto& prow : *r) {
        Row row(prow.size());
        for (pqxx::row::size_type c = 0; c < prow.size(); ++c) {
          const pqxx::field f = prow[c];
          if (f.is_null()) continue;
          if (f.type() == kByteaOid) {
            // bytea arrives in hex text form: \x0a1b...
            std::string text = f.c_str();
            if (text.rfind("\\x", 0) != 0) {
              return absl::DataLossError("unexpected bytea text form in column " +
                                         std::string(f.name()));
            }
            row[c] = absl::HexStringToBytes(text.substr(2));
          } else {
            row[c] = std::string(f.c_str(), f.size());
          }
        }
        rows.push_back(std::move(row));
      }
      return rows;
    }

    absl::StatusOr<int64_t> Exec(const std::string& sql, const Params& params) override {
      auto r = Execute(sql, params);
      if (!r.ok()) return r.status();
      return static_cast<int64_t>(r->affected_rows());
    }

   private:
    absl::StatusOr<pqxx::result> Execute(const std::string& sql, const Params& params) {
      std::vector<std::string> storage;
      storage.reserve(params.size());
      std::vector<const char*> values;
      values.reserve(params.size());
      for (const sql::Param& p : params) {
        if (std::holds_alternative<std::nullptr_t>(p)) {
          values.push_back(nullptr);
          continue;
        }
        if (auto* v = std::get_if<int64_t>(&p)) {
          storage.push_back(absl::StrCat(*v));
        } else if (auto* s = std::get_if<std::string>(&p)) {
          storage.push_back(*s);
        } else {
          storage.push_back("\\x" + absl::BytesToHexString(std::get<Blob>(p).bytes));
        }
        values.push_back(nullptr);  // patched below once storage stops moving
      }
      for (size_t i = 0, k = 0; i < params.size(); ++i) {
        if (!std::holds_alternative<std::nullptr_t>(params[i])) values[i] = storage[k++].c_str();
      }
      try {
        auto it = conn_.prepared.find(sql);
        if (it == conn_.prepared.end()) {
          std::string name = absl::StrCat("t", conn_.prepared.size());
          conn_.conn->prepare(name, sql);
          it = conn_.prepared.emplace(sql, name).first;
        }
        return work_.exec_prepared(it->second, pqxx::prepare::make_dynamic_params(values));
      } catch (const pqxx::broken_connection& e) {
        broken_ = true;
        return absl::UnavailableError(std::string("postgres connection lost: ") + e.what());
      } catch (const pqxx::unique_violation& e) {
        return absl::AlreadyExistsError(std::string("postgres: ") + e.what());
      } catch (const pqxx::foreign_key_violation& e) {
        return absl::FailedPreconditionError(std::string("postgres: ") + e.what());
      } catch (const pqxx::check_violation& e) {
        return absl::InvalidArgumentError(std::string("postgres: ") + e.what());
      } catch (const pqxx::not_null_violation& e) {
        return absl::InvalidArgumentError(std::string("postgres: ") + e.what());
      } catch (const pqxx::sql_error& e) {
        const std::string state = e.sqlstate();
        if (IsConnectionState(state) || !conn_.conn->is_open()) {
          broken_ = true;
          return absl::UnavailableError(std::string("postgres connection lost: ") + e.what());
        }
        if (state == "40001" || state == "40P01") {
          return absl::AbortedError(std::string("postgres: ") + e.what());
        }
        if (state.rfind("53", 0) == 0) {
          return absl::UnavailableError(std::string("postgres: ") + e.what());
        }
        return absl::InternalError(std::string("postgres: ") + e.what() +
                                   " in: " + sql.substr(0, 120));
      } catch (const std::exception& e) {
        if (!conn_.conn->is_open()) broken_ = true;
        return (broken_ ? absl::UnavailableError
                        : absl::InternalError)(std::string("postgres: ") + e.what());
      }
    }

    pqxx::work& work_;
    Connection& conn_;
    bool broken_ = false;
  };

  absl::Status RunOnce(Connection& conn, const std::function<absl::Status(sql::Tx&)>& fn,
                       bool& broken) {
    try {
      pqxx::work work(*conn.conn);
      TxImpl tx(work, conn);
      absl::Status s = fn(tx);
      if (tx.broken()) {
        broken = true;
        return s.ok() ? absl::UnavailableError("postgres connection lost") : s;
      }
      if (!s.ok()) {
        work.abort();
        return s;
      }
      work.commit();
      return absl::OkStatus();
    } catch (const pqxx::in_doubt_error& e) {
      broken = true;
      return absl::UnavailableError(std::string("postgres: commit outcome unknown: ") + e.what());
    } catch (const pqxx::broken_connection& e) {
      broken = true;
      return absl::UnavailableError(std::string("postgres connection lost: ") + e.what());
    } catch (const pqxx::sql_error& e) {
      if (IsConnectionState(e.sqlstate()) || !conn.conn->is_open()) {
        broken = true;
        return absl::UnavailableError(std::string("postgres connection lost: ") + e.what());
      }
      if (e.sqlstate() == "40001" || e.sqlstate() == "40P01") {
        return absl::AbortedError(std::string("postgres: ") + e.what());
      }
      return absl::InternalError(std::string("postgres: ") + e.what());
    } catch (const std::exception& e) {
      broken = !conn.conn->is_open();
      return (broken ? absl::UnavailableError
                     : absl::InternalError)(std::string("postgres: ") + e.what());
    }
  }

  absl::StatusOr<std::unique_ptr<Connection>> Connect() {
    try {
      auto c = std::make_unique<Connection>();
      c->conn = std::make_unique<pqxx::connection>(dsn_);
      return c;
    } catch (const std::exception& e) {
      return absl::UnavailableError(std::string("cannot connect to postgres: ") + e.what());
    }
  }

  // Waits for an idle connection or room to open one. `fresh` skips idle connections (they
  // may be as dead as the one that just failed) and replaces one of them.
  absl::StatusOr<std::unique_ptr<Connection>> Acquire(bool fresh) ABSL_LOCKS_EXCLUDED(mu_) {
    const absl::Time deadline = absl::Now() + acquire_timeout_;
    mu_.Lock();
    if (fresh) {
      // Connections older than a failure are suspect; close them all.
      open_ -= static_cast<int>(idle_.size());
      discarded_ += static_cast<int64_t>(idle_.size());
      idle_.clear();
    }
    while (true) {
      bool ready =
          mu_.AwaitWithDeadline(absl::Condition(this, &PostgresEngine::CanTake), deadline);
      if (!ready) {
        mu_.Unlock();
        return absl::UnavailableError(absl::StrCat("no free postgres connection within ",
                                                   absl::FormatDuration(acquire_timeout_),
                                                   " (pool size ", pool_size_, ")"));
      }
      if (idle_.empty()) break;
      auto c = std::move(idle_.back());
      idle_.pop_back();
      mu_.Unlock();
      if (Alive(*c)) return c;
      mu_.Lock();
      --open_;
      ++discarded_;
      // `c` is dropped here; look for another idle connection or open a new one.
    }
    ++open_;
    mu_.Unlock();
    auto c = Connect();
    if (!c.ok()) {
      absl::MutexLock lock(&mu_);
      --open_;
    }
    return c;
  }

  // An idle connection is waiting, or there is room to open one.
  bool CanTake() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return !idle_.empty() || open_ < pool_size_;
  }

  // Reads whatever the server sent while the connection sat idle, without blocking. A server
  // that restarted has sent its shutdown notice and closed the socket, so this finds out
  // before a transaction is started on a dead connection.
  static bool Alive(Connection& c) {
    try {
      c.conn->get_notifs();
      return c.conn->is_open();
    } catch (const std::exception&) {
      return false;
    }
  }

  void Release(std::unique_ptr<Connection> conn, bool broken) {
    std::unique_ptr<Connection> doomed;
    {
      absl::MutexLock lock(&mu_);
      if (broken || !conn->conn->is_open()) {
        doomed = std::move(conn);
        --open_;
        ++discarded_;
      } else {
        idle_.push_back(std::move(conn));
      }
    }
    // Closing a connection may block on the network; do it outside the lock.
    if (doomed) {
      try {
        doomed.reset();
      } catch (...) {
      }
    }
  }

  const std::string dsn_;
  const int pool_size_;
  const absl::Duration acquire_timeout_;
  // Waiters in Acquire wake when a release or a failed connect makes CanTake() true.
  mutable absl::Mutex mu_;
  std::vector<std::unique_ptr<Connection>> idle_ ABSL_GUARDED_BY(mu_);
  int open_ ABSL_GUARDED_BY(mu_) = 0;  // idle + in use
  int64_t discarded_ ABSL_GUARDED_BY(mu_) = 0;
};

PostgresDataStore::PostgresDataStore(std::unique_ptr<PostgresEngine> engine,
                                     const DataStoreOptions& options, PostgresEngine* raw)
    : SqlDataStore(std::move(engine), options), pg_(raw) {}

absl::StatusOr<std::unique_ptr<PostgresDataStore>> PostgresDataStore::Open(
    const std::string& connection_string, const DataStoreOptions& options) {
  if (options.pool_size < 1) {
    return absl::InvalidArgumentError("postgres pool size must be at least 1");
  }
  auto engine =
      std::make_unique<PostgresEngine>(connection_string, options.pool_size, options.busy_timeout);
  PostgresEngine* raw = engine.get();
  std::unique_ptr<PostgresDataStore> store(new PostgresDataStore(std::move(engine), options, raw));
  TRELLIS_RETURN_IF_ERROR(store->Initialize());
  return store;
}

int PostgresDataStore::OpenConnections() const { return pg_->OpenConnections(); }

int64_t PostgresDataStore::DiscardedConnections() const { return pg_->DiscardedConnections(); }

}  // namespace trellis::datastore
