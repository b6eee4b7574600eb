// KeyManager: the interface to where a server keeps its CA and JWT signing keys.
#pragma once

#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
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

// A key id is 1..128 characters of [A-Za-z0-9._-]; anything else is INVALID_ARGUMENT (ids
// become file names). Every implementation applies this rule, so ids are portable between them.
absl::Status ValidateKeyId(const std::string& id);

}  // namespace trellis::server
