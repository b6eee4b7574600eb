// CreateKeyManager: which implementation each KeyManager plugin block yields, and where.
#include "server/key_manager_factory.h"

#include <filesystem>

#include "gtest/gtest.h"
#include "server/disk_key_manager.h"
#include "server/memory_key_manager.h"
#include "tests/testutil/status_matchers.h"
#include "tests/testutil/temp_dir.h"

namespace trellis::server {
namespace {

using testutil::IsOk;
using testutil::TempDir;

TEST(CreateKeyManager, DiskWithoutPathUsesDataDirKeys) {
  TempDir dir;
  auto km = CreateKeyManager(common::config::DiskKeyManagerConfig{}, dir.path());
  ASSERT_TRUE(km.ok()) << km.status();
  ASSERT_TRUE((*km)->GenerateKey("k", common::KeyType::kEcP256).ok());
  EXPECT_TRUE(std::filesystem::exists(dir.path() + "/keys/k.pem"));
}
TEST(CreateKeyManager, DiskWithPathUsesThatPath) {
  TempDir dir;
  const std::string keys = dir.Sub("elsewhere");
  auto km = CreateKeyManager(common::config::DiskKeyManagerConfig{keys}, dir.path());
  ASSERT_THAT(km, IsOk());
  auto* disk = dynamic_cast<DiskKeyManager*>(km->get());
  ASSERT_NE(disk, nullptr);
  EXPECT_EQ(disk->keys_path(), keys);
  ASSERT_THAT((*km)->GenerateKey("k", common::KeyType::kEcP256), IsOk());
  EXPECT_TRUE(std::filesystem::exists(keys + "/k.pem"));
  EXPECT_FALSE(std::filesystem::exists(dir.Sub("keys")));
}

TEST(CreateKeyManager, MemoryWritesNothingToDataDir) {
  TempDir dir;
  auto km = CreateKeyManager(common::config::MemoryKeyManagerConfig{}, dir.path());
  ASSERT_THAT(km, IsOk());
  EXPECT_NE(dynamic_cast<MemoryKeyManager*>(km->get()), nullptr);
  ASSERT_THAT((*km)->GenerateKey("k", common::KeyType::kEcP256), IsOk());
  EXPECT_TRUE(std::filesystem::is_empty(dir.path()));
}

}  // namespace
}  // namespace trellis::server
