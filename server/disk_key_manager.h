// DiskKeyManager: server keys as PKCS#8 PEM files, one per key, that survive restarts.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "common/keys.h"
#include "server/key_manager.h"

namespace trellis::server {

// One PKCS#8 PEM file per key, "<keys_path>/<id>.pem", mode 0600, written atomically, in a
// directory kept at 0700. Keys survive restarts. A key file readable or writable by group or
// others is refused (FAILED_PRECONDITION naming the file) rather than silently fixed: a loose
// key may already have leaked, so the operator has to decide.
class DiskKeyManager final : public KeyManager {
 public:
  static absl::StatusOr<std::unique_ptr<DiskKeyManager>> Create(const std::string& keys_path);

  absl::StatusOr<common::PrivateKey> GenerateKey(const std::string& id,
                                                 common::KeyType type) override;
  absl::StatusOr<common::PrivateKey> GetKey(const std::string& id) override;
  absl::Status DeleteKey(const std::string& id) override;
  absl::StatusOr<std::vector<std::string>> ListKeyIds() override;

  const std::string& keys_path() const { return keys_path_; }

 private:
  explicit DiskKeyManager(std::string keys_path) : keys_path_(std::move(keys_path)) {}
  absl::StatusOr<std::string> PathFor(const std::string& id) const;

  const std::string keys_path_;
  // Serialises file operations, so a reader never sees a file another call is replacing or
  // removing. The files are the guarded state; no member holds them.
  absl::Mutex files_mu_;
};

}  // namespace trellis::server
