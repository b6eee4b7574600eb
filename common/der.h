// A minimal strict DER reader and writer for the X.509 issuance hot path, where OpenSSL's
// generic ASN.1 machinery costs more than the signature itself.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"

namespace trellis::common::der {

inline constexpr uint8_t kBoolean = 0x01;
inline constexpr uint8_t kInteger = 0x02;
inline constexpr uint8_t kBitString = 0x03;
inline constexpr uint8_t kOctetString = 0x04;
inline constexpr uint8_t kNull = 0x05;
inline constexpr uint8_t kOid = 0x06;
inline constexpr uint8_t kUtf8String = 0x0c;
inline constexpr uint8_t kPrintableString = 0x13;
inline constexpr uint8_t kIa5String = 0x16;
inline constexpr uint8_t kUtcTime = 0x17;
inline constexpr uint8_t kGeneralizedTime = 0x18;
inline constexpr uint8_t kSequence = 0x30;
inline constexpr uint8_t kSet = 0x31;
// Context-specific tags: constructed [n] is 0xa0 | n, primitive [n] is 0x80 | n.
inline constexpr uint8_t ContextConstructed(int n) { return static_cast<uint8_t>(0xa0 | n); }
inline constexpr uint8_t ContextPrimitive(int n) { return static_cast<uint8_t>(0x80 | n); }

// One parsed element: its tag, its content octets, and the whole encoding (header included).
struct Element {
  uint8_t tag = 0;
  std::string_view content;
  std::string_view encoded;
};

// Reads consecutive DER elements from a buffer. Only single-byte tags and minimal definite
// lengths are accepted, so anything BER-only or truncated is refused.
class Reader {
 public:
  explicit Reader(std::string_view data) : data_(data) {}

  bool empty() const { return data_.empty(); }
  // The next tag without consuming it (0 when empty).
  uint8_t PeekTag() const { return data_.empty() ? 0 : static_cast<uint8_t>(data_[0]); }
  // Consumes the next element; INVALID_ARGUMENT if malformed or its tag differs from `tag`.
  absl::StatusOr<Element> Read(uint8_t tag);
  // Consumes the next element whatever its tag.
  absl::StatusOr<Element> ReadAny();

 private:
  std::string_view data_;
};

// Appends the DER length octets for `length`.
void AppendLength(std::string* out, size_t length);
// Appends tag, length and content.
void AppendTlv(std::string* out, uint8_t tag, std::string_view content);
// Returns tag, length and content as a new string.
std::string Tlv(uint8_t tag, std::string_view content);
// Encodes a non-negative big-endian magnitude as a DER INTEGER (adding a 0x00 pad if needed).
std::string UnsignedInteger(std::string_view big_endian);
// UTCTime before 2050, GeneralizedTime from 2050 on (RFC 5280 4.1.2.5); seconds since epoch.
absl::StatusOr<std::string> Time(int64_t unix_seconds);

}  // namespace trellis::common::der
