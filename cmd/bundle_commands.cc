// trellis-server bundle show|list|set|delete: this server's and federated trust bundles.
#include <iostream>
#include <optional>
#include <sstream>
#include <string>

#include "absl/status/statusor.h"
#include "cmd/admin_client.h"
#include "cmd/admin_commands.h"
#include "common/bundle.h"
#include "common/file_util.h"
#include "common/spiffe_id.h"
#include "server/api_convert.h"
#include "transport/wire_convert.h"

namespace trellis::cmd {
namespace {

// Checked as the admin API checks a bundle it is given, so a bad one is refused with the same
// words, then converted.
absl::StatusOr<common::Bundle> ToCommonBundle(const v1::Bundle& b) {
  absl::StatusOr<datastore::Bundle> checked = server::BundleFromProto(b);
  if (!checked.ok()) return checked.status();
  return transport::BundleFromProto(b);
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
  AdminClient client(cf.socket_path);
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
  AdminClient client(cf.socket_path);
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
  AdminClient client(cf.socket_path);
  v1::SetFederatedBundleRequest req;
  *req.mutable_bundle() = transport::BundleToProto(*bundle);
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
  AdminClient client(cf.socket_path);
  v1::DeleteFederatedBundleRequest req;
  req.set_trust_domain(td->name());
  v1::Empty resp;
  auto ctx = client.Context();
  grpc::Status st = client->DeleteFederatedBundle(ctx.get(), req, &resp);
  if (!st.ok()) return Fail(err, client.Describe(st));
  out << "bundle deleted.\n";
  return 0;
}

}  // namespace

SubCommand BundleCommands() {
  return {"bundle", "Manage trust bundles (show, list, set, delete)",
          [](const Args& a, std::ostream& o, std::ostream& e) {
            return Group("bundle",
                         {{"show", BundleShow},
                          {"list", BundleList},
                          {"set", BundleSet},
                          {"delete", BundleDelete}},
                         a, o, e);
          }};
}

}  // namespace trellis::cmd
