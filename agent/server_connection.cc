// Target parsing, channel arguments and the failover rotation.
#include "agent/server_connection.h"

#include <grpcpp/grpcpp.h>

#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <sys/socket.h>

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

std::vector<std::string> ResolveTarget(const std::string& target) {
  std::string host = target, port;
  if (size_t colon = target.rfind(':'); colon != std::string::npos) {
    host = target.substr(0, colon);
    port = target.substr(colon + 1);
  }
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') {
    host = host.substr(1, host.size() - 2);
  }
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* found = nullptr;
  std::vector<std::string> out;
  if (::getaddrinfo(host.c_str(), port.c_str(), &hints, &found) != 0 || found == nullptr) {
    return {"dns:///" + target};
  }
  for (addrinfo* a = found; a != nullptr; a = a->ai_next) {
    char text[INET6_ADDRSTRLEN] = {};
    std::string item;
    if (a->ai_family == AF_INET) {
      auto* in = reinterpret_cast<sockaddr_in*>(a->ai_addr);
      if (::inet_ntop(AF_INET, &in->sin_addr, text, sizeof(text)) == nullptr) continue;
      item = absl::StrCat("ipv4:", text, ":", port);
    } else if (a->ai_family == AF_INET6) {
      auto* in6 = reinterpret_cast<sockaddr_in6*>(a->ai_addr);
      if (::inet_ntop(AF_INET6, &in6->sin6_addr, text, sizeof(text)) == nullptr) continue;
      item = absl::StrCat("ipv6:[", text, "]:", port);
    } else {
      continue;
    }
    if (std::find(out.begin(), out.end(), item) == out.end()) out.push_back(std::move(item));
  }
  ::freeaddrinfo(found);
  if (out.empty()) out.push_back("dns:///" + target);
  return out;
}

ServerConnection::ServerConnection(std::vector<std::string> targets, common::TrustDomain td,
                                   transport::BundleSource bundle, ConnectionPolicy policy)
    : targets_(std::move(targets)),
      td_(std::move(td)),
      bundle_(std::move(bundle)),
      policy_(policy),
      rng_(std::random_device{}()) {
  absl::MutexLock lock(&mu_);
  RepickLocked(/*avoid_current=*/false);
}

std::vector<std::string> ServerConnection::TargetsFromCurrent() {
  absl::MutexLock lock(&mu_);
  std::vector<std::string> out;
  for (size_t i = 0; i < targets_.size(); ++i) {
    out.push_back(targets_[(current_ + i) % targets_.size()]);
  }
  return out;
}

void ServerConnection::SetIdentity(std::optional<transport::TlsIdentity> identity) {
  absl::MutexLock lock(&mu_);
  identity_ = std::move(identity);
  stub_.reset();
}

absl::Time ServerConnection::NextRotationLocked() {
  if (policy_.max_age <= absl::ZeroDuration()) return absl::InfiniteFuture();
  std::uniform_real_distribution<double> spread(1.0 - policy_.jitter, 1.0 + policy_.jitter);
  return absl::Now() + policy_.max_age * spread(rng_);
}

void ServerConnection::RepickLocked(bool avoid_current, std::optional<size_t> only_target) {
  // Every address of every target is one choice, so a name resolving to three replicas
  // weighs as much as three names.
  std::vector<std::pair<size_t, std::string>> choices;
  for (size_t i = 0; i < targets_.size(); ++i) {
    if (only_target && i != *only_target) continue;
    for (std::string& a : ResolveTarget(targets_[i])) choices.emplace_back(i, std::move(a));
  }
  std::vector<std::pair<size_t, std::string>> others;
  if (avoid_current) {
    for (const auto& c : choices) {
      if (c.second != address_) others.push_back(c);
    }
  }
  const auto& pool = others.empty() ? choices : others;
  std::uniform_int_distribution<size_t> pick(0, pool.size() - 1);
  const auto& chosen = pool[pick(rng_)];
  current_ = chosen.first;
  // An aged connection that lands on the same address keeps its channel; a failover always
  // starts a fresh one.
  if (avoid_current || chosen.second != address_) stub_.reset();
  address_ = chosen.second;
  rotate_at_ = NextRotationLocked();
}

std::shared_ptr<v1::Agent::Stub> ServerConnection::Stub() {
  bool switched = false;
  std::shared_ptr<v1::Agent::Stub> stub;
  {
    absl::MutexLock lock(&mu_);
    if (absl::Now() >= rotate_at_) {
      std::string before = address_;
      RepickLocked(/*avoid_current=*/false);
      switched = address_ != before;
    }
    if (!stub_) stub_ = MakeStub(address_, identity_, false);
    stub = stub_;
  }
  if (switched) NotifySwitch();
  return stub;
}

std::shared_ptr<v1::Agent::Stub> ServerConnection::AnonymousStub(const std::string& target,
                                                                 bool insecure) {
  return MakeStub("dns:///" + target, std::nullopt, insecure);
}

void ServerConnection::Failover() {
  {
    absl::MutexLock lock(&mu_);
    RepickLocked(/*avoid_current=*/true);
  }
  NotifySwitch();
}

void ServerConnection::Prefer(const std::string& target) {
  absl::MutexLock lock(&mu_);
  if (targets_[current_] == target) return;
  for (size_t i = 0; i < targets_.size(); ++i) {
    if (targets_[i] == target) return RepickLocked(/*avoid_current=*/false, i);
  }
}

std::string ServerConnection::CurrentTarget() {
  absl::MutexLock lock(&mu_);
  return targets_[current_];
}

std::string ServerConnection::CurrentAddress() {
  absl::MutexLock lock(&mu_);
  return address_;
}

void ServerConnection::SetSwitchListener(std::function<void()> listener) {
  absl::MutexLock lock(&mu_);
  switch_listener_ = std::move(listener);
}

void ServerConnection::NotifySwitch() {
  std::function<void()> listener;
  {
    absl::MutexLock lock(&mu_);
    listener = switch_listener_;
  }
  if (listener) listener();
}

std::shared_ptr<v1::Agent::Stub> ServerConnection::MakeStub(
    const std::string& address, std::optional<transport::TlsIdentity> identity, bool insecure) {
  grpc::ChannelArguments args;
  args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, 5000);
  args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, 500);
  args.SetInt(GRPC_ARG_KEEPALIVE_TIME_MS, 30000);
  // Each channel gets its own subchannel, so an old identity's connection is never reused.
  args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
  auto creds = transport::SpiffeClientCredentials(std::move(identity), bundle_,
                                                  common::ServerId(td_), insecure);
  return std::shared_ptr<v1::Agent::Stub>(
      v1::Agent::NewStub(grpc::CreateCustomChannel(address, creds, args)));
}

}  // namespace trellis::agent
