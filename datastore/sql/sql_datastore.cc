// DataStore over SQL, shared by the SQLite and PostgreSQL backends (same $n statements).
#include "datastore/sql/sql_datastore.h"

#include <openssl/evp.h>
#include <openssl/rand.h>

#include <algorithm>
#include <set>
#include <unordered_map>

#include "absl/strings/escaping.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "common/spiffe_id.h"
#include "common/status.h"
#include "datastore/sql/migrations.h"

namespace trellis::datastore {

EntryMask EntryMask::All() {
  return EntryMask{true, true, true, true, true, true, true, true, true, true, true};
}
NodeMask NodeMask::All() { return NodeMask{true, true, true, true, true, true, true}; }

const char* MatchModeName(MatchMode m) {
  switch (m) {
    case MatchMode::kExact:
      return "exact";
    case MatchMode::kSubset:
      return "subset";
    case MatchMode::kSuperset:
      return "superset";
    case MatchMode::kAny:
      return "any";
  }
  return "?";
}
const char* EventKindName(EventKind k) {
  switch (k) {
    case EventKind::kEntryCreated:
      return "entry_created";
    case EventKind::kEntryUpdated:
      return "entry_updated";
    case EventKind::kEntryDeleted:
      return "entry_deleted";
    case EventKind::kNodeCreated:
      return "node_created";
    case EventKind::kNodeUpdated:
      return "node_updated";
    case EventKind::kNodeDeleted:
      return "node_deleted";
  }
  return "?";
}
const char* AuthorityKindName(AuthorityKind k) {
  return k == AuthorityKind::kX509 ? "x509" : "jwt";
}
const char* AuthorityStatusName(AuthorityStatus s) {
  switch (s) {
    case AuthorityStatus::kPrepared:
      return "prepared";
    case AuthorityStatus::kActive:
      return "active";
    case AuthorityStatus::kOld:
      return "old";
  }
  return "?";
}
const char* BundleEndpointProfileName(BundleEndpointProfile p) {
  return p == BundleEndpointProfile::kHttpsWeb ? "https_web" : "https_spiffe";
}

namespace sql {
namespace {

using common::SpiffeId;
using common::TrustDomain;

// Large IN lists are replaced by a range scan filtered in memory.
constexpr size_t kMaxInList = 500;

int64_t Sec(absl::Time t) { return absl::ToUnixSeconds(t); }
int64_t EntryExpiry(absl::Time t) { return t == absl::InfiniteFuture() ? 0 : Sec(t); }
int64_t B(bool b) { return b ? 1 : 0; }

std::string Sha256Hex(const std::string& data) {
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  EVP_Digest(data.data(), data.size(), md, &len, EVP_sha256(), nullptr);
  return absl::BytesToHexString(std::string(reinterpret_cast<char*>(md), len));
}

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
    if (status_.ok() && !SpiffeId::Parse(s).ok()) Fail(col, "\"" + s + "\" (not a SPIFFE ID)");
    return s;
  }
  std::string Domain(const char* col) {
    std::string s = Text(col);
    if (status_.ok()) {
      auto td = TrustDomain::Parse(s);
      if (!td.ok() || td->name() != s) Fail(col, "\"" + s + "\" (not a trust domain name)");
    }
    return s;
  }
  std::string NonEmpty(const char* col) {
    std::string s = Text(col);
    if (status_.ok() && s.empty()) Fail(col, "an empty string");
    return s;
  }
  // Fails unless the column holds one of `names`; returns its index.
  int Enum(const char* col, std::initializer_list<const char*> names) {
    std::string s = Text(col);
    if (!status_.ok()) return 0;
    int i = 0;
    for (const char* n : names) {
      if (s == n) return i;
      ++i;
    }
    Fail(col, "\"" + s + "\" (unknown value)");
    return 0;
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

// Validates and puts an entry in canonical form (sorted unique selectors and trust domains).
absl::StatusOr<RegistrationEntry> NormalizeEntry(RegistrationEntry e) {
  if (!e.id.empty()) {
    if (e.id.size() > 255) return absl::InvalidArgumentError("entry id longer than 255 bytes");
    for (char c : e.id) {
      if (c <= ' ' || c > '~') {
        return absl::InvalidArgumentError("entry id \"" + e.id +
                                          "\" holds a space or non-printable character");
      }
    }
  }
  TRELLIS_ASSIGN_OR_RETURN(e.spiffe_id, NormalizeSpiffeId(e.spiffe_id, "entry spiffe_id"));
  TRELLIS_ASSIGN_OR_RETURN(e.parent_id, NormalizeSpiffeId(e.parent_id, "entry parent_id"));
  if (e.selectors.empty()) {
    return absl::InvalidArgumentError("entry for " + e.spiffe_id + " has no selectors");
  }
  TRELLIS_RETURN_IF_ERROR(ValidateSelectors(e.selectors, "entry"));
  e.selectors = SortedUnique(std::move(e.selectors));
  if (e.x509_svid_ttl < 0 || e.jwt_svid_ttl < 0) {
    return absl::InvalidArgumentError(absl::StrCat("entry TTLs must not be negative (x509 ",
                                                   e.x509_svid_ttl, ", jwt ", e.jwt_svid_ttl, ")"));
  }
  std::set<std::string> tds;
  for (const std::string& td : e.federates_with) {
    TRELLIS_ASSIGN_OR_RETURN(std::string name, NormalizeTrustDomain(td, "entry federates_with"));
    tds.insert(name);
  }
  e.federates_with.assign(tds.begin(), tds.end());
  for (const std::string& dns : e.dns_names) {
    if (dns.empty()) return absl::InvalidArgumentError("entry has an empty DNS name");
  }
  if (e.expires_at != absl::InfiniteFuture() && Sec(e.expires_at) <= 0) {
    return absl::InvalidArgumentError("entry expires_at must be after 1970");
  }
  return e;
}

std::string UniqueKey(const RegistrationEntry& e) {
  std::string s =
      absl::StrCat(e.spiffe_id.size(), ":", e.spiffe_id, e.parent_id.size(), ":", e.parent_id);
  for (const Selector& sel : e.selectors) {
    absl::StrAppend(&s, sel.type.size(), ":", sel.type, sel.value.size(), ":", sel.value);
  }
  return Sha256Hex(s);
}

const char kEntryColumns[] =
    "e.seq, e.id, e.spiffe_id, e.parent_id, e.x509_svid_ttl, e.jwt_svid_ttl, e.admin,"
    " e.downstream, e.expires_at, e.revision_number, e.created_at, e.hint";

struct LoadedEntry {
  int64_t seq;
  RegistrationEntry entry;
};

absl::StatusOr<LoadedEntry> ReadEntryRow(const Row& row) {
  RowReader r(row, "entries");
  LoadedEntry out;
  out.seq = r.Int("seq");
  RegistrationEntry& e = out.entry;
  e.id = r.NonEmpty("id");
  r.SetKey("id " + e.id);
  e.spiffe_id = r.Spiffe("spiffe_id");
  e.parent_id = r.Spiffe("parent_id");
  int64_t x509 = r.NonNegative("x509_svid_ttl");
  int64_t jwt = r.NonNegative("jwt_svid_ttl");
  e.admin = r.Bool("admin");
  e.downstream = r.Bool("downstream");
  int64_t exp = r.NonNegative("expires_at");
  e.revision_number = r.NonNegative("revision_number");
  e.created_at = r.Time("created_at");
  e.hint = r.Text("hint");
  TRELLIS_RETURN_IF_ERROR(r.status());
  if (x509 > INT32_MAX || jwt > INT32_MAX) {
    return absl::DataLossError("stored row of entries (id " + e.id + ") has a TTL out of range");
  }
  e.x509_svid_ttl = static_cast<int32_t>(x509);
  e.jwt_svid_ttl = static_cast<int32_t>(jwt);
  e.expires_at = exp == 0 ? absl::InfiniteFuture() : absl::FromUnixSeconds(exp);
  return out;
}

// Fills selectors, federates_with and dns_names of `entries` (keyed by seq).
absl::Status LoadEntryChildren(Tx& tx, std::vector<LoadedEntry>& entries) {
  if (entries.empty()) return absl::OkStatus();
  std::unordered_map<int64_t, RegistrationEntry*> by_seq;
  int64_t lo = INT64_MAX, hi = INT64_MIN;
  for (auto& le : entries) {
    by_seq[le.seq] = &le.entry;
    lo = std::min(lo, le.seq);
    hi = std::max(hi, le.seq);
  }
  auto scope = [&](Query& q) {
    if (entries.size() <= kMaxInList) {
      std::vector<std::string> ps;
      for (auto& le : entries) ps.push_back(q.Bind(le.seq));
      return " WHERE entry_seq IN (" + absl::StrJoin(ps, ",") + ")";
    }
    std::string a = q.Bind(lo);
    std::string b = q.Bind(hi);
    return " WHERE entry_seq BETWEEN " + a + " AND " + b;
  };
  {
    Query q;
    std::string sql = "SELECT entry_seq, type, value FROM entry_selectors" + scope(q) +
                      " ORDER BY entry_seq, type, value";
    TRELLIS_ASSIGN_OR_RETURN(Rows rows, tx.Query(sql, q.params()));
    for (const Row& row : rows) {
      RowReader r(row, "entry_selectors");
      int64_t seq = r.Int("entry_seq");
      r.SetKey(absl::StrCat("entry_seq ", seq));
      Selector s{r.NonEmpty("type"), r.NonEmpty("value")};
      TRELLIS_RETURN_IF_ERROR(r.status());
      auto it = by_seq.find(seq);
      if (it != by_seq.end()) it->second->selectors.push_back(std::move(s));
    }
  }
  {
    Query q;
    std::string sql = "SELECT entry_seq, trust_domain FROM entry_federates_with" + scope(q) +
                      " ORDER BY entry_seq, trust_domain";
    TRELLIS_ASSIGN_OR_RETURN(Rows rows, tx.Query(sql, q.params()));
    for (const Row& row : rows) {
      RowReader r(row, "entry_federates_with");
      int64_t seq = r.Int("entry_seq");
      r.SetKey(absl::StrCat("entry_seq ", seq));
      std::string td = r.Domain("trust_domain");
      TRELLIS_RETURN_IF_ERROR(r.status());
      auto it = by_seq.find(seq);
      if (it != by_seq.end()) it->second->federates_with.push_back(std::move(td));
    }
  }
  {
    Query q;
    std::string sql =
        "SELECT entry_seq, name FROM entry_dns_names" + scope(q) + " ORDER BY entry_seq, position";
    TRELLIS_ASSIGN_OR_RETURN(Rows rows, tx.Query(sql, q.params()));
    for (const Row& row : rows) {
      RowReader r(row, "entry_dns_names");
      int64_t seq = r.Int("entry_seq");
      r.SetKey(absl::StrCat("entry_seq ", seq));
      std::string name = r.NonEmpty("name");
      TRELLIS_RETURN_IF_ERROR(r.status());
      auto it = by_seq.find(seq);
      if (it != by_seq.end()) it->second->dns_names.push_back(std::move(name));
    }
  }
  for (auto& le : entries) {
    if (le.entry.selectors.empty()) {
      return absl::DataLossError("stored entry " + le.entry.id + " has no selectors");
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<std::optional<LoadedEntry>> LoadEntry(Tx& tx, const std::string& id,
                                                     const std::string& for_update) {
  TRELLIS_ASSIGN_OR_RETURN(
      Rows rows, tx.Query(absl::StrCat("SELECT ", kEntryColumns, " FROM entries e WHERE e.id = $1",
                                       for_update),
                          {id}));
  if (rows.empty()) return std::optional<LoadedEntry>();
  TRELLIS_ASSIGN_OR_RETURN(LoadedEntry le, ReadEntryRow(rows[0]));
  std::vector<LoadedEntry> v{std::move(le)};
  TRELLIS_RETURN_IF_ERROR(LoadEntryChildren(tx, v));
  return std::optional<LoadedEntry>(std::move(v[0]));
}

// Writes the chosen child collections; `fresh` rows have none yet, so nothing to clear.
absl::Status WriteEntryChildren(Tx& tx, int64_t seq, const RegistrationEntry& e, bool selectors,
                                bool federates, bool dns, bool fresh) {
  if (selectors) {
    if (!fresh) {
      TRELLIS_RETURN_IF_ERROR(
          tx.Exec("DELETE FROM entry_selectors WHERE entry_seq = $1", {seq}).status());
    }
    for (const Selector& s : e.selectors) {
      TRELLIS_RETURN_IF_ERROR(
          tx.Exec("INSERT INTO entry_selectors (entry_seq, type, value) VALUES ($1, $2, $3)",
                  {seq, s.type, s.value})
              .status());
    }
  }
  if (federates) {
    if (!fresh) {
      TRELLIS_RETURN_IF_ERROR(
          tx.Exec("DELETE FROM entry_federates_with WHERE entry_seq = $1", {seq}).status());
    }
    for (const std::string& td : e.federates_with) {
      TRELLIS_RETURN_IF_ERROR(
          tx.Exec("INSERT INTO entry_federates_with (entry_seq, trust_domain) VALUES ($1, $2)",
                  {seq, td})
              .status());
    }
  }
  if (dns) {
    if (!fresh) {
      TRELLIS_RETURN_IF_ERROR(
          tx.Exec("DELETE FROM entry_dns_names WHERE entry_seq = $1", {seq}).status());
    }
    int64_t pos = 0;
    for (const std::string& name : e.dns_names) {
      TRELLIS_RETURN_IF_ERROR(
          tx.Exec("INSERT INTO entry_dns_names (entry_seq, position, name) VALUES ($1, $2, $3)",
                  {seq, pos++, name})
              .status());
    }
  }
  return absl::OkStatus();
}

absl::Status CheckEntryConflicts(Tx& tx, const std::string& id, const std::string& unique_key,
                                 bool check_id) {
  if (check_id) {
    TRELLIS_ASSIGN_OR_RETURN(Rows rows, tx.Query("SELECT 1 FROM entries WHERE id = $1", {id}));
    if (!rows.empty()) return absl::AlreadyExistsError("entry id " + id + " already exists");
  }
  TRELLIS_ASSIGN_OR_RETURN(Rows rows,
                           tx.Query("SELECT id FROM entries WHERE unique_key = $1", {unique_key}));
  if (!rows.empty() && rows[0][0].value_or("") != id) {
    return absl::AlreadyExistsError("entry " + rows[0][0].value_or("") +
                                    " already has the same spiffe_id, parent_id and selectors");
  }
  return absl::OkStatus();
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

// ---- bundles ----

absl::StatusOr<Bundle> NormalizeBundle(Bundle b) {
  TRELLIS_ASSIGN_OR_RETURN(b.trust_domain, NormalizeTrustDomain(b.trust_domain, "bundle"));
  if (b.refresh_hint_seconds < 0) {
    return absl::InvalidArgumentError("bundle refresh hint must not be negative");
  }
  std::set<std::string> ders, kids;
  for (const X509Authority& a : b.x509_authorities) {
    if (a.ca_der.empty()) return absl::InvalidArgumentError("X.509 authority with empty DER");
    if (!ders.insert(a.ca_der).second) {
      return absl::InvalidArgumentError("bundle lists one X.509 authority twice");
    }
  }
  for (const JwtAuthority& a : b.jwt_authorities) {
    if (a.kid.empty()) return absl::InvalidArgumentError("JWT authority without a kid");
    if (a.public_key_der.empty()) {
      return absl::InvalidArgumentError("JWT authority " + a.kid + " has no public key");
    }
    if (!kids.insert(a.kid).second) {
      return absl::InvalidArgumentError("bundle lists JWT kid " + a.kid + " twice");
    }
  }
  return b;
}

absl::StatusOr<std::optional<Bundle>> LoadBundle(Tx& tx, const std::string& td,
                                                 const std::string& for_update) {
  TRELLIS_ASSIGN_OR_RETURN(
      Rows rows, tx.Query("SELECT trust_domain, refresh_hint, sequence_number FROM bundles"
                          " WHERE trust_domain = $1" +
                              for_update,
                          {td}));
  if (rows.empty()) return std::optional<Bundle>();
  Bundle b;
  RowReader r(rows[0], "bundles");
  r.SetKey("trust_domain " + td);
  b.trust_domain = r.Domain("trust_domain");
  b.refresh_hint_seconds = r.NonNegative("refresh_hint");
  b.sequence_number = r.NonNegative("sequence_number");
  TRELLIS_RETURN_IF_ERROR(r.status());
  TRELLIS_ASSIGN_OR_RETURN(Rows xs,
                           tx.Query("SELECT ca_der, expires_at, tainted FROM x509_authorities"
                                    " WHERE trust_domain = $1 ORDER BY expires_at, fingerprint",
                                    {td}));
  for (const Row& row : xs) {
    RowReader ar(row, "x509_authorities");
    ar.SetKey("trust_domain " + td);
    X509Authority a;
    a.ca_der = ar.NonEmpty("ca_der");
    a.expires_at = ar.Time("expires_at");
    a.tainted = ar.Bool("tainted");
    TRELLIS_RETURN_IF_ERROR(ar.status());
    b.x509_authorities.push_back(std::move(a));
  }
  TRELLIS_ASSIGN_OR_RETURN(
      Rows js, tx.Query("SELECT kid, public_key, expires_at, tainted FROM jwt_authorities"
                        " WHERE trust_domain = $1 ORDER BY expires_at, kid",
                        {td}));
  for (const Row& row : js) {
    RowReader ar(row, "jwt_authorities");
    ar.SetKey("trust_domain " + td);
    JwtAuthority a;
    a.kid = ar.NonEmpty("kid");
    a.public_key_der = ar.NonEmpty("public_key");
    a.expires_at = ar.Time("expires_at");
    a.tainted = ar.Bool("tainted");
    TRELLIS_RETURN_IF_ERROR(ar.status());
    b.jwt_authorities.push_back(std::move(a));
  }
  return std::optional<Bundle>(std::move(b));
}

// ---- nodes ----

const char kNodeColumns[] =
    "n.seq, n.spiffe_id, n.attestation_data_type, n.cert_serial_number, n.cert_not_after,"
    " n.new_cert_serial_number, n.new_cert_not_after, n.banned, n.can_reattest";

absl::StatusOr<std::pair<int64_t, AttestedNode>> ReadNodeRow(const Row& row) {
  RowReader r(row, "attested_nodes");
  int64_t seq = r.Int("seq");
  AttestedNode n;
  n.spiffe_id = r.Spiffe("spiffe_id");
  r.SetKey("spiffe_id " + n.spiffe_id);
  n.attestation_data_type = r.Text("attestation_data_type");
  n.cert_serial_number = r.Text("cert_serial_number");
  n.cert_not_after = r.Time("cert_not_after");
  n.new_cert_serial_number = r.Text("new_cert_serial_number");
  n.new_cert_not_after = r.Time("new_cert_not_after");
  n.banned = r.Bool("banned");
  n.can_reattest = r.Bool("can_reattest");
  TRELLIS_RETURN_IF_ERROR(r.status());
  return std::make_pair(seq, std::move(n));
}

absl::StatusOr<std::vector<Selector>> LoadNodeSelectors(Tx& tx, const std::string& id) {
  TRELLIS_ASSIGN_OR_RETURN(Rows rows,
                           tx.Query("SELECT type, value FROM node_selectors WHERE spiffe_id = $1"
                                    " ORDER BY type, value",
                                    {id}));
  std::vector<Selector> out;
  for (const Row& row : rows) {
    RowReader r(row, "node_selectors");
    r.SetKey("spiffe_id " + id);
    Selector s{r.NonEmpty("type"), r.NonEmpty("value")};
    TRELLIS_RETURN_IF_ERROR(r.status());
    out.push_back(std::move(s));
  }
  return out;
}

absl::StatusOr<std::optional<AttestedNode>> LoadNode(Tx& tx, const std::string& id, bool selectors,
                                                     const std::string& for_update) {
  TRELLIS_ASSIGN_OR_RETURN(
      Rows rows, tx.Query(absl::StrCat("SELECT ", kNodeColumns,
                                       " FROM attested_nodes n WHERE n.spiffe_id = $1", for_update),
                          {id}));
  if (rows.empty()) return std::optional<AttestedNode>();
  TRELLIS_ASSIGN_OR_RETURN(auto sn, ReadNodeRow(rows[0]));
  if (selectors) {
    TRELLIS_ASSIGN_OR_RETURN(sn.second.selectors, LoadNodeSelectors(tx, id));
  }
  return std::optional<AttestedNode>(std::move(sn.second));
}

absl::Status ValidateNode(const AttestedNode& n) {
  TRELLIS_RETURN_IF_ERROR(NormalizeSpiffeId(n.spiffe_id, "node spiffe_id").status());
  if (n.attestation_data_type.empty()) {
    return absl::InvalidArgumentError("node " + n.spiffe_id + " has no attestation data type");
  }
  return absl::OkStatus();
}

Params NodeParams(const AttestedNode& n) {
  return {n.spiffe_id,           n.attestation_data_type,  n.cert_serial_number,
          Sec(n.cert_not_after), n.new_cert_serial_number, Sec(n.new_cert_not_after),
          B(n.banned),           B(n.can_reattest)};
}

// ---- CA journal / federation ----

absl::StatusOr<CaJournalEntry> ReadJournalRow(const Row& row) {
  RowReader r(row, "ca_journal");
  CaJournalEntry e;
  e.server_id = r.NonEmpty("server_id");
  e.kind = static_cast<AuthorityKind>(r.Enum("kind", {"x509", "jwt"}));
  e.authority_id = r.NonEmpty("authority_id");
  r.SetKey("server_id " + e.server_id + ", authority_id " + e.authority_id);
  e.status = static_cast<AuthorityStatus>(r.Enum("status", {"prepared", "active", "old"}));
  e.data = r.Text("data");
  e.not_after = r.Time("not_after");
  e.created_at = r.Time("created_at");
  e.updated_at = r.Time("updated_at");
  TRELLIS_RETURN_IF_ERROR(r.status());
  return e;
}

absl::StatusOr<FederationRelationship> NormalizeRelationship(FederationRelationship f) {
  TRELLIS_ASSIGN_OR_RETURN(f.trust_domain,
                           NormalizeTrustDomain(f.trust_domain, "federation relationship"));
  if (f.bundle_endpoint_url.rfind("https://", 0) != 0 || f.bundle_endpoint_url.size() <= 8) {
    return absl::InvalidArgumentError("bundle endpoint URL \"" + f.bundle_endpoint_url +
                                      "\" must be an https:// URL");
  }
  if (f.profile == BundleEndpointProfile::kHttpsSpiffe) {
    TRELLIS_ASSIGN_OR_RETURN(f.endpoint_spiffe_id,
                             NormalizeSpiffeId(f.endpoint_spiffe_id, "endpoint SPIFFE ID"));
  } else if (!f.endpoint_spiffe_id.empty()) {
    return absl::InvalidArgumentError("https_web profile takes no endpoint SPIFFE ID");
  }
  return f;
}

absl::StatusOr<FederationRelationship> ReadRelationshipRow(const Row& row) {
  RowReader r(row, "federation_relationships");
  FederationRelationship f;
  f.trust_domain = r.Domain("trust_domain");
  r.SetKey("trust_domain " + f.trust_domain);
  f.bundle_endpoint_url = r.NonEmpty("bundle_endpoint_url");
  f.profile = static_cast<BundleEndpointProfile>(r.Enum("profile", {"https_web", "https_spiffe"}));
  f.endpoint_spiffe_id = r.Text("endpoint_spiffe_id");
  TRELLIS_RETURN_IF_ERROR(r.status());
  if (f.profile == BundleEndpointProfile::kHttpsSpiffe &&
      !SpiffeId::Parse(f.endpoint_spiffe_id).ok()) {
    return absl::DataLossError("stored row of federation_relationships (trust_domain " +
                               f.trust_domain + ") is invalid: column endpoint_spiffe_id holds \"" +
                               f.endpoint_spiffe_id + "\" (not a SPIFFE ID)");
  }
  return f;
}

}  // namespace

// ================================================================================================

SqlDataStore::SqlDataStore(std::unique_ptr<Engine> engine, const DataStoreOptions& options)
    : engine_(std::move(engine)), options_(options) {}

SqlDataStore::~SqlDataStore() = default;

absl::Status SqlDataStore::Initialize() {
  return Migrate(*engine_, options_.target_schema_version);
}

int64_t SqlDataStore::NowSeconds() const {
  return Sec(options_.clock != nullptr ? options_.clock->Now() : absl::Now());
}

std::string SqlDataStore::ForUpdate() const {
  return engine_->dialect() == Dialect::kPostgres ? " FOR UPDATE" : "";
}

absl::Status SqlDataStore::Write(const std::function<absl::Status(Tx&, Events&)>& fn) {
  return engine_->Run(true, [&](Tx& tx) -> absl::Status {
    Events events;
    TRELLIS_RETURN_IF_ERROR(fn(tx, events));
    return FlushEvents(tx, events);
  });
}

absl::Status SqlDataStore::Read(const std::function<absl::Status(Tx&)>& fn) {
  return engine_->Run(false, fn);
}

absl::Status SqlDataStore::FlushEvents(Tx& tx, const Events& events) {
  if (events.empty()) return absl::OkStatus();
  const bool pg = engine_->dialect() == Dialect::kPostgres;
  // Multi-row inserts in chunks of a fixed size keep batches to a few statements while the
  // set of distinct statement texts (and so the statement cache) stays small.
  constexpr size_t kChunk = 32;
  int64_t now = NowSeconds();
  for (size_t begin = 0; begin < events.size(); begin += kChunk) {
    size_t end = std::min(events.size(), begin + kChunk);
    std::string sql = "INSERT INTO events (kind, entry_id, node_spiffe_id, created_at) ";
    if (pg && begin == 0) {
      // On PostgreSQL the first insert takes, in the same round trip, an advisory lock held
      // to commit, so event ids become visible in increasing order: a reader that has seen
      // id N never later finds a committed id below N. No row (and so no id) exists before
      // the lock is granted. It is taken last in the transaction to avoid deadlocks. The
      // notification goes out at commit, so servers sharing the database can LISTEN on
      // trellis_events instead of polling the log.
      sql +=
          "SELECT v.kind, v.entry_id, v.node_spiffe_id, v.created_at FROM (SELECT"
          " pg_advisory_xact_lock(hashtext(current_schema() || '.events')),"
          " pg_notify('trellis_events', current_schema())) AS l, (VALUES ";
    } else {
      sql += "VALUES ";
    }
    Params params;
    params.reserve((end - begin) * 4);
    for (size_t i = begin; i < end; ++i) {
      const PendingEvent& e = events[i];
      bool entry = e.kind == EventKind::kEntryCreated || e.kind == EventKind::kEntryUpdated ||
                   e.kind == EventKind::kEntryDeleted;
      size_t n = params.size();
      absl::StrAppend(&sql, i == begin ? "" : ", ", "($", n + 1, ", $", n + 2, ", $", n + 3, ", $",
                      n + 4, pg ? "::bigint)" : ")");
      params.emplace_back(std::in_place_type<std::string>, EventKindName(e.kind));
      params.emplace_back(std::in_place_type<std::string>, entry ? e.id : "");
      params.emplace_back(std::in_place_type<std::string>, entry ? "" : e.id);
      params.emplace_back(std::in_place_type<int64_t>, now);
    }
    if (pg && begin == 0) sql += ") AS v (kind, entry_id, node_spiffe_id, created_at)";
    TRELLIS_RETURN_IF_ERROR(tx.Exec(sql, params).status());
  }
  return absl::OkStatus();
}

absl::StatusOr<int> SqlDataStore::SchemaVersion() {
  int version = 0;
  TRELLIS_RETURN_IF_ERROR(Read([&](Tx& tx) -> absl::Status {
    TRELLIS_ASSIGN_OR_RETURN(version, ReadSchemaVersion(tx));
    return absl::OkStatus();
  }));
  return version;
}

// ---- bundles ----

absl::Status SqlDataStore::StoreBundle(Tx& tx, const Bundle& b) {
  TRELLIS_RETURN_IF_ERROR(
      tx.Exec("INSERT INTO bundles (trust_domain, refresh_hint, sequence_number)"
              " VALUES ($1, $2, $3) ON CONFLICT (trust_domain) DO UPDATE SET"
              " refresh_hint = excluded.refresh_hint, sequence_number = excluded.sequence_number",
              {b.trust_domain, b.refresh_hint_seconds, b.sequence_number})
          .status());
  TRELLIS_RETURN_IF_ERROR(
      tx.Exec("DELETE FROM x509_authorities WHERE trust_domain = $1", {b.trust_domain}).status());
  TRELLIS_RETURN_IF_ERROR(
      tx.Exec("DELETE FROM jwt_authorities WHERE trust_domain = $1", {b.trust_domain}).status());
  for (const X509Authority& a : b.x509_authorities) {
    TRELLIS_RETURN_IF_ERROR(
        tx.Exec("INSERT INTO x509_authorities (trust_domain, fingerprint, ca_der, expires_at,"
                " tainted) VALUES ($1, $2, $3, $4, $5)",
                {b.trust_domain, Sha256Hex(a.ca_der), Blob{a.ca_der}, Sec(a.expires_at),
                 B(a.tainted)})
            .status());
  }
  for (const JwtAuthority& a : b.jwt_authorities) {
    TRELLIS_RETURN_IF_ERROR(
        tx.Exec("INSERT INTO jwt_authorities (trust_domain, kid, public_key, expires_at, tainted)"
                " VALUES ($1, $2, $3, $4, $5)",
                {b.trust_domain, a.kid, Blob{a.public_key_der}, Sec(a.expires_at), B(a.tainted)})
            .status());
  }
  return absl::OkStatus();
}

absl::StatusOr<std::optional<Bundle>> SqlDataStore::LockBundle(Tx& tx, const std::string& td,
                                                               int64_t refresh_hint) {
  if (engine_->dialect() == Dialect::kPostgres) {
    // A row must exist for FOR UPDATE to serialise writers of a new bundle too; the
    // placeholder (sequence 0) counts as absent and never commits as such.
    TRELLIS_RETURN_IF_ERROR(tx.Exec("INSERT INTO bundles (trust_domain, refresh_hint,"
                                    " sequence_number) VALUES ($1, $2, 0)"
                                    " ON CONFLICT (trust_domain) DO NOTHING",
                                    {td, refresh_hint})
                                .status());
  }
  TRELLIS_ASSIGN_OR_RETURN(auto existing, LoadBundle(tx, td, ForUpdate()));
  if (existing && existing->sequence_number == 0) return std::optional<Bundle>();
  return existing;
}

absl::StatusOr<Bundle> SqlDataStore::StoreAndReload(Tx& tx, const Bundle& b) {
  TRELLIS_RETURN_IF_ERROR(StoreBundle(tx, b));
  TRELLIS_ASSIGN_OR_RETURN(auto stored, LoadBundle(tx, b.trust_domain, ""));
  if (!stored) return absl::InternalError("bundle vanished while being written");
  return std::move(*stored);
}

absl::StatusOr<Bundle> SqlDataStore::CreateBundle(const Bundle& bundle) {
  TRELLIS_ASSIGN_OR_RETURN(Bundle b, NormalizeBundle(bundle));
  b.sequence_number = 1;
  Bundle out;
  TRELLIS_RETURN_IF_ERROR(Write([&](Tx& tx, Events&) -> absl::Status {
    TRELLIS_ASSIGN_OR_RETURN(auto existing, LockBundle(tx, b.trust_domain, 0));
    if (existing) return absl::AlreadyExistsError("bundle for " + b.trust_domain + " exists");
    TRELLIS_ASSIGN_OR_RETURN(out, StoreAndReload(tx, b));
    return absl::OkStatus();
  }));
  return out;
}

absl::StatusOr<Bundle> SqlDataStore::SetBundle(const Bundle& bundle) {
  TRELLIS_ASSIGN_OR_RETURN(Bundle b, NormalizeBundle(bundle));
  Bundle out;
  TRELLIS_RETURN_IF_ERROR(Write([&](Tx& tx, Events&) -> absl::Status {
    TRELLIS_ASSIGN_OR_RETURN(auto existing, LockBundle(tx, b.trust_domain, 0));
    Bundle next = b;
    next.sequence_number = existing ? existing->sequence_number + 1 : 1;
    TRELLIS_ASSIGN_OR_RETURN(out, StoreAndReload(tx, next));
    return absl::OkStatus();
  }));
  return out;
}

absl::StatusOr<Bundle> SqlDataStore::AppendBundle(const Bundle& bundle) {
  TRELLIS_ASSIGN_OR_RETURN(Bundle b, NormalizeBundle(bundle));
  Bundle out;
  TRELLIS_RETURN_IF_ERROR(Write([&](Tx& tx, Events&) -> absl::Status {
    TRELLIS_ASSIGN_OR_RETURN(auto existing, LockBundle(tx, b.trust_domain, 0));
    Bundle merged = existing ? *existing : b;
    bool changed = !existing;
    if (existing) {
      for (const X509Authority& a : b.x509_authorities) {
        auto same = [&](const X509Authority& x) { return x.ca_der == a.ca_der; };
        if (std::none_of(merged.x509_authorities.begin(), merged.x509_authorities.end(), same)) {
          merged.x509_authorities.push_back(a);
          changed = true;
        }
      }
      for (const JwtAuthority& a : b.jwt_authorities) {
        auto same = [&](const JwtAuthority& x) { return x.kid == a.kid; };
        if (std::none_of(merged.jwt_authorities.begin(), merged.jwt_authorities.end(), same)) {
          merged.jwt_authorities.push_back(a);
          changed = true;
        }
      }
    }
    if (!changed) {
      out = std::move(merged);
      return absl::OkStatus();
    }
    merged.sequence_number = existing ? existing->sequence_number + 1 : 1;
    TRELLIS_ASSIGN_OR_RETURN(out, StoreAndReload(tx, merged));
    return absl::OkStatus();
  }));
  return out;
}

absl::StatusOr<Bundle> SqlDataStore::GetBundle(const std::string& trust_domain) {
  TRELLIS_ASSIGN_OR_RETURN(std::string td, NormalizeTrustDomain(trust_domain, "bundle"));
  Bundle out;
  TRELLIS_RETURN_IF_ERROR(Read([&](Tx& tx) -> absl::Status {
    TRELLIS_ASSIGN_OR_RETURN(auto b, LoadBundle(tx, td, ""));
    if (!b || b->sequence_number == 0) return absl::NotFoundError("no bundle for " + td);
    out = std::move(*b);
    return absl::OkStatus();
  }));
  return out;
}

absl::StatusOr<std::vector<Bundle>> SqlDataStore::ListBundles() {
  std::vector<Bundle> out;
  TRELLIS_RETURN_IF_ERROR(Read([&](Tx& tx) -> absl::Status {
    out.clear();
    TRELLIS_ASSIGN_OR_RETURN(Rows rows,
                             tx.Query("SELECT trust_domain FROM bundles WHERE sequence_number > 0"
                                      " ORDER BY trust_domain"));
    for (const Row& row : rows) {
      std::string td = row[0].value_or("");
      TRELLIS_ASSIGN_OR_RETURN(auto b, LoadBundle(tx, td, ""));
      if (b) out.push_back(std::move(*b));
    }
    return absl::OkStatus();
  }));
  return out;
}

absl::Status SqlDataStore::DeleteBundle(const std::string& trust_domain, BundleDeleteMode mode) {
  TRELLIS_ASSIGN_OR_RETURN(std::string td, NormalizeTrustDomain(trust_domain, "bundle"));
  return Write([&](Tx& tx, Events& events) -> absl::Status {
    TRELLIS_ASSIGN_OR_RETURN(auto existing, LoadBundle(tx, td, ForUpdate()));
    if (!existing || existing->sequence_number == 0) {
      return absl::NotFoundError("no bundle for " + td);
    }
    TRELLIS_ASSIGN_OR_RETURN(
        Rows rows, tx.Query("SELECT e.id FROM entries e JOIN entry_federates_with f"
                            " ON f.entry_seq = e.seq WHERE f.trust_domain = $1 ORDER BY e.seq",
                            {td}));
    if (!rows.empty()) {
      if (mode == BundleDeleteMode::kRestrict) {
        return absl::FailedPreconditionError(
            absl::StrCat("bundle for ", td, " is federated with by ", rows.size(), " entries"));
      }
      for (const Row& row : rows) {
        std::string id = row[0].value_or("");
        if (mode == BundleDeleteMode::kDelete) {
          TRELLIS_RETURN_IF_ERROR(DeleteEntryTx(tx, events, id).status());
        } else {
          TRELLIS_RETURN_IF_ERROR(
              tx.Exec("DELETE FROM entry_federates_with WHERE trust_domain = $1 AND entry_seq ="
                      " (SELECT seq FROM entries WHERE id = $2)",
                      {td, id})
                  .status());
          TRELLIS_RETURN_IF_ERROR(
              tx.Exec("UPDATE entries SET revision_number = revision_number + 1 WHERE id = $1",
                      {id})
                  .status());
          events.push_back({EventKind::kEntryUpdated, id});
        }
      }
    }
    return tx.Exec("DELETE FROM bundles WHERE trust_domain = $1", {td}).status();
  });
}

namespace {
// Applies `change` to the stored bundle and bumps its sequence number.
template <typename F>
absl::Status MutateBundle(Engine& engine, const std::string& trust_domain,
                          const std::string& for_update, F change,
                          const std::function<absl::Status(Tx&, const Bundle&)>& store) {
  TRELLIS_ASSIGN_OR_RETURN(std::string td, NormalizeTrustDomain(trust_domain, "bundle"));
  return engine.Run(true, [&](Tx& tx) -> absl::Status {
    TRELLIS_ASSIGN_OR_RETURN(auto b, LoadBundle(tx, td, for_update));
    if (!b || b->sequence_number == 0) return absl::NotFoundError("no bundle for " + td);
    bool changed = false;
    TRELLIS_RETURN_IF_ERROR(change(*b, changed));
    if (!changed) return absl::OkStatus();
    b->sequence_number++;
    return store(tx, *b);
  });
}
}  // namespace

#define TRELLIS_BUNDLE_MUTATION(td, body)       \
  MutateBundle(*engine_, td, ForUpdate(), body, \
               [this](Tx& tx, const Bundle& b) { return StoreBundle(tx, b); })

absl::Status SqlDataStore::TaintX509Authority(const std::string& trust_domain,
                                              const std::string& ca_der) {
  return TRELLIS_BUNDLE_MUTATION(trust_domain, [&](Bundle& b, bool& changed) -> absl::Status {
    for (X509Authority& a : b.x509_authorities) {
      if (a.ca_der != ca_der) continue;
      if (a.tainted) return absl::FailedPreconditionError("X.509 authority is already tainted");
      a.tainted = changed = true;
      return absl::OkStatus();
    }
    return absl::NotFoundError("no such X.509 authority in the bundle of " + b.trust_domain);
  });
}

absl::Status SqlDataStore::RevokeX509Authority(const std::string& trust_domain,
                                               const std::string& ca_der) {
  return TRELLIS_BUNDLE_MUTATION(trust_domain, [&](Bundle& b, bool& changed) -> absl::Status {
    auto& v = b.x509_authorities;
    for (auto it = v.begin(); it != v.end(); ++it) {
      if (it->ca_der != ca_der) continue;
      if (!it->tainted) {
        return absl::FailedPreconditionError("X.509 authority must be tainted before revocation");
      }
      v.erase(it);
      changed = true;
      return absl::OkStatus();
    }
    return absl::NotFoundError("no such X.509 authority in the bundle of " + b.trust_domain);
  });
}

absl::Status SqlDataStore::TaintJwtAuthority(const std::string& trust_domain,
                                             const std::string& kid) {
  return TRELLIS_BUNDLE_MUTATION(trust_domain, [&](Bundle& b, bool& changed) -> absl::Status {
    for (JwtAuthority& a : b.jwt_authorities) {
      if (a.kid != kid) continue;
      if (a.tainted) return absl::FailedPreconditionError("JWT authority " + kid + " is tainted");
      a.tainted = changed = true;
      return absl::OkStatus();
    }
    return absl::NotFoundError("no JWT authority " + kid + " in the bundle of " + b.trust_domain);
  });
}

absl::Status SqlDataStore::RevokeJwtAuthority(const std::string& trust_domain,
                                              const std::string& kid) {
  return TRELLIS_BUNDLE_MUTATION(trust_domain, [&](Bundle& b, bool& changed) -> absl::Status {
    auto& v = b.jwt_authorities;
    for (auto it = v.begin(); it != v.end(); ++it) {
      if (it->kid != kid) continue;
      if (!it->tainted) {
        return absl::FailedPreconditionError("JWT authority " + kid +
                                             " must be tainted before revocation");
      }
      v.erase(it);
      changed = true;
      return absl::OkStatus();
    }
    return absl::NotFoundError("no JWT authority " + kid + " in the bundle of " + b.trust_domain);
  });
}

absl::StatusOr<bool> SqlDataStore::PruneBundle(const std::string& trust_domain,
                                               absl::Time expired_before) {
  bool pruned = false;
  TRELLIS_RETURN_IF_ERROR(
      TRELLIS_BUNDLE_MUTATION(trust_domain, [&](Bundle& b, bool& changed) -> absl::Status {
        pruned = false;
        auto& x = b.x509_authorities;
        size_t had = x.size();
        x.erase(
            std::remove_if(x.begin(), x.end(),
                           [&](const X509Authority& a) { return a.expires_at < expired_before; }),
            x.end());
        if (had > 0 && x.empty()) {
          return absl::FailedPreconditionError("pruning would remove every X.509 authority of " +
                                               b.trust_domain);
        }
        auto& j = b.jwt_authorities;
        size_t had_jwt = j.size();
        j.erase(
            std::remove_if(j.begin(), j.end(),
                           [&](const JwtAuthority& a) { return a.expires_at < expired_before; }),
            j.end());
        changed = pruned = x.size() != had || j.size() != had_jwt;
        return absl::OkStatus();
      }));
  return pruned;
}

#undef TRELLIS_BUNDLE_MUTATION

// ---- entries ----

absl::StatusOr<RegistrationEntry> SqlDataStore::CreateEntryTx(Tx& tx, Events& events,
                                                              const RegistrationEntry& in) {
  RegistrationEntry e = in;
  if (e.id.empty()) {
    TRELLIS_ASSIGN_OR_RETURN(e.id, NewEntryId());
  }
  std::string key = UniqueKey(e);
  e.revision_number = 0;
  int64_t now = NowSeconds();
  e.created_at = absl::FromUnixSeconds(now);
  std::string sql =
      "INSERT INTO entries (id, spiffe_id, parent_id, unique_key, x509_svid_ttl,"
      " jwt_svid_ttl, admin, downstream, expires_at, revision_number, created_at, hint)"
      " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, 0, $10, $11)"
      " ON CONFLICT DO NOTHING RETURNING seq";
  Params params{e.id,
                e.spiffe_id,
                e.parent_id,
                key,
                int64_t{e.x509_svid_ttl},
                int64_t{e.jwt_svid_ttl},
                B(e.admin),
                B(e.downstream),
                EntryExpiry(e.expires_at),
                now,
                e.hint};
  const bool pg = engine_->dialect() == Dialect::kPostgres;
  if (pg) {
    // One round trip for the row and its selectors: a data-modifying WITH inserts the
    // selectors only when the entry row went in (no row, no selectors).
    std::string values;
    for (const Selector& sel : e.selectors) {
      size_t n = params.size();
      absl::StrAppend(&values, values.empty() ? "" : ", ", "($", n + 1, ", $", n + 2, ")");
      params.emplace_back(std::in_place_type<std::string>, sel.type);
      params.emplace_back(std::in_place_type<std::string>, sel.value);
    }
    sql = absl::StrCat("WITH e AS (", sql,
                       "), s AS (INSERT INTO entry_selectors (entry_seq, type, value)"
                       " SELECT e.seq, v.type, v.value FROM e, (VALUES ",
                       values, ") AS v (type, value)) SELECT seq FROM e");
  }
  TRELLIS_ASSIGN_OR_RETURN(Rows rows, tx.Query(sql, params));
  if (rows.empty()) {
    // A unique key is taken; find which one to say so. (DO NOTHING keeps the transaction
    // usable on PostgreSQL, where a failed statement would abort it.)
    TRELLIS_RETURN_IF_ERROR(CheckEntryConflicts(tx, e.id, key, true));
    return absl::AlreadyExistsError("entry " + e.id + " conflicts with a stored entry");
  }
  int64_t seq = 0;
  if (!rows[0][0] || !absl::SimpleAtoi(*rows[0][0], &seq)) {
    return absl::InternalError("entry insert returned no sequence number");
  }
  TRELLIS_RETURN_IF_ERROR(
      WriteEntryChildren(tx, seq, e, /*selectors=*/!pg, true, true, /*fresh=*/true));
  events.push_back({EventKind::kEntryCreated, e.id});
  return e;
}

absl::StatusOr<RegistrationEntry> SqlDataStore::CreateEntry(const RegistrationEntry& entry) {
  TRELLIS_ASSIGN_OR_RETURN(RegistrationEntry e, NormalizeEntry(entry));
  RegistrationEntry out;
  TRELLIS_RETURN_IF_ERROR(Write([&](Tx& tx, Events& events) -> absl::Status {
    TRELLIS_ASSIGN_OR_RETURN(out, CreateEntryTx(tx, events, e));
    return absl::OkStatus();
  }));
  return out;
}

absl::StatusOr<std::vector<RegistrationEntry>> SqlDataStore::CreateEntries(
    const std::vector<RegistrationEntry>& entries) {
  std::vector<RegistrationEntry> normalized;
  normalized.reserve(entries.size());
  for (size_t i = 0; i < entries.size(); ++i) {
    auto e = NormalizeEntry(entries[i]);
    if (!e.ok()) return Annotate(e.status(), absl::StrCat("entry ", i, " of the batch"));
    normalized.push_back(std::move(*e));
  }
  std::vector<RegistrationEntry> out;
  TRELLIS_RETURN_IF_ERROR(Write([&](Tx& tx, Events& events) -> absl::Status {
    out.clear();
    for (size_t i = 0; i < normalized.size(); ++i) {
      auto e = CreateEntryTx(tx, events, normalized[i]);
      if (!e.ok()) return Annotate(e.status(), absl::StrCat("entry ", i, " of the batch"));
      out.push_back(std::move(*e));
    }
    return absl::OkStatus();
  }));
  return out;
}

absl::StatusOr<RegistrationEntry> SqlDataStore::GetEntry(const std::string& id) {
  RegistrationEntry out;
  TRELLIS_RETURN_IF_ERROR(Read([&](Tx& tx) -> absl::Status {
    TRELLIS_ASSIGN_OR_RETURN(auto le, LoadEntry(tx, id, ""));
    if (!le) return absl::NotFoundError("no entry with id " + id);
    out = std::move(le->entry);
    return absl::OkStatus();
  }));
  return out;
}

absl::StatusOr<RegistrationEntry> SqlDataStore::UpdateEntry(const RegistrationEntry& entry,
                                                            const std::optional<EntryMask>& mask) {
  if (entry.id.empty()) return absl::InvalidArgumentError("update needs the entry id");
  const EntryMask m = mask.value_or(EntryMask::All());
  RegistrationEntry out;
  TRELLIS_RETURN_IF_ERROR(Write([&](Tx& tx, Events& events) -> absl::Status {
    TRELLIS_ASSIGN_OR_RETURN(auto le, LoadEntry(tx, entry.id, ForUpdate()));
    if (!le) return absl::NotFoundError("no entry with id " + entry.id);
    RegistrationEntry e = le->entry;
    if (m.spiffe_id) e.spiffe_id = entry.spiffe_id;
    if (m.parent_id) e.parent_id = entry.parent_id;
    if (m.selectors) e.selectors = entry.selectors;
    if (m.x509_svid_ttl) e.x509_svid_ttl = entry.x509_svid_ttl;
    if (m.jwt_svid_ttl) e.jwt_svid_ttl = entry.jwt_svid_ttl;
    if (m.federates_with) e.federates_with = entry.federates_with;
    if (m.admin) e.admin = entry.admin;
    if (m.downstream) e.downstream = entry.downstream;
    if (m.dns_names) e.dns_names = entry.dns_names;
    if (m.expires_at) e.expires_at = entry.expires_at;
    if (m.hint) e.hint = entry.hint;
    TRELLIS_ASSIGN_OR_RETURN(e, NormalizeEntry(std::move(e)));
    std::string key = UniqueKey(e);
    TRELLIS_RETURN_IF_ERROR(CheckEntryConflicts(tx, e.id, key, false));
    TRELLIS_RETURN_IF_ERROR(
        tx.Exec("UPDATE entries SET spiffe_id = $1, parent_id = $2, unique_key = $3,"
                " x509_svid_ttl = $4, jwt_svid_ttl = $5, admin = $6, downstream = $7,"
                " expires_at = $8, hint = $9, revision_number = revision_number + 1"
                " WHERE seq = $10",
                {e.spiffe_id, e.parent_id, key, int64_t{e.x509_svid_ttl}, int64_t{e.jwt_svid_ttl},
                 B(e.admin), B(e.downstream), EntryExpiry(e.expires_at), e.hint, le->seq})
            .status());
    TRELLIS_RETURN_IF_ERROR(WriteEntryChildren(tx, le->seq, e, m.selectors, m.federates_with,
                                               m.dns_names,
                                               /*fresh=*/false));
    e.revision_number = le->entry.revision_number + 1;
    out = std::move(e);
    events.push_back({EventKind::kEntryUpdated, out.id});
    return absl::OkStatus();
  }));
  return out;
}

absl::StatusOr<RegistrationEntry> SqlDataStore::DeleteEntryTx(Tx& tx, Events& events,
                                                              const std::string& id) {
  TRELLIS_ASSIGN_OR_RETURN(auto le, LoadEntry(tx, id, ForUpdate()));
  if (!le) return absl::NotFoundError("no entry with id " + id);
  // Children go by ON DELETE CASCADE.
  TRELLIS_RETURN_IF_ERROR(tx.Exec("DELETE FROM entries WHERE seq = $1", {le->seq}).status());
  events.push_back({EventKind::kEntryDeleted, id});
  return std::move(le->entry);
}

absl::StatusOr<RegistrationEntry> SqlDataStore::DeleteEntry(const std::string& id) {
  RegistrationEntry out;
  TRELLIS_RETURN_IF_ERROR(Write([&](Tx& tx, Events& events) -> absl::Status {
    TRELLIS_ASSIGN_OR_RETURN(out, DeleteEntryTx(tx, events, id));
    return absl::OkStatus();
  }));
  return out;
}

absl::Status SqlDataStore::DeleteEntries(const std::vector<std::string>& ids) {
  return Write([&](Tx& tx, Events& events) -> absl::Status {
    for (const std::string& id : ids) {
      TRELLIS_RETURN_IF_ERROR(DeleteEntryTx(tx, events, id).status());
    }
    return absl::OkStatus();
  });
}

absl::StatusOr<ListEntriesResponse> SqlDataStore::ListEntries(const ListEntriesRequest& req) {
  TRELLIS_RETURN_IF_ERROR(ValidatePageSize(req.page_size));
  TRELLIS_ASSIGN_OR_RETURN(int64_t after, ParsePageToken(req.page_token));
  Query q;
  q.Where("e.seq > " + q.Bind(after));
  if (req.by_spiffe_id) {
    TRELLIS_ASSIGN_OR_RETURN(std::string id, NormalizeSpiffeId(*req.by_spiffe_id, "by_spiffe_id"));
    q.Where("e.spiffe_id = " + q.Bind(id));
  }
  if (req.by_parent_id) {
    TRELLIS_ASSIGN_OR_RETURN(std::string id, NormalizeSpiffeId(*req.by_parent_id, "by_parent_id"));
    q.Where("e.parent_id = " + q.Bind(id));
  }
  if (req.by_selectors) {
    if (req.by_selectors->selectors.empty()) {
      return absl::InvalidArgumentError("selector filter needs at least one selector");
    }
    TRELLIS_RETURN_IF_ERROR(ValidateSelectors(req.by_selectors->selectors, "filter"));
    std::vector<std::vector<std::string>> items;
    for (const Selector& s : SortedUnique(req.by_selectors->selectors)) {
      items.push_back({s.type, s.value});
    }
    q.Where(SetFilterSql(q, "entry_selectors", "entry_seq", "e.seq", {"type", "value"}, items,
                         req.by_selectors->match));
  }
  if (req.by_federates_with) {
    if (req.by_federates_with->trust_domains.empty()) {
      return absl::InvalidArgumentError("federates_with filter needs at least one trust domain");
    }
    std::set<std::string> tds;
    for (const std::string& td : req.by_federates_with->trust_domains) {
      TRELLIS_ASSIGN_OR_RETURN(std::string name, NormalizeTrustDomain(td, "federates_with filter"));
      tds.insert(name);
    }
    std::vector<std::vector<std::string>> items;
    for (const std::string& td : tds) items.push_back({td});
    std::string cond = SetFilterSql(q, "entry_federates_with", "entry_seq", "e.seq",
                                    {"trust_domain"}, items, req.by_federates_with->match);
    if (req.by_federates_with->match == MatchMode::kSubset) {
      // An entry federating with nothing is a subset of anything but matches no federation.
      cond += " AND EXISTS (SELECT 1 FROM entry_federates_with z WHERE z.entry_seq = e.seq)";
    }
    q.Where(cond);
  }
  if (req.by_downstream) q.Where("e.downstream = " + q.Bind(B(*req.by_downstream)));
  if (req.by_hint) q.Where("e.hint = " + q.Bind(*req.by_hint));
  std::string sql =
      absl::StrCat("SELECT ", kEntryColumns, " FROM entries e", q.WhereClause(), " ORDER BY e.seq");
  Params params = q.params();
  if (req.page_size > 0) {
    params.push_back(int64_t{req.page_size} + 1);
    absl::StrAppend(&sql, " LIMIT $", params.size());
  }
  ListEntriesResponse out;
  TRELLIS_RETURN_IF_ERROR(Read([&](Tx& tx) -> absl::Status {
    TRELLIS_ASSIGN_OR_RETURN(Rows rows, tx.Query(sql, params));
    std::vector<LoadedEntry> loaded;
    bool more = req.page_size > 0 && rows.size() > static_cast<size_t>(req.page_size);
    if (more) rows.resize(req.page_size);
    for (const Row& row : rows) {
      TRELLIS_ASSIGN_OR_RETURN(LoadedEntry le, ReadEntryRow(row));
      loaded.push_back(std::move(le));
    }
    TRELLIS_RETURN_IF_ERROR(LoadEntryChildren(tx, loaded));
    out.entries.clear();
    out.next_page_token = more ? absl::StrCat(loaded.back().seq) : "";
    for (auto& le : loaded) out.entries.push_back(std::move(le.entry));
    return absl::OkStatus();
  }));
  return out;
}

absl::StatusOr<int64_t> SqlDataStore::CountEntries() {
  int64_t n = 0;
  TRELLIS_RETURN_IF_ERROR(Read([&](Tx& tx) -> absl::Status {
    TRELLIS_ASSIGN_OR_RETURN(Rows rows, tx.Query("SELECT COUNT(*) FROM entries"));
    RowReader r(rows.at(0), "entries");
    n = r.Int("count");
    return r.status();
  }));
  return n;
}

// ---- nodes ----

absl::StatusOr<AttestedNode> SqlDataStore::CreateNode(const AttestedNode& node) {
  TRELLIS_RETURN_IF_ERROR(ValidateNode(node));
  TRELLIS_RETURN_IF_ERROR(Write([&](Tx& tx, Events& events) -> absl::Status {
    TRELLIS_ASSIGN_OR_RETURN(auto existing, LoadNode(tx, node.spiffe_id, false, ""));
    if (existing) return absl::AlreadyExistsError("node " + node.spiffe_id + " already exists");
    Params p = NodeParams(node);
    p.push_back(NowSeconds());
    TRELLIS_RETURN_IF_ERROR(
        tx.Exec("INSERT INTO attested_nodes (spiffe_id, attestation_data_type,"
                " cert_serial_number, cert_not_after, new_cert_serial_number, new_cert_not_after,"
                " banned, can_reattest, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
                p)
            .status());
    events.push_back({EventKind::kNodeCreated, node.spiffe_id});
    return absl::OkStatus();
  }));
  AttestedNode out = node;
  out.selectors.clear();
  out.cert_not_after = absl::FromUnixSeconds(Sec(node.cert_not_after));
  out.new_cert_not_after = absl::FromUnixSeconds(Sec(node.new_cert_not_after));
  return out;
}

absl::StatusOr<AttestedNode> SqlDataStore::GetNode(const std::string& spiffe_id,
                                                   bool fetch_selectors) {
  AttestedNode out;
  TRELLIS_RETURN_IF_ERROR(Read([&](Tx& tx) -> absl::Status {
    TRELLIS_ASSIGN_OR_RETURN(auto n, LoadNode(tx, spiffe_id, fetch_selectors, ""));
    if (!n) return absl::NotFoundError("no attested node " + spiffe_id);
    out = std::move(*n);
    return absl::OkStatus();
  }));
  return out;
}

absl::StatusOr<AttestedNode> SqlDataStore::UpdateNode(const AttestedNode& node,
                                                      const std::optional<NodeMask>& mask) {
  const NodeMask m = mask.value_or(NodeMask::All());
  AttestedNode out;
  TRELLIS_RETURN_IF_ERROR(Write([&](Tx& tx, Events& events) -> absl::Status {
    TRELLIS_ASSIGN_OR_RETURN(auto existing, LoadNode(tx, node.spiffe_id, false, ForUpdate()));
    if (!existing) return absl::NotFoundError("no attested node " + node.spiffe_id);
    AttestedNode n = *existing;
    if (m.attestation_data_type) n.attestation_data_type = node.attestation_data_type;
    if (m.cert_serial_number) n.cert_serial_number = node.cert_serial_number;
    if (m.cert_not_after) n.cert_not_after = node.cert_not_after;
    if (m.new_cert_serial_number) n.new_cert_serial_number = node.new_cert_serial_number;
    if (m.new_cert_not_after) n.new_cert_not_after = node.new_cert_not_after;
    if (m.banned) n.banned = node.banned;
    if (m.can_reattest) n.can_reattest = node.can_reattest;
    TRELLIS_RETURN_IF_ERROR(ValidateNode(n));
    TRELLIS_RETURN_IF_ERROR(
        tx.Exec("UPDATE attested_nodes SET attestation_data_type = $2, cert_serial_number = $3,"
                " cert_not_after = $4, new_cert_serial_number = $5, new_cert_not_after = $6,"
                " banned = $7, can_reattest = $8 WHERE spiffe_id = $1",
                NodeParams(n))
            .status());
    events.push_back({EventKind::kNodeUpdated, n.spiffe_id});
    n.cert_not_after = absl::FromUnixSeconds(Sec(n.cert_not_after));
    n.new_cert_not_after = absl::FromUnixSeconds(Sec(n.new_cert_not_after));
    out = std::move(n);
    return absl::OkStatus();
  }));
  return out;
}

absl::StatusOr<AttestedNode> SqlDataStore::DeleteNode(const std::string& spiffe_id) {
  AttestedNode out;
  TRELLIS_RETURN_IF_ERROR(Write([&](Tx& tx, Events& events) -> absl::Status {
    TRELLIS_ASSIGN_OR_RETURN(auto existing, LoadNode(tx, spiffe_id, true, ForUpdate()));
    if (!existing) return absl::NotFoundError("no attested node " + spiffe_id);
    TRELLIS_RETURN_IF_ERROR(
        tx.Exec("DELETE FROM attested_nodes WHERE spiffe_id = $1", {spiffe_id}).status());
    TRELLIS_RETURN_IF_ERROR(
        tx.Exec("DELETE FROM node_selectors WHERE spiffe_id = $1", {spiffe_id}).status());
    events.push_back({EventKind::kNodeDeleted, spiffe_id});
    out = std::move(*existing);
    return absl::OkStatus();
  }));
  return out;
}

absl::StatusOr<ListNodesResponse> SqlDataStore::ListNodes(const ListNodesRequest& req) {
  TRELLIS_RETURN_IF_ERROR(ValidatePageSize(req.page_size));
  TRELLIS_ASSIGN_OR_RETURN(int64_t after, ParsePageToken(req.page_token));
  Query q;
  q.Where("n.seq > " + q.Bind(after));
  if (req.by_banned) q.Where("n.banned = " + q.Bind(B(*req.by_banned)));
  if (req.by_attestation_type) {
    q.Where("n.attestation_data_type = " + q.Bind(*req.by_attestation_type));
  }
  if (req.by_expires_before) {
    q.Where("n.cert_not_after < " + q.Bind(Sec(*req.by_expires_before)));
  }
  if (req.by_selectors) {
    if (req.by_selectors->selectors.empty()) {
      return absl::InvalidArgumentError("selector filter needs at least one selector");
    }
    TRELLIS_RETURN_IF_ERROR(ValidateSelectors(req.by_selectors->selectors, "filter"));
    std::vector<std::vector<std::string>> items;
    for (const Selector& s : SortedUnique(req.by_selectors->selectors)) {
      items.push_back({s.type, s.value});
    }
    std::string cond = SetFilterSql(q, "node_selectors", "spiffe_id", "n.spiffe_id",
                                    {"type", "value"}, items, req.by_selectors->match);
    if (req.by_selectors->match == MatchMode::kSubset) {
      cond += " AND EXISTS (SELECT 1 FROM node_selectors z WHERE z.spiffe_id = n.spiffe_id)";
    }
    q.Where(cond);
  }
  std::string sql = absl::StrCat("SELECT ", kNodeColumns, " FROM attested_nodes n", q.WhereClause(),
                                 " ORDER BY n.seq");
  Params params = q.params();
  if (req.page_size > 0) {
    params.push_back(int64_t{req.page_size} + 1);
    absl::StrAppend(&sql, " LIMIT $", params.size());
  }
  ListNodesResponse out;
  TRELLIS_RETURN_IF_ERROR(Read([&](Tx& tx) -> absl::Status {
    out = ListNodesResponse();
    TRELLIS_ASSIGN_OR_RETURN(Rows rows, tx.Query(sql, params));
    bool more = req.page_size > 0 && rows.size() > static_cast<size_t>(req.page_size);
    if (more) rows.resize(req.page_size);
    int64_t last = 0;
    for (const Row& row : rows) {
      TRELLIS_ASSIGN_OR_RETURN(auto sn, ReadNodeRow(row));
      last = sn.first;
      if (req.fetch_selectors) {
        TRELLIS_ASSIGN_OR_RETURN(sn.second.selectors, LoadNodeSelectors(tx, sn.second.spiffe_id));
      }
      out.nodes.push_back(std::move(sn.second));
    }
    if (more) out.next_page_token = absl::StrCat(last);
    return absl::OkStatus();
  }));
  return out;
}

absl::StatusOr<int64_t> SqlDataStore::CountNodes() {
  int64_t n = 0;
  TRELLIS_RETURN_IF_ERROR(Read([&](Tx& tx) -> absl::Status {
    TRELLIS_ASSIGN_OR_RETURN(Rows rows, tx.Query("SELECT COUNT(*) FROM attested_nodes"));
    RowReader r(rows.at(0), "attested_nodes");
    n = r.Int("count");
    return r.status();
  }));
  return n;
}

absl::Status SqlDataStore::SetNodeSelectors(const std::string& spiffe_id,
                                            const std::vector<Selector>& selectors) {
  TRELLIS_RETURN_IF_ERROR(NormalizeSpiffeId(spiffe_id, "node spiffe_id").status());
  TRELLIS_RETURN_IF_ERROR(ValidateSelectors(selectors, "node"));
  std::vector<Selector> sorted = SortedUnique(selectors);
  return Write([&](Tx& tx, Events& events) -> absl::Status {
    TRELLIS_RETURN_IF_ERROR(
        tx.Exec("DELETE FROM node_selectors WHERE spiffe_id = $1", {spiffe_id}).status());
    for (const Selector& s : sorted) {
      TRELLIS_RETURN_IF_ERROR(
          tx.Exec("INSERT INTO node_selectors (spiffe_id, type, value) VALUES ($1, $2, $3)",
                  {spiffe_id, s.type, s.value})
              .status());
    }
    events.push_back({EventKind::kNodeUpdated, spiffe_id});
    return absl::OkStatus();
  });
}

absl::StatusOr<std::vector<Selector>> SqlDataStore::GetNodeSelectors(const std::string& spiffe_id) {
  std::vector<Selector> out;
  TRELLIS_RETURN_IF_ERROR(Read([&](Tx& tx) -> absl::Status {
    TRELLIS_ASSIGN_OR_RETURN(out, LoadNodeSelectors(tx, spiffe_id));
    return absl::OkStatus();
  }));
  return out;
}

// ---- join tokens ----

absl::Status SqlDataStore::CreateJoinToken(const JoinToken& token) {
  if (token.token.empty()) return absl::InvalidArgumentError("join token is empty");
  return Write([&](Tx& tx, Events&) -> absl::Status {
    TRELLIS_ASSIGN_OR_RETURN(Rows rows,
                             tx.Query("SELECT 1 FROM join_tokens WHERE token = $1", {token.token}));
    if (!rows.empty()) return absl::AlreadyExistsError("join token already exists");
    return tx
        .Exec("INSERT INTO join_tokens (token, expires_at) VALUES ($1, $2)",
              {token.token, Sec(token.expires_at)})
        .status();
  });
}

absl::StatusOr<JoinToken> SqlDataStore::ConsumeJoinToken(const std::string& token, absl::Time now) {
  if (token.empty()) return absl::InvalidArgumentError("join token is empty");
  JoinToken out;
  bool expired = false;
  TRELLIS_RETURN_IF_ERROR(Write([&](Tx& tx, Events&) -> absl::Status {
    // A single DELETE ... RETURNING: of concurrent consumers only one sees the row.
    TRELLIS_ASSIGN_OR_RETURN(
        Rows rows,
        tx.Query("DELETE FROM join_tokens WHERE token = $1 RETURNING expires_at", {token}));
    if (rows.empty()) return absl::NotFoundError("join token not found or already used");
    RowReader r(rows[0], "join_tokens");
    out.token = token;
    out.expires_at = r.Time("expires_at");
    TRELLIS_RETURN_IF_ERROR(r.status());
    expired = out.expires_at <= now;
    return absl::OkStatus();
  }));
  if (expired) return absl::FailedPreconditionError("join token expired");
  return out;
}

absl::Status SqlDataStore::DeleteJoinToken(const std::string& token) {
  return Write([&](Tx& tx, Events&) -> absl::Status {
    TRELLIS_ASSIGN_OR_RETURN(int64_t n,
                             tx.Exec("DELETE FROM join_tokens WHERE token = $1", {token}));
    if (n == 0) return absl::NotFoundError("join token not found");
    return absl::OkStatus();
  });
}

absl::StatusOr<int64_t> SqlDataStore::PruneJoinTokens(absl::Time expired_before) {
  int64_t n = 0;
  TRELLIS_RETURN_IF_ERROR(Write([&](Tx& tx, Events&) -> absl::Status {
    TRELLIS_ASSIGN_OR_RETURN(
        n, tx.Exec("DELETE FROM join_tokens WHERE expires_at < $1", {Sec(expired_before)}));
    return absl::OkStatus();
  }));
  return n;
}

// ---- CA journal ----

absl::StatusOr<CaJournalEntry> SqlDataStore::PutCaJournalEntry(const CaJournalEntry& entry) {
  if (entry.server_id.empty() || entry.authority_id.empty()) {
    return absl::InvalidArgumentError("CA journal entry needs a server_id and authority_id");
  }
  CaJournalEntry out;
  TRELLIS_RETURN_IF_ERROR(Write([&](Tx& tx, Events&) -> absl::Status {
    int64_t now = NowSeconds();
    TRELLIS_ASSIGN_OR_RETURN(
        Rows rows,
        tx.Query("INSERT INTO ca_journal (server_id, kind, authority_id, status, data, not_after,"
                 " created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $7)"
                 " ON CONFLICT (server_id, kind, authority_id) DO UPDATE SET"
                 " status = excluded.status, data = excluded.data,"
                 " not_after = excluded.not_after, updated_at = excluded.updated_at"
                 " RETURNING server_id, kind, authority_id, status, data, not_after, created_at,"
                 " updated_at",
                 {entry.server_id, std::string(AuthorityKindName(entry.kind)), entry.authority_id,
                  std::string(AuthorityStatusName(entry.status)), Blob{entry.data},
                  Sec(entry.not_after), now}));
    if (rows.empty()) return absl::InternalError("CA journal upsert returned no row");
    TRELLIS_ASSIGN_OR_RETURN(out, ReadJournalRow(rows[0]));
    return absl::OkStatus();
  }));
  return out;
}

absl::StatusOr<std::vector<CaJournalEntry>> SqlDataStore::ListCaJournal(
    const std::string& server_id) {
  std::vector<CaJournalEntry> out;
  TRELLIS_RETURN_IF_ERROR(Read([&](Tx& tx) -> absl::Status {
    out.clear();
    TRELLIS_ASSIGN_OR_RETURN(
        Rows rows, tx.Query("SELECT server_id, kind, authority_id, status, data, not_after,"
                            " created_at, updated_at FROM ca_journal WHERE server_id = $1"
                            " ORDER BY seq",
                            {server_id}));
    for (const Row& row : rows) {
      TRELLIS_ASSIGN_OR_RETURN(CaJournalEntry e, ReadJournalRow(row));
      out.push_back(std::move(e));
    }
    return absl::OkStatus();
  }));
  return out;
}

absl::Status SqlDataStore::DeleteCaJournalEntry(const std::string& server_id, AuthorityKind kind,
                                                const std::string& authority_id) {
  return Write([&](Tx& tx, Events&) -> absl::Status {
    TRELLIS_ASSIGN_OR_RETURN(
        int64_t n, tx.Exec("DELETE FROM ca_journal WHERE server_id = $1 AND kind = $2 AND"
                           " authority_id = $3",
                           {server_id, std::string(AuthorityKindName(kind)), authority_id}));
    if (n == 0) return absl::NotFoundError("no CA journal entry " + authority_id);
    return absl::OkStatus();
  });
}

// ---- federation relationships ----

absl::StatusOr<FederationRelationship> SqlDataStore::CreateFederationRelationship(
    const FederationRelationship& relationship) {
  TRELLIS_ASSIGN_OR_RETURN(FederationRelationship f, NormalizeRelationship(relationship));
  TRELLIS_RETURN_IF_ERROR(Write([&](Tx& tx, Events&) -> absl::Status {
    TRELLIS_ASSIGN_OR_RETURN(
        Rows rows, tx.Query("SELECT 1 FROM federation_relationships WHERE trust_domain = $1",
                            {f.trust_domain}));
    if (!rows.empty()) {
      return absl::AlreadyExistsError("federation relationship with " + f.trust_domain +
                                      " already exists");
    }
    return tx
        .Exec(
            "INSERT INTO federation_relationships (trust_domain, bundle_endpoint_url,"
            " profile, endpoint_spiffe_id, created_at) VALUES ($1, $2, $3, $4, $5)",
            {f.trust_domain, f.bundle_endpoint_url,
             std::string(BundleEndpointProfileName(f.profile)), f.endpoint_spiffe_id, NowSeconds()})
        .status();
  }));
  return f;
}

absl::StatusOr<FederationRelationship> SqlDataStore::GetFederationRelationship(
    const std::string& trust_domain) {
  TRELLIS_ASSIGN_OR_RETURN(std::string td, NormalizeTrustDomain(trust_domain, "federation"));
  FederationRelationship out;
  TRELLIS_RETURN_IF_ERROR(Read([&](Tx& tx) -> absl::Status {
    TRELLIS_ASSIGN_OR_RETURN(Rows rows,
                             tx.Query("SELECT trust_domain, bundle_endpoint_url, profile,"
                                      " endpoint_spiffe_id FROM federation_relationships"
                                      " WHERE trust_domain = $1",
                                      {td}));
    if (rows.empty()) return absl::NotFoundError("no federation relationship with " + td);
    TRELLIS_ASSIGN_OR_RETURN(out, ReadRelationshipRow(rows[0]));
    return absl::OkStatus();
  }));
  return out;
}

absl::StatusOr<FederationRelationship> SqlDataStore::UpdateFederationRelationship(
    const FederationRelationship& relationship) {
  TRELLIS_ASSIGN_OR_RETURN(FederationRelationship f, NormalizeRelationship(relationship));
  TRELLIS_RETURN_IF_ERROR(Write([&](Tx& tx, Events&) -> absl::Status {
    TRELLIS_ASSIGN_OR_RETURN(
        int64_t n,
        tx.Exec("UPDATE federation_relationships SET bundle_endpoint_url = $2,"
                " profile = $3, endpoint_spiffe_id = $4 WHERE trust_domain = $1",
                {f.trust_domain, f.bundle_endpoint_url,
                 std::string(BundleEndpointProfileName(f.profile)), f.endpoint_spiffe_id}));
    if (n == 0) return absl::NotFoundError("no federation relationship with " + f.trust_domain);
    return absl::OkStatus();
  }));
  return f;
}

absl::Status SqlDataStore::DeleteFederationRelationship(const std::string& trust_domain) {
  TRELLIS_ASSIGN_OR_RETURN(std::string td, NormalizeTrustDomain(trust_domain, "federation"));
  return Write([&](Tx& tx, Events&) -> absl::Status {
    TRELLIS_ASSIGN_OR_RETURN(
        int64_t n, tx.Exec("DELETE FROM federation_relationships WHERE trust_domain = $1", {td}));
    if (n == 0) return absl::NotFoundError("no federation relationship with " + td);
    return absl::OkStatus();
  });
}

absl::StatusOr<std::vector<FederationRelationship>> SqlDataStore::ListFederationRelationships() {
  std::vector<FederationRelationship> out;
  TRELLIS_RETURN_IF_ERROR(Read([&](Tx& tx) -> absl::Status {
    out.clear();
    TRELLIS_ASSIGN_OR_RETURN(Rows rows,
                             tx.Query("SELECT trust_domain, bundle_endpoint_url, profile,"
                                      " endpoint_spiffe_id FROM federation_relationships"
                                      " ORDER BY trust_domain"));
    for (const Row& row : rows) {
      TRELLIS_ASSIGN_OR_RETURN(FederationRelationship f, ReadRelationshipRow(row));
      out.push_back(std::move(f));
    }
    return absl::OkStatus();
  }));
  return out;
}

// ---- change log ----

absl::StatusOr<std::vector<Event>> SqlDataStore::ListEvents(int64_t after_id, int32_t limit) {
  if (limit < 0) return absl::InvalidArgumentError("event limit must not be negative");
  Params params{after_id};
  std::string sql =
      "SELECT id, kind, entry_id, node_spiffe_id, created_at FROM events WHERE id > $1"
      " ORDER BY id";
  if (limit > 0) {
    sql += " LIMIT $2";
    params.push_back(int64_t{limit});
  }
  std::vector<Event> out;
  TRELLIS_RETURN_IF_ERROR(Read([&](Tx& tx) -> absl::Status {
    out.clear();
    TRELLIS_ASSIGN_OR_RETURN(Rows rows, tx.Query(sql, params));
    for (const Row& row : rows) {
      RowReader r(row, "events");
      Event e;
      e.id = r.Int("id");
      r.SetKey(absl::StrCat("id ", e.id));
      e.kind =
          static_cast<EventKind>(r.Enum("kind", {"entry_created", "entry_updated", "entry_deleted",
                                                 "node_created", "node_updated", "node_deleted"}));
      e.entry_id = r.Text("entry_id");
      e.node_spiffe_id = r.Text("node_spiffe_id");
      e.created_at = r.Time("created_at");
      TRELLIS_RETURN_IF_ERROR(r.status());
      out.push_back(std::move(e));
    }
    return absl::OkStatus();
  }));
  return out;
}

absl::StatusOr<int64_t> SqlDataStore::PruneEvents(absl::Time older_than) {
  int64_t n = 0;
  TRELLIS_RETURN_IF_ERROR(Write([&](Tx& tx, Events&) -> absl::Status {
    // The newest event always stays so MaxEventId never moves backwards.
    TRELLIS_ASSIGN_OR_RETURN(n, tx.Exec("DELETE FROM events WHERE created_at < $1 AND"
                                        " id < (SELECT MAX(id) FROM events)",
                                        {Sec(older_than)}));
    return absl::OkStatus();
  }));
  return n;
}

absl::StatusOr<int64_t> SqlDataStore::MaxEventId() {
  int64_t n = 0;
  TRELLIS_RETURN_IF_ERROR(Read([&](Tx& tx) -> absl::Status {
    TRELLIS_ASSIGN_OR_RETURN(Rows rows, tx.Query("SELECT COALESCE(MAX(id), 0) FROM events"));
    RowReader r(rows.at(0), "events");
    n = r.Int("max(id)");
    return r.status();
  }));
  return n;
}

}  // namespace sql
}  // namespace trellis::datastore
