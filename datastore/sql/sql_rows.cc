// Row reading, WHERE building and validation shared by the SqlDataStore table files.
#include "datastore/sql/sql_rows.h"

#include <openssl/rand.h>

#include <algorithm>

#include "absl/strings/escaping.h"
#include "common/openssl_util.h"
#include "common/status.h"

namespace trellis::datastore::sql {

using common::SpiffeId;
using common::TrustDomain;

std::string Sha256Hex(const std::string& data) { return common::HexEncode(common::Sha256(data)); }

absl::StatusOr<std::string> NewEntryId() {
  unsigned char b[16];
  if (RAND_bytes(b, sizeof(b)) != 1) {
    return absl::UnavailableError("no randomness available to generate an entry id");
  }
  b[6] = (b[6] & 0x0f) | 0x40;  // version 4
  b[8] = (b[8] & 0x3f) | 0x80;  // RFC 4122 variant
  std::string hex = absl::BytesToHexString(std::string(reinterpret_cast<char*>(b), 16));
  return absl::StrCat(hex.substr(0, 8), "-", hex.substr(8, 4), "-", hex.substr(12, 4), "-",
                      hex.substr(16, 4), "-", hex.substr(20));
}

// `outer_key` matches `table.key_col`; each item is a tuple of values for `cols`.
std::string SetFilterSql(Query& q, const std::string& table, const std::string& key_col,
                         const std::string& outer_key, const std::vector<std::string>& cols,
                         const std::vector<std::vector<std::string>>& items, MatchMode mode) {
  std::vector<std::string> ors;
  for (const auto& item : items) {
    std::vector<std::string> ands;
    for (size_t i = 0; i < cols.size(); ++i) {
      ands.push_back(absl::StrCat("x.", cols[i], " = ", q.Bind(item[i])));
    }
    ors.push_back("(" + absl::StrJoin(ands, " AND ") + ")");
  }
  std::string m = "(" + absl::StrJoin(ors, " OR ") + ")";
  std::string n = absl::StrCat(items.size());
  std::string superset =
      absl::StrCat(outer_key, " IN (SELECT x.", key_col, " FROM ", table, " x WHERE ", m,
                   " GROUP BY x.", key_col, " HAVING COUNT(*) = ", n, ")");
  switch (mode) {
    case MatchMode::kAny:
      return absl::StrCat(outer_key, " IN (SELECT x.", key_col, " FROM ", table, " x WHERE ", m,
                          ")");
    case MatchMode::kSuperset:
      return superset;
    case MatchMode::kExact:
      return absl::StrCat(superset, " AND (SELECT COUNT(*) FROM ", table, " y WHERE y.", key_col,
                          " = ", outer_key, ") = ", n);
    case MatchMode::kSubset:
      return absl::StrCat("NOT EXISTS (SELECT 1 FROM ", table, " x WHERE x.", key_col, " = ",
                          outer_key, " AND NOT ", m, ")");
  }
  return "1 = 0";
}

absl::Status ValidateSelectors(const std::vector<Selector>& selectors, const char* what) {
  for (const Selector& s : selectors) {
    if (s.type.empty() || s.value.empty()) {
      return absl::InvalidArgumentError(absl::StrCat(what, ": selector \"", s.type, ":", s.value,
                                                     "\" needs a non-empty type and value"));
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<std::string> SelectorFilterSql(Query& q, const SelectorFilter& filter,
                                              const std::string& table, const std::string& key_col,
                                              const std::string& outer_key) {
  if (filter.selectors.empty()) {
    return absl::InvalidArgumentError("selector filter needs at least one selector");
  }
  TRELLIS_RETURN_IF_ERROR(ValidateSelectors(filter.selectors, "filter"));
  std::vector<std::vector<std::string>> items;
  for (const Selector& s : SortedUnique(filter.selectors)) items.push_back({s.type, s.value});
  return SetFilterSql(q, table, key_col, outer_key, {"type", "value"}, items, filter.match);
}

absl::StatusOr<Query> PagedQuery(int32_t page_size, const std::string& page_token,
                                 const std::string& seq_col) {
  TRELLIS_RETURN_IF_ERROR(ValidatePageSize(page_size));
  TRELLIS_ASSIGN_OR_RETURN(int64_t after, ParsePageToken(page_token));
  Query q;
  q.Where(seq_col + " > " + q.Bind(after));
  return q;
}

std::string PageLimit(Query& q, int32_t page_size) {
  if (page_size <= 0) return "";
  return " LIMIT " + q.Bind(int64_t{page_size} + 1);
}

bool TrimPage(Rows& rows, int32_t page_size) {
  bool more = page_size > 0 && rows.size() > static_cast<size_t>(page_size);
  if (more) rows.resize(page_size);
  return more;
}

std::vector<Selector> SortedUnique(std::vector<Selector> v) {
  std::sort(v.begin(), v.end());
  v.erase(std::unique(v.begin(), v.end()), v.end());
  return v;
}

absl::StatusOr<std::string> NormalizeTrustDomain(const std::string& in, const char* what) {
  auto td = TrustDomain::Parse(in);
  if (!td.ok()) return Annotate(td.status(), what);
  return td->name();
}

absl::StatusOr<std::string> NormalizeSpiffeId(const std::string& in, const char* what) {
  auto id = SpiffeId::Parse(in);
  if (!id.ok()) {
    return absl::InvalidArgumentError(absl::StrCat(what, ": ", id.status().message()));
  }
  return id->String();
}

absl::StatusOr<int64_t> ParsePageToken(const std::string& token) {
  if (token.empty()) return 0;
  int64_t v = 0;
  if (!absl::SimpleAtoi(token, &v) || v < 0) {
    return absl::InvalidArgumentError("invalid page token \"" + token + "\"");
  }
  return v;
}

absl::Status ValidatePageSize(int32_t size) {
  if (size < 0) return absl::InvalidArgumentError("page size must not be negative");
  return absl::OkStatus();
}

}  // namespace trellis::datastore::sql
