// This process's own X509-SVID, streamed from a SPIFFE Workload API socket and kept current.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "common/bundle.h"
#include "common/spiffe_id.h"
#include "common/x509.h"

namespace trellis::downstream {

// Holds a FetchX509SVID stream open on the agent's socket from a background thread,
// reconnecting with backoff, and keeps the first SVID of the latest response. Thread-safe.
class WorkloadX509Source {
 public:
  struct Svid {
    common::SpiffeId id;
    std::vector<common::Certificate> chain;  // leaf first, roots excluded
    std::string chain_pem;
    std::string key_pem;  // PKCS#8
    std::shared_ptr<const common::Bundle> bundle;
  };

  // Starts streaming at once. `td` is the trust domain the SVID must belong to.
  static std::unique_ptr<WorkloadX509Source> Start(std::string socket_path,
                                                   common::TrustDomain td);
  ~WorkloadX509Source();

  // The latest SVID, or null before the first arrived.
  std::shared_ptr<const Svid> Current() const;
  // Waits up to `timeout` for an SVID. UNAVAILABLE naming the socket and the last error.
  absl::StatusOr<std::shared_ptr<const Svid>> Wait(absl::Duration timeout) const;
  // Called (from the stream thread) after every new SVID.
  void SetListener(std::function<void()> listener);
  // Ends the stream thread. Idempotent.
  void Stop();

 private:
  struct Impl;
  explicit WorkloadX509Source(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace trellis::downstream
