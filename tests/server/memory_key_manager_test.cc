// MemoryKeyManager beyond the KeyManager contract: keys live only as long as the instance.
#include "server/memory_key_manager.h"

#include "gtest/gtest.h"
#include "tests/testutil/status_matchers.h"

namespace trellis::server {
namespace {

using testutil::IsOk;
using testutil::StatusIs;

TEST(MemoryKeyManager, GenerateThenGetReturnsSameKey) {
  MemoryKeyManager km;
  auto key = km.GenerateKey("JWT-Signer-x", common::KeyType::kEcP256);
  ASSERT_TRUE(key.ok());
  auto got = km.GetKey("JWT-Signer-x");
  ASSERT_TRUE(got.ok());
  EXPECT_EQ(got->spki_der(), key->spki_der());
  EXPECT_EQ(km.GetKey("other").status().code(), absl::StatusCode::kNotFound);
}
TEST(MemoryKeyManager, NewInstanceHoldsNoKeys) {
  {
    MemoryKeyManager first;
    ASSERT_THAT(first.GenerateKey("x509-CA-a", common::KeyType::kEcP256), IsOk());
  }
  MemoryKeyManager second;
  EXPECT_THAT(second.GetKey("x509-CA-a"), StatusIs(absl::StatusCode::kNotFound));
  auto ids = second.ListKeyIds();
  ASSERT_THAT(ids, IsOk());
  EXPECT_TRUE(ids->empty());
}

}  // namespace
}  // namespace trellis::server
