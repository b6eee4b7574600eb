// MemoryKeyManager: a map from key id to key behind one mutex.
#include "server/memory_key_manager.h"

#include "common/status.h"

namespace trellis::server {

absl::StatusOr<common::PrivateKey> MemoryKeyManager::GenerateKey(const std::string& id,
                                                                 common::KeyType type) {
  TRELLIS_RETURN_IF_ERROR(ValidateKeyId(id));
  TRELLIS_ASSIGN_OR_RETURN(common::PrivateKey key, common::PrivateKey::Generate(type));
  absl::MutexLock lock(&mu_);
  keys_.insert_or_assign(id, key);
  return key;
}

absl::StatusOr<common::PrivateKey> MemoryKeyManager::GetKey(const std::string& id) {
  TRELLIS_RETURN_IF_ERROR(ValidateKeyId(id));
  absl::MutexLock lock(&mu_);
  auto it = keys_.find(id);
  if (it == keys_.end()) return absl::NotFoundError("no key \"" + id + "\"");
  return it->second;
}

absl::Status MemoryKeyManager::DeleteKey(const std::string& id) {
  TRELLIS_RETURN_IF_ERROR(ValidateKeyId(id));
  absl::MutexLock lock(&mu_);
  keys_.erase(id);
  return absl::OkStatus();
}

absl::StatusOr<std::vector<std::string>> MemoryKeyManager::ListKeyIds() {
  absl::MutexLock lock(&mu_);
  std::vector<std::string> ids;
  for (const auto& [id, key] : keys_) ids.push_back(id);
  return ids;
}

}  // namespace trellis::server
