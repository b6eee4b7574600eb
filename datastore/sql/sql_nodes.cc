// SqlDataStore: attested nodes and their selectors.
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/status.h"
#include "datastore/sql/sql_datastore.h"
#include "datastore/sql/sql_rows.h"

namespace trellis::datastore::sql {

using common::SpiffeId;
using common::TrustDomain;

namespace {

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

}  // namespace

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
  TRELLIS_ASSIGN_OR_RETURN(Query q, PagedQuery(req.page_size, req.page_token, "n.seq"));
  if (req.by_banned) q.Where("n.banned = " + q.Bind(B(*req.by_banned)));
  if (req.by_attestation_type) {
    q.Where("n.attestation_data_type = " + q.Bind(*req.by_attestation_type));
  }
  if (req.by_expires_before) {
    q.Where("n.cert_not_after < " + q.Bind(Sec(*req.by_expires_before)));
  }
  if (req.by_selectors) {
    TRELLIS_ASSIGN_OR_RETURN(
        std::string cond,
        SelectorFilterSql(q, *req.by_selectors, "node_selectors", "spiffe_id", "n.spiffe_id"));
    if (req.by_selectors->match == MatchMode::kSubset) {
      cond += " AND EXISTS (SELECT 1 FROM node_selectors z WHERE z.spiffe_id = n.spiffe_id)";
    }
    q.Where(cond);
  }
  std::string sql = absl::StrCat("SELECT ", kNodeColumns, " FROM attested_nodes n", q.WhereClause(),
                                 " ORDER BY n.seq");
  sql += PageLimit(q, req.page_size);
  ListNodesResponse out;
  TRELLIS_RETURN_IF_ERROR(Read([&](Tx& tx) -> absl::Status {
    out = ListNodesResponse();
    TRELLIS_ASSIGN_OR_RETURN(Rows rows, tx.Query(sql, q.params()));
    bool more = TrimPage(rows, req.page_size);
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

absl::StatusOr<int64_t> SqlDataStore::CountNodes() { return CountRows("attested_nodes"); }

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

}  // namespace trellis::datastore::sql
