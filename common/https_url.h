// https:// URLs as the bundle fetchers accept them.
#pragma once

#include <string>
#include <string_view>

#include "absl/status/statusor.h"

namespace trellis::common {

struct HttpsUrl {
  std::string host;
  std::string port = "443";
  std::string path = "/";
  int PortNumber() const;
};

// Accepts only https://host[:port][/path], without credentials or whitespace.
// INVALID_ARGUMENT naming `what` (the setting or flag the URL came from) and the defect.
absl::StatusOr<HttpsUrl> ParseHttpsUrl(const std::string& url, std::string_view what = "URL");

// Percent-encodes every byte outside RFC 3986's unreserved set (A-Z a-z 0-9 - . _ ~) as %XX
// with upper-case hex: safe for a path segment, a query key or value, and AWS SigV4's
// canonical form.
std::string PercentEncode(std::string_view s);

}  // namespace trellis::common
