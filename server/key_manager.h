// Server key storage: the KeyManager interface and its disk and memory implementations.
#pragma once

#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "common/config/server_config.h"
#include "common/keys.h"

namespace trellis::server {

// Holds the CA and JWT signing keys under stable ids ("x509-CA-<id>", "JWT-Signer-<id>").
// Implementations are thread-safe.
class KeyManager {
 public:
  virtual ~KeyManager() = default;
  // Generates a fresh key of `type` under `id`, replacing any key stored there.
  virtual absl::StatusOr<common::PrivateKey> GenerateKey(const std::string& id,
                                                         common::KeyType type) = 0;
  // NOT_FOUND when no key is stored under `id`.
  virtual absl::StatusOr<common::PrivateKey> GetKey(const std::string& id) = 0;
  // OK when the key is gone afterwards (absent is not an error).
  virtual absl::Status DeleteKey(const std::string& id) = 0;
  virtual absl::StatusOr<std::vector<std::string>> ListKeyIds() = 0;
};

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

  std::string keys_path_;
  std::mutex mu_;  // serialises file operations
};

// Keys in process memory only: every restart starts from scratch.
class MemoryKeyManager final : public KeyManager {
 public:
  absl::StatusOr<common::PrivateKey> GenerateKey(const std::string& id,
                                                 common::KeyType type) override;
  absl::StatusOr<common::PrivateKey> GetKey(const std::string& id) override;
  absl::Status DeleteKey(const std::string& id) override;
  absl::StatusOr<std::vector<std::string>> ListKeyIds() override;

 private:
  std::mutex mu_;
  std::map<std::string, common::PrivateKey> keys_;  // guarded by mu_
};

// A key id is 1..128 characters of [A-Za-z0-9._-]; anything else is INVALID_ARGUMENT (ids
// become file names).
absl::Status ValidateKeyId(const std::string& id);

// Builds the KeyManager the server configuration names. A disk manager without keys_path
// uses "<data_dir>/keys".
absl::StatusOr<std::unique_ptr<KeyManager>> CreateKeyManager(
    const common::config::ServerKeyManagerConfig& config, const std::string& data_dir);

}  // namespace trellis::server
