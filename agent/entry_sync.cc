// The sync request built from the current snapshot, and the response turned into an update.
#include "agent/entry_sync.h"

#include <grpcpp/grpcpp.h>

#include "agent/proto_convert.h"
#include "common/log.h"
#include "common/status.h"
#include "common/x509.h"
#include "transport/grpc_status.h"
#include "transport/wire_convert.h"

namespace trellis::agent {

namespace v1 = ::trellis::server::v1;

namespace {

// Changed entries per response and known revisions per request: a page of either stays far
// below gRPC's 4 MB message limit (an entry is a few hundred bytes).
constexpr uint32_t kPageEntries = 1000;
constexpr size_t kKnownPerPage = 2000;

// Adds one response's part to `update`.
absl::Status Merge(const v1::SyncAuthorizedEntriesResponse& resp, const common::TrustDomain& td,
                   SyncUpdate& update) {
  if (resp.has_bundle()) {
    auto b = transport::BundleFromProto(resp.bundle());
    if (!b.ok()) return Annotate(b.status(), "bundle from the server");
    if (b->trust_domain() != td) {
      return absl::InternalError("server sent a bundle of another trust domain");
    }
    update.bundle = std::make_shared<const common::Bundle>(*std::move(b));
    update.bundle_sent = true;
    for (const auto& a : resp.bundle().x509_authorities()) {
      if (!a.tainted()) continue;
      auto cert = common::Certificate::FromDer(a.asn1());
      if (cert.ok()) update.tainted_key_ids.insert(cert->SubjectKeyId());
    }
    for (const auto& a : resp.bundle().jwt_authorities()) {
      if (a.tainted()) update.tainted_jwt_kids.insert(a.key_id());
    }
  }
  for (const auto& fb : resp.federated_bundles()) {
    auto b = transport::BundleFromProto(fb);
    if (!b.ok()) {
      common::LogWarn("ignoring a federated bundle: " + std::string(b.status().message()));
      continue;
    }
    std::string name = b->trust_domain().name();
    update.federated[name] = std::make_shared<const common::Bundle>(*std::move(b));
  }
  for (const std::string& id : resp.removed_ids()) update.removed_ids.push_back(id);
  for (const auto& e : resp.changed()) {
    auto entry = EntryFromProto(e);
    if (!entry.ok()) {
      common::LogWarn("ignoring entry " + e.id() + ": " + std::string(entry.status().message()));
      continue;
    }
    update.changed.push_back(*std::move(entry));
  }
  for (const std::string& name : resp.removed_federated_bundles()) {
    update.removed_federated.push_back(TrustDomainName(name));
  }
  return absl::OkStatus();
}

}  // namespace


absl::StatusOr<SyncUpdate> SyncEntries(ServerConnection& conn,
                                       const workload_api::IdentitySnapshot& known,
                                       const common::TrustDomain& td) {
  SyncUpdate update;
  std::string cursor;
  while (true) {
    v1::SyncAuthorizedEntriesRequest req;
    req.set_page_after(cursor);
    req.set_page_size(kPageEntries);
    // The agent's own ids bound the page: it sends at most kKnownPerPage of them.
    size_t sent = 0;
    for (auto it = known.entries.upper_bound(cursor); it != known.entries.end(); ++it) {
      if (sent == kKnownPerPage) {
        req.set_page_until(std::string((*std::prev(it))->id()));
        break;
      }
      (*req.mutable_known_revisions())[std::string((*it)->id())] = (*it)->revision();
      ++sent;
    }
    if (cursor.empty()) {
      req.set_bundle_sequence(known.bundle ? known.bundle->bundle().sequence() : 0);
      for (const auto& [name, b] : known.federated) {
        (*req.mutable_federated_bundle_sequences())[name] = b->bundle().sequence();
      }
    }
    v1::SyncAuthorizedEntriesResponse resp;
    grpc::ClientContext ctx;
    SetDeadline(&ctx, kCallTimeout);
    grpc::Status s = conn.Stub()->SyncAuthorizedEntries(&ctx, req, &resp);
    if (!s.ok()) return transport::FromGrpcStatus(s);
    TRELLIS_RETURN_IF_ERROR(Merge(resp, td, update));
    ++update.pages;
    std::string next = !resp.truncated_after().empty() ? resp.truncated_after() : req.page_until();
    if (next.empty()) break;
    if (next <= cursor) {
      return absl::InternalError("server answered a sync page that does not move forward");
    }
    cursor = std::move(next);
  }
  return update;
}

}  // namespace trellis::agent
