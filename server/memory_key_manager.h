// MemoryKeyManager: server keys held in process memory only.
#pragma once

#include <map>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "common/keys.h"
#include "server/key_manager.h"

namespace trellis::server {

// Keys in process memory only: every restart starts from scratch.
class MemoryKeyManager final : public KeyManager {
 public:
  absl::StatusOr<common::PrivateKey> GenerateKey(const std::string& id,
                                                 common::KeyType type) override;
  absl::StatusOr<common::PrivateKey> GetKey(const std::string& id) override;
  absl::Status DeleteKey(const std::string& id) override;
  absl::StatusOr<std::vector<std::string>> ListKeyIds() override;

 private:
  absl::Mutex mu_;
  std::map<std::string, common::PrivateKey> keys_ ABSL_GUARDED_BY(mu_);
};

}  // namespace trellis::server
