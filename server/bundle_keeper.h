// The trust domain's bundle as stored in the datastore, its parsed form, and the listener told
// of every change.
#pragma once

#include <functional>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/bundle.h"
#include "datastore/datastore.h"
#include "server/ca_options.h"

namespace trellis::server {

// Every write goes to the datastore first; the parsed bundle follows from what the store
// holds, so servers sharing the store converge on the same bundle. Thread-safe.
class BundleKeeper {
 public:
  using Listener = std::function<void(std::shared_ptr<const common::Bundle>)>;
  BundleKeeper(const CaOptions& options, datastore::DataStore* ds);

  // Adds authorities (those already present stay) with the refresh hint.
  absl::Status Append(const std::vector<datastore::X509Authority>& x509,
                      const std::vector<datastore::JwtAuthority>& jwt);
  // Replaces the stored bundle (a nested server's merge of its upstream's).
  absl::Status Replace(const datastore::Bundle& bundle);
  // Re-reads the stored bundle; tells the listener when its sequence moved (always when
  // `force_notify`, which also makes a missing bundle an error).
  absl::Status Reload(bool force_notify);
  // Drops authorities expired before `cutoff`.
  absl::Status Prune(absl::Time cutoff);
  absl::Status TaintX509(const std::string& ca_der);
  absl::Status RevokeX509(const std::string& ca_der);
  absl::Status TaintJwt(const std::string& kid);
  absl::Status RevokeJwt(const std::string& kid);

  std::shared_ptr<const common::Bundle> Bundle() const;
  // UNAVAILABLE before the first load.
  absl::StatusOr<datastore::Bundle> Stored() const;
  std::optional<datastore::Bundle> StoredIfLoaded() const;
  // Subject key ids (raw) of the X.509 authorities marked tainted.
  std::set<std::string> TaintedX509KeyIds() const;
  bool JwtKidTainted(const std::string& kid) const;
  void SetListener(Listener listener);

 private:
  const CaOptions& options_;
  datastore::DataStore* const ds_;
  mutable absl::Mutex mu_;
  std::shared_ptr<const common::Bundle> bundle_ ABSL_GUARDED_BY(mu_);
  std::optional<datastore::Bundle> stored_ ABSL_GUARDED_BY(mu_);
  // Subject key ids of stored_'s tainted X.509 authorities, parsed once per reload.
  std::set<std::string> tainted_x509_ ABSL_GUARDED_BY(mu_);
  Listener listener_ ABSL_GUARDED_BY(mu_);
};

}  // namespace trellis::server
