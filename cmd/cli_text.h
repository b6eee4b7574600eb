// Text shapes every trellis-server and trellis-agent command prints: one-line diagnostics,
// Go's time format and Go's names for gRPC status codes.
#pragma once

#include <string>

#include "absl/time/time.h"

namespace trellis::cmd {

// `text` with every line break turned into a space, so a diagnostic stays on one line.
std::string OneLine(std::string text);

// "2006-01-02 15:04:05 +0000 UTC", as Go prints a time.Time in UTC.
std::string GoTime(absl::Time t);

// Go's name for a gRPC status code ("Canceled", "PermissionDenied", ...), or nullptr for a
// number outside 0..16.
const char* GoCodeName(int code);

}  // namespace trellis::cmd
