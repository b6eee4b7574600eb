// Internal: the small SQL surface both backends provide to the shared SqlDataStore.
#pragma once

#include <atomic>

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <variant>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "datastore/datastore.h"

namespace trellis::datastore::sql {

enum class Dialect { kSqlite, kPostgres };

struct Blob {
  std::string bytes;
};
// Statement parameters bind to $1..$n in order; booleans travel as 0/1.
using Param = std::variant<std::nullptr_t, int64_t, std::string, Blob>;
using Params = std::vector<Param>;
// One result row; NULL is nullopt, BLOB/BYTEA columns hold the raw bytes.
using Row = std::vector<std::optional<std::string>>;
using Rows = std::vector<Row>;

// One open transaction.
class Tx {
 public:
  virtual ~Tx() = default;
  // Runs a statement (prepared once per connection and cached) and returns its rows.
  virtual absl::StatusOr<Rows> Query(const std::string& sql, const Params& params = {}) = 0;
  // Runs a statement and returns how many rows it changed.
  virtual absl::StatusOr<int64_t> Exec(const std::string& sql, const Params& params = {}) = 0;
};

// A database reached through transactions. Errors follow DataStore's contract: unique
// violations are ALREADY_EXISTS, foreign key violations FAILED_PRECONDITION, an unreachable
// or busy database UNAVAILABLE.
class Engine {
 public:
  virtual ~Engine() = default;
  virtual Dialect dialect() const = 0;
  // Runs `fn` in one transaction and commits when it returns OK, else rolls back. `write`
  // transactions take the write lock up front where the backend has one.
  virtual absl::Status Run(bool write, const std::function<absl::Status(Tx&)>& fn) = 0;
  // DataStore::SubscribeChanges; nullptr where the backend has no notice channel.
  virtual std::unique_ptr<ChangeSubscription> SubscribeChanges(std::function<void()> on_change) {
    return nullptr;
  }
  // Transactions begun so far (each Run counts once, retries included).
  int64_t Transactions() const { return transactions_.load(std::memory_order_relaxed); }

 protected:
  void CountTransaction() { transactions_.fetch_add(1, std::memory_order_relaxed); }

 private:
  std::atomic<int64_t> transactions_{0};
};

}  // namespace trellis::datastore::sql
