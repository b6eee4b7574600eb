// Turns a recorded connection into the caller's selectors by running every workload attestor
// against the process pinned at accept time.
#pragma once

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "attestors/workload/workload_attestor.h"
#include "workload_api/peer_listener.h"

namespace trellis::workload_api {

class CallerAttestation {
 public:
  explicit CallerAttestation(std::vector<attestors::WorkloadAttestor*> attestors);

  // UNAUTHENTICATED when the process is gone or was replaced; UNAVAILABLE when an attestor
  // failed otherwise.
  absl::StatusOr<std::vector<std::string>> Attest(const PeerRecord& peer) const;
  // True when every attestor is quick enough to run on the gRPC thread that took the call.
  bool inline_ok() const { return inline_ok_; }

 private:
  std::vector<attestors::WorkloadAttestor*> attestors_;
  bool inline_ok_;
};

}  // namespace trellis::workload_api
