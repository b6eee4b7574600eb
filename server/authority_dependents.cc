// AuthorityDependents: downstream CA minting and the checks that keep an authority while
// something still chains to it.
#include "server/authority_dependents.h"

#include <algorithm>
#include <optional>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "common/csr.h"
#include "common/status.h"
#include "common/x509.h"

namespace trellis::server {

AuthorityDependents::AuthorityDependents(const CaOptions& options, datastore::DataStore* ds,
                                         const CaJournal* journal, const BundleKeeper* bundle,
                                         const common::Clock& clock)
    : options_(options), ds_(ds), journal_(journal), bundle_(bundle), clock_(clock) {}

absl::StatusOr<UpstreamAuthority::MintResult> AuthorityDependents::MintDownstreamCa(
    std::string_view csr_der, absl::Duration preferred_ttl, const common::SpiffeId& caller) {
  auto csr = common::CertificateRequest::FromDer(csr_der);
  if (!csr.ok()) return Annotate(csr.status(), "downstream CA request");
  if (absl::Status v = csr->VerifySignature(); !v.ok()) {
    return Annotate(v, "downstream CA request");
  }
  if (preferred_ttl < absl::ZeroDuration()) {
    return absl::InvalidArgumentError("preferred_ttl must not be negative");
  }
  std::optional<X509Slot> active = journal_->ActiveX509();
  std::shared_ptr<const common::Bundle> bundle = bundle_->Bundle();
  if (!active || !bundle) return absl::UnavailableError("no active X.509 CA yet");
  if (ChainTouches(active->chain, bundle_->TaintedX509KeyIds())) {
    // A CA minted now would chain to the tainted authority and be replaced at once.
    return absl::UnavailableError(
        "this server's CA chains to a tainted authority and is being replaced; retry shortly");
  }
  const absl::Duration ttl = preferred_ttl > absl::ZeroDuration() ? preferred_ttl : options_.ca_ttl;
  // NotAfter is capped at the active CA's, so a downstream CA never outlives its issuer.
  TRELLIS_ASSIGN_OR_RETURN(
      common::Certificate ca,
      common::CreateIntermediateCa(active->ca(), active->key, csr->public_key(),
                                   options_.trust_domain, ttl, clock_, options_.ca_subject));
  UpstreamAuthority::MintResult result;
  result.ca_chain.push_back(ca);
  // A self-signed active CA is the root itself, which chains stop below.
  if (options_.upstream) {
    for (const auto& c : active->chain) result.ca_chain.push_back(c);
  }
  result.roots = bundle->x509_authorities();
  DownstreamMint record;
  for (const auto& c : result.ca_chain) {
    record.key_ids.insert(c.SubjectKeyId());
    record.key_ids.insert(c.AuthorityKeyId());
  }
  record.not_after = ca.not_after();
  absl::MutexLock lock(&mu_);
  mints_[caller.String()] = std::move(record);
  return result;
}

absl::Status AuthorityDependents::DownstreamsChainTo(const std::string& raw_key_id) const {
  // Downstream servers whose current CA still chains to it would be cut off.
  const absl::Time now = clock_.Now();
  absl::MutexLock lock(&mu_);
  for (const auto& [caller, mint] : mints_) {
    if (mint.not_after > now && mint.key_ids.count(raw_key_id)) {
      return absl::FailedPreconditionError(
          "downstream server " + caller + " still signs with a CA that chains to " +
          absl::BytesToHexString(raw_key_id) + " (valid until " +
          absl::FormatTime(mint.not_after) +
          "): taint it and wait for the downstream to rotate");
    }
  }
  return absl::OkStatus();
}

absl::Status AuthorityDependents::AgentsRenewedSince(absl::Time retired_at,
                                                     const std::string& what) const {
  if (options_.agent_svid_ttl <= absl::ZeroDuration()) return absl::OkStatus();
  const absl::Time now = clock_.Now();
  datastore::ListNodesRequest req;
  req.by_banned = false;
  req.page_size = 1000;
  // Certificate and datastore times are whole seconds: an SVID issued in the second the
  // authority was retired counts as renewed (agents also renew at once on the taint).
  const absl::Time cutoff = absl::FromUnixSeconds(absl::ToUnixSeconds(retired_at));
  int64_t waiting = 0;
  std::string example;
  absl::Time until = absl::InfinitePast();
  do {
    TRELLIS_ASSIGN_OR_RETURN(datastore::ListNodesResponse page, ds_->ListNodes(req));
    for (const auto& n : page.nodes) {
      // The newest SVID the agent holds; its issue time is NotAfter minus the agent TTL (or
      // earlier when the CA capped it, which only makes this check more cautious).
      const absl::Time latest = std::max(n.cert_not_after, n.new_cert_not_after);
      if (latest <= now) continue;
      if (latest - options_.agent_svid_ttl < cutoff) {
        ++waiting;
        if (example.empty()) example = n.spiffe_id;
        until = std::max(until, latest);
      }
    }
    req.page_token = page.next_page_token;
  } while (!req.page_token.empty());
  if (waiting == 0) return absl::OkStatus();
  return absl::FailedPreconditionError(absl::StrCat(
      waiting, " agent(s) still hold an SVID signed under ", what, " (e.g. ", example,
      "; the last expires at ", absl::FormatTime(absl::RFC3339_sec, until, absl::UTCTimeZone()),
      "): wait until they renew (agents renew at once when it is tainted)"));
}

absl::Status AuthorityDependents::StillNeeded(const std::string& raw_key_id,
                                              const std::string& what) const {
  const std::set<std::string> ids = {raw_key_id};
  const AuthoritySlots slots = journal_->Slots();
  for (const auto* s : {&slots.x509_active, &slots.x509_prepared}) {
    if (*s && ChainTouches((*s)->chain, ids)) {
      return absl::FailedPreconditionError(
          "this server's " + std::string(s == &slots.x509_active ? "active" : "prepared") +
          " X.509 authority chains to " + what + ": prepare and activate another first");
    }
  }
  TRELLIS_RETURN_IF_ERROR(DownstreamsChainTo(raw_key_id));
  if (slots.x509_old && ChainTouches(slots.x509_old->chain, ids)) {
    TRELLIS_RETURN_IF_ERROR(AgentsRenewedSince(slots.x509_old->retired_at, what));
  }
  return absl::OkStatus();
}

}  // namespace trellis::server
