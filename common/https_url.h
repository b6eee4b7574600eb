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

}  // namespace trellis::common
