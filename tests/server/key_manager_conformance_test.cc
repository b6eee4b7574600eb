// The KeyManager contract, run against every implementation (disk and memory).
#include <algorithm>
#include <atomic>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/barrier.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/disk_key_manager.h"
#include "server/key_manager.h"
#include "server/memory_key_manager.h"
#include "tests/testutil/status_matchers.h"
#include "tests/testutil/temp_dir.h"

namespace trellis::server {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::UnorderedElementsAre;
using testutil::IsOk;
using testutil::StatusIs;
using testutil::TempDir;

// One implementation under test: its name and how to open it in a fresh directory. Opening
// twice on the same directory gives what a restarted server would see.
struct KeyManagerKind {
  std::string name;
  std::function<absl::StatusOr<std::unique_ptr<KeyManager>>(const std::string& dir)> open;
};

const KeyManagerKind kDisk{"Disk", [](const std::string& dir) {
                             return absl::StatusOr<std::unique_ptr<KeyManager>>(
                                 DiskKeyManager::Create(dir + "/keys"));
                           }};
const KeyManagerKind kMemory{"Memory", [](const std::string&) {
                               return absl::StatusOr<std::unique_ptr<KeyManager>>(
                                   std::make_unique<MemoryKeyManager>());
                             }};

class KeyManagerConformance : public ::testing::TestWithParam<KeyManagerKind> {
 protected:
  void SetUp() override {
    auto km = GetParam().open(dir_.path());
    ASSERT_THAT(km, IsOk());
    km_ = std::move(*km);
  }

  common::PrivateKey Generate(const std::string& id,
                              common::KeyType type = common::KeyType::kEcP256) {
    auto key = km_->GenerateKey(id, type);
    EXPECT_THAT(key, IsOk()) << id;
    if (!key.ok()) std::abort();
    return *std::move(key);
  }

  TempDir dir_{"trellis-km"};
  std::unique_ptr<KeyManager> km_;
};

TEST_P(KeyManagerConformance, GetReturnsTheGeneratedKey) {
  common::PrivateKey generated = Generate("x509-CA-a");
  auto got = km_->GetKey("x509-CA-a");
  ASSERT_THAT(got, IsOk());
  EXPECT_EQ(got->spki_der(), generated.spki_der());
  EXPECT_EQ(got->type(), common::KeyType::kEcP256);
}

TEST_P(KeyManagerConformance, GeneratesEveryRequestedKeyType) {
  for (common::KeyType type :
       {common::KeyType::kEcP256, common::KeyType::kEcP384, common::KeyType::kRsa2048}) {
    const std::string id = "JWT-Signer-" + common::KeyTypeName(type);
    common::PrivateKey generated = Generate(id, type);
    EXPECT_EQ(generated.type(), type);
    auto got = km_->GetKey(id);
    ASSERT_THAT(got, IsOk()) << id;
    EXPECT_EQ(got->type(), type) << id;
    EXPECT_EQ(got->spki_der(), generated.spki_der()) << id;
  }
}

TEST_P(KeyManagerConformance, StoredKeySignsForTheGeneratedPublicKey) {
  common::PrivateKey generated = Generate("JWT-Signer-s");
  auto got = km_->GetKey("JWT-Signer-s");
  ASSERT_THAT(got, IsOk());
  const std::string data = "to be signed";
  auto signature = got->Sign(data);
  ASSERT_THAT(signature, IsOk());
  EXPECT_THAT(generated.public_key().Verify(data, *signature, generated.DefaultHash()), IsOk());
  EXPECT_THAT(generated.public_key().Verify("other data", *signature, generated.DefaultHash()),
              StatusIs(absl::StatusCode::kUnauthenticated));
}

TEST_P(KeyManagerConformance, GenerateUnderTheSameIdReplacesTheKey) {
  common::PrivateKey first = Generate("x509-CA-r");
  common::PrivateKey second = Generate("x509-CA-r");
  EXPECT_NE(first.spki_der(), second.spki_der());
  auto got = km_->GetKey("x509-CA-r");
  ASSERT_THAT(got, IsOk());
  EXPECT_EQ(got->spki_der(), second.spki_der());
  EXPECT_THAT(km_->ListKeyIds(), IsOk());
  EXPECT_THAT(*km_->ListKeyIds(), ElementsAre("x509-CA-r"));
}

TEST_P(KeyManagerConformance, AbsentIdIsNotFound) {
  EXPECT_THAT(km_->GetKey("x509-CA-none"), StatusIs(absl::StatusCode::kNotFound));
  Generate("x509-CA-other");
  EXPECT_THAT(km_->GetKey("x509-CA-none"),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr("x509-CA-none")));
}

TEST_P(KeyManagerConformance, NothingIsListedBeforeTheFirstKey) {
  auto ids = km_->ListKeyIds();
  ASSERT_THAT(ids, IsOk());
  EXPECT_THAT(*ids, IsEmpty());
}

TEST_P(KeyManagerConformance, ListNamesEveryStoredIdInOrder) {
  Generate("JWT-Signer-b");
  Generate("x509-CA-a");
  Generate("JWT-Signer-a");
  auto ids = km_->ListKeyIds();
  ASSERT_THAT(ids, IsOk());
  EXPECT_THAT(*ids, ElementsAre("JWT-Signer-a", "JWT-Signer-b", "x509-CA-a"));
}

TEST_P(KeyManagerConformance, DeleteRemovesOnlyThatKey) {
  Generate("x509-CA-keep");
  Generate("x509-CA-drop");
  ASSERT_THAT(km_->DeleteKey("x509-CA-drop"), IsOk());
  EXPECT_THAT(km_->GetKey("x509-CA-drop"), StatusIs(absl::StatusCode::kNotFound));
  EXPECT_THAT(km_->GetKey("x509-CA-keep"), IsOk());
  EXPECT_THAT(*km_->ListKeyIds(), ElementsAre("x509-CA-keep"));
}

TEST_P(KeyManagerConformance, DeletingAnAbsentIdIsOk) {
  EXPECT_THAT(km_->DeleteKey("x509-CA-never"), IsOk());
  Generate("x509-CA-once");
  ASSERT_THAT(km_->DeleteKey("x509-CA-once"), IsOk());
  EXPECT_THAT(km_->DeleteKey("x509-CA-once"), IsOk());
}

TEST_P(KeyManagerConformance, DeletedIdCanBeGeneratedAgain) {
  common::PrivateKey first = Generate("JWT-Signer-again");
  ASSERT_THAT(km_->DeleteKey("JWT-Signer-again"), IsOk());
  common::PrivateKey second = Generate("JWT-Signer-again");
  EXPECT_NE(first.spki_der(), second.spki_der());
  EXPECT_EQ(km_->GetKey("JWT-Signer-again")->spki_der(), second.spki_der());
}

TEST_P(KeyManagerConformance, BadIdsAreRefusedByEveryOperation) {
  const std::vector<std::string> bad = {"",    ".",     "..",   "../evil", "a/b",
                                        "a b", "x\n", "k\\e", std::string(129, 'k')};
  for (const std::string& id : bad) {
    EXPECT_THAT(km_->GenerateKey(id, common::KeyType::kEcP256),
                StatusIs(absl::StatusCode::kInvalidArgument))
        << "\"" << id << "\"";
    EXPECT_THAT(km_->GetKey(id), StatusIs(absl::StatusCode::kInvalidArgument))
        << "\"" << id << "\"";
    EXPECT_THAT(km_->DeleteKey(id), StatusIs(absl::StatusCode::kInvalidArgument))
        << "\"" << id << "\"";
  }
  EXPECT_THAT(*km_->ListKeyIds(), IsEmpty());
}

TEST_P(KeyManagerConformance, IdsOfEveryAllowedCharacterAndLengthAreAccepted) {
  const std::vector<std::string> good = {"k", "A-Z_a-z.0-9", "...", std::string(128, 'k')};
  for (const std::string& id : good) Generate(id);
  auto ids = km_->ListKeyIds();
  ASSERT_THAT(ids, IsOk());
  EXPECT_THAT(*ids, UnorderedElementsAre("k", "A-Z_a-z.0-9", "...", std::string(128, 'k')));
  for (const std::string& id : good) EXPECT_THAT(km_->GetKey(id), IsOk()) << id;
}

TEST_P(KeyManagerConformance, ConcurrentCallersEachSeeTheirOwnKeys) {
  constexpr int kThreads = 4;
  constexpr int kRounds = 8;
  absl::Barrier start(kThreads);
  std::atomic<int> failures{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      start.Block();
      for (int r = 0; r < kRounds; ++r) {
        const std::string own = absl::StrCat("x509-CA-t", t, "-r", r);
        auto key = km_->GenerateKey(own, common::KeyType::kEcP256);
        if (!key.ok()) {
          ++failures;
          continue;
        }
        auto got = km_->GetKey(own);
        if (!got.ok() || got->spki_der() != key->spki_der()) ++failures;
        // Everyone also replaces and reads one shared id: a read must yield a whole key.
        if (!km_->GenerateKey("JWT-Signer-shared", common::KeyType::kEcP256).ok()) ++failures;
        auto shared = km_->GetKey("JWT-Signer-shared");
        if (!shared.ok() || !shared->Sign("x").ok()) ++failures;
        if (!km_->ListKeyIds().ok()) ++failures;
        if (r % 2 == 1 && !km_->DeleteKey(own).ok()) ++failures;
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(failures.load(), 0);
  auto ids = km_->ListKeyIds();
  ASSERT_THAT(ids, IsOk());
  std::vector<std::string> want = {"JWT-Signer-shared"};
  for (int t = 0; t < kThreads; ++t) {
    for (int r = 0; r < kRounds; r += 2) want.push_back(absl::StrCat("x509-CA-t", t, "-r", r));
  }
  std::sort(want.begin(), want.end());
  EXPECT_EQ(*ids, want);
}

INSTANTIATE_TEST_SUITE_P(Implementations, KeyManagerConformance, ::testing::Values(kDisk, kMemory),
                         [](const ::testing::TestParamInfo<KeyManagerKind>& info) {
                           return info.param.name;
                         });

}  // namespace
}  // namespace trellis::server
