// Node attestor factories: plugin configuration to server-side and agent-side attestors.
#pragma once

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "attestors/node/node_attestor.h"
#include "common/clock.h"
#include "common/config/agent_config.h"
#include "common/config/server_config.h"
#include "common/spiffe_id.h"
#include "datastore/datastore.h"

namespace trellis::attestors {

// INVALID_ARGUMENT when join_token has no datastore or the x509pop CA bundles are unusable.
absl::StatusOr<std::unique_ptr<ServerNodeAttestor>> CreateServerNodeAttestor(
    const common::config::ServerNodeAttestorConfig& config, const common::TrustDomain& td,
    datastore::DataStore* ds, const common::Clock& clock);

// `join_token` is the token join_token attestation sends. INVALID_ARGUMENT when join_token is
// configured without a token, or the x509pop files are bad.
absl::StatusOr<std::unique_ptr<AgentNodeAttestor>> CreateAgentNodeAttestor(
    const common::config::AgentNodeAttestorConfig& config, const std::string& join_token);

// The agent's attestor: `join_token_flag` (-joinToken) overrides agent.join_token when non-empty.
absl::StatusOr<std::unique_ptr<AgentNodeAttestor>> CreateAgentNodeAttestor(
    const common::config::AgentConfig& config, const std::string& join_token_flag);

}  // namespace trellis::attestors
