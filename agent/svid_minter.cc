// Renewal decisions and BatchNewX509SVID calls.
#include "agent/svid_minter.h"

#include <grpcpp/grpcpp.h>

#include <algorithm>
#include <map>

#include "absl/strings/str_cat.h"
#include "agent/rotation.h"
#include "common/csr.h"
#include "common/log.h"
#include "common/status.h"
#include "transport/grpc_status.h"
#include "transport/wire_convert.h"

namespace trellis::agent {

namespace v1 = ::trellis::server::v1;
using workload_api::CachedSvid;

namespace {
// Items per BatchNewX509SVID call. Each item's key generation, CSR, response and checks leave
// short-lived allocations; whatever of that a batch leaves between the SVIDs kept is heap the
// agent cannot hand back, so small batches keep it small. Resident memory per cached SVID for
// the first 1,000 (one-time growth included): 1.9 KiB at 25 a batch before the SVIDs were
// built after the call's transients; 1.06-1.14 KiB at 25 and 0.96-0.99 KiB at 10 since.
// Minting 9,000 takes 14-16 s either way; the round and the server set the pace.
constexpr size_t kMaxBatch = 10;

// What a kept SVID is built from.
struct Issued {
  std::string entry_id;
  std::vector<std::string> ders;  // leaf first, as the server sent them
  common::SecretBytes pkcs8;
  absl::Time not_before;
  absl::Time not_after;
  int64_t revision;
};

// One BatchNewX509SVID call: a fresh key and CSR per entry, then every returned chain parsed
// and checked against its key. Items the server refused or answered unusably are logged and
// left out.
absl::StatusOr<std::vector<Issued>> CallBatch(
    ServerConnection& conn, const std::vector<const workload_api::CachedEntry*>& entries) {
  struct Pending {
    int64_t revision;
    common::PrivateKey key;
  };
  v1::BatchNewX509SVIDRequest req;
  std::map<std::string, Pending> pending;
  for (const workload_api::CachedEntry* entry : entries) {
    TRELLIS_ASSIGN_OR_RETURN(common::PrivateKey key, common::PrivateKey::Generate());
    TRELLIS_ASSIGN_OR_RETURN(std::string csr, common::BuildCsr(key));
    auto* p = req.add_params();
    p->set_entry_id(std::string(entry->id()));
    p->set_csr(std::move(csr));
    pending.emplace(std::string(entry->id()), Pending{entry->revision(), std::move(key)});
  }
  v1::BatchNewX509SVIDResponse resp;
  grpc::ClientContext ctx;
  SetDeadline(&ctx, kCallTimeout);
  grpc::Status s = conn.Stub()->BatchNewX509SVID(&ctx, req, &resp);
  if (!s.ok()) return transport::FromGrpcStatus(s);
  std::vector<Issued> issued;
  issued.reserve(resp.results_size());
  for (auto& r : *resp.mutable_results()) {
    auto it = pending.find(r.entry_id());
    if (it == pending.end()) continue;
    if (r.code() != 0) {
      common::LogWarn("server refused an SVID for entry " + r.entry_id() + ": " + r.message());
      continue;
    }
    auto chain = transport::ChainFromProto(r.svid());
    if (!chain.ok() || !common::CheckKeyMatchesCertificate(it->second.key, chain->front()).ok()) {
      common::LogWarn("server returned an unusable SVID for entry " + r.entry_id());
      continue;
    }
    auto pkcs8 = it->second.key.ToPkcs8Der();
    if (!pkcs8.ok()) continue;
    auto* certs = r.mutable_svid()->mutable_cert_chain();
    issued.push_back(Issued{std::move(*r.mutable_entry_id()),
                            std::vector<std::string>(std::make_move_iterator(certs->begin()),
                                                     std::make_move_iterator(certs->end())),
                            *std::move(pkcs8), chain->front().not_before(),
                            chain->front().not_after(), it->second.revision});
  }
  return issued;
}

}  // namespace

absl::Status SvidMinter::MintDue(IdentityState& state) {
  // `snap` keeps the entries `due` points to alive.
  std::shared_ptr<const workload_api::IdentitySnapshot> snap = state.Current();
  // Entries without any SVID come first; the rest wait for the next round.
  std::vector<const workload_api::CachedEntry*> due, renew;
  absl::Time now = clock_.Now();
  for (const auto& entry : snap->entries) {
    auto it = snap->svids.find(entry->id());
    if (it == snap->svids.end()) {
      due.push_back(entry.get());
    } else if (NeedsRenewal(now, (*it)->renew_at, (*it)->not_after,
                            (*it)->entry_revision, entry->revision()) ||
               state.IssuedByTainted((*it)->chain())) {
      renew.push_back(entry.get());
    }
  }
  due.insert(due.end(), renew.begin(), renew.end());
  left_due_ = due.size() > max_per_round_ ? due.size() - max_per_round_ : 0;
  if (due.size() > max_per_round_) due.resize(max_per_round_);
  // The round's SVIDs join the state in one edit (each edit copies the snapshot's tables),
  // also when a batch fails after others succeeded. Workloads see them when the caller
  // publishes, after the round.
  std::vector<std::shared_ptr<const CachedSvid>> minted;
  minted.reserve(due.size());
  auto keep_minted = [&] {
    if (!minted.empty()) state.AddSvids(std::move(minted));
  };
  for (size_t start = 0; start < due.size(); start += kMaxBatch) {
    std::vector<const workload_api::CachedEntry*> batch(
        due.begin() + start, due.begin() + std::min(due.size(), start + kMaxBatch));
    absl::StatusOr<std::vector<Issued>> issued = CallBatch(*conn_, batch);
    if (!issued.ok()) {
      keep_minted();
      return issued.status();
    }
    // The call's keys, CSRs, messages and parsed certificates are freed by now: the SVIDs kept
    // for good are allocated into the room those left rather than between them, where the
    // heap could not give that room back.
    for (const Issued& r : *issued) {
      auto svid = std::make_shared<CachedSvid>(r.entry_id, r.ders, r.pkcs8.view());
      svid->not_before = r.not_before;
      svid->not_after = r.not_after;
      svid->entry_revision = r.revision;
      svid->renew_at = RenewalTime(std::max(r.not_before, clock_.Now()), r.not_after,
                                   RandomUnitJitter());
      minted.push_back(std::move(svid));
    }
    minted_total_.fetch_add(issued->size(), std::memory_order_relaxed);
    if (!issued->empty()) {
      common::LogInfo(absl::StrCat("minted ", issued->size(), " workload SVID(s)"));
    }
  }
  keep_minted();
  return absl::OkStatus();
}

absl::Duration SvidMinter::UntilNextRenewal(const workload_api::IdentitySnapshot& snap,
                                            absl::Duration floor, absl::Duration cap) const {
  absl::Duration wait = cap;
  absl::Time now = clock_.Now();
  for (const auto& svid : snap.svids) wait = std::min(wait, std::max(floor, svid->renew_at - now));
  return wait;
}

}  // namespace trellis::agent
