// Duration parsing in the Go syntax SPIRE configs use, with overflow checks.
#include "common/duration.h"

#include <cstdint>
#include <limits>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

namespace trellis::common {

absl::StatusOr<absl::Duration> ParseDuration(std::string_view text) {
  const std::string quoted = "\"" + std::string(text.substr(0, 64)) + "\"";
  if (text.empty()) return absl::InvalidArgumentError("duration is empty");
  if (text == "0") return absl::ZeroDuration();
  if (text.front() == '-') {
    return absl::InvalidArgumentError("duration " + quoted + " is negative");
  }
  absl::Duration total = absl::ZeroDuration();
  size_t i = 0;
  while (i < text.size()) {
    uint64_t whole = 0;
    size_t digits = 0;
    while (i < text.size() && text[i] >= '0' && text[i] <= '9') {
      if (whole > (std::numeric_limits<uint64_t>::max() - 9) / 10) {
        return absl::InvalidArgumentError("duration " + quoted + " is too large");
      }
      whole = whole * 10 + static_cast<uint64_t>(text[i] - '0');
      ++i;
      ++digits;
    }
    double fraction = 0;
    size_t fraction_digits = 0;
    if (i < text.size() && text[i] == '.') {
      ++i;
      double scale = 0.1;
      while (i < text.size() && text[i] >= '0' && text[i] <= '9') {
        fraction += scale * (text[i] - '0');
        scale /= 10;
        ++i;
        ++fraction_digits;
      }
    }
    if (digits == 0 && fraction_digits == 0) {
      return absl::InvalidArgumentError("duration " + quoted +
                                        " must be a number followed by a unit, as \"90s\", "
                                        "\"5m\", \"1h30m\"");
    }
    size_t unit_start = i;
    while (i < text.size() && !(text[i] >= '0' && text[i] <= '9') && text[i] != '.') ++i;
    std::string_view unit = text.substr(unit_start, i - unit_start);
    absl::Duration unit_d;
    if (unit == "ns") {
      unit_d = absl::Nanoseconds(1);
    } else if (unit == "us" || unit == "\xC2\xB5s") {
      unit_d = absl::Microseconds(1);
    } else if (unit == "ms") {
      unit_d = absl::Milliseconds(1);
    } else if (unit == "s") {
      unit_d = absl::Seconds(1);
    } else if (unit == "m") {
      unit_d = absl::Minutes(1);
    } else if (unit == "h") {
      unit_d = absl::Hours(1);
    } else if (unit == "d") {
      unit_d = absl::Hours(24);
    } else if (unit.empty()) {
      return absl::InvalidArgumentError("duration " + quoted +
                                        " is missing a unit (ns, us, ms, s, m, h, d)");
    } else {
      return absl::InvalidArgumentError("duration " + quoted + " has unknown unit \"" +
                                        std::string(unit) + "\" (use ns, us, ms, s, m, h, d)");
    }
    // Cap at roughly 290 years, well inside absl::Duration's range, to refuse absurd values.
    constexpr uint64_t kMaxUnits = 9'000'000'000ULL;
    if (whole > kMaxUnits * (unit_d < absl::Seconds(1) ? 1'000'000'000ULL : 1)) {
      return absl::InvalidArgumentError("duration " + quoted + " is too large");
    }
    total += unit_d * static_cast<int64_t>(whole) + unit_d * fraction;
    if (total > absl::Hours(24 * 365 * 290)) {
      return absl::InvalidArgumentError("duration " + quoted + " is too large");
    }
  }
  return total;
}

std::string DurationToString(absl::Duration d) {
  if (d == absl::ZeroDuration()) return "0s";
  std::string out;
  if (d < absl::ZeroDuration()) {
    out = "-";
    d = -d;
  }
  int64_t hours = absl::IDivDuration(d, absl::Hours(1), &d);
  int64_t minutes = absl::IDivDuration(d, absl::Minutes(1), &d);
  if (hours) absl::StrAppend(&out, hours, "h");
  if (minutes) absl::StrAppend(&out, minutes, "m");
  if (d != absl::ZeroDuration()) absl::StrAppend(&out, absl::FormatDuration(d));
  return out;
}

}  // namespace trellis::common
