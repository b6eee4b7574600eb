// Workload attestation of a Workload API caller, checked against the accept-time pin.
#include "workload_api/caller_attestation.h"

#include <algorithm>

namespace trellis::workload_api {

CallerAttestation::CallerAttestation(std::vector<attestors::WorkloadAttestor*> attestors)
    : attestors_(std::move(attestors)),
      inline_ok_(std::all_of(attestors_.begin(), attestors_.end(),
                             [](attestors::WorkloadAttestor* a) { return a->NonBlocking(); })) {}

absl::StatusOr<std::vector<std::string>> CallerAttestation::Attest(const PeerRecord& peer) const {
  if (peer.start_time == 0) {
    return absl::UnauthenticatedError("calling process exited before it could be attested");
  }
  // The pin taken at accept time: whatever the attestors read is only trusted if the same
  // process still holds the pid after they are done (checked below, after all of them).
  attestors::ProcessPin pin = attestors::ProcessPin::FromStartTime(peer.creds.pid, peer.start_time);
  std::vector<std::string> selectors;
  for (attestors::WorkloadAttestor* attestor : attestors_) {
    auto got = attestor->AttestPinned(peer.creds, pin);
    if (!got.ok()) {
      if (absl::Status s = pin.Check(); !s.ok()) return s;
      if (got.status().code() == absl::StatusCode::kUnauthenticated) return got.status();
      return absl::UnavailableError("workload attestation failed: " +
                                    std::string(got.status().message()));
    }
    selectors.insert(selectors.end(), got->begin(), got->end());
  }
  // Only what was read from /proc/<pid> needs the pin; the socket's credentials are the kernel's.
  bool read_process = std::any_of(
      attestors_.begin(), attestors_.end(),
      [&](attestors::WorkloadAttestor* a) { return a->ReadsProcess(peer.creds); });
  if (read_process) {
    if (absl::Status s = pin.Check(); !s.ok()) return s;
  }
  return selectors;
}

}  // namespace trellis::workload_api
