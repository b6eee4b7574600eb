// SQLite backend: RAII over the C API, a cached prepared statement per SQL text.
#include "datastore/sqlite/sqlite_datastore.h"

#include <fcntl.h>
#include <sqlite3.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <unordered_map>

#include "absl/base/thread_annotations.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "common/status.h"

namespace trellis::datastore {
namespace {

using sql::Blob;
using sql::Params;
using sql::Row;
using sql::Rows;

struct DbCloser {
  void operator()(sqlite3* db) const { sqlite3_close_v2(db); }
};
struct StmtFinalizer {
  void operator()(sqlite3_stmt* s) const { sqlite3_finalize(s); }
};
using DbPtr = std::unique_ptr<sqlite3, DbCloser>;
using StmtPtr = std::unique_ptr<sqlite3_stmt, StmtFinalizer>;

absl::Status SqliteError(sqlite3* db, int rc, const std::string& sql) {
  std::string msg = absl::StrCat("sqlite: ", db ? sqlite3_errmsg(db) : sqlite3_errstr(rc), " (", rc,
                                 ")", sql.empty() ? "" : " in: " + sql.substr(0, 120));
  switch (rc & 0xff) {
    case SQLITE_CONSTRAINT:
      switch (rc) {
        case SQLITE_CONSTRAINT_UNIQUE:
        case SQLITE_CONSTRAINT_PRIMARYKEY:
          return absl::AlreadyExistsError(msg);
        case SQLITE_CONSTRAINT_CHECK:
        case SQLITE_CONSTRAINT_NOTNULL:
          return absl::InvalidArgumentError(msg);
        default:
          return absl::FailedPreconditionError(msg);
      }
    case SQLITE_BUSY:
    case SQLITE_LOCKED:
    case SQLITE_CANTOPEN:
    case SQLITE_IOERR:
    case SQLITE_FULL:
    case SQLITE_READONLY:
    case SQLITE_PERM:
    case SQLITE_PROTOCOL:
      return absl::UnavailableError(msg);
    case SQLITE_CORRUPT:
    case SQLITE_NOTADB:
      return absl::DataLossError(msg);
    default:
      return absl::InternalError(msg);
  }
}

// Creates the file owner-only before SQLite opens it and tightens an existing one; SQLite
// gives the -wal and -shm files the main file's mode.
absl::Status PrepareFile(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
  if (fd < 0) {
    return absl::UnavailableError("cannot open database file " + path + ": " +
                                  std::strerror(errno));
  }
  int rc = ::fchmod(fd, 0600);
  int err = errno;
  ::close(fd);
  if (rc != 0) {
    return absl::UnavailableError("cannot restrict database file " + path +
                                  " to 0600: " + std::strerror(err));
  }
  for (const char* suffix : {"-wal", "-shm"}) {
    std::string side = path + suffix;
    if (::chmod(side.c_str(), 0600) != 0 && errno != ENOENT) {
      return absl::UnavailableError("cannot restrict " + side +
                                    " to 0600: " + std::strerror(errno));
    }
  }
  return absl::OkStatus();
}

class SqliteEngine final : public sql::Engine, private sql::Tx {
 public:
  static absl::StatusOr<std::unique_ptr<SqliteEngine>> Open(const std::string& path,
                                                            const DataStoreOptions& options) {
    if (path.empty()) return absl::InvalidArgumentError("sqlite3 database path is empty");
    TRELLIS_RETURN_IF_ERROR(PrepareFile(path));
    sqlite3* raw = nullptr;
    int rc = sqlite3_open_v2(
        path.c_str(), &raw,
        SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX | SQLITE_OPEN_NOFOLLOW,
        nullptr);
    DbPtr db(raw);
    if (rc != SQLITE_OK) return Annotate(SqliteError(raw, rc, ""), "opening " + path);
    sqlite3_extended_result_codes(db.get(), 1);
    sqlite3_busy_timeout(db.get(),
                         static_cast<int>(absl::ToInt64Milliseconds(options.busy_timeout)));
    auto engine = std::unique_ptr<SqliteEngine>(new SqliteEngine(std::move(db)));
    // WAL lets readers in other processes run beside the writer. FULL: see the class comment.
    TRELLIS_RETURN_IF_ERROR(engine->Pragma("PRAGMA journal_mode = WAL", "wal"));
    TRELLIS_RETURN_IF_ERROR(engine->Pragma("PRAGMA synchronous = FULL", ""));
    TRELLIS_RETURN_IF_ERROR(engine->Pragma("PRAGMA foreign_keys = ON", ""));
    return engine;
  }

  sql::Dialect dialect() const override { return sql::Dialect::kSqlite; }

  absl::Status Run(bool write, const std::function<absl::Status(sql::Tx&)>& fn) override {
    CountTransaction();
    absl::MutexLock lock(&mu_);
    TRELLIS_RETURN_IF_ERROR(Exec(write ? "BEGIN IMMEDIATE" : "BEGIN", {}).status());
    absl::Status s = fn(*this);
    if (s.ok()) {
      s = Exec("COMMIT", {}).status();
      if (s.ok()) return s;
    }
    if (sqlite3_get_autocommit(db_.get()) == 0) {
      sqlite3_exec(db_.get(), "ROLLBACK", nullptr, nullptr, nullptr);
    }
    return s;
  }

 private:
  explicit SqliteEngine(DbPtr db) : db_(std::move(db)) {}

  absl::Status Pragma(const std::string& sql, const std::string& want) {
    absl::MutexLock lock(&mu_);
    TRELLIS_ASSIGN_OR_RETURN(Rows rows, Query(sql, {}));
    if (!want.empty() && (rows.empty() || rows[0][0].value_or("") != want)) {
      return absl::UnavailableError("sqlite: " + sql + " did not take effect");
    }
    return absl::OkStatus();
  }

  absl::StatusOr<sqlite3_stmt*> Prepare(const std::string& sql) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    auto it = cache_.find(sql);
    if (it != cache_.end()) return it->second.get();
    sqlite3_stmt* raw = nullptr;
    int rc = sqlite3_prepare_v3(db_.get(), sql.c_str(), static_cast<int>(sql.size()) + 1,
                                SQLITE_PREPARE_PERSISTENT, &raw, nullptr);
    StmtPtr stmt(raw);
    if (rc != SQLITE_OK) return SqliteError(db_.get(), rc, sql);
    if (stmt == nullptr) return absl::InternalError("sqlite: empty statement " + sql);
    // Dynamic filter queries differ by their number of terms; bound the cache.
    if (cache_.size() >= 512) cache_.clear();
    return cache_.emplace(sql, std::move(stmt)).first->second.get();
  }

  absl::Status Bind(sqlite3_stmt* stmt, const Params& params, const std::string& sql)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    for (size_t i = 0; i < params.size(); ++i) {
      std::string name = absl::StrCat("$", i + 1);
      int idx = sqlite3_bind_parameter_index(stmt, name.c_str());
      if (idx == 0) continue;
      const sql::Param& p = params[i];
      int rc = SQLITE_OK;
      if (std::holds_alternative<std::nullptr_t>(p)) {
        rc = sqlite3_bind_null(stmt, idx);
      } else if (auto* v = std::get_if<int64_t>(&p)) {
        rc = sqlite3_bind_int64(stmt, idx, *v);
      } else if (auto* s = std::get_if<std::string>(&p)) {
        rc = sqlite3_bind_text64(stmt, idx, s->data(), s->size(), SQLITE_TRANSIENT, SQLITE_UTF8);
      } else {
        const std::string& b = std::get<Blob>(p).bytes;
        rc = sqlite3_bind_blob64(stmt, idx, b.data(), b.size(), SQLITE_TRANSIENT);
      }
      if (rc != SQLITE_OK) return SqliteError(db_.get(), rc, sql);
    }
    return absl::OkStatus();
  }

  absl::StatusOr<Rows> Run(const std::string& sql, const Params& params, int64_t* changes)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    TRELLIS_ASSIGN_OR_RETURN(sqlite3_stmt * stmt, Prepare(sql));
    struct Reset {
      sqlite3_stmt* s;
      ~Reset() {
        sqlite3_reset(s);
        sqlite3_clear_bindings(s);
      }
    } reset{stmt};
    TRELLIS_RETURN_IF_ERROR(Bind(stmt, params, sql));
    Rows rows;
    while (true) {
      int rc = sqlite3_step(stmt);
      if (rc == SQLITE_DONE) break;
      if (rc != SQLITE_ROW) return SqliteError(db_.get(), sqlite3_extended_errcode(db_.get()), sql);
      int n = sqlite3_column_count(stmt);
      Row row(n);
      for (int c = 0; c < n; ++c) {
        int type = sqlite3_column_type(stmt, c);
        if (type == SQLITE_NULL) continue;
        if (type == SQLITE_BLOB) {
          const void* p = sqlite3_column_blob(stmt, c);
          int len = sqlite3_column_bytes(stmt, c);
          row[c] = std::string(static_cast<const char*>(p), len);
        } else {
          const unsigned char* p = sqlite3_column_text(stmt, c);
          int len = sqlite3_column_bytes(stmt, c);
          row[c] = std::string(reinterpret_cast<const char*>(p), len);
        }
      }
      rows.push_back(std::move(row));
    }
    if (changes != nullptr) *changes = sqlite3_changes64(db_.get());
    return rows;
  }

  // Tx calls arrive only from inside Run's callback, which holds mu_.
  absl::StatusOr<Rows> Query(const std::string& sql, const Params& params) override {
    mu_.AssertHeld();
    return Run(sql, params, nullptr);
  }
  absl::StatusOr<int64_t> Exec(const std::string& sql, const Params& params) override {
    mu_.AssertHeld();
    int64_t changes = 0;
    TRELLIS_RETURN_IF_ERROR(Run(sql, params, &changes).status());
    return changes;
  }

  // One transaction at a time on the connection.
  absl::Mutex mu_;
  DbPtr db_ ABSL_GUARDED_BY(mu_);
  // Declared after db_ so statements are finalized before the connection closes.
  std::unordered_map<std::string, StmtPtr> cache_ ABSL_GUARDED_BY(mu_);
};

}  // namespace

absl::StatusOr<std::unique_ptr<SqliteDataStore>> SqliteDataStore::Open(
    const std::string& path, const DataStoreOptions& options) {
  TRELLIS_ASSIGN_OR_RETURN(std::unique_ptr<SqliteEngine> engine, SqliteEngine::Open(path, options));
  std::unique_ptr<SqliteDataStore> store(new SqliteDataStore(std::move(engine), options));
  TRELLIS_RETURN_IF_ERROR(store->Initialize());
  return store;
}

absl::StatusOr<std::string> SqliteDataStore::JournalMode() {
  std::string mode;
  TRELLIS_RETURN_IF_ERROR(engine().Run(false, [&](sql::Tx& tx) -> absl::Status {
    TRELLIS_ASSIGN_OR_RETURN(Rows rows, tx.Query("PRAGMA journal_mode"));
    mode = rows.empty() ? "" : rows[0][0].value_or("");
    return absl::OkStatus();
  }));
  return mode;
}

absl::StatusOr<int> SqliteDataStore::SynchronousLevel() {
  int level = -1;
  TRELLIS_RETURN_IF_ERROR(engine().Run(false, [&](sql::Tx& tx) -> absl::Status {
    TRELLIS_ASSIGN_OR_RETURN(Rows rows, tx.Query("PRAGMA synchronous"));
    if (rows.empty() || !absl::SimpleAtoi(rows[0][0].value_or(""), &level)) {
      return absl::InternalError("PRAGMA synchronous returned nothing");
    }
    return absl::OkStatus();
  }));
  return level;
}

}  // namespace trellis::datastore
