// DiskKeyManager beyond the KeyManager contract: files, modes, loose-file refusal, restarts.
#include "server/disk_key_manager.h"

#include <sys/stat.h>

#include "common/file_util.h"
#include "gtest/gtest.h"
#include "tests/testutil/temp_dir.h"

namespace trellis::server {
namespace {

using testutil::TempDir;

mode_t ModeOf(const std::string& path) {
  struct stat st;
  EXPECT_EQ(stat(path.c_str(), &st), 0) << path;
  return st.st_mode & 0777;
}

TEST(DiskKeyManager, KeySurvivesRestart) {
  TempDir dir;
  const std::string keys = dir.path() + "/keys";
  std::string spki;
  {
    auto km = DiskKeyManager::Create(keys);
    ASSERT_TRUE(km.ok()) << km.status();
    auto key = (*km)->GenerateKey("x509-CA-abc", common::KeyType::kEcP256);
    ASSERT_TRUE(key.ok()) << key.status();
    spki = key->spki_der();
  }
  auto km = DiskKeyManager::Create(keys);
  ASSERT_TRUE(km.ok());
  auto again = (*km)->GetKey("x509-CA-abc");
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_EQ(again->spki_der(), spki);
}

TEST(DiskKeyManager, WritesKey0600InDir0700) {
  TempDir dir;
  const std::string keys = dir.path() + "/keys";
  auto km = DiskKeyManager::Create(keys);
  ASSERT_TRUE(km.ok());
  ASSERT_TRUE((*km)->GenerateKey("JWT-Signer-k1", common::KeyType::kEcP256).ok());
  EXPECT_EQ(ModeOf(keys), 0700u);
  EXPECT_EQ(ModeOf(keys + "/JWT-Signer-k1.pem"), 0600u);
}

TEST(DiskKeyManager, StoresPkcs8Pem) {
  TempDir dir;
  auto km = DiskKeyManager::Create(dir.path() + "/keys");
  ASSERT_TRUE(km.ok());
  ASSERT_TRUE((*km)->GenerateKey("k", common::KeyType::kEcP256).ok());
  auto pem = common::ReadFile(dir.path() + "/keys/k.pem");
  ASSERT_TRUE(pem.ok());
  EXPECT_EQ(pem->rfind("-----BEGIN PRIVATE KEY-----", 0), 0u);
}

TEST(DiskKeyManager, RefusesKeyFileReadableByOthers) {
  TempDir dir;
  auto km = DiskKeyManager::Create(dir.path() + "/keys");
  ASSERT_TRUE(km.ok());
  ASSERT_TRUE((*km)->GenerateKey("k", common::KeyType::kEcP256).ok());
  ASSERT_EQ(chmod((dir.path() + "/keys/k.pem").c_str(), 0644), 0);
  auto key = (*km)->GetKey("k");
  EXPECT_EQ(key.status().code(), absl::StatusCode::kFailedPrecondition);
}

TEST(DiskKeyManager, MissingKeyIsNotFound) {
  TempDir dir;
  auto km = DiskKeyManager::Create(dir.path() + "/keys");
  ASSERT_TRUE(km.ok());
  EXPECT_EQ((*km)->GetKey("nope").status().code(), absl::StatusCode::kNotFound);
}

TEST(DiskKeyManager, RejectsIdThatEscapesTheDirectory) {
  TempDir dir;
  auto km = DiskKeyManager::Create(dir.path() + "/keys");
  ASSERT_TRUE(km.ok());
  EXPECT_EQ((*km)->GenerateKey("../evil", common::KeyType::kEcP256).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(DiskKeyManager, GenerateReplacesExistingKey) {
  TempDir dir;
  auto km = DiskKeyManager::Create(dir.path() + "/keys");
  ASSERT_TRUE(km.ok());
  auto first = (*km)->GenerateKey("k", common::KeyType::kEcP256);
  auto second = (*km)->GenerateKey("k", common::KeyType::kEcP256);
  ASSERT_TRUE(first.ok() && second.ok());
  EXPECT_NE(first->spki_der(), second->spki_der());
  EXPECT_EQ((*km)->GetKey("k")->spki_der(), second->spki_der());
}

TEST(DiskKeyManager, ListAndDelete) {
  TempDir dir;
  auto km = DiskKeyManager::Create(dir.path() + "/keys");
  ASSERT_TRUE(km.ok());
  ASSERT_TRUE((*km)->GenerateKey("b", common::KeyType::kEcP256).ok());
  ASSERT_TRUE((*km)->GenerateKey("a", common::KeyType::kEcP256).ok());
  EXPECT_EQ(*(*km)->ListKeyIds(), (std::vector<std::string>{"a", "b"}));
  ASSERT_TRUE((*km)->DeleteKey("a").ok());
  EXPECT_EQ(*(*km)->ListKeyIds(), (std::vector<std::string>{"b"}));
  EXPECT_EQ((*km)->GetKey("a").status().code(), absl::StatusCode::kNotFound);
}

TEST(DiskKeyManager, ListAfterRestartNamesEveryKeyAndSkipsOtherFiles) {
  TempDir dir;
  const std::string keys = dir.path() + "/keys";
  {
    auto km = DiskKeyManager::Create(keys);
    ASSERT_TRUE(km.ok()) << km.status();
    ASSERT_TRUE((*km)->GenerateKey("x509-CA-a", common::KeyType::kEcP256).ok());
    ASSERT_TRUE((*km)->GenerateKey("JWT-Signer-b", common::KeyType::kEcP256).ok());
  }
  ASSERT_TRUE(common::WritePrivateFile(keys + "/notes.txt", "not a key").ok());
  ASSERT_TRUE(common::WritePrivateFile(keys + "/bad id.pem", "not a key either").ok());
  auto km = DiskKeyManager::Create(keys);
  ASSERT_TRUE(km.ok()) << km.status();
  auto ids = (*km)->ListKeyIds();
  ASSERT_TRUE(ids.ok()) << ids.status();
  EXPECT_EQ(*ids, (std::vector<std::string>{"JWT-Signer-b", "x509-CA-a"}));
}

TEST(DiskKeyManager, CreateTightensAnExistingLooseDirectory) {
  TempDir dir;
  const std::string keys = dir.path() + "/keys";
  ASSERT_EQ(mkdir(keys.c_str(), 0755), 0);
  ASSERT_EQ(chmod(keys.c_str(), 0755), 0);
  auto km = DiskKeyManager::Create(keys);
  ASSERT_TRUE(km.ok()) << km.status();
  EXPECT_EQ(ModeOf(keys), 0700u);
}

TEST(DiskKeyManager, CreateRefusesAnEmptyPath) {
  EXPECT_EQ(DiskKeyManager::Create("").status().code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace trellis::server
