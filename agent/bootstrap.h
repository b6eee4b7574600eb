// What the agent trusts before it has talked to a server: its persisted state, a bundle
// from a file or an HTTPS URL, or nothing (insecure bootstrap).
#pragma once

#include <memory>
#include <optional>

#include "absl/status/statusor.h"
#include "agent/state_store.h"
#include "common/bundle.h"
#include "common/clock.h"
#include "common/config/agent_config.h"

namespace trellis::agent {

struct BootstrapTrust {
  // Null only for insecure bootstrap.
  std::shared_ptr<const common::Bundle> bundle;
  bool insecure = false;
  // From the persisted state, when there was one (even with an expired SVID).
  std::optional<bool> reattestable;
  // The persisted agent SVID, when it has not expired yet.
  std::optional<AgentState> persisted;
};

// Unusable persisted state is logged and ignored. INVALID_ARGUMENT when no bootstrap is
// configured or the configured bundle holds no X.509 authority.
absl::StatusOr<BootstrapTrust> LoadBootstrap(const common::config::AgentConfig& config,
                                             const common::Clock& clock);

}  // namespace trellis::agent
