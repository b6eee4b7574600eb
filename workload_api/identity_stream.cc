// The checks every Workload API call makes, the digests streams compare, and the registry of
// open streams that shutdown walks.
#include "workload_api/identity_stream.h"

#include "absl/strings/str_join.h"
#include "common/status.h"

namespace trellis::workload_api {

std::string WorkloadApiMethod(std::string_view method) {
  return common::GrpcMethodName(SpiffeWorkloadAPI::service_full_name(), method);
}

std::vector<common::LogField> CallerLogFields(const PeerRecord* caller,
                                              const std::vector<std::string>& spiffe_ids) {
  std::vector<common::LogField> out;
  if (caller != nullptr) {
    out.emplace_back("caller_pid", std::to_string(caller->creds.pid));
    out.emplace_back("caller_uid", std::to_string(caller->creds.uid));
  }
  if (!spiffe_ids.empty()) out.emplace_back("caller_id", absl::StrJoin(spiffe_ids, ","));
  return out;
}

void LogCallRefused(const std::string& method, const PeerRecord* caller, const absl::Status& st) {
  common::RpcLogScope rpc(method, CallerLogFields(caller));
  common::LogWarn("Workload API call refused", {{"code", absl::StatusCodeToString(st.code())},
                                                {"error", std::string(st.message())}});
}

void LogIdentitiesServed(const std::string& method, const PeerRecord& caller,
                         const std::vector<std::string>& spiffe_ids) {
  common::RpcLogScope rpc(method, CallerLogFields(&caller, spiffe_ids));
  common::LogDebug("Workload API identities served");
}

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
