// Agent API handlers. Authorisation reads the in-memory entry index; writes go to the datastore
// and are folded back into the index at once so the next call (and watchers) see them.
#include "server/agent_service.h"

#include <algorithm>
#include <nlohmann/json.hpp>
#include <set>

#include "absl/strings/str_split.h"
#include "attestors/node/node_attestor.h"
#include "common/bundle.h"
#include "common/csr.h"
#include "common/jwt.h"
#include "common/log.h"
#include "common/status.h"
#include "common/x509.h"
#include "datastore/datastore.h"
#include "server/api_convert.h"
#include "server/ca_manager.h"
#include "server/entry_index.h"
#include "transport/grpc_status.h"
#include "transport/wire_convert.h"

namespace trellis::server {

using common::LogDebug;
using common::LogInfo;
using common::LogWarn;
using common::RpcLogScope;
using transport::ToGrpcStatus;
namespace {

// Names the call on every line logged while serving it; AuthorizeAgent adds the caller.
RpcLogScope Rpc(std::string_view method) {
  return RpcLogScope(common::GrpcMethodName(v1::Agent::service_full_name(), method));
}

constexpr int kMaxBatch = 10000;

// exp and iat of a JWT we just signed (the CA caps exp at its key's NotAfter).
void FillJwtTimes(const std::string& token, v1::JWTSVID* out, absl::Time now, absl::Duration ttl) {
  out->set_issued_at(absl::ToUnixSeconds(now));
  out->set_expires_at(absl::ToUnixSeconds(now + ttl));
  absl::StatusOr<common::UnverifiedJwt> jwt = common::PeekJwt(token);
  if (!jwt.ok()) return;
  const nlohmann::json& claims = jwt->claims;
  if (!claims.is_object()) return;
  if (claims.contains("exp") && claims.at("exp").is_number_integer()) {
    out->set_expires_at(claims.at("exp").get<int64_t>());
  }
  if (claims.contains("iat") && claims.at("iat").is_number_integer()) {
    out->set_issued_at(claims.at("iat").get<int64_t>());
  }
}

// The issuer reports NotAfter, so the leaf is not parsed back (a full X509 decode costs more
// than issuing it).
void FillSvid(const common::SpiffeId& id, std::vector<std::string>&& chain, absl::Time not_after,
              v1::X509SVID* svid) {
  svid->set_spiffe_id(id.String());
  for (auto& der : chain) svid->add_cert_chain(std::move(der));
  svid->set_expires_at(absl::ToUnixSeconds(not_after));
}

// The trust bundle as stored (JWT key expiry and taint flags included), else as published.
std::optional<v1::Bundle> CurrentBundle(const CaManager& ca) {
  absl::StatusOr<datastore::Bundle> stored = ca.StoredBundle();
  if (stored.ok()) return BundleToProto(*stored);
  std::shared_ptr<const common::Bundle> bundle = ca.Bundle();
  if (bundle) return transport::BundleToProto(*bundle);
  return std::nullopt;
}

}  // namespace

AgentService::AgentService(Options options, datastore::DataStore* ds, CaManager* ca,
                           EntryIndex* index,
                           std::vector<std::shared_ptr<attestors::ServerNodeAttestor>> attestors)
    : options_(std::move(options)),
      ds_(ds),
      ca_(ca),
      index_(index),
      clock_(options_.clock ? *options_.clock : common::SystemClock::Get()),
      attestation_limiter_(options_.rate_limits.attestation, clock_),
      signing_limiter_(options_.rate_limits.signing, clock_),
      watches_({[this](const std::string& agent) -> absl::StatusOr<std::optional<AgentWatchState>> {
                  TRELLIS_ASSIGN_OR_RETURN(AgentWatchState state, WatchState(agent));
                  return state;
                },
                [this](const std::string&, const AgentWatchState& state) {
                  v1::ChangeNotice notice;
                  notice.set_entries_version(index_->Version());
                  notice.set_bundle_sequence(state.bundle_sequence);
                  return notice;
                }}) {
  for (auto& a : attestors) attestors_[a->Name()] = std::move(a);
}

AgentService::~AgentService() { Shutdown(); }

void AgentService::NotifyChange() { watches_.NotifyAll(); }

void AgentService::NotifyAgents(const std::set<std::string>& agent_ids) {
  watches_.Notify(agent_ids);
}

void AgentService::Shutdown() { watches_.Shutdown(); }

absl::Status AgentService::RefreshFederatedBundles() {
  absl::StatusOr<std::vector<datastore::Bundle>> bundles = ds_->ListBundles();
  if (!bundles.ok()) return bundles.status();
  std::map<std::string, std::shared_ptr<const v1::Bundle>> fresh;
  for (const auto& b : *bundles) {
    if (b.trust_domain == options_.trust_domain.name()) continue;
    fresh[b.trust_domain] = std::make_shared<const v1::Bundle>(BundleToProto(b));
  }
  bool changed = false;
  {
    absl::MutexLock lock(&mu_);
    if (fresh.size() != federated_.size()) changed = true;
    for (const auto& [td, b] : fresh) {
      auto it = federated_.find(td);
      if (it == federated_.end() || it->second->sequence_number() != b->sequence_number()) {
        changed = true;
      }
    }
    if (changed) {
      federated_ = std::move(fresh);
      ++federated_generation_;
    }
  }
  if (changed) NotifyChange();
  return absl::OkStatus();
}

uint64_t AgentService::FederatedGeneration() const {
  absl::MutexLock lock(&mu_);
  return federated_generation_;
}

std::vector<std::shared_ptr<const v1::Bundle>> AgentService::FederatedBundles() const {
  absl::MutexLock lock(&mu_);
  std::vector<std::shared_ptr<const v1::Bundle>> out;
  out.reserve(federated_.size());
  for (const auto& [td, bundle] : federated_) out.push_back(bundle);
  return out;
}

absl::Status AgentService::TakeSigning(const grpc::ServerContextBase& ctx, double cost) {
  if (!options_.rate_limits.signing_enabled || !options_.peer_address) return absl::OkStatus();
  return signing_limiter_.Take(options_.peer_address(ctx), cost, "signing");
}

absl::Status AgentService::CheckNode(const CallerIdentity& caller) {
  const std::string id = caller.id.String();
  std::optional<datastore::AttestedNode> node = index_->Node(id);
  bool from_store = false;
  auto reload = [&]() -> absl::Status {
    // The index may trail another server's write by up to one poll; the store is the truth.
    absl::StatusOr<datastore::AttestedNode> stored = ds_->GetNode(id, /*fetch_selectors=*/false);
    if (stored.ok()) {
      node = *stored;
    } else if (absl::IsNotFound(stored.status())) {
      node.reset();
    } else {
      return stored.status();
    }
    from_store = true;
    return absl::OkStatus();
  };
  if (!node) TRELLIS_RETURN_IF_ERROR(reload());
  if (!node) return absl::PermissionDeniedError("agent is not attested or was evicted");
  auto serial_known = [&] {
    return caller.serial_hex == node->cert_serial_number ||
           (!node->new_cert_serial_number.empty() &&
            caller.serial_hex == node->new_cert_serial_number);
  };
  // A ban is never lifted, so the index is trusted on it; an unknown serial may be a renewal
  // another server recorded after our last poll.
  if (!from_store && !node->banned && !serial_known()) {
    TRELLIS_RETURN_IF_ERROR(reload());
    if (!node) return absl::PermissionDeniedError("agent is not attested or was evicted");
  }
  if (node->banned) return absl::PermissionDeniedError("agent is banned");
  if (caller.serial_hex == node->cert_serial_number) return absl::OkStatus();
  if (!from_store && !node->new_cert_serial_number.empty() &&
      caller.serial_hex == node->new_cert_serial_number) {
    // The index can lag the store: promoting a pending serial it still shows after the agent
    // renewed again would erase the newer pending serial and lock the agent out. Promote only
    // what the store holds as pending.
    TRELLIS_RETURN_IF_ERROR(reload());
    if (!node) return absl::PermissionDeniedError("agent is not attested or was evicted");
    if (node->banned) return absl::PermissionDeniedError("agent is banned");
    if (caller.serial_hex == node->cert_serial_number) return absl::OkStatus();
  }
  if (!node->new_cert_serial_number.empty() && caller.serial_hex == node->new_cert_serial_number) {
    // The agent now uses its renewed SVID: the old one stops working from here on.
    datastore::AttestedNode update;
    update.spiffe_id = id;
    update.cert_serial_number = node->new_cert_serial_number;
    update.cert_not_after = node->new_cert_not_after;
    update.new_cert_serial_number = "";
    update.new_cert_not_after = absl::UnixEpoch();
    datastore::NodeMask mask;
    mask.cert_serial_number = mask.cert_not_after = true;
    mask.new_cert_serial_number = mask.new_cert_not_after = true;
    absl::StatusOr<datastore::AttestedNode> updated = ds_->UpdateNode(update, mask);
    if (!updated.ok()) return updated.status();
    (void)index_->Poll();
    LogDebug("Agent SVID serial promoted", {{"agent_id", id}, {"serial", caller.serial_hex}});
    return absl::OkStatus();
  }
  return absl::PermissionDeniedError("agent SVID serial " + caller.serial_hex +
                                     " is not the current one for " + id);
}

absl::StatusOr<common::SpiffeId> AgentService::AuthorizeAgent(const grpc::ServerContextBase& ctx) {
  if (!options_.authenticate) return absl::InternalError("no authenticator configured");
  absl::StatusOr<CallerIdentity> caller = options_.authenticate(ctx);
  if (!caller.ok()) {
    if (absl::IsUnauthenticated(caller.status())) return caller.status();
    return absl::UnauthenticatedError(std::string(caller.status().message()));
  }
  common::SetRpcLogCaller({{"caller_id", caller->id.String()}});
  if (!caller->id.MemberOf(options_.trust_domain) || !caller->id.IsAgentId()) {
    return absl::PermissionDeniedError("caller " + caller->id.String() + " is not an agent");
  }
  absl::Status st = CheckNode(*caller);
  if (!st.ok()) {
    LogWarn("Agent refused",
            {{"agent_id", caller->id.String()}, {"reason", std::string(st.message())}});
    return st;
  }
  return caller->id;
}

absl::Duration AgentService::X509Ttl(const datastore::RegistrationEntry& e) const {
  return e.x509_svid_ttl > 0 ? absl::Seconds(e.x509_svid_ttl) : options_.default_x509_svid_ttl;
}

// ---- AttestAgent ---------------------------------------------------------------------------

absl::StatusOr<v1::AttestAgentResponse::Result> AgentService::Attest(
    const ServerContext& ctx,
    grpc::ServerReaderWriter<v1::AttestAgentResponse, v1::AttestAgentRequest>* stream) {
  const std::string peer = options_.peer_address ? options_.peer_address(ctx) : "";
  // Until attested, the caller is known only by its address.
  if (!peer.empty()) common::SetRpcLogCaller({{"caller_address", peer}});
  if (options_.rate_limits.attestation_enabled) {
    TRELLIS_RETURN_IF_ERROR(attestation_limiter_.Take(peer, 1, "attestation"));
  }
  v1::AttestAgentRequest first;
  if (!stream->Read(&first)) return absl::InvalidArgumentError("no attestation parameters sent");
  if (!first.has_params()) {
    return absl::InvalidArgumentError("the first message must carry attestation parameters");
  }
  const v1::AttestAgentRequest::Params& params = first.params();
  if (params.data().type().empty())
    return absl::InvalidArgumentError("params.data.type: is required");
  if (params.csr().empty()) return absl::InvalidArgumentError("params.csr: is required");
  // Check the CSR before attesting: a join token is consumed by attestation, and a bad CSR
  // must not burn it.
  absl::StatusOr<common::CertificateRequest> csr =
      common::CertificateRequest::FromDer(params.csr());
  if (!csr.ok())
    return absl::InvalidArgumentError("params.csr: " + std::string(csr.status().message()));
  absl::Status sig = csr->VerifySignature();
  if (!sig.ok()) return absl::InvalidArgumentError("params.csr: " + std::string(sig.message()));

  auto it = attestors_.find(params.data().type());
  if (it == attestors_.end()) {
    return absl::NotFoundError("no node attestor of type \"" + params.data().type() + "\"");
  }
  auto challenge = [stream](std::string bytes) -> absl::StatusOr<std::string> {
    v1::AttestAgentResponse ch;
    ch.set_challenge(std::move(bytes));
    if (!stream->Write(ch)) return absl::AbortedError("the agent went away during attestation");
    v1::AttestAgentRequest answer;
    if (!stream->Read(&answer)) return absl::AbortedError("the agent went away during attestation");
    if (answer.step_case() != v1::AttestAgentRequest::kChallengeResponse) {
      return absl::InvalidArgumentError("expected a challenge response");
    }
    return answer.challenge_response();
  };
  absl::StatusOr<attestors::ServerNodeAttestor::Result> attested =
      it->second->Attest(params.data().payload(), challenge);
  if (!attested.ok()) {
    LogWarn("Node attestation failed", {{"type", params.data().type()},
                                        {"peer", peer},
                                        {"error", std::string(attested.status().message())}});
    return attested.status();
  }
  const common::SpiffeId& agent_id = attested->agent_id;
  if (!agent_id.MemberOf(options_.trust_domain) || !agent_id.IsAgentId()) {
    return absl::InternalError("attestor produced a non-agent ID " + agent_id.String());
  }
  const std::string id = agent_id.String();
  common::SetRpcLogCaller({{"caller_id", id}, {"caller_address", peer}});

  absl::StatusOr<datastore::AttestedNode> existing = ds_->GetNode(id, /*fetch_selectors=*/false);
  if (!existing.ok() && !absl::IsNotFound(existing.status())) return existing.status();
  if (existing.ok()) {
    // Logged like an attestor's refusal: a second machine presenting the same instance proof
    // is what trust on first use exists to catch.
    absl::Status refusal;
    if (existing->banned) {
      refusal = absl::PermissionDeniedError("agent is banned");
    } else if (!attested->reattestable) {
      refusal = absl::PermissionDeniedError("agent " + id + " is already attested");
    }
    if (!refusal.ok()) {
      LogWarn("Node attestation refused", {{"type", params.data().type()},
                                           {"peer", peer},
                                           {"error", std::string(refusal.message())}});
      return refusal;
    }
  }

  absl::StatusOr<std::vector<std::string>> chain =
      ca_->SignX509SvidFromCsr(params.csr(), agent_id, options_.agent_ttl, {});
  if (!chain.ok()) return chain.status();
  CountX509Signed();
  absl::StatusOr<common::Certificate> leaf = common::Certificate::FromDer(chain->front());
  if (!leaf.ok()) return leaf.status();

  datastore::AttestedNode node;
  node.spiffe_id = id;
  node.attestation_data_type = params.data().type();
  node.cert_serial_number = leaf->SerialHex();
  node.cert_not_after = leaf->not_after();
  node.can_reattest = attested->reattestable;
  if (existing.ok()) {
    datastore::NodeMask mask = datastore::NodeMask::All();
    mask.banned = false;
    absl::StatusOr<datastore::AttestedNode> updated = ds_->UpdateNode(node, mask);
    if (!updated.ok()) {
      // Banned meanwhile or evicted meanwhile: report what the store says.
      return updated.status();
    }
  } else {
    absl::StatusOr<datastore::AttestedNode> created = ds_->CreateNode(node);
    if (!created.ok()) {
      if (absl::IsAlreadyExists(created.status())) {
        return absl::PermissionDeniedError("agent " + id + " attested concurrently");
      }
      return created.status();
    }
  }
  TRELLIS_RETURN_IF_ERROR(ds_->SetNodeSelectors(id, attested->selectors));
  (void)index_->Poll();

  v1::AttestAgentResponse::Result result;
  FillSvid(agent_id, std::move(*chain), leaf->not_after(), result.mutable_svid());
  if (std::optional<v1::Bundle> bundle = CurrentBundle(*ca_)) *result.mutable_bundle() = *bundle;
  result.set_reattestable(attested->reattestable);
  LogInfo("Agent attested", {{"agent_id", id},
                             {"type", params.data().type()},
                             {"serial", node.cert_serial_number},
                             {"peer", peer}});
  return result;
}

grpc::Status AgentService::AttestAgent(
    ServerContext* ctx,
    grpc::ServerReaderWriter<v1::AttestAgentResponse, v1::AttestAgentRequest>* stream) {
  RpcLogScope rpc = Rpc("AttestAgent");
  absl::StatusOr<v1::AttestAgentResponse::Result> result = Attest(*ctx, stream);
  if (!result.ok()) return ToGrpcStatus(result.status());
  v1::AttestAgentResponse resp;
  *resp.mutable_result() = std::move(*result);
  if (!stream->Write(resp)) return grpc::Status(grpc::StatusCode::ABORTED, "agent went away");
  return grpc::Status::OK;
}

// ---- RenewAgent ----------------------------------------------------------------------------

grpc::Status AgentService::RenewAgent(ServerContext* ctx, const v1::RenewAgentRequest* req,
                                      v1::RenewAgentResponse* resp) {
  RpcLogScope rpc = Rpc("RenewAgent");
  absl::StatusOr<common::SpiffeId> agent = AuthorizeAgent(*ctx);
  if (!agent.ok()) return ToGrpcStatus(agent.status());
  if (absl::Status st = TakeSigning(*ctx, 1); !st.ok()) return ToGrpcStatus(st);
  if (req->csr().empty()) return ToGrpcStatus(absl::InvalidArgumentError("csr: is required"));
  absl::StatusOr<std::vector<std::string>> chain =
      ca_->SignX509SvidFromCsr(req->csr(), *agent, options_.agent_ttl, {});
  if (!chain.ok()) return ToGrpcStatus(chain.status());
  CountX509Signed();
  absl::StatusOr<common::Certificate> leaf = common::Certificate::FromDer(chain->front());
  if (!leaf.ok()) return ToGrpcStatus(leaf.status());
  v1::X509SVID svid;
  FillSvid(*agent, std::move(*chain), leaf->not_after(), &svid);
  datastore::AttestedNode update;
  update.spiffe_id = agent->String();
  update.new_cert_serial_number = leaf->SerialHex();
  update.new_cert_not_after = leaf->not_after();
  datastore::NodeMask mask;
  mask.new_cert_serial_number = mask.new_cert_not_after = true;
  absl::StatusOr<datastore::AttestedNode> updated = ds_->UpdateNode(update, mask);
  if (!updated.ok()) return ToGrpcStatus(updated.status());
  (void)index_->Poll();
  LogInfo("Agent SVID renewed", {{"agent_id", agent->String()}, {"serial", leaf->SerialHex()}});
  *resp->mutable_svid() = std::move(svid);
  return grpc::Status::OK;
}

// ---- BatchNewX509SVID ----------------------------------------------------------------------

grpc::Status AgentService::BatchNewX509SVID(ServerContext* ctx,
                                            const v1::BatchNewX509SVIDRequest* req,
                                            v1::BatchNewX509SVIDResponse* resp) {
  RpcLogScope rpc = Rpc("BatchNewX509SVID");
  absl::StatusOr<common::SpiffeId> agent = AuthorizeAgent(*ctx);
  if (!agent.ok()) return ToGrpcStatus(agent.status());
  if (req->params_size() > kMaxBatch) {
    return ToGrpcStatus(
        absl::InvalidArgumentError("params: at most " + std::to_string(kMaxBatch) + " per batch"));
  }
  if (absl::Status st = TakeSigning(*ctx, req->params_size()); !st.ok()) return ToGrpcStatus(st);
  for (const v1::NewX509SVIDParams& p : req->params()) {
    v1::BatchNewX509SVIDResponse::Result* r = resp->add_results();
    r->set_entry_id(p.entry_id());
    // Each item on its own: a batch from an agent holding thousands of entries costs the
    // depth of its entries, not a copy of all of them.
    std::optional<datastore::RegistrationEntry> authorized =
        index_->AuthorizedEntry(*agent, p.entry_id());
    if (!authorized) {
      r->set_code(static_cast<int>(grpc::StatusCode::PERMISSION_DENIED));
      r->set_message("entry \"" + p.entry_id() + "\" is not authorized for this agent");
      continue;
    }
    const datastore::RegistrationEntry& e = *authorized;
    absl::StatusOr<common::SpiffeId> id = common::SpiffeId::Parse(e.spiffe_id);
    if (!id.ok()) {
      r->set_code(static_cast<int>(grpc::StatusCode::INTERNAL));
      r->set_message(std::string(id.status().message()));
      continue;
    }
    absl::Time not_after;
    absl::StatusOr<std::vector<std::string>> chain =
        ca_->SignX509SvidFromCsr(p.csr(), *id, X509Ttl(e), e.dns_names, &not_after);
    if (!chain.ok() || chain->empty()) {
      absl::Status st =
          chain.ok() ? absl::InternalError("the CA returned an empty chain") : chain.status();
      r->set_code(static_cast<int>(st.code()));
      r->set_message(std::string(st.message()));
      continue;
    }
    CountX509Signed();
    r->set_code(0);
    FillSvid(*id, std::move(*chain), not_after, r->mutable_svid());
  }
  return grpc::Status::OK;
}

// ---- NewJWTSVID ----------------------------------------------------------------------------

grpc::Status AgentService::NewJWTSVID(ServerContext* ctx, const v1::NewJWTSVIDRequest* req,
                                      v1::NewJWTSVIDResponse* resp) {
  RpcLogScope rpc = Rpc("NewJWTSVID");
  absl::StatusOr<common::SpiffeId> agent = AuthorizeAgent(*ctx);
  if (!agent.ok()) return ToGrpcStatus(agent.status());
  if (absl::Status st = TakeSigning(*ctx, 1); !st.ok()) return ToGrpcStatus(st);
  if (req->audience_size() == 0) {
    return ToGrpcStatus(absl::InvalidArgumentError("audience: at least one is required"));
  }
  std::vector<std::string> audience;
  for (const auto& a : req->audience()) {
    if (a.empty()) return ToGrpcStatus(absl::InvalidArgumentError("audience: empty value"));
    audience.push_back(a);
  }
  std::optional<datastore::RegistrationEntry> e = index_->AuthorizedEntry(*agent, req->entry_id());
  if (!e) {
    return ToGrpcStatus(absl::PermissionDeniedError("entry \"" + req->entry_id() +
                                                    "\" is not authorized for this agent"));
  }
  absl::StatusOr<common::SpiffeId> id = common::SpiffeId::Parse(e->spiffe_id);
  if (!id.ok()) return ToGrpcStatus(absl::InternalError(std::string(id.status().message())));
  absl::Duration ttl =
      e->jwt_svid_ttl > 0 ? absl::Seconds(e->jwt_svid_ttl) : options_.default_jwt_svid_ttl;
  absl::Time now = clock_.Now();
  absl::StatusOr<std::string> token = ca_->SignJwtSvid(*id, audience, ttl);
  if (!token.ok()) return ToGrpcStatus(token.status());
  if (options_.jwt_svid_signed) options_.jwt_svid_signed();
  v1::JWTSVID* svid = resp->mutable_svid();
  svid->set_spiffe_id(id->String());
  svid->set_token(*token);
  FillJwtTimes(*token, svid, now, ttl);
  return grpc::Status::OK;
}

// ---- SyncAuthorizedEntries -----------------------------------------------------------------

grpc::Status AgentService::SyncAuthorizedEntries(ServerContext* ctx,
                                                 const v1::SyncAuthorizedEntriesRequest* req,
                                                 v1::SyncAuthorizedEntriesResponse* resp) {
  RpcLogScope rpc = Rpc("SyncAuthorizedEntries");
  absl::StatusOr<common::SpiffeId> agent = AuthorizeAgent(*ctx);
  if (!agent.ok()) return ToGrpcStatus(agent.status());
  std::vector<datastore::RegistrationEntry> entries = index_->AuthorizedEntries(*agent);
  const std::string& after = req->page_after();
  const std::string& until = req->page_until();
  auto in_range = [&](const std::string& id) {
    return id > after && (until.empty() || id <= until);
  };
  // Federated bundles go with the first page only, so only it needs their names.
  std::set<std::string> federated_needed;
  if (after.empty()) {
    for (const auto& e : entries) {
      federated_needed.insert(e.federates_with.begin(), e.federates_with.end());
    }
  }
  std::erase_if(entries, [&](const auto& e) { return !in_range(e.id); });
  std::sort(entries.begin(), entries.end(),
            [](const auto& a, const auto& b) { return a.id < b.id; });
  std::string last_considered;
  for (const auto& e : entries) {
    auto known = req->known_revisions().find(e.id);
    if (known == req->known_revisions().end() || known->second != e.revision_number) {
      if (req->page_size() > 0 && static_cast<uint32_t>(resp->changed_size()) >= req->page_size()) {
        resp->set_truncated_after(last_considered);  // never empty: page_size >= 1 came first
        break;
      }
      *resp->add_changed() = EntryToProto(e);
    }
    last_considered = e.id;
  }
  // Known ids the page covered that are no longer authorised; past a cut, the next page judges.
  // Every entry in range up to the cut was considered, so "still authorised" is a lookup in
  // the sorted range.
  for (const auto& [id, rev] : req->known_revisions()) {
    if (!in_range(id)) continue;
    if (!resp->truncated_after().empty() && id > resp->truncated_after()) continue;
    auto it = std::lower_bound(entries.begin(), entries.end(), id,
                               [](const auto& e, const std::string& k) { return e.id < k; });
    if (it == entries.end() || it->id != id) resp->add_removed_ids(id);
  }
  if (!after.empty()) return grpc::Status::OK;  // bundles went with the first page
  // Most syncs hold the current bundle already: compare sequences before building it.
  std::shared_ptr<const common::Bundle> published = ca_->Bundle();
  if (!published || published->sequence() != req->bundle_sequence()) {
    std::optional<v1::Bundle> bundle = CurrentBundle(*ca_);
    if (bundle && bundle->sequence_number() != req->bundle_sequence()) {
      *resp->mutable_bundle() = std::move(*bundle);
    }
  }
  {
    absl::MutexLock lock(&mu_);
    for (const auto& td : federated_needed) {
      auto it = federated_.find(td);
      if (it == federated_.end()) continue;
      auto held = req->federated_bundle_sequences().find(td);
      if (held == req->federated_bundle_sequences().end() ||
          held->second != it->second->sequence_number()) {
        *resp->add_federated_bundles() = *it->second;
      }
    }
  }
  for (const auto& [td, seq] : req->federated_bundle_sequences()) {
    if (!federated_needed.count(td)) resp->add_removed_federated_bundles(td);
  }
  LogDebug("Entries synced", {{"changed", std::to_string(resp->changed_size())},
                              {"removed", std::to_string(resp->removed_ids_size())}});
  return grpc::Status::OK;
}

// ---- WatchChanges --------------------------------------------------------------------------

uint64_t AgentService::EntriesFingerprint(const common::SpiffeId& agent) const {
  std::vector<std::pair<std::string, int64_t>> items;
  for (const auto& e : index_->AuthorizedEntries(agent))
    items.emplace_back(e.id, e.revision_number);
  std::sort(items.begin(), items.end());
  // FNV-1a over "id:revision;" items: order-independent after the sort, stable across calls.
  uint64_t h = 1469598103934665603ull;
  auto mix = [&h](const std::string& bytes) {
    for (unsigned char c : bytes) {
      h ^= c;
      h *= 1099511628211ull;
    }
  };
  for (const auto& [id, rev] : items) mix(id + ":" + std::to_string(rev) + ";");
  return h;
}

absl::StatusOr<AgentWatchState> AgentService::WatchState(const std::string& agent_id) const {
  // Banned or evicted agents lose the stream as soon as the index hears of it.
  std::optional<datastore::AttestedNode> node = index_->Node(agent_id);
  if (!node) return absl::PermissionDeniedError("agent is not attested or was evicted");
  if (node->banned) return absl::PermissionDeniedError("agent is banned");
  absl::StatusOr<common::SpiffeId> agent = common::SpiffeId::Parse(agent_id);
  if (!agent.ok()) return agent.status();
  AgentWatchState state;
  state.entries = EntriesFingerprint(*agent);
  std::shared_ptr<const common::Bundle> bundle = ca_->Bundle();
  state.bundle_sequence = bundle ? bundle->sequence() : 0;
  {
    absl::MutexLock lock(&mu_);
    state.federated = federated_generation_;
  }
  // A new active X.509 CA counts too: agents holding SVIDs under a tainted authority re-mint
  // them as soon as there is a CA to re-mint them with.
  state.x509_generation = ca_->X509Generation();
  return state;
}

grpc::ServerWriteReactor<v1::ChangeNotice>* AgentService::WatchChanges(
    grpc::CallbackServerContext* ctx, const v1::WatchChangesRequest*) {
  RpcLogScope rpc = Rpc("WatchChanges");
  absl::StatusOr<common::SpiffeId> agent = AuthorizeAgent(*ctx);
  if (!agent.ok()) return watches_.Refuse(ToGrpcStatus(agent.status()));
  // A notice goes out only when what this agent syncs moved, so a change to another agent's
  // entries neither wakes nor notifies this stream.
  return watches_.Open(agent->String());
}

// ---- GetBundle -----------------------------------------------------------------------------

grpc::Status AgentService::GetBundle(ServerContext*, const v1::GetBundleRequest*,
                                     v1::Bundle* resp) {
  std::optional<v1::Bundle> bundle = CurrentBundle(*ca_);
  if (!bundle) return ToGrpcStatus(absl::UnavailableError("the trust bundle is not ready"));
  *resp = std::move(*bundle);
  return grpc::Status::OK;
}

}  // namespace trellis::server
