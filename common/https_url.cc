// https:// URL parsing.
#include "common/https_url.h"

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"

namespace trellis::common {

int HttpsUrl::PortNumber() const {
  int port_number = 443;
  return absl::SimpleAtoi(port, &port_number) ? port_number : 443;
}

absl::StatusOr<HttpsUrl> ParseHttpsUrl(const std::string& url, std::string_view what_view) {
  const std::string what(what_view);
  if (!absl::StartsWith(url, "https://")) {
    return absl::InvalidArgumentError(what + " must start with https://: " + url);
  }
  std::string rest = url.substr(8);
  HttpsUrl out;
  size_t slash = rest.find('/');
  std::string authority = rest.substr(0, slash);
  if (slash != std::string::npos) out.path = rest.substr(slash);
  if (authority.find('@') != std::string::npos) {
    return absl::InvalidArgumentError(what + " must not carry credentials");
  }
  size_t colon = authority.rfind(':');
  if (colon != std::string::npos && authority.find(']') == std::string::npos) {
    out.port = authority.substr(colon + 1);
    authority = authority.substr(0, colon);
    int port = 0;
    if (!absl::SimpleAtoi(out.port, &port) || port <= 0 || port > 65535) {
      return absl::InvalidArgumentError(what + " has a bad port: " + url);
    }
  }
  if (authority.empty()) return absl::InvalidArgumentError(what + " has no host: " + url);
  out.host = authority;
  if (out.path.find_first_of(" \r\n\t") != std::string::npos) {
    return absl::InvalidArgumentError(what + " path holds whitespace");
  }
  return out;
}

std::string PercentEncode(std::string_view s) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  std::string out;
  out.reserve(s.size());
  for (unsigned char c : s) {
    if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' ||
        c == '.' || c == '_' || c == '~') {
      out.push_back(static_cast<char>(c));
    } else {
      out.push_back('%');
      out.push_back(kHex[c >> 4]);
      out.push_back(kHex[c & 0xf]);
    }
  }
  return out;
}

}  // namespace trellis::common
