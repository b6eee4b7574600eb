// Target parsing, channel arguments and the failover rotation.
#include "agent/server_connection.h"

#include <grpcpp/grpcpp.h>

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "absl/time/clock.h"

namespace trellis::agent {

namespace v1 = ::trellis::server::v1;

absl::StatusOr<std::vector<std::string>> ServerTargets(const std::string& server_address,
                                                       uint16_t server_port) {
  std::vector<std::string> out;
  for (absl::string_view item : absl::StrSplit(server_address, ',', absl::SkipWhitespace())) {
    std::string host(absl::StripAsciiWhitespace(item));
    if (host.empty()) continue;
    bool has_port = false;
    if (host.front() == '[') {
      has_port = host.find("]:") != std::string::npos;
    } else {
      has_port = std::count(host.begin(), host.end(), ':') == 1;
    }
    out.push_back(has_port ? host : absl::StrCat(host, ":", server_port));
  }
  if (out.empty()) return absl::InvalidArgumentError("agent.server_address is empty");
  return out;
}

bool IsTransient(const absl::Status& s) {
  return s.code() == absl::StatusCode::kUnavailable ||
         s.code() == absl::StatusCode::kDeadlineExceeded ||
         s.code() == absl::StatusCode::kResourceExhausted ||
         s.code() == absl::StatusCode::kAborted || s.code() == absl::StatusCode::kInternal ||
         s.code() == absl::StatusCode::kUnknown || s.code() == absl::StatusCode::kCancelled;
}

void SetDeadline(grpc::ClientContext* ctx, absl::Duration d) {
  ctx->set_deadline(absl::ToChronoTime(absl::Now() + d));
}

ServerConnection::ServerConnection(std::vector<std::string> targets, common::TrustDomain td,
                                   transport::BundleSource bundle)
    : targets_(std::move(targets)), td_(std::move(td)), bundle_(std::move(bundle)) {}

void ServerConnection::SetIdentity(std::optional<transport::TlsIdentity> identity) {
  absl::MutexLock lock(&mu_);
  identity_ = std::move(identity);
  stub_.reset();
}

std::shared_ptr<v1::Agent::Stub> ServerConnection::Stub() {
  absl::MutexLock lock(&mu_);
  if (!stub_) stub_ = MakeStub(targets_[current_], identity_, false);
  return stub_;
}

std::shared_ptr<v1::Agent::Stub> ServerConnection::AnonymousStub(const std::string& target,
                                                                 bool insecure) {
  return MakeStub(target, std::nullopt, insecure);
}

void ServerConnection::Failover() {
  absl::MutexLock lock(&mu_);
  current_ = (current_ + 1) % targets_.size();
  stub_.reset();
}

std::string ServerConnection::CurrentTarget() {
  absl::MutexLock lock(&mu_);
  return targets_[current_];
}

std::shared_ptr<v1::Agent::Stub> ServerConnection::MakeStub(
    const std::string& target, std::optional<transport::TlsIdentity> identity, bool insecure) {
  grpc::ChannelArguments args;
  args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, 5000);
  args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, 500);
  args.SetInt(GRPC_ARG_KEEPALIVE_TIME_MS, 30000);
  // Each channel gets its own subchannel, so an old identity's connection is never reused.
  args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
  auto creds = transport::SpiffeClientCredentials(std::move(identity), bundle_,
                                                  common::ServerId(td_), insecure);
  return std::shared_ptr<v1::Agent::Stub>(
      v1::Agent::NewStub(grpc::CreateCustomChannel("dns:///" + target, creds, args)));
}

}  // namespace trellis::agent
