// Strict DER element reading and writing.
#include "common/der.h"

#include <ctime>

#include "absl/status/status.h"
#include "absl/strings/str_format.h"

namespace trellis::common::der {

absl::StatusOr<Element> Reader::ReadAny() {
  if (data_.size() < 2) return absl::InvalidArgumentError("DER: truncated element header");
  const auto* p = reinterpret_cast<const uint8_t*>(data_.data());
  uint8_t tag = p[0];
  if ((tag & 0x1f) == 0x1f) return absl::InvalidArgumentError("DER: multi-byte tags unsupported");
  size_t pos = 2;
  size_t length = p[1];
  if (length & 0x80) {
    size_t n = length & 0x7f;
    if (n == 0) return absl::InvalidArgumentError("DER: indefinite length");
    if (n > 4) return absl::InvalidArgumentError("DER: length too large");
    if (data_.size() < 2 + n) return absl::InvalidArgumentError("DER: truncated length");
    if (p[2] == 0) return absl::InvalidArgumentError("DER: non-minimal length");
    length = 0;
    for (size_t i = 0; i < n; ++i) length = (length << 8) | p[2 + i];
    if (length < 0x80) return absl::InvalidArgumentError("DER: non-minimal length");
    pos += n;
  }
  if (data_.size() - pos < length) return absl::InvalidArgumentError("DER: truncated content");
  Element e;
  e.tag = tag;
  e.content = data_.substr(pos, length);
  e.encoded = data_.substr(0, pos + length);
  data_.remove_prefix(pos + length);
  return e;
}

absl::StatusOr<Element> Reader::Read(uint8_t tag) {
  if (data_.empty()) {
    return absl::InvalidArgumentError(absl::StrFormat("DER: expected tag 0x%02x, got end", tag));
  }
  if (PeekTag() != tag) {
    return absl::InvalidArgumentError(
        absl::StrFormat("DER: expected tag 0x%02x, got 0x%02x", tag, PeekTag()));
  }
  return ReadAny();
}

void AppendLength(std::string* out, size_t length) {
  if (length < 0x80) {
    out->push_back(static_cast<char>(length));
    return;
  }
  char buf[8];
  int n = 0;
  while (length > 0) {
    buf[n++] = static_cast<char>(length & 0xff);
    length >>= 8;
  }
  out->push_back(static_cast<char>(0x80 | n));
  while (n > 0) out->push_back(buf[--n]);
}

void AppendTlv(std::string* out, uint8_t tag, std::string_view content) {
  out->push_back(static_cast<char>(tag));
  AppendLength(out, content.size());
  out->append(content);
}

std::string Tlv(uint8_t tag, std::string_view content) {
  std::string out;
  out.reserve(content.size() + 6);
  AppendTlv(&out, tag, content);
  return out;
}

std::string UnsignedInteger(std::string_view big_endian) {
  while (big_endian.size() > 1 && big_endian[0] == 0) big_endian.remove_prefix(1);
  std::string content;
  if (big_endian.empty()) {
    content.push_back(0);
  } else {
    if (static_cast<uint8_t>(big_endian[0]) & 0x80) content.push_back(0);
    content.append(big_endian);
  }
  return Tlv(kInteger, content);
}

absl::StatusOr<std::string> Time(int64_t unix_seconds) {
  time_t t = static_cast<time_t>(unix_seconds);
  struct tm tm;
  if (gmtime_r(&t, &tm) == nullptr) return absl::InvalidArgumentError("time out of range");
  int year = tm.tm_year + 1900;
  if (year < 1950 || year > 9999) return absl::InvalidArgumentError("time out of range");
  char buf[32];
  if (year < 2050) {
    snprintf(buf, sizeof(buf), "%02d%02d%02d%02d%02d%02dZ", year % 100, tm.tm_mon + 1, tm.tm_mday,
             tm.tm_hour, tm.tm_min, tm.tm_sec);
    return Tlv(kUtcTime, buf);
  }
  snprintf(buf, sizeof(buf), "%04d%02d%02d%02d%02d%02dZ", year, tm.tm_mon + 1, tm.tm_mday,
           tm.tm_hour, tm.tm_min, tm.tm_sec);
  return Tlv(kGeneralizedTime, buf);
}

}  // namespace trellis::common::der
