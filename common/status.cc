// Status annotation helpers.
#include "common/status.h"

#include <string>

namespace trellis {

absl::Status Annotate(const absl::Status& status, const std::string& context) {
  if (status.ok()) return status;
  return absl::Status(status.code(), context + ": " + std::string(status.message()));
}

}  // namespace trellis
