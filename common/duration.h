// Duration strings as operators write them in configs and flags ("90s", "5m", "1h30m").
#pragma once

#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace trellis::common {

// Accepts one or more <number><unit> parts with units ns, us, ms, s, m, h (Go syntax),
// plus "d" for days. A bare "0" is zero. Negative durations are refused.
absl::StatusOr<absl::Duration> ParseDuration(std::string_view text);

// Shortest Go-style rendering: "1h30m0s" becomes "1h30m", "0s" for zero.
std::string DurationToString(absl::Duration d);

}  // namespace trellis::common
