// The JWT-SVID cache policy and the NewJWTSVID call behind it.
#include "agent/jwt_svid_cache.h"

#include <grpcpp/grpcpp.h>

#include <algorithm>
#include <nlohmann/json.hpp>
#include <optional>

#include "absl/strings/str_join.h"
#include "common/jwt.h"
#include "transport/grpc_status.h"

namespace trellis::agent {
namespace {

namespace v1 = ::trellis::server::v1;

// The "kid" of a compact JWS header ("" when absent or unreadable).
std::string TokenKid(const std::string& token) {
  // The server signed it; a token we cannot read just never matches a tainted kid.
  absl::StatusOr<common::UnverifiedJwt> jwt = common::PeekJwt(token);
  if (!jwt.ok()) return "";
  const nlohmann::json& header = jwt->header;
  if (!header.is_object() || !header.contains("kid") || !header["kid"].is_string()) return "";
  return header["kid"].get<std::string>();
}

}  // namespace

absl::StatusOr<std::string> JwtSvidCache::Fetch(const workload_api::CachedEntry& entry,
                                                const std::vector<std::string>& audience) {
  std::vector<std::string> sorted(audience);
  std::sort(sorted.begin(), sorted.end());
  sorted.erase(std::unique(sorted.begin(), sorted.end()), sorted.end());
  const std::string key = std::string(entry.id()) + "\n" + absl::StrJoin(sorted, "\n");
  absl::Time now = clock_.Now();
  std::optional<Item> cached;
  {
    absl::MutexLock lock(&mu_);
    auto it = items_.find(key);
    if (it != items_.end()) {
      if (now < it->second.renew_at) return it->second.token;
      cached = it->second;
    }
  }
  v1::NewJWTSVIDRequest req;
  req.set_entry_id(std::string(entry.id()));
  for (const auto& a : sorted) req.add_audience(a);
  v1::NewJWTSVIDResponse resp;
  grpc::ClientContext ctx;
  // Waits out a reconnect in progress instead of failing at once while the channel backs off.
  ctx.set_wait_for_ready(true);
  SetDeadline(&ctx, cached ? absl::Seconds(2) : absl::Seconds(8));
  grpc::Status s = conn_->Stub()->NewJWTSVID(&ctx, req, &resp);
  if (!s.ok()) {
    // Still valid: better than nothing while the server is away.
    if (cached && now < cached->expires_at) return cached->token;
    absl::Status st = transport::FromGrpcStatus(s);
    return IsTransient(st) ? absl::UnavailableError(std::string(st.message())) : st;
  }
  Item item;
  item.token = resp.svid().token();
  item.kid = TokenKid(item.token);
  absl::Time issued =
      resp.svid().issued_at() > 0 ? absl::FromUnixSeconds(resp.svid().issued_at()) : now;
  item.expires_at = absl::FromUnixSeconds(resp.svid().expires_at());
  item.renew_at = issued + (item.expires_at - issued) / 2;
  absl::MutexLock lock(&mu_);
  for (auto it = items_.begin(); it != items_.end();) {
    it = now >= it->second.expires_at ? items_.erase(it) : std::next(it);
  }
  items_[key] = item;
  return item.token;
}

void JwtSvidCache::DropSignedBy(const std::set<std::string>& kids) {
  absl::MutexLock lock(&mu_);
  for (auto it = items_.begin(); it != items_.end();) {
    it = kids.count(it->second.kid) ? items_.erase(it) : std::next(it);
  }
}

void JwtSvidCache::DropEntries(const std::vector<std::string>& entry_ids) {
  if (entry_ids.empty()) return;
  absl::MutexLock lock(&mu_);
  for (auto it = items_.begin(); it != items_.end();) {
    std::string entry_id = it->first.substr(0, it->first.find('\n'));
    if (std::find(entry_ids.begin(), entry_ids.end(), entry_id) != entry_ids.end()) {
      it = items_.erase(it);
    } else {
      ++it;
    }
  }
}

size_t JwtSvidCache::Size() const {
  absl::MutexLock lock(&mu_);
  return items_.size();
}

}  // namespace trellis::agent
