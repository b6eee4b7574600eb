// The one conversion between absl::Status and grpc::Status: codes map one to one.
#pragma once

#include <grpcpp/support/status.h>

#include "absl/status/status.h"

namespace trellis::transport {

grpc::Status ToGrpcStatus(const absl::Status& status);
absl::Status FromGrpcStatus(const grpc::Status& status);

}  // namespace trellis::transport
