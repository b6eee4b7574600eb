// The checks every Workload API call makes, the digests streams compare, and the registry of
// open streams that shutdown walks.
#include "workload_api/identity_stream.h"

#include "common/status.h"

namespace trellis::workload_api {

absl::Status CheckHeader(const grpc::ServerContext& ctx) {
  auto range = ctx.client_metadata().equal_range("workload.spiffe.io");
  int count = 0;
  bool is_true = false;
  for (auto it = range.first; it != range.second; ++it) {
    ++count;
    is_true = std::string_view(it->second.data(), it->second.size()) == "true";
  }
  if (count != 1 || !is_true) {
    return absl::InvalidArgumentError("security header missing from request");
  }
  return absl::OkStatus();
}

absl::StatusOr<PeerRecord> CheckedCaller(const grpc::ServerContext& ctx, PeerListener* peers) {
  TRELLIS_RETURN_IF_ERROR(CheckHeader(ctx));
  return peers->Lookup(ctx.peer());
}

std::string DigestOf(const google::protobuf::MessageLite& msg) {
  std::string bytes = msg.SerializeAsString();
  std::string digest = common::Sha256(bytes);
  WipeString(&bytes);
  return digest;
}

void StreamRegistry::Add(const void* key, std::function<void()> closer) {
  absl::MutexLock lock(&mu_);
  open_[key] = std::move(closer);
}

void StreamRegistry::Remove(const void* key) {
  absl::MutexLock lock(&mu_);
  open_.erase(key);
}

void StreamRegistry::CloseAll() {
  std::vector<std::function<void()>> closers;
  {
    absl::MutexLock lock(&mu_);
    for (auto& [key, fn] : open_) closers.push_back(fn);
  }
  for (auto& fn : closers) fn();
}

}  // namespace trellis::workload_api
