// trellis-server entry create|update|show|delete|count: registration entries over the Admin API.
#include <algorithm>
#include <cstdint>
#include <ostream>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "cmd/admin_client.h"
#include "cmd/admin_commands.h"
#include "cmd/entry_data.h"
#include "common/spiffe_id.h"

namespace trellis::cmd {
namespace {

void PrintEntry(const v1::Entry& e, std::ostream& out) {
  out << "Entry ID         : " << e.id() << "\n";
  out << "SPIFFE ID        : " << e.spiffe_id() << "\n";
  out << "Parent ID        : " << e.parent_id() << "\n";
  out << "Revision         : " << e.revision_number() << "\n";
  if (e.downstream()) out << "Downstream       : true\n";
  out << "X509-SVID TTL    : "
      << (e.x509_svid_ttl() == 0 ? "default" : std::to_string(e.x509_svid_ttl())) << "\n";
  out << "JWT-SVID TTL     : "
      << (e.jwt_svid_ttl() == 0 ? "default" : std::to_string(e.jwt_svid_ttl())) << "\n";
  if (e.expires_at() != 0) out << "Expiration time  : " << FormatUnix(e.expires_at()) << "\n";
  for (const auto& s : e.selectors()) {
    out << "Selector         : " << s.type() << ":" << s.value() << "\n";
  }
  for (const auto& td : e.federates_with()) out << "FederatesWith    : " << td << "\n";
  for (const auto& d : e.dns_names()) out << "DNS name         : " << d << "\n";
  if (e.admin()) out << "Admin            : true\n";
  if (!e.hint().empty()) out << "Hint             : " << e.hint() << "\n";
  out << "\n";
}

// Entries per Admin API call for -data files: large enough that 100,000 entries take about a
// hundred calls, small enough that one call stays well under gRPC's 4 MB message limit.
constexpr size_t kBulkBatch = 1000;

struct EntryFlags {
  std::string data;
  std::string entry_id, parent_id, spiffe_id, hint;
  std::vector<std::string> selectors, dns, federates_with;
  int64_t x509_ttl = 0, jwt_ttl = 0, expiry = 0;
  bool node = false, downstream = false, admin = false;
  void Add(FlagSet& fs, bool update) {
    fs.String("entryID", &entry_id,
              update ? "The Registration Entry ID of the record to update"
                     : "A custom ID for this registration entry (optional)");
    fs.String("parentID", &parent_id, "The SPIFFE ID of this record's parent");
    fs.String("spiffeID", &spiffe_id, "The SPIFFE ID that this record represents");
    fs.Strings("selector", &selectors,
               "A colon-delimited type:value selector. Can be used more than once");
    fs.Int("x509SVIDTTL", &x509_ttl, "The lifetime, in seconds, for x509-SVIDs (0: default)");
    fs.Int("jwtSVIDTTL", &jwt_ttl, "The lifetime, in seconds, for JWT-SVIDs (0: default)");
    fs.Strings("dns", &dns, "A DNS name associated with the identity. Can be used more than once");
    fs.Strings("federatesWith", &federates_with,
               "A trust domain to federate with. Can be used more than once");
    fs.Bool("downstream", &downstream,
            "A boolean value that, when set, indicates that the entry "
            "describes a downstream trellis-server");
    fs.Bool("admin", &admin,
            "If set, the SPIFFE ID in this entry will be granted access to the "
            "admin API");
    fs.String("hint", &hint,
              "The entry hint, used to disambiguate entries with the same SPIFFE ID");
    fs.Int("entryExpiry", &expiry,
           "An expiry, from epoch in seconds, for the resulting "
           "registration entry to be pruned");
    fs.String("data", &data,
              "Path to a file of entries in JSON ({\"entries\": [...]}), or - for standard "
              "input; replaces the single-entry flags");
    if (!update) {
      fs.Bool("node", &node,
              "If set, this entry will be applied to matching nodes rather than "
              "workloads");
    }
  }
  absl::StatusOr<v1::Entry> Build(bool update) const {
    v1::Entry e;
    if (update && entry_id.empty()) return absl::InvalidArgumentError("entry ID is required");
    if (spiffe_id.empty()) return absl::InvalidArgumentError("a SPIFFE ID is required");
    absl::StatusOr<common::SpiffeId> id = common::SpiffeId::Parse(spiffe_id);
    if (!id.ok())
      return absl::InvalidArgumentError("invalid SPIFFE ID: " + std::string(id.status().message()));
    if (node && !parent_id.empty()) {
      return absl::InvalidArgumentError("-node and -parentID are mutually exclusive");
    }
    if (!node && parent_id.empty()) {
      return absl::InvalidArgumentError("a parent ID is required if the node flag is not set");
    }
    if (selectors.empty()) return absl::InvalidArgumentError("at least one selector is required");
    if (x509_ttl < 0 || x509_ttl > INT32_MAX) {
      return absl::InvalidArgumentError("-x509SVIDTTL must be between 0 and 2147483647");
    }
    if (jwt_ttl < 0 || jwt_ttl > INT32_MAX) {
      return absl::InvalidArgumentError("-jwtSVIDTTL must be between 0 and 2147483647");
    }
    if (expiry < 0) return absl::InvalidArgumentError("-entryExpiry must not be negative");
    e.set_id(entry_id);
    e.set_spiffe_id(spiffe_id);
    e.set_parent_id(node ? common::ServerId(id->trust_domain()).String() : parent_id);
    if (absl::Status st = AddSelectors(selectors, e.mutable_selectors()); !st.ok()) return st;
    e.set_x509_svid_ttl(static_cast<int32_t>(x509_ttl));
    e.set_jwt_svid_ttl(static_cast<int32_t>(jwt_ttl));
    for (const auto& d : dns) e.add_dns_names(d);
    for (const auto& td : federates_with) e.add_federates_with(td);
    e.set_downstream(downstream);
    e.set_admin(admin);
    e.set_hint(hint);
    e.set_expires_at(expiry);
    return e;
  }
};

// `entry create|update -data FILE`: every entry of the file in batches; each failed item is
// reported and the others still land. Exit 1 when any item failed.
int EntryBulk(bool update, const ClientFlags& cf, const std::string& path, std::ostream& out,
              std::ostream& err) {
  absl::StatusOr<std::string> text = ReadDataFile(path);
  if (!text.ok()) return Fail(err, std::string(text.status().message()));
  absl::StatusOr<std::vector<v1::Entry>> entries = ParseEntryData(*text, update);
  if (!entries.ok()) return Fail(err, path + ": " + std::string(entries.status().message()));
  AdminClient client(cf.socket_path);
  v1::BatchCreateEntryResponse all;  // both responses carry (status, entry) results
  for (size_t begin = 0; begin < entries->size(); begin += kBulkBatch) {
    const size_t end = std::min(entries->size(), begin + kBulkBatch);
    auto ctx = client.Context();
    grpc::Status st;
    if (update) {
      v1::BatchUpdateEntryRequest req;
      for (size_t i = begin; i < end; ++i) *req.add_entries() = (*entries)[i];
      v1::BatchUpdateEntryResponse resp;
      st = client->BatchUpdateEntry(ctx.get(), req, &resp);
      for (auto& r : *resp.mutable_results()) {
        auto* item = all.add_results();
        *item->mutable_status() = r.status();
        *item->mutable_entry() = std::move(*r.mutable_entry());
      }
    } else {
      v1::BatchCreateEntryRequest req;
      for (size_t i = begin; i < end; ++i) *req.add_entries() = (*entries)[i];
      v1::BatchCreateEntryResponse resp;
      st = client->BatchCreateEntry(ctx.get(), req, &resp);
      for (auto& r : *resp.mutable_results()) *all.add_results() = std::move(r);
    }
    if (!st.ok()) {
      err << "Error: " << begin << " of " << entries->size() << " entries were sent before: "
          << client.Describe(st) << "\n";
      return kFailExit;
    }
  }
  if (all.results_size() != static_cast<int>(entries->size())) {
    return Fail(err, "the server answered with a different number of results");
  }
  int failed = 0;
  for (int i = 0; i < all.results_size(); ++i) {
    if (all.results(i).status().code() != 0) ++failed;
  }
  PrintResponse(cf.output, all, out, [&] {
    for (int i = 0; i < all.results_size(); ++i) {
      const auto& r = all.results(i);
      if (r.status().code() == 0) {
        PrintEntry(r.entry(), out);
        continue;
      }
      out << "FAILED to " << (update ? "update" : "create") << " the following entry:\n";
      PrintEntry((*entries)[i], out);
      out << "Status           : "
          << CodeName(static_cast<grpc::StatusCode>(r.status().code())) << ": "
          << r.status().message() << "\n\n";
    }
  });
  if (failed > 0) {
    return Fail(err, std::to_string(failed) + " of " + std::to_string(all.results_size()) +
                         " entries failed");
  }
  return 0;
}

int EntryCreateOrUpdate(bool update, const Args& args, std::ostream& out, std::ostream& err) {
  FlagSet fs;
  ClientFlags cf;
  EntryFlags ef;
  cf.Add(fs, true);
  ef.Add(fs, update);
  std::string usage = update ? "entry update -entryID ID -parentID P -spiffeID S -selector T:V"
                             : "entry create -parentID P -spiffeID S -selector T:V [flags]";
  if (int rc = ParseClientOrExit(fs, cf, args, usage, out, err); rc >= 0) return rc;
  if (!ef.data.empty()) {
    if (!ef.entry_id.empty() || !ef.parent_id.empty() || !ef.spiffe_id.empty() ||
        !ef.selectors.empty() || ef.node) {
      return Fail(err, "-data cannot be combined with the single-entry flags");
    }
    return EntryBulk(update, cf, ef.data, out, err);
  }
  absl::StatusOr<v1::Entry> entry = ef.Build(update);
  if (!entry.ok()) return Fail(err, std::string(entry.status().message()));
  AdminClient client(cf.socket_path);
  auto ctx = client.Context();
  v1::Entry result_entry;
  v1::Status result_status;
  grpc::Status st;
  google::protobuf::Message* resp_msg = nullptr;
  v1::BatchCreateEntryResponse create_resp;
  v1::BatchUpdateEntryResponse update_resp;
  // Sends the one entry in a batch call and takes its single result.
  auto send = [&](auto req, auto& resp, const auto& call) {
    *req.add_entries() = *entry;
    st = call(req, &resp);
    if (st.ok() && resp.results_size() == 1) {
      result_status = resp.results(0).status();
      result_entry = resp.results(0).entry();
    }
    resp_msg = &resp;
  };
  if (update) {
    send(v1::BatchUpdateEntryRequest(), update_resp,
         [&](const v1::BatchUpdateEntryRequest& req, v1::BatchUpdateEntryResponse* resp) {
           return client->BatchUpdateEntry(ctx.get(), req, resp);
         });
  } else {
    send(v1::BatchCreateEntryRequest(), create_resp,
         [&](const v1::BatchCreateEntryRequest& req, v1::BatchCreateEntryResponse* resp) {
           return client->BatchCreateEntry(ctx.get(), req, resp);
         });
  }
  if (!st.ok()) return Fail(err, client.Describe(st));
  if (result_status.code() != 0) {
    return FailItem(err, update ? "update entry" : "create entry", result_status);
  }
  PrintResponse(cf.output, *resp_msg, out, [&] { PrintEntry(result_entry, out); });
  return 0;
}

int EntryShow(const Args& args, std::ostream& out, std::ostream& err) {
  FlagSet fs;
  ClientFlags cf;
  std::string entry_id, parent_id, spiffe_id, match = "superset", fed_match = "superset", hint;
  std::vector<std::string> selectors, federates_with;
  bool downstream = false;
  cf.Add(fs, true);
  fs.String("entryID", &entry_id, "The Entry ID of the records to show");
  fs.String("parentID", &parent_id, "The Parent ID of the records to show");
  fs.String("spiffeID", &spiffe_id, "The SPIFFE ID of the records to show");
  fs.Strings("selector", &selectors,
             "A colon-delimited type:value selector. Can be used more than once");
  fs.String("matchSelectorsOn", &match,
            "The match mode used when filtering by selectors: exact, "
            "subset, superset or any");
  fs.Strings("federatesWith", &federates_with,
             "SPIFFE ID of a trust domain an entry is federated "
             "with. Can be used more than once");
  fs.String("matchFederatesWithOn", &fed_match,
            "The match mode used when filtering by "
            "federates with: exact, subset, superset or any");
  fs.Bool("downstream", &downstream,
          "A boolean value that, when set, shows only downstream entries");
  fs.String("hint", &hint, "The Hint of the records to show");
  if (int rc = ParseClientOrExit(fs, cf, args, "entry show [flags]", out, err); rc >= 0) return rc;
  auto match_mode = [](const std::string& m, v1::MatchBehavior* b) {
    if (m == "exact")
      *b = v1::MATCH_EXACT;
    else if (m == "subset")
      *b = v1::MATCH_SUBSET;
    else if (m == "superset")
      *b = v1::MATCH_SUPERSET;
    else if (m == "any")
      *b = v1::MATCH_ANY;
    else
      return false;
    return true;
  };
  AdminClient client(cf.socket_path);
  v1::ListEntriesResponse all;
  if (!entry_id.empty()) {
    v1::GetEntryRequest req;
    req.set_id(entry_id);
    auto ctx = client.Context();
    grpc::Status st = client->GetEntry(ctx.get(), req, all.add_entries());
    if (!st.ok()) return Fail(err, client.Describe(st));
  } else {
    v1::ListEntriesRequest req;
    req.set_by_spiffe_id(spiffe_id);
    req.set_by_parent_id(parent_id);
    v1::MatchBehavior b;
    if (!match_mode(match, &b)) return Fail(err, "unsupported match behavior \"" + match + "\"");
    req.set_selector_match(b);
    if (!match_mode(fed_match, &b)) {
      return Fail(err, "unsupported match behavior \"" + fed_match + "\"");
    }
    req.set_federates_with_match(b);
    if (absl::Status st = AddSelectors(selectors, req.mutable_by_selectors()); !st.ok()) {
      return Fail(err, std::string(st.message()));
    }
    for (const auto& td : federates_with) req.add_by_federates_with(td);
    if (downstream) req.set_by_downstream(1);
    req.set_by_hint(hint);
    req.set_page_size(500);
    while (true) {
      v1::ListEntriesResponse page;
      auto ctx = client.Context();
      grpc::Status st = client->ListEntries(ctx.get(), req, &page);
      if (!st.ok()) return Fail(err, client.Describe(st));
      for (auto& e : *page.mutable_entries()) *all.add_entries() = std::move(e);
      if (page.next_page_token().empty()) break;
      req.set_page_token(page.next_page_token());
    }
  }
  PrintResponse(cf.output, all, out, [&] {
    int n = all.entries_size();
    out << "Found " << n << (n == 1 ? " entry" : " entries") << "\n";
    for (const auto& e : all.entries()) PrintEntry(e, out);
  });
  return 0;
}

// `entry delete -file FILE`: the ids in batches; prints each deletion, fails on any failure.
int EntryDeleteBulk(const ClientFlags& cf, const std::string& path, std::ostream& out,
                    std::ostream& err) {
  absl::StatusOr<std::string> text = ReadDataFile(path);
  if (!text.ok()) return Fail(err, std::string(text.status().message()));
  absl::StatusOr<std::vector<std::string>> ids = ParseEntryIds(*text);
  if (!ids.ok()) return Fail(err, path + ": " + std::string(ids.status().message()));
  AdminClient client(cf.socket_path);
  int failed = 0;
  for (size_t begin = 0; begin < ids->size(); begin += kBulkBatch) {
    v1::BatchDeleteEntryRequest req;
    for (size_t i = begin; i < std::min(ids->size(), begin + kBulkBatch); ++i) {
      req.add_ids((*ids)[i]);
    }
    v1::BatchDeleteEntryResponse resp;
    auto ctx = client.Context();
    grpc::Status st = client->BatchDeleteEntry(ctx.get(), req, &resp);
    if (!st.ok()) return Fail(err, client.Describe(st));
    for (const auto& r : resp.results()) {
      if (r.status().code() == 0) {
        out << "Deleted entry with ID: " << r.id() << "\n";
      } else {
        ++failed;
        FailItem(err, "delete entry " + r.id(), r.status());
      }
    }
  }
  if (failed > 0) {
    return Fail(err, std::to_string(failed) + " of " + std::to_string(ids->size()) +
                         " deletions failed");
  }
  return 0;
}

int EntryDelete(const Args& args, std::ostream& out, std::ostream& err) {
  FlagSet fs;
  ClientFlags cf;
  std::string entry_id, file;
  cf.Add(fs, false);
  fs.String("entryID", &entry_id, "The Registration Entry ID of the record to delete");
  fs.String("file", &file,
            "Path to a JSON file of entry IDs to delete ({\"ids\": [...]}), or - for standard "
            "input");
  if (int rc = ParseOrExit(fs, args, "entry delete -entryID ID | -file FILE", out, err);
      rc >= 0) {
    return rc;
  }
  if (!file.empty()) {
    if (!entry_id.empty()) return Fail(err, "-file cannot be combined with -entryID");
    return EntryDeleteBulk(cf, file, out, err);
  }
  if (entry_id.empty()) return Fail(err, "an entry ID is required");
  AdminClient client(cf.socket_path);
  v1::BatchDeleteEntryRequest req;
  req.add_ids(entry_id);
  v1::BatchDeleteEntryResponse resp;
  auto ctx = client.Context();
  grpc::Status st = client->BatchDeleteEntry(ctx.get(), req, &resp);
  if (!st.ok()) return Fail(err, client.Describe(st));
  if (resp.results_size() != 1) return Fail(err, "the server answered with no result");
  const v1::Status& item = resp.results(0).status();
  if (item.code() != 0) return FailItem(err, "delete entry", item);
  out << "Deleted entry with ID: " << entry_id << "\n";
  return 0;
}

int EntryCount(const Args& args, std::ostream& out, std::ostream& err) {
  return CountCommand<v1::CountEntriesResponse>(
      args, "entry count", "registration entries",
      [](AdminClient& client, grpc::ClientContext* ctx, v1::CountEntriesResponse* resp) {
        return client->CountEntries(ctx, {}, resp);
      },
      out, err);
}

}  // namespace

SubCommand EntryCommands() {
  return {"entry", "Manage registration entries (create, update, delete, show, count)",
          [](const Args& a, std::ostream& o, std::ostream& e) {
            return Group(
                "entry",
                {{"create", [](const Args& x, std::ostream& y,
                               std::ostream& z) { return EntryCreateOrUpdate(false, x, y, z); }},
                 {"update", [](const Args& x, std::ostream& y,
                               std::ostream& z) { return EntryCreateOrUpdate(true, x, y, z); }},
                 {"delete", EntryDelete},
                 {"show", EntryShow},
                 {"count", EntryCount}},
                a, o, e);
          }};
}

}  // namespace trellis::cmd
