// The agent's persisted identity in data_dir: its SVID chain, key and trust bundle, so a
// restart (even a join-token agent's, whose token is spent) needs no new attestation.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "common/bundle.h"
#include "common/keys.h"
#include "common/x509.h"

namespace trellis::agent {

struct AgentState {
  std::vector<common::Certificate> chain;  // agent SVID, leaf first
  common::PrivateKey key;
  common::Bundle bundle;
  bool reattestable = false;
};

// Files in data_dir (0700): agent_svid.pem, agent_svid.key (0600), bundle.json (SPIFFE
// format, so JWT authorities and the sequence survive too), agent_state.json. Each file is
// written atomically; the key and chain last-but-one so a torn save leaves the old pair.
absl::Status SaveAgentState(const std::string& data_dir, const AgentState& state);

// Only the bundle (after a sync changed it).
absl::Status SaveBundle(const std::string& data_dir, const common::Bundle& bundle);

// nullopt when nothing was persisted; an error when files exist but are unusable (the key
// does not match the chain, a file is corrupt, the bundle is of another trust domain).
absl::StatusOr<std::optional<AgentState>> LoadAgentState(const std::string& data_dir,
                                                         const common::TrustDomain& td);

}  // namespace trellis::agent
