// SqlDataStore: registration entries and their selectors, federated trust domains and DNS names.
#include <algorithm>
#include <functional>
#include <set>
#include <unordered_map>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/status.h"
#include "datastore/sql/sql_datastore.h"
#include "datastore/sql/sql_rows.h"

namespace trellis::datastore::sql {

using common::SpiffeId;
using common::TrustDomain;

namespace {

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
  // Reads `columns` of every child row in `table` and hands each row to `add` with the entry it
  // belongs to (a scratch entry for a row of no listed entry, which is still checked).
  auto load = [&](const char* table, const char* columns, const char* order,
                  const std::function<void(RowReader&, RegistrationEntry&)>& add) -> absl::Status {
    Query q;
    std::string sql = absl::StrCat("SELECT entry_seq, ", columns, " FROM ", table, scope(q),
                                   " ORDER BY entry_seq, ", order);
    TRELLIS_ASSIGN_OR_RETURN(Rows rows, tx.Query(sql, q.params()));
    for (const Row& row : rows) {
      RowReader r(row, table);
      int64_t seq = r.Int("entry_seq");
      r.SetKey(absl::StrCat("entry_seq ", seq));
      auto it = by_seq.find(seq);
      RegistrationEntry unlisted;
      add(r, it != by_seq.end() ? *it->second : unlisted);
      TRELLIS_RETURN_IF_ERROR(r.status());
    }
    return absl::OkStatus();
  };
  TRELLIS_RETURN_IF_ERROR(
      load("entry_selectors", "type, value", "type, value", [](RowReader& r, RegistrationEntry& e) {
        Selector s{r.NonEmpty("type"), r.NonEmpty("value")};
        e.selectors.push_back(std::move(s));
      }));
  TRELLIS_RETURN_IF_ERROR(load("entry_federates_with", "trust_domain", "trust_domain",
                               [](RowReader& r, RegistrationEntry& e) {
                                 e.federates_with.push_back(r.Domain("trust_domain"));
                               }));
  TRELLIS_RETURN_IF_ERROR(load("entry_dns_names", "name", "position",
                               [](RowReader& r, RegistrationEntry& e) {
                                 e.dns_names.push_back(r.NonEmpty("name"));
                               }));
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

}  // namespace

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

absl::StatusOr<std::vector<RegistrationEntry>> SqlDataStore::GetEntries(
    const std::vector<std::string>& ids) {
  std::vector<RegistrationEntry> out;
  TRELLIS_RETURN_IF_ERROR(Read([&](Tx& tx) -> absl::Status {
    out.clear();
    for (size_t begin = 0; begin < ids.size(); begin += kMaxInList) {
      Query q;
      std::vector<std::string> placeholders;
      for (size_t i = begin; i < std::min(ids.size(), begin + kMaxInList); ++i) {
        placeholders.push_back(q.Bind(ids[i]));
      }
      TRELLIS_ASSIGN_OR_RETURN(
          Rows rows, tx.Query(absl::StrCat("SELECT ", kEntryColumns, " FROM entries e WHERE e.id IN (",
                                           absl::StrJoin(placeholders, ","), ") ORDER BY e.seq"),
                              q.params()));
      std::vector<LoadedEntry> loaded;
      for (const Row& row : rows) {
        TRELLIS_ASSIGN_OR_RETURN(LoadedEntry le, ReadEntryRow(row));
        loaded.push_back(std::move(le));
      }
      TRELLIS_RETURN_IF_ERROR(LoadEntryChildren(tx, loaded));
      for (auto& le : loaded) out.push_back(std::move(le.entry));
    }
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
  TRELLIS_ASSIGN_OR_RETURN(Query q, PagedQuery(req.page_size, req.page_token, "e.seq"));
  if (req.by_spiffe_id) {
    TRELLIS_ASSIGN_OR_RETURN(std::string id, NormalizeSpiffeId(*req.by_spiffe_id, "by_spiffe_id"));
    q.Where("e.spiffe_id = " + q.Bind(id));
  }
  if (req.by_parent_id) {
    TRELLIS_ASSIGN_OR_RETURN(std::string id, NormalizeSpiffeId(*req.by_parent_id, "by_parent_id"));
    q.Where("e.parent_id = " + q.Bind(id));
  }
  if (req.by_selectors) {
    TRELLIS_ASSIGN_OR_RETURN(
        std::string cond,
        SelectorFilterSql(q, *req.by_selectors, "entry_selectors", "entry_seq", "e.seq"));
    q.Where(cond);
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
  sql += PageLimit(q, req.page_size);
  ListEntriesResponse out;
  TRELLIS_RETURN_IF_ERROR(Read([&](Tx& tx) -> absl::Status {
    TRELLIS_ASSIGN_OR_RETURN(Rows rows, tx.Query(sql, q.params()));
    std::vector<LoadedEntry> loaded;
    bool more = TrimPage(rows, req.page_size);
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

absl::StatusOr<int64_t> SqlDataStore::CountEntries() { return CountRows("entries"); }

}  // namespace trellis::datastore::sql
