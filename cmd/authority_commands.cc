// trellis-server localauthority x509|jwt and upstreamauthority: operator steps of the
// signing-authority rotation.
#include <cctype>
#include <nlohmann/json.hpp>
#include <ostream>
#include <string>
#include <tuple>

#include "absl/time/time.h"
#include "cmd/admin_client.h"
#include "cmd/admin_commands.h"

namespace trellis::cmd {
namespace {

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
  if (int rc = ParseClientOrExit(fs, cf, args, usage, out, err); rc >= 0) return rc;
  if (needs_id && authority_id.empty()) return Fail(err, "-authorityID is required");
  AdminClient client(cf.socket_path);
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
  if (int rc = ParseClientOrExit(fs, cf, args,
                                 "upstreamauthority " + verb + " -subjectKeyID SKID [flags]", out,
                                 err);
      rc >= 0) {
    return rc;
  }
  if (skid.empty()) return Fail(err, "-subjectKeyID is required");
  AdminClient client(cf.socket_path);
  v1::UpstreamAuthorityRequest req;
  req.set_subject_key_id(skid);
  v1::UpstreamAuthorityResponse resp;
  auto ctx = client.Context();
  grpc::Status st = verb == "taint" ? client->TaintUpstreamAuthority(ctx.get(), req, &resp)
                                    : client->RevokeUpstreamAuthority(ctx.get(), req, &resp);
  if (!st.ok()) return Fail(err, client.Describe(st));
  PrintResponse(cf.output, resp, out, [&] {
    out << (verb == "taint" ? "Tainted" : "Revoked")
        << " X.509 upstream authority:\n  Subject Key ID: " << resp.subject_key_id() << "\n";
  });
  return 0;
}

}  // namespace

SubCommand LocalAuthorityCommands() {
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
  return {"localauthority",
          "Rotate this server's signing authorities by hand (x509|jwt show, prepare, "
          "activate, taint, revoke)",
          [authority_group](const Args& a, std::ostream& o, std::ostream& e) {
            return Group("localauthority",
                         {{"x509", authority_group(false)}, {"jwt", authority_group(true)}}, a, o,
                         e);
          }};
}

SubCommand UpstreamAuthorityCommands() {
  return {"upstreamauthority", "Taint or revoke an X.509 authority of the upstream (taint, revoke)",
          [](const Args& a, std::ostream& o, std::ostream& e) {
            auto verb = [](const std::string& v) {
              return [v](const Args& x, std::ostream& y, std::ostream& z) {
                return UpstreamAuthorityCommand(v, x, y, z);
              };
            };
            return Group("upstreamauthority",
                         {{"taint", verb("taint")}, {"revoke", verb("revoke")}}, a, o, e);
          }};
}

}  // namespace trellis::cmd
