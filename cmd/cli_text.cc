// One-line diagnostics, Go time format and Go gRPC code names.
#include "cmd/cli_text.h"

#include <iterator>

namespace trellis::cmd {

std::string OneLine(std::string text) {
  for (char& c : text) {
    if (c == '\n' || c == '\r') c = ' ';
  }
  return text;
}

std::string GoTime(absl::Time t) {
  return absl::FormatTime("%Y-%m-%d %H:%M:%S +0000 UTC", t, absl::UTCTimeZone());
}

const char* GoCodeName(int code) {
  static constexpr const char* kNames[] = {
      "OK",       "Canceled",       "Unknown",          "InvalidArgument",   "DeadlineExceeded",
      "NotFound", "AlreadyExists",  "PermissionDenied", "ResourceExhausted", "FailedPrecondition",
      "Aborted",  "OutOfRange",     "Unimplemented",    "Internal",          "Unavailable",
      "DataLoss", "Unauthenticated"};
  if (code < 0 || code >= static_cast<int>(std::size(kNames))) return nullptr;
  return kNames[code];
}

}  // namespace trellis::cmd
