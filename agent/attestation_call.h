// One AttestAgent exchange with one server: the attestor's payload and a fresh CSR out,
// challenges answered, and the agent SVID and bundle checked on the way back.
#pragma once

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "agent/server_connection.h"
#include "attestors/node/node_attestor.h"
#include "common/bundle.h"
#include "common/clock.h"
#include "common/keys.h"
#include "common/x509.h"

namespace trellis::agent {

struct AttestationResult {
  std::vector<common::Certificate> chain;  // verified against `bundle`
  common::PrivateKey key;
  common::Bundle bundle;  // of the agent's trust domain
  bool reattestable = false;
};

// `insecure` skips verifying the server (insecure bootstrap, or no bundle yet). A bundle of
// another trust domain is PERMISSION_DENIED.
absl::StatusOr<AttestationResult> AttestOnce(ServerConnection& conn,
                                             attestors::AgentNodeAttestor& attestor,
                                             const std::string& target, bool insecure,
                                             const common::TrustDomain& td,
                                             const common::Clock& clock);

}  // namespace trellis::agent
