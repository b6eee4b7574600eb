// The strict DER reader/writer used by the issuance hot path.
#include "common/der.h"

#include "gtest/gtest.h"

namespace trellis::common::der {
namespace {

using std::string_view_literals::operator""sv;

TEST(DerReader, ReadsNestedElements) {
  Reader r("\x30\x03\x02\x01\x05"sv);
  auto seq = r.Read(kSequence);
  ASSERT_TRUE(seq.ok());
  EXPECT_TRUE(r.empty());
  Reader in(seq->content);
  auto i = in.Read(kInteger);
  ASSERT_TRUE(i.ok());
  EXPECT_EQ(i->content, "\x05"sv);
  EXPECT_EQ(seq->encoded.size(), 5u);
}

TEST(DerReader, WrongTagIsInvalidArgument) {
  Reader r("\x02\x01\x05"sv);
  EXPECT_EQ(r.Read(kSequence).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(DerReader, IndefiniteLengthIsRefused) {
  Reader r("\x30\x80\x00\x00"sv);
  EXPECT_EQ(r.ReadAny().status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(DerReader, NonMinimalLongFormIsRefused) {
  Reader r("\x04\x81\x05hello"sv);
  EXPECT_EQ(r.ReadAny().status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(DerReader, LengthBeyondInputIsRefused) {
  Reader r("\x04\x05hell"sv);
  EXPECT_EQ(r.ReadAny().status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(DerReader, MultiByteTagIsRefused) {
  Reader r("\x1f\x01\x01\x00"sv);
  EXPECT_EQ(r.ReadAny().status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(DerWriter, LongLengthsUseMinimalForm) {
  std::string content(300, 'a');
  std::string tlv = Tlv(kOctetString, content);
  EXPECT_EQ(tlv.substr(0, 4), "\x04\x82\x01\x2c"sv);
  Reader r(tlv);
  EXPECT_EQ(r.Read(kOctetString)->content, content);
}

TEST(DerWriter, UnsignedIntegerPadsHighBit) {
  EXPECT_EQ(UnsignedInteger("\x80"sv), "\x02\x02\x00\x80"sv);
  EXPECT_EQ(UnsignedInteger("\x00\x01"sv), "\x02\x01\x01"sv);
  EXPECT_EQ(UnsignedInteger(""), "\x02\x01\x00"sv);
}

TEST(DerWriter, TimeSwitchesToGeneralizedIn2050) {
  EXPECT_EQ(*Time(0),
            "\x17\x0d"
            "700101000000Z"sv);
  EXPECT_EQ(*Time(2524608000),
            "\x18\x0f"
            "20500101000000Z"sv);
}

}  // namespace
}  // namespace trellis::common::der
