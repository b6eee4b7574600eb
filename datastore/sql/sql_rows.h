// Internal: row reading, WHERE building and validation shared by the SqlDataStore table files.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "common/spiffe_id.h"
#include "datastore/sql/sql_engine.h"
#include "datastore/types.h"

namespace trellis::datastore::sql {

// Large IN lists are replaced by a range scan filtered in memory.
inline constexpr size_t kMaxInList = 500;

inline int64_t Sec(absl::Time t) { return absl::ToUnixSeconds(t); }
inline int64_t EntryExpiry(absl::Time t) { return t == absl::InfiniteFuture() ? 0 : Sec(t); }
inline int64_t B(bool b) { return b ? 1 : 0; }

std::string Sha256Hex(const std::string& data);
absl::StatusOr<std::string> NewEntryId();

// Reads one row column by column; the first bad value sticks and names table, row, column.
class RowReader {
 public:
  RowReader(const Row& row, std::string table) : row_(row), table_(std::move(table)) {}
  void SetKey(std::string key) { key_ = std::move(key); }
  const absl::Status& status() const { return status_; }

  std::string Text(const char* col) {
    const std::optional<std::string>* v = Next(col);
    if (v == nullptr) return "";
    if (!v->has_value()) {
      Fail(col, "NULL");
      return "";
    }
    return **v;
  }
  int64_t Int(const char* col) {
    std::string s = Text(col);
    int64_t out = 0;
    if (status_.ok() && !absl::SimpleAtoi(s, &out)) Fail(col, "\"" + s + "\"");
    return out;
  }
  int64_t NonNegative(const char* col) {
    int64_t v = Int(col);
    if (status_.ok() && v < 0) Fail(col, absl::StrCat(v));
    return v;
  }
  bool Bool(const char* col) {
    int64_t v = Int(col);
    if (status_.ok() && v != 0 && v != 1) Fail(col, absl::StrCat(v));
    return v == 1;
  }
  absl::Time Time(const char* col) { return absl::FromUnixSeconds(Int(col)); }
  std::string Spiffe(const char* col) {
    std::string s = Text(col);
    if (status_.ok() && !common::SpiffeId::Parse(s).ok()) Fail(col, "\"" + s + "\" (not a SPIFFE ID)");
    return s;
  }
  std::string Domain(const char* col) {
    std::string s = Text(col);
    if (status_.ok()) {
      auto td = common::TrustDomain::Parse(s);
      if (!td.ok() || td->name() != s) Fail(col, "\"" + s + "\" (not a trust domain name)");
    }
    return s;
  }
  std::string NonEmpty(const char* col) {
    std::string s = Text(col);
    if (status_.ok() && s.empty()) Fail(col, "an empty string");
    return s;
  }
  // An enum column, read back with the parser of its stored names (e.g. ParseEventKind).
  template <typename E>
  E Enum(const char* col, std::optional<E> (*parse)(absl::string_view)) {
    std::string s = Text(col);
    if (!status_.ok()) return E{};
    std::optional<E> value = parse(s);
    if (!value) {
      Fail(col, "\"" + s + "\" (unknown value)");
      return E{};
    }
    return *value;
  }

 private:
  const std::optional<std::string>* Next(const char* col) {
    if (!status_.ok()) return nullptr;
    if (index_ >= row_.size()) {
      status_ = absl::InternalError(absl::StrCat(table_, ": missing column ", col));
      return nullptr;
    }
    return &row_[index_++];
  }
  void Fail(const char* col, const std::string& what) {
    status_ = absl::DataLossError(absl::StrCat("stored row of ", table_,
                                               key_.empty() ? "" : " (" + key_ + ")",
                                               " is invalid: column ", col, " holds ", what));
  }

  const Row& row_;
  std::string table_;
  std::string key_;
  size_t index_ = 0;
  absl::Status status_;
};

// Builds WHERE clauses and their parameter list together so $n always match.
class Query {
 public:
  std::string Bind(Param p) {
    params_.push_back(std::move(p));
    return absl::StrCat("$", params_.size());
  }
  void Where(std::string cond) { conds_.push_back(std::move(cond)); }
  std::string WhereClause() const {
    return conds_.empty() ? "" : " WHERE " + absl::StrJoin(conds_, " AND ");
  }
  const Params& params() const { return params_; }

 private:
  Params params_;
  std::vector<std::string> conds_;
};

// `outer_key` matches `table.key_col`; each item is a tuple of values for `cols`.
std::string SetFilterSql(Query& q, const std::string& table, const std::string& key_col,
                         const std::string& outer_key, const std::vector<std::string>& cols,
                         const std::vector<std::vector<std::string>>& items, MatchMode mode);

// The condition for a selector filter on `table` (rows keyed by `key_col`, matched against
// `outer_key`), once the filter is checked to name at least one well-formed selector.
absl::StatusOr<std::string> SelectorFilterSql(Query& q, const SelectorFilter& filter,
                                              const std::string& table, const std::string& key_col,
                                              const std::string& outer_key);

// Starts a paged list query: checks the page size and keeps the rows whose `seq_col` comes after
// the page token.
absl::StatusOr<Query> PagedQuery(int32_t page_size, const std::string& page_token,
                                 const std::string& seq_col);
// " LIMIT $n" asking for one row more than a page (so a next page shows), or "" for no limit.
std::string PageLimit(Query& q, int32_t page_size);
// Drops the row read past the page; true when there is a next page.
bool TrimPage(Rows& rows, int32_t page_size);

absl::Status ValidateSelectors(const std::vector<Selector>& selectors, const char* what);
std::vector<Selector> SortedUnique(std::vector<Selector> v);
absl::StatusOr<std::string> NormalizeTrustDomain(const std::string& in, const char* what);
absl::StatusOr<std::string> NormalizeSpiffeId(const std::string& in, const char* what);
absl::StatusOr<int64_t> ParsePageToken(const std::string& token);
absl::Status ValidatePageSize(int32_t size);

}  // namespace trellis::datastore::sql
