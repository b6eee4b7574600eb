// SPIFFE ID and trust domain validation. Rejects, never normalises: path tricks such as
// "../" or "%2e" must fail rather than be rewritten into another identity.
#include "common/spiffe_id.h"

#include <string>

#include "absl/status/status.h"

namespace trellis::common {
namespace {

constexpr std::string_view kScheme = "spiffe://";

bool IsTrustDomainChar(char c) {
  return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '.' || c == '-' || c == '_';
}

bool IsPathChar(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
         c == '.' || c == '-' || c == '_';
}

std::string Quote(std::string_view s) {
  std::string out = "\"";
  for (char c : s.substr(0, 80)) {
    if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) {
      out += '?';
    } else {
      out += c;
    }
  }
  if (s.size() > 80) out += "...";
  return out + "\"";
}

absl::Status ValidateTrustDomainName(std::string_view name) {
  if (name.empty()) return absl::InvalidArgumentError("trust domain is missing");
  if (name.size() > kMaxTrustDomainLength) {
    return absl::InvalidArgumentError("trust domain is longer than 255 bytes");
  }
  for (char c : name) {
    if (IsTrustDomainChar(c)) continue;
    if (c >= 'A' && c <= 'Z') {
      return absl::InvalidArgumentError("trust domain " + Quote(name) +
                                        " contains an uppercase letter; only lowercase "
                                        "letters, digits, '.', '-' and '_' are allowed");
    }
    if (c == ':') {
      return absl::InvalidArgumentError("trust domain " + Quote(name) +
                                        " contains ':'; a port is not allowed");
    }
    if (c == '@') {
      return absl::InvalidArgumentError("trust domain " + Quote(name) +
                                        " contains '@'; userinfo is not allowed");
    }
    if (c == '%') {
      return absl::InvalidArgumentError("trust domain " + Quote(name) +
                                        " contains '%'; percent-encoding is not allowed");
    }
    return absl::InvalidArgumentError("trust domain " + Quote(name) +
                                      " contains a character outside [a-z0-9._-]");
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status ValidatePath(std::string_view path) {
  if (path.empty()) return absl::OkStatus();
  if (path.front() != '/') return absl::InvalidArgumentError("path must start with '/'");
  if (path.back() == '/') {
    return absl::InvalidArgumentError("path " + Quote(path) + " has a trailing '/'");
  }
  size_t start = 1;
  while (start <= path.size()) {
    size_t end = path.find('/', start);
    if (end == std::string_view::npos) end = path.size();
    std::string_view segment = path.substr(start, end - start);
    if (segment.empty()) {
      return absl::InvalidArgumentError("path " + Quote(path) + " has an empty segment");
    }
    if (segment == "." || segment == "..") {
      return absl::InvalidArgumentError("path " + Quote(path) + " has a '" +
                                        std::string(segment) + "' segment");
    }
    for (char c : segment) {
      if (IsPathChar(c)) continue;
      if (c == '%') {
        return absl::InvalidArgumentError("path " + Quote(path) +
                                          " contains '%'; percent-encoding is not allowed");
      }
      if (c == '?') {
        return absl::InvalidArgumentError("ID contains '?'; a query is not allowed");
      }
      if (c == '#') {
        return absl::InvalidArgumentError("ID contains '#'; a fragment is not allowed");
      }
      return absl::InvalidArgumentError("path " + Quote(path) +
                                        " contains a character outside [a-zA-Z0-9._-]");
    }
    start = end + 1;
  }
  return absl::OkStatus();
}

absl::StatusOr<TrustDomain> TrustDomain::Parse(std::string_view input) {
  std::string_view name = input;
  if (name.find(':') != std::string_view::npos || name.find('/') != std::string_view::npos) {
    // Only the full ID form may carry a scheme; anything else is rejected below.
    if (name.substr(0, kScheme.size()) == kScheme) {
      name.remove_prefix(kScheme.size());
      if (name.find('/') != std::string_view::npos) {
        return absl::InvalidArgumentError("trust domain ID " + Quote(input) +
                                          " must not have a path");
      }
    } else if (name.find("://") != std::string_view::npos) {
      return absl::InvalidArgumentError("trust domain " + Quote(input) +
                                        " has a scheme other than spiffe://");
    }
  }
  auto status = ValidateTrustDomainName(name);
  if (!status.ok()) return status;
  return TrustDomain(std::string(name));
}

absl::StatusOr<SpiffeId> SpiffeId::Parse(std::string_view input) {
  if (input.empty()) return absl::InvalidArgumentError("SPIFFE ID is empty");
  if (input.size() > kMaxSpiffeIdLength) {
    return absl::InvalidArgumentError("SPIFFE ID is longer than 2048 bytes");
  }
  if (input.substr(0, kScheme.size()) != kScheme) {
    // Report a wrong-case scheme distinctly: it is the most common mistake.
    std::string lowered(input.substr(0, kScheme.size()));
    for (auto& c : lowered) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    if (lowered == kScheme) {
      return absl::InvalidArgumentError("SPIFFE ID " + Quote(input) +
                                        ": scheme must be exactly lowercase \"spiffe\"");
    }
    return absl::InvalidArgumentError("SPIFFE ID " + Quote(input) +
                                      " must start with \"spiffe://\"");
  }
  std::string_view rest = input.substr(kScheme.size());
  size_t slash = rest.find('/');
  std::string_view td_part = rest.substr(0, slash);
  std::string_view path = slash == std::string_view::npos ? std::string_view() : rest.substr(slash);
  // Query and fragment may appear in the authority part too.
  if (td_part.find('?') != std::string_view::npos) {
    return absl::InvalidArgumentError("SPIFFE ID " + Quote(input) +
                                      " contains '?'; a query is not allowed");
  }
  if (td_part.find('#') != std::string_view::npos) {
    return absl::InvalidArgumentError("SPIFFE ID " + Quote(input) +
                                      " contains '#'; a fragment is not allowed");
  }
  auto status = ValidateTrustDomainName(td_part);
  if (!status.ok()) {
    return absl::InvalidArgumentError("SPIFFE ID " + Quote(input) + ": " +
                                      std::string(status.message()));
  }
  status = ValidatePath(path);
  if (!status.ok()) {
    return absl::InvalidArgumentError("SPIFFE ID " + Quote(input) + ": " +
                                      std::string(status.message()));
  }
  return SpiffeId(TrustDomain(std::string(td_part)), std::string(path));
}

absl::StatusOr<SpiffeId> SpiffeId::FromPath(const TrustDomain& td, std::string_view path) {
  auto status = ValidatePath(path);
  if (!status.ok()) return status;
  if (td.IdString().size() + path.size() > kMaxSpiffeIdLength) {
    return absl::InvalidArgumentError("SPIFFE ID would be longer than 2048 bytes");
  }
  return SpiffeId(td, std::string(path));
}

bool SpiffeId::IsServerIdText(std::string_view id) {
  constexpr std::string_view kScheme = "spiffe://";
  if (id.substr(0, kScheme.size()) != kScheme) return false;
  size_t path = id.find('/', kScheme.size());
  return path != std::string_view::npos && id.substr(path) == kServerPath;
}

SpiffeId ServerId(const TrustDomain& td) { return *SpiffeId::FromPath(td, "/spire/server"); }

absl::StatusOr<SpiffeId> AgentId(const TrustDomain& td, std::string_view attestor,
                                 std::string_view id) {
  return SpiffeId::FromPath(td, "/spire/agent/" + std::string(attestor) + "/" + std::string(id));
}

}  // namespace trellis::common
