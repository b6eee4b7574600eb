// The key id rule every KeyManager applies.
#include "server/key_manager.h"

namespace trellis::server {

absl::Status ValidateKeyId(const std::string& id) {
  if (id.empty() || id.size() > 128) {
    return absl::InvalidArgumentError("key id must be 1..128 characters, got \"" + id + "\"");
  }
  for (char c : id) {
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '-' || c == '_' || c == '.';
    if (!ok) {
      return absl::InvalidArgumentError("key id \"" + id +
                                        "\" has a character outside [A-Za-z0-9._-]");
    }
  }
  if (id == "." || id == "..")
    return absl::InvalidArgumentError("key id \"" + id + "\" is reserved");
  return absl::OkStatus();
}

}  // namespace trellis::server
