// trellis-server admin subcommands. Each one parses Go-style flags, calls the Admin API on the
// server's Unix socket and prints SPIRE's output shapes (or JSON with -output json).
#include "cmd/server_cli.h"

#include <google/protobuf/util/json_util.h>
#include <grpcpp/grpcpp.h>

#include <cctype>
#include <fstream>
#include <nlohmann/json.hpp>
#include <iostream>
#include <sstream>
#include <tuple>

#include "absl/strings/str_join.h"
#include "absl/time/time.h"
#include "cmd/go_flags.h"
#include "common/bundle.h"
#include "common/file_util.h"
#include "common/spiffe_id.h"
#include "server/api_convert.h"
#include "trellis/server/v1/admin.grpc.pb.h"

namespace trellis::cmd {
namespace {

namespace v1 = ::trellis::server::v1;
using Args = std::vector<std::string>;

constexpr int kUsageExit = 2;
constexpr int kFailExit = 1;
constexpr absl::Duration kRpcTimeout = absl::Seconds(30);

std::string OneLine(std::string text) {
  for (char& c : text) {
    if (c == '\n' || c == '\r') c = ' ';
  }
  return text;
}

int Fail(std::ostream& err, const std::string& msg) {
  err << "Error: " << OneLine(msg) << "\n";
  return kFailExit;
}

const char* CodeName(grpc::StatusCode code) {
  switch (code) {
    case grpc::StatusCode::OK:
      return "OK";
    case grpc::StatusCode::CANCELLED:
      return "Canceled";
    case grpc::StatusCode::UNKNOWN:
      return "Unknown";
    case grpc::StatusCode::INVALID_ARGUMENT:
      return "InvalidArgument";
    case grpc::StatusCode::DEADLINE_EXCEEDED:
      return "DeadlineExceeded";
    case grpc::StatusCode::NOT_FOUND:
      return "NotFound";
    case grpc::StatusCode::ALREADY_EXISTS:
      return "AlreadyExists";
    case grpc::StatusCode::PERMISSION_DENIED:
      return "PermissionDenied";
    case grpc::StatusCode::RESOURCE_EXHAUSTED:
      return "ResourceExhausted";
    case grpc::StatusCode::FAILED_PRECONDITION:
      return "FailedPrecondition";
    case grpc::StatusCode::ABORTED:
      return "Aborted";
    case grpc::StatusCode::OUT_OF_RANGE:
      return "OutOfRange";
    case grpc::StatusCode::UNIMPLEMENTED:
      return "Unimplemented";
    case grpc::StatusCode::INTERNAL:
      return "Internal";
    case grpc::StatusCode::UNAVAILABLE:
      return "Unavailable";
    case grpc::StatusCode::DATA_LOSS:
      return "DataLoss";
    case grpc::StatusCode::UNAUTHENTICATED:
      return "Unauthenticated";
    default:
      return "Unknown";
  }
}

// Shared by every admin command: where the server is and how to print.
struct ClientFlags {
  std::string socket_path = kDefaultServerSocketPath;
  std::string output = "pretty";
  void Add(FlagSet& fs, bool with_output) {
    fs.String("socketPath", &socket_path, "Path to the trellis-server admin API socket");
    if (with_output) fs.String("output", &output, "Desired output format (pretty, json)");
  }
};

class Client {
 public:
  explicit Client(const std::string& socket_path) : socket_path_(socket_path) {
    stub_ = v1::Admin::NewStub(
        grpc::CreateChannel("unix:" + socket_path, grpc::InsecureChannelCredentials()));
  }
  v1::Admin::Stub* operator->() { return stub_.get(); }
  std::unique_ptr<grpc::ClientContext> Context() const {
    auto ctx = std::make_unique<grpc::ClientContext>();
    ctx->set_deadline(std::chrono::system_clock::now() + absl::ToChronoMilliseconds(kRpcTimeout));
    return ctx;
  }
  std::string Describe(const grpc::Status& st) const {
    if (st.error_code() == grpc::StatusCode::UNAVAILABLE) {
      return "connection error: cannot reach the server at " + socket_path_ + ": " +
             st.error_message();
    }
    return std::string(CodeName(st.error_code())) + ": " + st.error_message();
  }

 private:
  std::string socket_path_;
  std::unique_ptr<v1::Admin::Stub> stub_;
};

// Runs the flag parser for one command; returns an exit code to stop with, or -1 to go on.
int ParseOrExit(FlagSet& fs, const Args& args, const std::string& usage, std::ostream& out,
                std::ostream& err) {
  absl::Status st = fs.Parse(args);
  if (!st.ok()) {
    err << "Error: " << OneLine(std::string(st.message())) << "\n";
    return kUsageExit;
  }
  if (fs.help_requested()) {
    out << "Usage: trellis-server " << usage << "\n";
    fs.PrintDefaults(out);
    return 0;
  }
  return -1;
}

absl::Status CheckOutput(const std::string& output) {
  if (output != "pretty" && output != "json") {
    return absl::InvalidArgumentError("invalid value \"" + output +
                                      "\" for flag -output: want pretty or json");
  }
  return absl::OkStatus();
}

std::string ToJson(const google::protobuf::Message& m) {
  std::string json;
  google::protobuf::util::JsonPrintOptions options;
  options.preserve_proto_field_names = true;
  options.always_print_primitive_fields = true;
  (void)google::protobuf::util::MessageToJsonString(m, &json, options);
  return json;
}

std::string FormatUnix(int64_t seconds) {
  return absl::FormatTime("%Y-%m-%d %H:%M:%S +0000 UTC", absl::FromUnixSeconds(seconds),
                          absl::UTCTimeZone());
}

// ---- entries ------------------------------------------------------------------------------

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

struct EntryFlags {
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
    for (const std::string& text : selectors) {
      absl::StatusOr<datastore::Selector> sel = server::ParseSelector(text);
      if (!sel.ok()) return sel.status();
      *e.add_selectors() = server::SelectorToProto(*sel);
    }
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

int EntryCreateOrUpdate(bool update, const Args& args, std::ostream& out, std::ostream& err) {
  FlagSet fs;
  ClientFlags cf;
  EntryFlags ef;
  cf.Add(fs, true);
  ef.Add(fs, update);
  std::string usage = update ? "entry update -entryID ID -parentID P -spiffeID S -selector T:V"
                             : "entry create -parentID P -spiffeID S -selector T:V [flags]";
  if (int rc = ParseOrExit(fs, args, usage, out, err); rc >= 0) return rc;
  if (absl::Status st = CheckOutput(cf.output); !st.ok())
    return Fail(err, std::string(st.message()));
  absl::StatusOr<v1::Entry> entry = ef.Build(update);
  if (!entry.ok()) return Fail(err, std::string(entry.status().message()));
  Client client(cf.socket_path);
  auto ctx = client.Context();
  v1::Entry result_entry;
  v1::Status result_status;
  grpc::Status st;
  google::protobuf::Message* resp_msg = nullptr;
  v1::BatchCreateEntryResponse create_resp;
  v1::BatchUpdateEntryResponse update_resp;
  if (update) {
    v1::BatchUpdateEntryRequest req;
    *req.add_entries() = *entry;
    st = client->BatchUpdateEntry(ctx.get(), req, &update_resp);
    if (st.ok() && update_resp.results_size() == 1) {
      result_status = update_resp.results(0).status();
      result_entry = update_resp.results(0).entry();
    }
    resp_msg = &update_resp;
  } else {
    v1::BatchCreateEntryRequest req;
    *req.add_entries() = *entry;
    st = client->BatchCreateEntry(ctx.get(), req, &create_resp);
    if (st.ok() && create_resp.results_size() == 1) {
      result_status = create_resp.results(0).status();
      result_entry = create_resp.results(0).entry();
    }
    resp_msg = &create_resp;
  }
  if (!st.ok()) return Fail(err, client.Describe(st));
  if (result_status.code() != 0) {
    return Fail(err, std::string(update ? "failed to update entry: " : "failed to create entry: ") +
                         CodeName(static_cast<grpc::StatusCode>(result_status.code())) + ": " +
                         result_status.message());
  }
  if (cf.output == "json") {
    out << ToJson(*resp_msg) << "\n";
  } else {
    PrintEntry(result_entry, out);
  }
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
  if (int rc = ParseOrExit(fs, args, "entry show [flags]", out, err); rc >= 0) return rc;
  if (absl::Status st = CheckOutput(cf.output); !st.ok())
    return Fail(err, std::string(st.message()));
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
  Client client(cf.socket_path);
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
    for (const std::string& text : selectors) {
      absl::StatusOr<datastore::Selector> sel = server::ParseSelector(text);
      if (!sel.ok()) return Fail(err, std::string(sel.status().message()));
      *req.add_by_selectors() = server::SelectorToProto(*sel);
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
  if (cf.output == "json") {
    out << ToJson(all) << "\n";
    return 0;
  }
  int n = all.entries_size();
  out << "Found " << n << (n == 1 ? " entry" : " entries") << "\n";
  for (const auto& e : all.entries()) PrintEntry(e, out);
  return 0;
}

int EntryDelete(const Args& args, std::ostream& out, std::ostream& err) {
  FlagSet fs;
  ClientFlags cf;
  std::string entry_id;
  cf.Add(fs, false);
  fs.String("entryID", &entry_id, "The Registration Entry ID of the record to delete");
  if (int rc = ParseOrExit(fs, args, "entry delete -entryID ID", out, err); rc >= 0) return rc;
  if (entry_id.empty()) return Fail(err, "an entry ID is required");
  Client client(cf.socket_path);
  v1::BatchDeleteEntryRequest req;
  req.add_ids(entry_id);
  v1::BatchDeleteEntryResponse resp;
  auto ctx = client.Context();
  grpc::Status st = client->BatchDeleteEntry(ctx.get(), req, &resp);
  if (!st.ok()) return Fail(err, client.Describe(st));
  if (resp.results_size() != 1) return Fail(err, "the server answered with no result");
  const v1::Status& item = resp.results(0).status();
  if (item.code() != 0) {
    return Fail(err, "failed to delete entry: " +
                         std::string(CodeName(static_cast<grpc::StatusCode>(item.code()))) + ": " +
                         item.message());
  }
  out << "Deleted entry with ID: " << entry_id << "\n";
  return 0;
}

int EntryCount(const Args& args, std::ostream& out, std::ostream& err) {
  FlagSet fs;
  ClientFlags cf;
  cf.Add(fs, true);
  if (int rc = ParseOrExit(fs, args, "entry count", out, err); rc >= 0) return rc;
  if (absl::Status st = CheckOutput(cf.output); !st.ok())
    return Fail(err, std::string(st.message()));
  Client client(cf.socket_path);
  v1::CountEntriesResponse resp;
  auto ctx = client.Context();
  grpc::Status st = client->CountEntries(ctx.get(), {}, &resp);
  if (!st.ok()) return Fail(err, client.Describe(st));
  if (cf.output == "json") {
    out << ToJson(resp) << "\n";
  } else {
    out << resp.count() << " registration entries\n";
  }
  return 0;
}

// ---- tokens -------------------------------------------------------------------------------

int TokenGenerate(const Args& args, std::ostream& out, std::ostream& err) {
  FlagSet fs;
  ClientFlags cf;
  std::string spiffe_id;
  int64_t ttl = 600;
  cf.Add(fs, true);
  fs.String("spiffeID", &spiffe_id, "Additional SPIFFE ID to assign the token owner (optional)");
  fs.Int("ttl", &ttl, "Token TTL in seconds");
  if (int rc = ParseOrExit(fs, args, "token generate [-spiffeID ID] [-ttl 600]", out, err);
      rc >= 0) {
    return rc;
  }
  if (absl::Status st = CheckOutput(cf.output); !st.ok())
    return Fail(err, std::string(st.message()));
  if (ttl <= 0 || ttl > INT32_MAX) return Fail(err, "-ttl must be a positive number of seconds");
  if (!spiffe_id.empty()) {
    absl::StatusOr<common::SpiffeId> id = common::SpiffeId::Parse(spiffe_id);
    if (!id.ok()) return Fail(err, "invalid SPIFFE ID: " + std::string(id.status().message()));
  }
  Client client(cf.socket_path);
  v1::CreateJoinTokenRequest req;
  req.set_ttl(static_cast<int32_t>(ttl));
  req.set_spiffe_id(spiffe_id);
  v1::CreateJoinTokenResponse resp;
  auto ctx = client.Context();
  grpc::Status st = client->CreateJoinToken(ctx.get(), req, &resp);
  if (!st.ok()) return Fail(err, client.Describe(st));
  if (cf.output == "json") {
    out << ToJson(resp) << "\n";
  } else {
    out << "Token: " << resp.token() << "\n";
  }
  return 0;
}

// ---- agents -------------------------------------------------------------------------------

void PrintAgent(const v1::AttestedNode& a, std::ostream& out) {
  out << "SPIFFE ID         : " << a.spiffe_id() << "\n";
  out << "Attestation type  : " << a.attestation_type() << "\n";
  out << "Expiration time   : " << FormatUnix(a.cert_not_after()) << "\n";
  out << "Serial number     : " << a.cert_serial_number() << "\n";
  out << "Can re-attest     : " << (a.can_reattest() ? "true" : "false") << "\n";
  if (a.banned()) out << "Banned            : true\n";
  for (const auto& s : a.selectors()) {
    out << "Selectors         : " << s.type() << ":" << s.value() << "\n";
  }
  out << "\n";
}

int AgentList(const Args& args, std::ostream& out, std::ostream& err) {
  FlagSet fs;
  ClientFlags cf;
  std::string attestation_type;
  std::vector<std::string> selectors;
  bool banned = false;
  cf.Add(fs, true);
  fs.String("attestationType", &attestation_type, "Filter by attestation type");
  fs.Strings("selector", &selectors,
             "A colon-delimited type:value selector. Can be used more than once");
  fs.Bool("banned", &banned, "Show only banned agents");
  if (int rc = ParseOrExit(fs, args, "agent list [flags]", out, err); rc >= 0) return rc;
  if (absl::Status st = CheckOutput(cf.output); !st.ok())
    return Fail(err, std::string(st.message()));
  Client client(cf.socket_path);
  v1::ListAgentsRequest req;
  req.set_by_attestation_type(attestation_type);
  if (banned) req.set_by_banned(1);
  for (const std::string& text : selectors) {
    absl::StatusOr<datastore::Selector> sel = server::ParseSelector(text);
    if (!sel.ok()) return Fail(err, std::string(sel.status().message()));
    *req.add_by_selectors() = server::SelectorToProto(*sel);
  }
  req.set_page_size(500);
  v1::ListAgentsResponse all;
  while (true) {
    v1::ListAgentsResponse page;
    auto ctx = client.Context();
    grpc::Status st = client->ListAgents(ctx.get(), req, &page);
    if (!st.ok()) return Fail(err, client.Describe(st));
    for (auto& a : *page.mutable_agents()) *all.add_agents() = std::move(a);
    if (page.next_page_token().empty()) break;
    req.set_page_token(page.next_page_token());
  }
  if (cf.output == "json") {
    out << ToJson(all) << "\n";
    return 0;
  }
  int n = all.agents_size();
  if (n == 0) {
    out << "No attested agents found\n";
    return 0;
  }
  out << "Found " << n << (n == 1 ? " attested agent" : " attested agents") << ":\n\n";
  for (const auto& a : all.agents()) PrintAgent(a, out);
  return 0;
}

// show, ban and evict address one agent by SPIFFE ID.
int AgentById(const std::string& verb, const Args& args, std::ostream& out, std::ostream& err) {
  FlagSet fs;
  ClientFlags cf;
  std::string spiffe_id;
  cf.Add(fs, verb == "show");
  fs.String("spiffeID", &spiffe_id, "The SPIFFE ID of the agent");
  if (int rc = ParseOrExit(fs, args, "agent " + verb + " -spiffeID ID", out, err); rc >= 0) {
    return rc;
  }
  if (absl::Status st = CheckOutput(cf.output); !st.ok())
    return Fail(err, std::string(st.message()));
  if (spiffe_id.empty()) return Fail(err, "a SPIFFE ID is required");
  absl::StatusOr<common::SpiffeId> id = common::SpiffeId::Parse(spiffe_id);
  if (!id.ok()) return Fail(err, "invalid SPIFFE ID: " + std::string(id.status().message()));
  Client client(cf.socket_path);
  v1::AgentIdRequest req;
  req.set_spiffe_id(spiffe_id);
  auto ctx = client.Context();
  if (verb == "show") {
    v1::AttestedNode resp;
    grpc::Status st = client->GetAgent(ctx.get(), req, &resp);
    if (!st.ok()) return Fail(err, client.Describe(st));
    if (cf.output == "json") {
      out << ToJson(resp) << "\n";
    } else {
      out << "Found an attested agent given its SPIFFE ID\n\n";
      PrintAgent(resp, out);
    }
    return 0;
  }
  v1::Empty resp;
  grpc::Status st = verb == "ban" ? client->BanAgent(ctx.get(), req, &resp)
                                  : client->EvictAgent(ctx.get(), req, &resp);
  if (!st.ok()) return Fail(err, client.Describe(st));
  out << (verb == "ban" ? "Agent banned successfully\n" : "Agent evicted successfully\n");
  return 0;
}

int AgentCount(const Args& args, std::ostream& out, std::ostream& err) {
  FlagSet fs;
  ClientFlags cf;
  cf.Add(fs, true);
  if (int rc = ParseOrExit(fs, args, "agent count", out, err); rc >= 0) return rc;
  if (absl::Status st = CheckOutput(cf.output); !st.ok())
    return Fail(err, std::string(st.message()));
  Client client(cf.socket_path);
  v1::CountAgentsResponse resp;
  auto ctx = client.Context();
  grpc::Status st = client->CountAgents(ctx.get(), {}, &resp);
  if (!st.ok()) return Fail(err, client.Describe(st));
  if (cf.output == "json") {
    out << ToJson(resp) << "\n";
  } else {
    out << resp.count() << " attested agents\n";
  }
  return 0;
}

// ---- bundles ------------------------------------------------------------------------------

absl::StatusOr<common::Bundle> ToCommonBundle(const v1::Bundle& b) {
  absl::StatusOr<datastore::Bundle> ds = server::BundleFromProto(b);
  if (!ds.ok()) return ds.status();
  return server::CommonBundleFromDatastore(*ds);
}

absl::StatusOr<std::string> RenderBundle(const v1::Bundle& b, const std::string& format) {
  absl::StatusOr<common::Bundle> bundle = ToCommonBundle(b);
  if (!bundle.ok()) return bundle.status();
  if (format == "spiffe") return common::SpiffeBundleToJson(*bundle);
  return common::BundleToPem(*bundle);
}

absl::Status CheckFormat(const std::string& format) {
  if (format != "pem" && format != "spiffe") {
    return absl::InvalidArgumentError("invalid format \"" + format + "\": want pem or spiffe");
  }
  return absl::OkStatus();
}

void EnsureNewline(std::string& s) {
  if (!s.empty() && s.back() != '\n') s += '\n';
}

int BundleShow(const Args& args, std::ostream& out, std::ostream& err) {
  FlagSet fs;
  ClientFlags cf;
  std::string format = "pem";
  cf.Add(fs, false);
  fs.String("format", &format, "The format to show the bundle (pem or spiffe)");
  if (int rc = ParseOrExit(fs, args, "bundle show [-format pem|spiffe]", out, err); rc >= 0) {
    return rc;
  }
  if (absl::Status st = CheckFormat(format); !st.ok()) return Fail(err, std::string(st.message()));
  Client client(cf.socket_path);
  v1::Bundle resp;
  auto ctx = client.Context();
  grpc::Status st = client->GetBundle(ctx.get(), {}, &resp);
  if (!st.ok()) return Fail(err, client.Describe(st));
  absl::StatusOr<std::string> text = RenderBundle(resp, format);
  if (!text.ok()) return Fail(err, std::string(text.status().message()));
  EnsureNewline(*text);
  out << *text;
  return 0;
}

int BundleList(const Args& args, std::ostream& out, std::ostream& err) {
  FlagSet fs;
  ClientFlags cf;
  std::string format = "pem", id;
  cf.Add(fs, false);
  fs.String("format", &format, "The format to list federated bundles (pem or spiffe)");
  fs.String("id", &id, "The trust domain SPIFFE ID of the bundle to show");
  if (int rc = ParseOrExit(fs, args, "bundle list [-id TD] [-format pem|spiffe]", out, err);
      rc >= 0) {
    return rc;
  }
  if (absl::Status st = CheckFormat(format); !st.ok()) return Fail(err, std::string(st.message()));
  std::optional<common::TrustDomain> only;
  if (!id.empty()) {
    absl::StatusOr<common::TrustDomain> td = common::TrustDomain::Parse(id);
    if (!td.ok()) return Fail(err, "invalid trust domain: " + std::string(td.status().message()));
    only = *td;
  }
  Client client(cf.socket_path);
  v1::ListFederatedBundlesResponse resp;
  auto ctx = client.Context();
  grpc::Status st = client->ListFederatedBundles(ctx.get(), {}, &resp);
  if (!st.ok()) return Fail(err, client.Describe(st));
  bool found = false;
  for (const v1::Bundle& b : resp.bundles()) {
    absl::StatusOr<std::string> text = RenderBundle(b, format);
    if (!text.ok()) return Fail(err, std::string(text.status().message()));
    EnsureNewline(*text);
    if (only) {
      if (b.trust_domain() != only->name()) continue;
      out << *text;
      found = true;
      continue;
    }
    out << "****************************************\n"
        << "* spiffe://" << b.trust_domain() << "\n"
        << "****************************************\n"
        << *text << "\n";
  }
  if (only && !found) return Fail(err, "no federated bundle for trust domain " + only->name());
  return 0;
}

int BundleSet(const Args& args, std::ostream& out, std::ostream& err) {
  FlagSet fs;
  ClientFlags cf;
  std::string format = "pem", id, path;
  cf.Add(fs, false);
  fs.String("format", &format, "The format of the bundle data (pem or spiffe)");
  fs.String("id", &id, "SPIFFE ID of the trust domain");
  fs.String("path", &path, "Path to the bundle data (default: standard input)");
  if (int rc =
          ParseOrExit(fs, args, "bundle set -id TD [-path FILE] [-format pem|spiffe]", out, err);
      rc >= 0) {
    return rc;
  }
  if (absl::Status st = CheckFormat(format); !st.ok()) return Fail(err, std::string(st.message()));
  if (id.empty()) return Fail(err, "id flag is required");
  absl::StatusOr<common::TrustDomain> td = common::TrustDomain::Parse(id);
  if (!td.ok()) return Fail(err, "invalid trust domain: " + std::string(td.status().message()));
  std::string data;
  if (path.empty()) {
    std::stringstream ss;
    ss << std::cin.rdbuf();
    data = ss.str();
  } else {
    absl::StatusOr<std::string> read = common::ReadFile(path);
    if (!read.ok())
      return Fail(err, "unable to read bundle: " + std::string(read.status().message()));
    data = *read;
  }
  absl::StatusOr<common::Bundle> bundle =
      format == "spiffe" ? common::ParseSpiffeBundle(*td, data) : common::BundleFromPem(*td, data);
  if (!bundle.ok())
    return Fail(err, "unable to parse bundle: " + std::string(bundle.status().message()));
  Client client(cf.socket_path);
  v1::SetFederatedBundleRequest req;
  *req.mutable_bundle() = server::BundleToProto(*bundle);
  v1::Bundle resp;
  auto ctx = client.Context();
  grpc::Status st = client->SetFederatedBundle(ctx.get(), req, &resp);
  if (!st.ok()) return Fail(err, client.Describe(st));
  out << "bundle set.\n";
  return 0;
}

int BundleDelete(const Args& args, std::ostream& out, std::ostream& err) {
  FlagSet fs;
  ClientFlags cf;
  std::string id;
  cf.Add(fs, false);
  fs.String("id", &id, "SPIFFE ID of the trust domain");
  if (int rc = ParseOrExit(fs, args, "bundle delete -id TD", out, err); rc >= 0) return rc;
  if (id.empty()) return Fail(err, "id flag is required");
  absl::StatusOr<common::TrustDomain> td = common::TrustDomain::Parse(id);
  if (!td.ok()) return Fail(err, "invalid trust domain: " + std::string(td.status().message()));
  Client client(cf.socket_path);
  v1::DeleteFederatedBundleRequest req;
  req.set_trust_domain(td->name());
  v1::Empty resp;
  auto ctx = client.Context();
  grpc::Status st = client->DeleteFederatedBundle(ctx.get(), req, &resp);
  if (!st.ok()) return Fail(err, client.Describe(st));
  out << "bundle deleted.\n";
  return 0;
}

// ---- health -------------------------------------------------------------------------------

int Healthcheck(const Args& args, std::ostream& out, std::ostream& err) {
  FlagSet fs;
  ClientFlags cf;
  bool shallow = false, verbose = false;
  cf.Add(fs, false);
  fs.Bool("shallow", &shallow,
          "Perform a less stringent health check (only that the server "
          "answers)");
  fs.Bool("verbose", &verbose, "Print verbose information");
  if (int rc = ParseOrExit(fs, args, "healthcheck [-shallow] [-socketPath PATH]", out, err);
      rc >= 0) {
    return rc;
  }
  Client client(cf.socket_path);
  v1::HealthResponse resp;
  auto ctx = client.Context();
  ctx->set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(5));
  grpc::Status st = client->Health(ctx.get(), {}, &resp);
  if (!st.ok()) return Fail(err, "server is unhealthy: " + client.Describe(st));
  if (!shallow && !resp.healthy()) {
    std::vector<std::string> details;
    for (const auto& [k, v] : resp.details()) details.push_back(k + "=" + v);
    std::sort(details.begin(), details.end());
    return Fail(err, "server is unhealthy: " + absl::StrJoin(details, " "));
  }
  if (verbose) {
    std::vector<std::string> details;
    for (const auto& [k, v] : resp.details()) details.push_back(k + ": " + v);
    std::sort(details.begin(), details.end());
    for (const auto& d : details) out << d << "\n";
  }
  out << "Server is healthy.\n";
  return 0;
}

// ---- local and upstream authorities ---------------------------------------------------------

std::string Rfc3339(int64_t seconds) {
  return absl::FormatTime(absl::RFC3339_sec, absl::FromUnixSeconds(seconds), absl::UTCTimeZone());
}

// Numbers stay numbers here (proto3 JSON would print the int64 expiry as a string).
std::string AuthorityJson(const v1::AuthorityState& a) {
  nlohmann::json j;
  j["authority_id"] = a.authority_id();
  j["expires_at"] = a.expires_at();
  j["upstream_authority_subject_key_id"] = a.upstream_authority_subject_key_id();
  return j.dump();
}

void PrintAuthority(const v1::AuthorityState& a, std::ostream& out) {
  out << "  Authority ID: " << a.authority_id() << "\n";
  out << "  Expires at: " << Rfc3339(a.expires_at()) << "\n";
  if (!a.upstream_authority_subject_key_id().empty()) {
    out << "  Upstream authority Subject Key ID: " << a.upstream_authority_subject_key_id()
        << "\n";
  }
}

// `localauthority x509|jwt <verb>`: show, prepare, activate, taint, revoke.
int LocalAuthority(bool jwt, const std::string& verb, const Args& args, std::ostream& out,
                   std::ostream& err) {
  const std::string kind = jwt ? "jwt" : "x509";
  const std::string noun = jwt ? "JWT authority" : "X.509 authority";
  FlagSet fs;
  ClientFlags cf;
  cf.Add(fs, true);
  std::string authority_id;
  const bool needs_id = verb == "activate" || verb == "taint" || verb == "revoke";
  if (needs_id) fs.String("authorityID", &authority_id, "The authority ID (" + kind + ")");
  const std::string usage =
      "localauthority " + kind + " " + verb + (needs_id ? " -authorityID ID" : "") + " [flags]";
  if (int rc = ParseOrExit(fs, args, usage, out, err); rc >= 0) return rc;
  if (absl::Status st = CheckOutput(cf.output); !st.ok()) {
    return Fail(err, std::string(st.message()));
  }
  if (needs_id && authority_id.empty()) return Fail(err, "-authorityID is required");
  Client client(cf.socket_path);
  const v1::AuthorityKind k = jwt ? v1::AUTHORITY_JWT : v1::AUTHORITY_X509;
  if (verb == "show") {
    v1::GetAuthorityStateRequest req;
    req.set_kind(k);
    v1::GetAuthorityStateResponse resp;
    auto ctx = client.Context();
    grpc::Status st = client->GetAuthorityState(ctx.get(), req, &resp);
    if (!st.ok()) return Fail(err, client.Describe(st));
    if (cf.output == "json") {
      auto field = [&](bool has, const v1::AuthorityState& a) {
        return has ? AuthorityJson(a) : std::string("null");
      };
      out << "{\"active\":" << field(resp.has_active(), resp.active())
          << ",\"prepared\":" << field(resp.has_prepared(), resp.prepared())
          << ",\"old\":" << field(resp.has_old(), resp.old()) << "}\n";
      return 0;
    }
    for (const auto& [label, has, a] :
         {std::tuple{"Active", resp.has_active(), &resp.active()},
          std::tuple{"Prepared", resp.has_prepared(), &resp.prepared()},
          std::tuple{"Old", resp.has_old(), &resp.old()}}) {
      if (has) {
        out << label << " " << noun << ":\n";
        PrintAuthority(*a, out);
      } else {
        std::string lower(label);
        lower[0] = static_cast<char>(std::tolower(lower[0]));
        out << "No " << lower << " " << noun << " found\n";
      }
    }
    return 0;
  }
  v1::AuthorityRequest req;
  req.set_kind(k);
  req.set_authority_id(authority_id);
  v1::AuthorityResponse resp;
  auto ctx = client.Context();
  grpc::Status st;
  std::string done;
  if (verb == "prepare") {
    st = client->PrepareAuthority(ctx.get(), req, &resp);
    done = "Prepared";
  } else if (verb == "activate") {
    st = client->ActivateAuthority(ctx.get(), req, &resp);
    done = "Activated";
  } else if (verb == "taint") {
    st = client->TaintAuthority(ctx.get(), req, &resp);
    done = "Tainted";
  } else {
    st = client->RevokeAuthority(ctx.get(), req, &resp);
    done = "Revoked";
  }
  if (!st.ok()) return Fail(err, client.Describe(st));
  if (cf.output == "json") {
    out << AuthorityJson(resp.authority()) << "\n";
  } else {
    out << done << " " << noun << ":\n";
    PrintAuthority(resp.authority(), out);
  }
  return 0;
}

// `upstreamauthority taint|revoke -subjectKeyID SKID`.
int UpstreamAuthorityCommand(const std::string& verb, const Args& args, std::ostream& out,
                             std::ostream& err) {
  FlagSet fs;
  ClientFlags cf;
  cf.Add(fs, true);
  std::string skid;
  fs.String("subjectKeyID", &skid, "The X.509 upstream authority's Subject Key Identifier (hex)");
  if (int rc = ParseOrExit(fs, args, "upstreamauthority " + verb + " -subjectKeyID SKID [flags]",
                           out, err);
      rc >= 0) {
    return rc;
  }
  if (absl::Status st = CheckOutput(cf.output); !st.ok()) {
    return Fail(err, std::string(st.message()));
  }
  if (skid.empty()) return Fail(err, "-subjectKeyID is required");
  Client client(cf.socket_path);
  v1::UpstreamAuthorityRequest req;
  req.set_subject_key_id(skid);
  v1::UpstreamAuthorityResponse resp;
  auto ctx = client.Context();
  grpc::Status st = verb == "taint" ? client->TaintUpstreamAuthority(ctx.get(), req, &resp)
                                    : client->RevokeUpstreamAuthority(ctx.get(), req, &resp);
  if (!st.ok()) return Fail(err, client.Describe(st));
  if (cf.output == "json") {
    out << ToJson(resp) << "\n";
  } else {
    out << (verb == "taint" ? "Tainted" : "Revoked")
        << " X.509 upstream authority:\n  Subject Key ID: " << resp.subject_key_id() << "\n";
  }
  return 0;
}

// ---- groups -------------------------------------------------------------------------------

using Handler = std::function<int(const Args&, std::ostream&, std::ostream&)>;

int Group(const std::string& group, const std::vector<std::pair<std::string, Handler>>& subs,
          const Args& args, std::ostream& out, std::ostream& err) {
  auto usage = [&](std::ostream& os) {
    os << "Usage: trellis-server " << group << " <command> [flags]\n\nCommands:\n";
    for (const auto& [name, h] : subs) os << "  " << name << "\n";
  };
  if (args.empty()) {
    err << "Error: missing " << group << " command\n";
    usage(err);
    return kUsageExit;
  }
  if (args[0] == "-h" || args[0] == "-help" || args[0] == "--help" || args[0] == "help") {
    usage(out);
    return 0;
  }
  Args rest(args.begin() + 1, args.end());
  for (const auto& [name, h] : subs) {
    if (name == args[0]) return h(rest, out, err);
  }
  err << "Error: unknown " << group << " command \"" << OneLine(args[0]) << "\"\n";
  return kUsageExit;
}

}  // namespace

std::vector<SubCommand> ServerCommands() {
  std::vector<SubCommand> cmds;
  cmds.push_back({"run", "Run the server", RunServerCommand});
  cmds.push_back({"healthcheck", "Check the health of a running server", Healthcheck});
  cmds.push_back({"token", "Generate join tokens (token generate)",
                  [](const Args& a, std::ostream& o, std::ostream& e) {
                    return Group("token", {{"generate", TokenGenerate}}, a, o, e);
                  }});
  cmds.push_back(
      {"entry", "Manage registration entries (create, update, delete, show, count)",
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
       }});
  cmds.push_back({"bundle", "Manage trust bundles (show, list, set, delete)",
                  [](const Args& a, std::ostream& o, std::ostream& e) {
                    return Group("bundle",
                                 {{"show", BundleShow},
                                  {"list", BundleList},
                                  {"set", BundleSet},
                                  {"delete", BundleDelete}},
                                 a, o, e);
                  }});
  cmds.push_back({"agent", "Manage attested agents (list, show, count, ban, evict)",
                  [](const Args& a, std::ostream& o, std::ostream& e) {
                    auto by_id = [](const std::string& verb) {
                      return [verb](const Args& x, std::ostream& y, std::ostream& z) {
                        return AgentById(verb, x, y, z);
                      };
                    };
                    return Group("agent",
                                 {{"list", AgentList},
                                  {"show", by_id("show")},
                                  {"count", AgentCount},
                                  {"ban", by_id("ban")},
                                  {"evict", by_id("evict")}},
                                 a, o, e);
                  }});
  auto authority_group = [](bool jwt) {
    return [jwt](const Args& a, std::ostream& o, std::ostream& e) {
      auto verb = [jwt](const std::string& v) {
        return [jwt, v](const Args& x, std::ostream& y, std::ostream& z) {
          return LocalAuthority(jwt, v, x, y, z);
        };
      };
      return Group(jwt ? "localauthority jwt" : "localauthority x509",
                   {{"show", verb("show")},
                    {"prepare", verb("prepare")},
                    {"activate", verb("activate")},
                    {"taint", verb("taint")},
                    {"revoke", verb("revoke")}},
                   a, o, e);
    };
  };
  cmds.push_back({"localauthority",
                  "Rotate this server's signing authorities by hand (x509|jwt show, prepare, "
                  "activate, taint, revoke)",
                  [authority_group](const Args& a, std::ostream& o, std::ostream& e) {
                    return Group("localauthority",
                                 {{"x509", authority_group(false)}, {"jwt", authority_group(true)}},
                                 a, o, e);
                  }});
  cmds.push_back({"upstreamauthority",
                  "Taint or revoke an X.509 authority of the upstream (taint, revoke)",
                  [](const Args& a, std::ostream& o, std::ostream& e) {
                    auto verb = [](const std::string& v) {
                      return [v](const Args& x, std::ostream& y, std::ostream& z) {
                        return UpstreamAuthorityCommand(v, x, y, z);
                      };
                    };
                    return Group("upstreamauthority",
                                 {{"taint", verb("taint")}, {"revoke", verb("revoke")}}, a, o, e);
                  }});
  return cmds;
}

}  // namespace trellis::cmd
