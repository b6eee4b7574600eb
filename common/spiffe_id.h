// SPIFFE trust domains and IDs that cannot hold an invalid value (SPIFFE ID spec).
#pragma once

#include <compare>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"

namespace trellis::common {

inline constexpr size_t kMaxTrustDomainLength = 255;
inline constexpr size_t kMaxSpiffeIdLength = 2048;

class TrustDomain {
 public:
  // Accepts a bare name ("example.org") or its ID form ("spiffe://example.org").
  static absl::StatusOr<TrustDomain> Parse(std::string_view input);

  const std::string& name() const { return name_; }
  // "spiffe://<name>", the form used as bundle map keys and CA URI SANs.
  std::string IdString() const { return "spiffe://" + name_; }

  auto operator<=>(const TrustDomain&) const = default;

 private:
  friend class SpiffeId;
  explicit TrustDomain(std::string name) : name_(std::move(name)) {}
  std::string name_;
};

class SpiffeId {
 public:
  // Strict parse: rejects rather than normalises anything outside the spec.
  static absl::StatusOr<SpiffeId> Parse(std::string_view input);
  // Builds "spiffe://<td><path>"; path is empty or starts with '/'.
  static absl::StatusOr<SpiffeId> FromPath(const TrustDomain& td, std::string_view path);

  const TrustDomain& trust_domain() const { return trust_domain_; }
  // Empty for the trust domain's own ID, otherwise starts with '/'.
  const std::string& path() const { return path_; }
  std::string String() const { return trust_domain_.IdString() + path_; }
  bool IsTrustDomainId() const { return path_.empty(); }
  // True for spiffe://<td>/spire/server, the reserved server identity.
  bool IsServerId() const { return path_ == kServerPath; }
  // The same test on an ID already validated (a stored entry's), without parsing it.
  static bool IsServerIdText(std::string_view id);
  // True for IDs under spiffe://<td>/spire/agent/.
  bool IsAgentId() const { return path_.rfind("/spire/agent/", 0) == 0; }
  bool MemberOf(const TrustDomain& td) const { return trust_domain_ == td; }

  auto operator<=>(const SpiffeId&) const = default;

 private:
  static constexpr std::string_view kServerPath = "/spire/server";
  SpiffeId(TrustDomain td, std::string path) : trust_domain_(std::move(td)), path_(std::move(path)) {}
  TrustDomain trust_domain_;
  std::string path_;
};

// The reserved IDs SPIRE operators script against.
SpiffeId ServerId(const TrustDomain& td);
absl::StatusOr<SpiffeId> AgentId(const TrustDomain& td, std::string_view attestor,
                                 std::string_view id);

// Validates a path on its own ("" or "/a/b"), with the same rules as Parse.
absl::Status ValidatePath(std::string_view path);

}  // namespace trellis::common
