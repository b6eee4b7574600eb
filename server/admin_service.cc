// Admin API handlers: validate, call the DataStore, tell the entry index about writes.
#include "server/admin_service.h"

#include <openssl/rand.h>

#include <optional>
#include <vector>

#include "datastore/datastore.h"
#include "server/api_convert.h"
#include "server/ca_manager.h"
#include "common/log.h"
#include "transport/grpc_status.h"

namespace trellis::server {

using transport::ToGrpcStatus;
using common::LogInfo;
namespace {

void SetStatus(v1::Status* out, const absl::Status& s) {
  out->set_code(static_cast<int32_t>(s.code()));
  out->set_message(std::string(s.message()));
}

datastore::MatchMode MatchFromProto(v1::MatchBehavior m) {
  switch (m) {
    case v1::MATCH_EXACT:
      return datastore::MatchMode::kExact;
    case v1::MATCH_SUBSET:
      return datastore::MatchMode::kSubset;
    case v1::MATCH_SUPERSET:
      return datastore::MatchMode::kSuperset;
    case v1::MATCH_ANY:
      return datastore::MatchMode::kAny;
    default:
      return datastore::MatchMode::kExact;
  }
}

absl::Status CheckMatch(int value, const std::string& field) {
  if (!v1::MatchBehavior_IsValid(value)) {
    return absl::InvalidArgumentError(field + ": unknown match behaviour " + std::to_string(value));
  }
  return absl::OkStatus();
}

absl::Status CheckPageSize(int32_t page_size) {
  if (page_size < 0) return absl::InvalidArgumentError("page_size: must not be negative");
  return absl::OkStatus();
}

}  // namespace

std::string GenerateJoinToken() {
  unsigned char bytes[16];
  if (RAND_bytes(bytes, sizeof bytes) != 1) {
    // The DRBG failing is not recoverable and a predictable token would be worse than none.
    std::abort();
  }
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  out.reserve(2 * sizeof bytes);
  for (unsigned char b : bytes) {
    out += kHex[b >> 4];
    out += kHex[b & 0xf];
  }
  return out;
}

AdminService::AdminService(datastore::DataStore* ds, Options options)
    : ds_(ds),
      options_(std::move(options)),
      clock_(options_.clock ? *options_.clock : common::SystemClock::Get()) {}

common::RpcLogScope AdminService::Rpc(const ServerContext& ctx, std::string_view method) const {
  std::vector<common::LogField> caller;
  if (options_.caller_uid) {
    if (std::optional<uint32_t> uid = options_.caller_uid(ctx)) {
      caller.emplace_back("caller_uid", std::to_string(*uid));
    }
  }
  return common::RpcLogScope(common::GrpcMethodName(v1::Admin::service_full_name(), method),
                             std::move(caller));
}

void AdminService::AfterWrite() {
  if (options_.after_write) options_.after_write();
}

absl::StatusOr<std::string> AdminService::AgentIdArg(const std::string& spiffe_id) const {
  if (spiffe_id.empty()) return absl::InvalidArgumentError("spiffe_id: is required");
  absl::StatusOr<common::SpiffeId> id = common::SpiffeId::Parse(spiffe_id);
  if (!id.ok())
    return absl::InvalidArgumentError("spiffe_id: " + std::string(id.status().message()));
  if (!id->MemberOf(options_.trust_domain)) {
    return absl::InvalidArgumentError("spiffe_id: \"" + spiffe_id + "\" is not in trust domain \"" +
                                      options_.trust_domain.name() + "\"");
  }
  if (!id->IsAgentId()) {
    return absl::InvalidArgumentError("spiffe_id: \"" + spiffe_id + "\" is not an agent ID");
  }
  return id->String();
}

grpc::Status AdminService::BatchCreateEntry(ServerContext* ctx,
                                            const v1::BatchCreateEntryRequest* req,
                                            v1::BatchCreateEntryResponse* resp) {
  common::RpcLogScope rpc = Rpc(*ctx, "BatchCreateEntry");
  bool wrote = false;
  std::vector<absl::StatusOr<datastore::RegistrationEntry>> parsed;
  std::vector<datastore::RegistrationEntry> valid;
  for (const v1::Entry& in : req->entries()) {
    parsed.push_back(EntryFromProto(in, options_.trust_domain));
    if (parsed.back().ok()) valid.push_back(*parsed.back());
  }
  // Bulk loads: the valid entries in one transaction (one commit instead of one each). When
  // any of them conflicts nothing was stored, and each goes alone below for its own result.
  std::optional<std::vector<datastore::RegistrationEntry>> together;
  if (valid.size() > 1) {
    absl::StatusOr<std::vector<datastore::RegistrationEntry>> all = ds_->CreateEntries(valid);
    if (all.ok() && all->size() == valid.size()) together = *std::move(all);
  }
  size_t next_together = 0;
  for (auto& entry : parsed) {
    v1::BatchCreateEntryResponse::Result* result = resp->add_results();
    if (!entry.ok()) {
      SetStatus(result->mutable_status(), entry.status());
      continue;
    }
    absl::StatusOr<datastore::RegistrationEntry> created =
        together ? (*together)[next_together++] : ds_->CreateEntry(*entry);
    if (created.ok()) {
      wrote = true;
      SetStatus(result->mutable_status(), absl::OkStatus());
      *result->mutable_entry() = EntryToProto(*created);
      LogInfo("Entry created", {{"entry_id", created->id},
                                {"spiffe_id", created->spiffe_id},
                                {"parent_id", created->parent_id}});
      continue;
    }
    SetStatus(result->mutable_status(), created.status());
    if (absl::IsAlreadyExists(created.status())) {
      // Hand back the entry that is in the way so scripts can carry on with its id.
      datastore::ListEntriesRequest q;
      q.by_spiffe_id = entry->spiffe_id;
      q.by_parent_id = entry->parent_id;
      q.by_selectors = datastore::SelectorFilter{entry->selectors, datastore::MatchMode::kExact};
      absl::StatusOr<datastore::ListEntriesResponse> found = ds_->ListEntries(q);
      if (found.ok() && !found->entries.empty()) {
        *result->mutable_entry() = EntryToProto(found->entries.front());
      }
    }
  }
  if (wrote) AfterWrite();
  return grpc::Status::OK;
}

grpc::Status AdminService::BatchUpdateEntry(ServerContext* ctx,
                                            const v1::BatchUpdateEntryRequest* req,
                                            v1::BatchUpdateEntryResponse* resp) {
  common::RpcLogScope rpc = Rpc(*ctx, "BatchUpdateEntry");
  bool wrote = false;
  for (const v1::Entry& in : req->entries()) {
    v1::BatchUpdateEntryResponse::Result* result = resp->add_results();
    if (in.id().empty()) {
      SetStatus(result->mutable_status(), absl::InvalidArgumentError("id: is required"));
      continue;
    }
    absl::StatusOr<datastore::RegistrationEntry> entry = EntryFromProto(in, options_.trust_domain);
    if (!entry.ok()) {
      SetStatus(result->mutable_status(), entry.status());
      continue;
    }
    absl::StatusOr<datastore::RegistrationEntry> updated =
        ds_->UpdateEntry(*entry, datastore::EntryMask::All());
    SetStatus(result->mutable_status(), updated.status());
    if (updated.ok()) {
      wrote = true;
      *result->mutable_entry() = EntryToProto(*updated);
      LogInfo("Entry updated",
              {{"entry_id", updated->id}, {"revision", std::to_string(updated->revision_number)}});
    }
  }
  if (wrote) AfterWrite();
  return grpc::Status::OK;
}

grpc::Status AdminService::BatchDeleteEntry(ServerContext* ctx,
                                            const v1::BatchDeleteEntryRequest* req,
                                            v1::BatchDeleteEntryResponse* resp) {
  common::RpcLogScope rpc = Rpc(*ctx, "BatchDeleteEntry");
  bool wrote = false;
  for (const std::string& id : req->ids()) {
    v1::BatchDeleteEntryResponse::Result* result = resp->add_results();
    result->set_id(id);
    if (id.empty()) {
      SetStatus(result->mutable_status(), absl::InvalidArgumentError("id: is required"));
      continue;
    }
    absl::StatusOr<datastore::RegistrationEntry> deleted = ds_->DeleteEntry(id);
    SetStatus(result->mutable_status(), deleted.status());
    if (deleted.ok()) {
      wrote = true;
      LogInfo("Entry deleted", {{"entry_id", id}});
    }
  }
  if (wrote) AfterWrite();
  return grpc::Status::OK;
}

grpc::Status AdminService::GetEntry(ServerContext* ctx, const v1::GetEntryRequest* req,
                                    v1::Entry* resp) {
  common::RpcLogScope rpc = Rpc(*ctx, "GetEntry");
  if (req->id().empty()) return ToGrpcStatus(absl::InvalidArgumentError("id: is required"));
  absl::StatusOr<datastore::RegistrationEntry> entry = ds_->GetEntry(req->id());
  if (!entry.ok()) return ToGrpcStatus(entry.status());
  *resp = EntryToProto(*entry);
  return grpc::Status::OK;
}

grpc::Status AdminService::ListEntries(ServerContext* ctx, const v1::ListEntriesRequest* req,
                                       v1::ListEntriesResponse* resp) {
  common::RpcLogScope rpc = Rpc(*ctx, "ListEntries");
  datastore::ListEntriesRequest q;
  if (!req->by_spiffe_id().empty()) {
    absl::StatusOr<common::SpiffeId> id = common::SpiffeId::Parse(req->by_spiffe_id());
    if (!id.ok()) {
      return ToGrpcStatus(
          absl::InvalidArgumentError("by_spiffe_id: " + std::string(id.status().message())));
    }
    q.by_spiffe_id = id->String();
  }
  if (!req->by_parent_id().empty()) {
    absl::StatusOr<common::SpiffeId> id = common::SpiffeId::Parse(req->by_parent_id());
    if (!id.ok()) {
      return ToGrpcStatus(
          absl::InvalidArgumentError("by_parent_id: " + std::string(id.status().message())));
    }
    q.by_parent_id = id->String();
  }
  if (!req->by_selectors().empty()) {
    absl::Status st = CheckMatch(req->selector_match(), "selector_match");
    if (!st.ok()) return ToGrpcStatus(st);
    datastore::SelectorFilter f;
    f.match = MatchFromProto(req->selector_match());
    for (const v1::Selector& s : req->by_selectors()) {
      absl::StatusOr<datastore::Selector> sel = SelectorFromProto(s, "by_selectors");
      if (!sel.ok()) return ToGrpcStatus(sel.status());
      f.selectors.push_back(*sel);
    }
    q.by_selectors = std::move(f);
  }
  if (!req->by_federates_with().empty()) {
    absl::Status st = CheckMatch(req->federates_with_match(), "federates_with_match");
    if (!st.ok()) return ToGrpcStatus(st);
    datastore::FederatesWithFilter f;
    f.match = MatchFromProto(req->federates_with_match());
    for (const std::string& name : req->by_federates_with()) {
      absl::StatusOr<common::TrustDomain> td = common::TrustDomain::Parse(name);
      if (!td.ok()) {
        return ToGrpcStatus(
            absl::InvalidArgumentError("by_federates_with: " + std::string(td.status().message())));
      }
      f.trust_domains.push_back(td->name());
    }
    q.by_federates_with = std::move(f);
  }
  switch (req->by_downstream()) {
    case 0:
      break;
    case 1:
      q.by_downstream = true;
      break;
    case 2:
      q.by_downstream = false;
      break;
    default:
      return ToGrpcStatus(absl::InvalidArgumentError("by_downstream: must be 0, 1 or 2"));
  }
  if (!req->by_hint().empty()) q.by_hint = req->by_hint();
  absl::Status st = CheckPageSize(req->page_size());
  if (!st.ok()) return ToGrpcStatus(st);
  q.page_size = req->page_size();
  q.page_token = req->page_token();
  absl::StatusOr<datastore::ListEntriesResponse> found = ds_->ListEntries(q);
  if (!found.ok()) return ToGrpcStatus(found.status());
  for (const auto& e : found->entries) *resp->add_entries() = EntryToProto(e);
  resp->set_next_page_token(found->next_page_token);
  common::LogDebug("Entries listed", {{"count", std::to_string(found->entries.size())}});
  return grpc::Status::OK;
}

grpc::Status AdminService::CountEntries(ServerContext* ctx, const v1::CountEntriesRequest*,
                                        v1::CountEntriesResponse* resp) {
  common::RpcLogScope rpc = Rpc(*ctx, "CountEntries");
  absl::StatusOr<int64_t> n = ds_->CountEntries();
  if (!n.ok()) return ToGrpcStatus(n.status());
  resp->set_count(*n);
  return grpc::Status::OK;
}

grpc::Status AdminService::CreateJoinToken(ServerContext* ctx,
                                           const v1::CreateJoinTokenRequest* req,
                                           v1::CreateJoinTokenResponse* resp) {
  common::RpcLogScope rpc = Rpc(*ctx, "CreateJoinToken");
  if (req->ttl() < 0) return ToGrpcStatus(absl::InvalidArgumentError("ttl: must not be negative"));
  int ttl = req->ttl() == 0 ? kDefaultJoinTokenTtlSeconds : req->ttl();
  std::string token = GenerateJoinToken();
  absl::StatusOr<common::SpiffeId> agent_id =
      common::AgentId(options_.trust_domain, "join_token", token);
  if (!agent_id.ok()) return ToGrpcStatus(agent_id.status());

  std::optional<datastore::RegistrationEntry> entry;
  if (!req->spiffe_id().empty()) {
    // The entry makes the agent's own workloads reachable under a stable name; its selector
    // ties it to this one agent, as SPIRE does.
    v1::Entry e;
    e.set_spiffe_id(req->spiffe_id());
    e.set_parent_id(agent_id->String());
    v1::Selector* sel = e.add_selectors();
    sel->set_type("spiffe_id");
    sel->set_value(agent_id->String());
    absl::StatusOr<datastore::RegistrationEntry> checked = EntryFromProto(e, options_.trust_domain);
    if (!checked.ok()) return ToGrpcStatus(checked.status());
    entry = *checked;
  }

  absl::Time expires_at = clock_.Now() + absl::Seconds(ttl);
  absl::Status st = ds_->CreateJoinToken({token, expires_at});
  if (!st.ok()) return ToGrpcStatus(st);
  if (entry) {
    absl::StatusOr<datastore::RegistrationEntry> created = ds_->CreateEntry(*entry);
    if (!created.ok()) {
      // No half-done token: without its entry the caller would get an agent it did not ask for.
      (void)ds_->DeleteJoinToken(token);
      return ToGrpcStatus(created.status());
    }
    AfterWrite();
  }
  LogInfo(
      "Join token created",
      {{"expires_at", absl::FormatTime("%Y-%m-%dT%H:%M:%SZ", expires_at, absl::UTCTimeZone())}});
  resp->set_token(token);
  resp->set_expires_at(absl::ToUnixSeconds(expires_at));
  return grpc::Status::OK;
}

grpc::Status AdminService::ListAgents(ServerContext* ctx, const v1::ListAgentsRequest* req,
                                      v1::ListAgentsResponse* resp) {
  common::RpcLogScope rpc = Rpc(*ctx, "ListAgents");
  datastore::ListNodesRequest q;
  q.fetch_selectors = true;
  switch (req->by_banned()) {
    case 0:
      break;
    case 1:
      q.by_banned = true;
      break;
    case 2:
      q.by_banned = false;
      break;
    default:
      return ToGrpcStatus(absl::InvalidArgumentError("by_banned: must be 0, 1 or 2"));
  }
  if (!req->by_attestation_type().empty()) q.by_attestation_type = req->by_attestation_type();
  if (!req->by_selectors().empty()) {
    datastore::SelectorFilter f;
    f.match = datastore::MatchMode::kSuperset;
    for (const v1::Selector& s : req->by_selectors()) {
      absl::StatusOr<datastore::Selector> sel = SelectorFromProto(s, "by_selectors");
      if (!sel.ok()) return ToGrpcStatus(sel.status());
      f.selectors.push_back(*sel);
    }
    q.by_selectors = std::move(f);
  }
  absl::Status st = CheckPageSize(req->page_size());
  if (!st.ok()) return ToGrpcStatus(st);
  q.page_size = req->page_size();
  q.page_token = req->page_token();
  absl::StatusOr<datastore::ListNodesResponse> found = ds_->ListNodes(q);
  if (!found.ok()) return ToGrpcStatus(found.status());
  for (const auto& n : found->nodes) *resp->add_agents() = NodeToProto(n);
  resp->set_next_page_token(found->next_page_token);
  return grpc::Status::OK;
}

grpc::Status AdminService::GetAgent(ServerContext* ctx, const v1::AgentIdRequest* req,
                                    v1::AttestedNode* resp) {
  common::RpcLogScope rpc = Rpc(*ctx, "GetAgent");
  absl::StatusOr<std::string> id = AgentIdArg(req->spiffe_id());
  if (!id.ok()) return ToGrpcStatus(id.status());
  absl::StatusOr<datastore::AttestedNode> node = ds_->GetNode(*id, /*fetch_selectors=*/true);
  if (!node.ok()) return ToGrpcStatus(node.status());
  *resp = NodeToProto(*node);
  return grpc::Status::OK;
}

grpc::Status AdminService::CountAgents(ServerContext* ctx, const v1::CountAgentsRequest*,
                                       v1::CountAgentsResponse* resp) {
  common::RpcLogScope rpc = Rpc(*ctx, "CountAgents");
  absl::StatusOr<int64_t> n = ds_->CountNodes();
  if (!n.ok()) return ToGrpcStatus(n.status());
  resp->set_count(*n);
  return grpc::Status::OK;
}

grpc::Status AdminService::BanAgent(ServerContext* ctx, const v1::AgentIdRequest* req, v1::Empty*) {
  common::RpcLogScope rpc = Rpc(*ctx, "BanAgent");
  absl::StatusOr<std::string> id = AgentIdArg(req->spiffe_id());
  if (!id.ok()) return ToGrpcStatus(id.status());
  datastore::AttestedNode node;
  node.spiffe_id = *id;
  node.banned = true;
  datastore::NodeMask mask;
  mask.banned = true;
  absl::StatusOr<datastore::AttestedNode> updated = ds_->UpdateNode(node, mask);
  if (!updated.ok()) return ToGrpcStatus(updated.status());
  LogInfo("Agent banned", {{"agent_id", *id}});
  AfterWrite();
  return grpc::Status::OK;
}

grpc::Status AdminService::EvictAgent(ServerContext* ctx, const v1::AgentIdRequest* req,
                                      v1::Empty*) {
  common::RpcLogScope rpc = Rpc(*ctx, "EvictAgent");
  absl::StatusOr<std::string> id = AgentIdArg(req->spiffe_id());
  if (!id.ok()) return ToGrpcStatus(id.status());
  absl::StatusOr<datastore::AttestedNode> deleted = ds_->DeleteNode(*id);
  if (!deleted.ok()) return ToGrpcStatus(deleted.status());
  LogInfo("Agent evicted", {{"agent_id", *id}});
  AfterWrite();
  return grpc::Status::OK;
}

grpc::Status AdminService::GetBundle(ServerContext* ctx, const v1::GetBundleRequestAdmin*,
                                     v1::Bundle* resp) {
  common::RpcLogScope rpc = Rpc(*ctx, "GetBundle");
  absl::StatusOr<datastore::Bundle> bundle = ds_->GetBundle(options_.trust_domain.name());
  if (!bundle.ok()) return ToGrpcStatus(bundle.status());
  *resp = BundleToProto(*bundle);
  return grpc::Status::OK;
}

grpc::Status AdminService::ListFederatedBundles(ServerContext* ctx,
                                                const v1::ListFederatedBundlesRequest*,
                                                v1::ListFederatedBundlesResponse* resp) {
  common::RpcLogScope rpc = Rpc(*ctx, "ListFederatedBundles");
  absl::StatusOr<std::vector<datastore::Bundle>> bundles = ds_->ListBundles();
  if (!bundles.ok()) return ToGrpcStatus(bundles.status());
  for (const auto& b : *bundles) {
    if (b.trust_domain == options_.trust_domain.name()) continue;
    *resp->add_bundles() = BundleToProto(b);
  }
  return grpc::Status::OK;
}

grpc::Status AdminService::SetFederatedBundle(ServerContext* ctx,
                                              const v1::SetFederatedBundleRequest* req,
                                              v1::Bundle* resp) {
  common::RpcLogScope rpc = Rpc(*ctx, "SetFederatedBundle");
  if (!req->has_bundle()) return ToGrpcStatus(absl::InvalidArgumentError("bundle: is required"));
  absl::StatusOr<datastore::Bundle> bundle = BundleFromProto(req->bundle());
  if (!bundle.ok()) return ToGrpcStatus(bundle.status());
  if (bundle->trust_domain == options_.trust_domain.name()) {
    return ToGrpcStatus(absl::InvalidArgumentError(
        "trust_domain: the server's own bundle cannot be set as a federated bundle"));
  }
  if (bundle->x509_authorities.empty() && bundle->jwt_authorities.empty()) {
    return ToGrpcStatus(absl::InvalidArgumentError("bundle: holds no authorities"));
  }
  absl::StatusOr<datastore::Bundle> stored = ds_->SetBundle(*bundle);
  if (!stored.ok()) return ToGrpcStatus(stored.status());
  LogInfo("Federated bundle set", {{"trust_domain", stored->trust_domain}});
  AfterWrite();
  *resp = BundleToProto(*stored);
  return grpc::Status::OK;
}

grpc::Status AdminService::DeleteFederatedBundle(ServerContext* ctx,
                                                 const v1::DeleteFederatedBundleRequest* req,
                                                 v1::Empty*) {
  common::RpcLogScope rpc = Rpc(*ctx, "DeleteFederatedBundle");
  absl::StatusOr<common::TrustDomain> td = common::TrustDomain::Parse(req->trust_domain());
  if (!td.ok()) {
    return ToGrpcStatus(
        absl::InvalidArgumentError("trust_domain: " + std::string(td.status().message())));
  }
  if (*td == options_.trust_domain) {
    return ToGrpcStatus(
        absl::InvalidArgumentError("trust_domain: the server's own bundle cannot be deleted"));
  }
  absl::Status st = ds_->DeleteBundle(td->name(), datastore::BundleDeleteMode::kRestrict);
  if (!st.ok()) return ToGrpcStatus(st);
  LogInfo("Federated bundle deleted", {{"trust_domain", td->name()}});
  AfterWrite();
  return grpc::Status::OK;
}

// ---- Local and upstream authorities ----

namespace {

void FillAuthority(const CaManager::AuthorityInfo& info, v1::AuthorityState* out) {
  out->set_authority_id(info.id);
  out->set_expires_at(absl::ToUnixSeconds(info.expires_at));
  out->set_upstream_authority_subject_key_id(info.upstream_subject_key_id);
}

absl::Status NeedId(const std::string& id, const char* what) {
  if (id.empty()) return absl::InvalidArgumentError(std::string(what) + ": is required");
  return absl::OkStatus();
}

}  // namespace

grpc::Status AdminService::GetAuthorityState(ServerContext* ctx,
                                             const v1::GetAuthorityStateRequest* req,
                                             v1::GetAuthorityStateResponse* resp) {
  common::RpcLogScope rpc = Rpc(*ctx, "GetAuthorityState");
  if (options_.ca == nullptr) return ToGrpcStatus(absl::UnavailableError("no CA manager"));
  CaManager::AuthorityStates states = req->kind() == v1::AUTHORITY_JWT
                                          ? options_.ca->JwtAuthorities()
                                          : options_.ca->X509Authorities();
  if (states.active) FillAuthority(*states.active, resp->mutable_active());
  if (states.prepared) FillAuthority(*states.prepared, resp->mutable_prepared());
  if (states.old) FillAuthority(*states.old, resp->mutable_old());
  return grpc::Status::OK;
}

namespace {

using AuthorityOp = absl::StatusOr<CaManager::AuthorityInfo> (CaManager::*)(const std::string&);

// One forced-rotation step: pick the kind, run it, answer and log what was done.
grpc::Status RunAuthorityStep(CaManager* ca, const v1::AuthorityRequest& req,
                              v1::AuthorityResponse* resp, AuthorityOp x509, AuthorityOp jwt,
                              const char* done) {
  if (ca == nullptr) return ToGrpcStatus(absl::UnavailableError("no CA manager"));
  if (absl::Status s = NeedId(req.authority_id(), "authority_id"); !s.ok()) return ToGrpcStatus(s);
  const bool is_jwt = req.kind() == v1::AUTHORITY_JWT;
  auto info = (ca->*(is_jwt ? jwt : x509))(req.authority_id());
  if (!info.ok()) return ToGrpcStatus(info.status());
  FillAuthority(*info, resp->mutable_authority());
  LogInfo(std::string(is_jwt ? "JWT authority " : "X.509 authority ") + done,
          {{"authority_id", info->id}});
  return grpc::Status::OK;
}

}  // namespace

grpc::Status AdminService::PrepareAuthority(ServerContext* ctx, const v1::AuthorityRequest* req,
                                            v1::AuthorityResponse* resp) {
  common::RpcLogScope rpc = Rpc(*ctx, "PrepareAuthority");
  if (options_.ca == nullptr) return ToGrpcStatus(absl::UnavailableError("no CA manager"));
  const bool jwt = req->kind() == v1::AUTHORITY_JWT;
  auto info = jwt ? options_.ca->PrepareJwt() : options_.ca->PrepareX509();
  if (!info.ok()) return ToGrpcStatus(info.status());
  FillAuthority(*info, resp->mutable_authority());
  LogInfo(jwt ? "JWT authority prepared" : "X.509 authority prepared",
          {{"authority_id", info->id}});
  return grpc::Status::OK;
}

grpc::Status AdminService::ActivateAuthority(ServerContext* ctx, const v1::AuthorityRequest* req,
                                             v1::AuthorityResponse* resp) {
  common::RpcLogScope rpc = Rpc(*ctx, "ActivateAuthority");
  return RunAuthorityStep(options_.ca, *req, resp, &CaManager::ActivateX509,
                          &CaManager::ActivateJwt, "activated");
}

grpc::Status AdminService::TaintAuthority(ServerContext* ctx, const v1::AuthorityRequest* req,
                                          v1::AuthorityResponse* resp) {
  common::RpcLogScope rpc = Rpc(*ctx, "TaintAuthority");
  return RunAuthorityStep(options_.ca, *req, resp, &CaManager::TaintX509, &CaManager::TaintJwt,
                          "tainted");
}

grpc::Status AdminService::RevokeAuthority(ServerContext* ctx, const v1::AuthorityRequest* req,
                                           v1::AuthorityResponse* resp) {
  common::RpcLogScope rpc = Rpc(*ctx, "RevokeAuthority");
  return RunAuthorityStep(options_.ca, *req, resp, &CaManager::RevokeX509, &CaManager::RevokeJwt,
                          "revoked");
}

grpc::Status AdminService::TaintUpstreamAuthority(ServerContext* ctx,
                                                  const v1::UpstreamAuthorityRequest* req,
                                                  v1::UpstreamAuthorityResponse* resp) {
  common::RpcLogScope rpc = Rpc(*ctx, "TaintUpstreamAuthority");
  if (options_.ca == nullptr) return ToGrpcStatus(absl::UnavailableError("no CA manager"));
  if (absl::Status s = NeedId(req->subject_key_id(), "subject_key_id"); !s.ok())
    return ToGrpcStatus(s);
  if (absl::Status s = options_.ca->TaintUpstreamX509(req->subject_key_id()); !s.ok()) {
    return ToGrpcStatus(s);
  }
  resp->set_subject_key_id(req->subject_key_id());
  LogInfo("Upstream X.509 authority tainted", {{"subject_key_id", req->subject_key_id()}});
  return grpc::Status::OK;
}

grpc::Status AdminService::RevokeUpstreamAuthority(ServerContext* ctx,
                                                   const v1::UpstreamAuthorityRequest* req,
                                                   v1::UpstreamAuthorityResponse* resp) {
  common::RpcLogScope rpc = Rpc(*ctx, "RevokeUpstreamAuthority");
  if (options_.ca == nullptr) return ToGrpcStatus(absl::UnavailableError("no CA manager"));
  if (absl::Status s = NeedId(req->subject_key_id(), "subject_key_id"); !s.ok())
    return ToGrpcStatus(s);
  if (absl::Status s = options_.ca->RevokeUpstreamX509(req->subject_key_id()); !s.ok()) {
    return ToGrpcStatus(s);
  }
  resp->set_subject_key_id(req->subject_key_id());
  LogInfo("Upstream X.509 authority revoked", {{"subject_key_id", req->subject_key_id()}});
  return grpc::Status::OK;
}

grpc::Status AdminService::Health(ServerContext* ctx, const v1::HealthRequest*,
                                  v1::HealthResponse* resp) {
  common::RpcLogScope rpc = Rpc(*ctx, "Health");
  bool healthy = true;
  absl::StatusOr<int> version = ds_->SchemaVersion();
  if (version.ok()) {
    (*resp->mutable_details())["datastore"] = "ok";
  } else {
    healthy = false;
    (*resp->mutable_details())["datastore"] = std::string(version.status().message());
  }
  if (options_.health) {
    for (const auto& [name, h] : options_.health()) {
      healthy = healthy && h.healthy;
      (*resp->mutable_details())[name] =
          h.healthy ? (h.detail.empty() ? "ok" : h.detail) : h.detail;
    }
  }
  resp->set_healthy(healthy);
  return grpc::Status::OK;
}

// ---- Logger --------------------------------------------------------------------------------

namespace {

using common::config::LogLevel;

v1::LogLevel LevelToProto(LogLevel level) {
  switch (level) {
    case LogLevel::kDebug:
      return v1::LOG_LEVEL_DEBUG;
    case LogLevel::kInfo:
      return v1::LOG_LEVEL_INFO;
    case LogLevel::kWarn:
      return v1::LOG_LEVEL_WARN;
    case LogLevel::kError:
      return v1::LOG_LEVEL_ERROR;
  }
  return v1::LOG_LEVEL_UNSPECIFIED;
}

absl::StatusOr<LogLevel> LevelFromProto(int level) {
  switch (level) {
    case v1::LOG_LEVEL_DEBUG:
      return LogLevel::kDebug;
    case v1::LOG_LEVEL_INFO:
      return LogLevel::kInfo;
    case v1::LOG_LEVEL_WARN:
      return LogLevel::kWarn;
    case v1::LOG_LEVEL_ERROR:
      return LogLevel::kError;
    case v1::LOG_LEVEL_UNSPECIFIED:
      return absl::InvalidArgumentError("new_level: is required");
    default:
      return absl::InvalidArgumentError("new_level: unknown log level " + std::to_string(level));
  }
}

// Changes the process's level. The line recording it is written while the more verbose of
// the two levels is in force, so lowering the level does not hide it.
void ChangeLogLevel(LogLevel to, const char* why) {
  const LogLevel from = common::CurrentLogLevel();
  auto record = [&] {
    LogInfo(why, {{"previous_level", common::config::LogLevelName(from)},
                  {"new_level", common::config::LogLevelName(to)}});
  };
  if (static_cast<int>(to) < static_cast<int>(from)) {
    common::SetLogLevel(to);
    record();
  } else {
    record();
    common::SetLogLevel(to);
  }
}

}  // namespace

void AdminService::FillLogger(v1::Logger* out) const {
  out->set_current_level(LevelToProto(common::CurrentLogLevel()));
  out->set_launch_level(LevelToProto(options_.launch_log_level));
}

grpc::Status AdminService::GetLogger(ServerContext* ctx, const v1::GetLoggerRequest*,
                                     v1::Logger* resp) {
  common::RpcLogScope rpc = Rpc(*ctx, "GetLogger");
  FillLogger(resp);
  return grpc::Status::OK;
}

grpc::Status AdminService::SetLogLevel(ServerContext* ctx, const v1::SetLogLevelRequest* req,
                                       v1::Logger* resp) {
  common::RpcLogScope rpc = Rpc(*ctx, "SetLogLevel");
  absl::StatusOr<LogLevel> level = LevelFromProto(req->new_level());
  if (!level.ok()) return ToGrpcStatus(level.status());
  ChangeLogLevel(*level, "Log level set");
  FillLogger(resp);
  return grpc::Status::OK;
}

grpc::Status AdminService::ResetLogLevel(ServerContext* ctx, const v1::ResetLogLevelRequest*,
                                         v1::Logger* resp) {
  common::RpcLogScope rpc = Rpc(*ctx, "ResetLogLevel");
  ChangeLogLevel(options_.launch_log_level, "Log level reset to the launch level");
  FillLogger(resp);
  return grpc::Status::OK;
}

}  // namespace trellis::server
