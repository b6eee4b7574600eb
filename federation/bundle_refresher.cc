// The federated bundle refresh loop.
#include "federation/bundle_refresher.h"

#include <algorithm>

#include "common/log.h"
#include "common/status.h"
#include "server/api_convert.h"
#include "transport/wire_convert.h"

namespace trellis::federation {

using common::LogDebug;
using common::LogInfo;
using common::LogWarn;
namespace {

absl::StatusOr<common::Bundle> ToCommon(const datastore::Bundle& b) {
  return transport::BundleFromProto(server::BundleToProto(b));
}

std::string TimeText(absl::Time t) {
  return absl::FormatTime(absl::RFC3339_sec, t, absl::UTCTimeZone());
}

}  // namespace

BundleRefresher::BundleRefresher(Options options, datastore::DataStore* ds)
    : options_(std::move(options)), ds_(ds) {}

BundleRefresher::~BundleRefresher() { Stop(); }

void BundleRefresher::Start() {
  thread_ = std::thread([this] { Loop(); });
}

void BundleRefresher::Stop() {
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
  }
  if (thread_.joinable()) thread_.join();
}

void BundleRefresher::Wake() {
  absl::MutexLock lock(&mu_);
  wake_ = true;
}

std::optional<BundleRefresher::State> BundleRefresher::StateOf(const std::string& td) const {
  absl::MutexLock lock(&mu_);
  auto it = states_.find(td);
  if (it == states_.end()) return std::nullopt;
  return it->second;
}

void BundleRefresher::Loop() {
  while (true) {
    RunDue();
    absl::MutexLock lock(&mu_);
    auto woken = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return stopping_ || wake_; };
    // Waits on the real clock: a fake clock only drives RunDue from tests.
    mu_.AwaitWithTimeout(absl::Condition(&woken), absl::Seconds(1));
    if (stopping_) return;
    wake_ = false;
  }
}

void BundleRefresher::RunDue() {
  absl::StatusOr<std::vector<datastore::FederationRelationship>> list =
      ds_->ListFederationRelationships();
  if (!list.ok()) {
    LogWarn("Cannot read federation relationships",
            {{"error", std::string(list.status().message())}});
    return;
  }
  const absl::Time now = options_.clock->Now();
  std::vector<datastore::FederationRelationship> due;
  {
    absl::MutexLock lock(&mu_);
    // Relationships deleted elsewhere lose their state.
    for (auto it = states_.begin(); it != states_.end();) {
      bool kept = std::any_of(list->begin(), list->end(),
                              [&](const auto& r) { return r.trust_domain == it->first; });
      it = kept ? std::next(it) : states_.erase(it);
    }
    for (const auto& r : *list) {
      if (StateFor(r).next_attempt <= now) due.push_back(r);
    }
  }
  for (const auto& r : due) {
    {
      absl::MutexLock lock(&mu_);
      if (stopping_) return;
    }
    if (absl::Status st = Refresh(r); !st.ok()) {
      LogWarn("Federated bundle refresh failed; the last good bundle stays in use",
              {{"trust_domain", r.trust_domain}, {"error", std::string(st.message())}});
    }
  }
}

BundleRefresher::State& BundleRefresher::StateFor(const datastore::FederationRelationship& r) {
  std::string endpoint = r.bundle_endpoint_url + "\n" +
                         std::string(datastore::BundleEndpointProfileName(r.profile)) + "\n" +
                         r.endpoint_spiffe_id;
  State& st = states_[r.trust_domain];
  if (st.endpoint != endpoint) {
    st = State();
    st.endpoint = std::move(endpoint);
  }
  return st;
}

absl::Status BundleRefresher::RefreshNow(const std::string& trust_domain) {
  TRELLIS_ASSIGN_OR_RETURN(datastore::FederationRelationship r,
                           ds_->GetFederationRelationship(trust_domain));
  return Refresh(r);
}

absl::StatusOr<BundleEndpointSpec> BundleRefresher::SpecOf(
    const datastore::FederationRelationship& r) {
  BundleEndpointSpec spec;
  spec.url = r.bundle_endpoint_url;
  if (r.profile == datastore::BundleEndpointProfile::kHttpsWeb) {
    spec.profile = EndpointProfile::kHttpsWeb;
    return spec;
  }
  spec.profile = EndpointProfile::kHttpsSpiffe;
  TRELLIS_ASSIGN_OR_RETURN(common::SpiffeId id, common::SpiffeId::Parse(r.endpoint_spiffe_id));
  spec.endpoint_spiffe_id = id;
  // The endpoint's SVID chains to the current bundle of its own trust domain: ours, or one
  // stored for it (set by hand the first time, then the fetched one).
  if (id.trust_domain() == options_.own_trust_domain) {
    std::shared_ptr<const common::Bundle> own =
        options_.own_bundle ? options_.own_bundle() : nullptr;
    if (own) spec.endpoint_authorities = own->x509_authorities();
    return spec;
  }
  absl::StatusOr<datastore::Bundle> stored = ds_->GetBundle(id.trust_domain().name());
  if (stored.ok()) {
    TRELLIS_ASSIGN_OR_RETURN(common::Bundle b, ToCommon(*stored));
    spec.endpoint_authorities = b.x509_authorities();
  } else if (stored.status().code() != absl::StatusCode::kNotFound) {
    return stored.status();
  }
  return spec;
}

absl::Duration BundleRefresher::Interval(const common::Bundle& fetched) const {
  absl::Duration d = options_.default_refresh;
  if (fetched.refresh_hint_seconds() && *fetched.refresh_hint_seconds() > 0) {
    d = absl::Seconds(*fetched.refresh_hint_seconds());
  }
  return std::clamp(d, options_.min_refresh, options_.max_refresh);
}

absl::Status BundleRefresher::Refresh(const datastore::FederationRelationship& r) {
  absl::MutexLock fetch_lock(&fetch_mu_);
  const common::TrustDomain td = *common::TrustDomain::Parse(r.trust_domain);
  const absl::Time start = options_.clock->Now();
  std::optional<uint64_t> last_sequence;
  absl::Duration interval = options_.default_refresh;
  {
    absl::MutexLock lock(&mu_);
    State& st = StateFor(r);
    st.last_attempt = start;
    last_sequence = st.last_sequence;
  }
  auto fail = [&](absl::Status why) {
    absl::MutexLock lock(&mu_);
    State& st = StateFor(r);
    ++st.failures;
    absl::Duration backoff = options_.first_retry;
    for (int i = 1; i < st.failures && backoff < interval; ++i) backoff *= 2;
    st.next_attempt = start + std::min(backoff, interval);
    st.last_error = std::string(why.message());
    return why;
  };
  absl::StatusOr<BundleEndpointSpec> spec = SpecOf(r);
  if (!spec.ok()) return fail(spec.status());
  absl::StatusOr<common::Bundle> fetched = FetchBundle(td, *spec, start, options_.fetch_timeout);
  if (!fetched.ok()) return fail(fetched.status());
  interval = Interval(*fetched);
  if (last_sequence && fetched->sequence() < *last_sequence) {
    return fail(absl::FailedPreconditionError(
        "the endpoint served sequence " + std::to_string(fetched->sequence()) +
        ", older than sequence " + std::to_string(*last_sequence) + " already accepted"));
  }
  bool changed = true;
  absl::StatusOr<datastore::Bundle> stored = ds_->GetBundle(td.name());
  if (stored.ok()) {
    absl::StatusOr<common::Bundle> current = ToCommon(*stored);
    changed = !current.ok() || !current->SameAuthorities(*fetched);
  } else if (stored.status().code() != absl::StatusCode::kNotFound) {
    return fail(stored.status());
  }
  if (changed) {
    absl::StatusOr<datastore::Bundle> row =
        server::BundleFromProto(transport::BundleToProto(*fetched));
    if (!row.ok()) return fail(row.status());
    absl::StatusOr<datastore::Bundle> written = ds_->SetBundle(*row);
    if (!written.ok()) return fail(written.status());
    LogInfo("Federated bundle updated",
            {{"trust_domain", td.name()},
             {"x509_authorities", std::to_string(fetched->x509_authorities().size())},
             {"jwt_authorities", std::to_string(fetched->jwt_authorities().size())},
             {"sequence", std::to_string(fetched->sequence())}});
    if (options_.after_write) options_.after_write();
  }
  absl::MutexLock lock(&mu_);
  State& st = StateFor(r);
  st.failures = 0;
  st.last_error.clear();
  st.last_success = start;
  st.last_sequence = fetched->sequence();
  st.next_attempt = start + interval;
  LogDebug("Federated bundle fetched",
           {{"trust_domain", td.name()}, {"next_refresh", TimeText(st.next_attempt)}});
  return absl::OkStatus();
}

}  // namespace trellis::federation
