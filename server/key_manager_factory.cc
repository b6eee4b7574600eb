// CreateKeyManager: maps the KeyManager plugin block to an implementation.
#include "server/key_manager_factory.h"

#include <variant>

#include "common/status.h"
#include "server/disk_key_manager.h"
#include "server/memory_key_manager.h"

namespace trellis::server {

absl::StatusOr<std::unique_ptr<KeyManager>> CreateKeyManager(
    const common::config::ServerKeyManagerConfig& config, const std::string& data_dir) {
  if (const auto* disk = std::get_if<common::config::DiskKeyManagerConfig>(&config)) {
    std::string path = disk->keys_path.empty() ? data_dir + "/keys" : disk->keys_path;
    TRELLIS_ASSIGN_OR_RETURN(auto km, DiskKeyManager::Create(path));
    return std::unique_ptr<KeyManager>(std::move(km));
  }
  return std::unique_ptr<KeyManager>(std::make_unique<MemoryKeyManager>());
}

}  // namespace trellis::server
