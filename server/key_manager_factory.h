// CreateKeyManager: the KeyManager a server configuration names.
#pragma once

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "common/config/server_config.h"
#include "server/key_manager.h"

namespace trellis::server {

// "disk" builds a DiskKeyManager (without keys_path it uses "<data_dir>/keys"); "memory" a
// MemoryKeyManager.
absl::StatusOr<std::unique_ptr<KeyManager>> CreateKeyManager(
    const common::config::ServerKeyManagerConfig& config, const std::string& data_dir);

}  // namespace trellis::server
