// CaManager: CA and JWT key rotation on a fake clock, restart, pruning, concurrent signing.
#include "server/ca_manager.h"

#include <atomic>
#include <cstdlib>
#include <map>
#include <memory>
#include <thread>

#include "common/csr.h"
#include "common/file_util.h"
#include "common/jwt.h"
#include "gtest/gtest.h"
#include "server/disk_key_manager.h"
#include "server/memory_key_manager.h"
#include "tests/server/ca_manager_fixture.h"
#include "tests/server/server_test_util.h"

namespace trellis::server {
namespace {

using testing::CaManagerTest;
using testing::DefaultOptions;
using testing::kTestStart;
using testing::OpenTestStore;
using testing::Td;
using testutil::TempDir;

TEST_F(CaManagerTest, StartPublishesRootAndJwtKey) {
  auto ca = StartManager();
  ASSERT_NE(ca, nullptr);
  auto bundle = ca->Bundle();
  ASSERT_NE(bundle, nullptr);
  ASSERT_EQ(bundle->x509_authorities().size(), 1u);
  EXPECT_EQ(bundle->x509_authorities()[0], *ca->ActiveX509Ca());
  ASSERT_EQ(bundle->jwt_authorities().size(), 1u);
  EXPECT_EQ(bundle->jwt_authorities().begin()->first, ca->ActiveJwtKid());
  EXPECT_EQ(ca->ActiveJwtKid().size(), 32u);
  EXPECT_GT(bundle->sequence(), 0u);
}

TEST_F(CaManagerTest, PreparesOnlyOnceRemainingLifeIsBelowHalf) {
  auto ca = StartManager();
  ASSERT_NE(ca, nullptr);
  // Lifetime is 24h plus the 10 s NotBefore backdating: half is reached at about 12h.
  AdvanceAndTick(*ca, absl::Hours(11) + absl::Minutes(50));
  EXPECT_FALSE(ca->PreparedX509Ca().has_value());
  EXPECT_EQ(ca->PreparedJwtKid(), "");
  AdvanceAndTick(*ca, absl::Minutes(20));
  EXPECT_TRUE(ca->PreparedX509Ca().has_value());
  EXPECT_NE(ca->PreparedJwtKid(), "");
}

TEST_F(CaManagerTest, BundleContainsPreparedAuthoritiesBeforeActivation) {
  auto ca = StartManager();
  ASSERT_NE(ca, nullptr);
  const auto active = *ca->ActiveX509Ca();
  AdvanceAndTick(*ca, absl::Hours(12) + absl::Minutes(10));
  auto prepared = ca->PreparedX509Ca();
  ASSERT_TRUE(prepared.has_value());
  auto bundle = ca->Bundle();
  EXPECT_TRUE(BundleHas(*bundle, *prepared));
  EXPECT_TRUE(BundleHas(*bundle, active));
  EXPECT_EQ(bundle->jwt_authorities().count(ca->PreparedJwtKid()), 1u);
  EXPECT_EQ(*ca->ActiveX509Ca(), active);  // still signing with the old one
}

TEST_F(CaManagerTest, ActivatesOnlyOnceRemainingLifeIsBelowOneSixth) {
  auto ca = StartManager();
  ASSERT_NE(ca, nullptr);
  const auto first = *ca->ActiveX509Ca();
  const std::string first_kid = ca->ActiveJwtKid();
  AdvanceAndTick(*ca, absl::Hours(19) + absl::Minutes(50));
  EXPECT_EQ(*ca->ActiveX509Ca(), first);
  const auto prepared = *ca->PreparedX509Ca();
  const std::string prepared_kid = ca->PreparedJwtKid();
  AdvanceAndTick(*ca, absl::Minutes(20));
  EXPECT_EQ(*ca->ActiveX509Ca(), prepared);
  EXPECT_EQ(ca->ActiveJwtKid(), prepared_kid);
  EXPECT_NE(ca->ActiveJwtKid(), first_kid);
  EXPECT_FALSE(ca->PreparedX509Ca().has_value());
  // The retired CA stays trusted until it expires.
  EXPECT_TRUE(BundleHas(*ca->Bundle(), first));
}

TEST_F(CaManagerTest, ActivationBumpsGenerationAndCallsListener) {
  auto ca = StartManager();
  ASSERT_NE(ca, nullptr);
  int activations = 0;
  ca->SetX509ActivationListener([&] { activations++; });
  const uint64_t gen = ca->X509Generation();
  AdvanceAndTick(*ca, absl::Hours(20) + absl::Minutes(10));
  EXPECT_EQ(activations, 1);
  EXPECT_EQ(ca->X509Generation(), gen + 1);
}

TEST_F(CaManagerTest, TellsOfEveryActivationByKind) {
  // Shared with the callback, which the manager keeps until it is destroyed.
  auto counts = std::make_shared<std::map<datastore::AuthorityKind, int>>();
  CaManager::Options options = DefaultOptions();
  options.authority_activated = [counts](datastore::AuthorityKind kind) { ++(*counts)[kind]; };
  auto ca = StartManager(std::move(options));
  ASSERT_NE(ca, nullptr);
  // A new server activates its first CA and JWT key.
  EXPECT_EQ((*counts)[datastore::AuthorityKind::kX509], 1);
  EXPECT_EQ((*counts)[datastore::AuthorityKind::kJwt], 1);
  // Preparing is not activating.
  AdvanceAndTick(*ca, absl::Hours(19) + absl::Minutes(50));
  ASSERT_TRUE(ca->PreparedX509Ca().has_value());
  EXPECT_EQ((*counts)[datastore::AuthorityKind::kX509], 1);
  AdvanceAndTick(*ca, absl::Minutes(20));
  EXPECT_EQ((*counts)[datastore::AuthorityKind::kX509], 2);
  EXPECT_EQ((*counts)[datastore::AuthorityKind::kJwt], 2);
}

TEST_F(CaManagerTest, BundleListenerSeesIncreasingSequence) {
  auto ca = StartManager();
  ASSERT_NE(ca, nullptr);
  std::vector<uint64_t> seqs;
  ca->SetBundleListener(
      [&](std::shared_ptr<const common::Bundle> b) { seqs.push_back(b->sequence()); });
  const uint64_t start_seq = ca->Bundle()->sequence();
  AdvanceAndTick(*ca, absl::Hours(12) + absl::Minutes(10));
  ASSERT_FALSE(seqs.empty());
  EXPECT_GT(seqs.front(), start_seq);
  for (size_t i = 1; i < seqs.size(); ++i) EXPECT_GT(seqs[i], seqs[i - 1]);
  EXPECT_EQ(seqs.back(), ca->Bundle()->sequence());
}

TEST_F(CaManagerTest, RestartReusesActiveAndPreparedAuthorities) {
  auto ca = StartManager();
  ASSERT_NE(ca, nullptr);
  AdvanceAndTick(*ca, absl::Hours(12) + absl::Minutes(10));
  const auto active = *ca->ActiveX509Ca();
  const auto prepared = *ca->PreparedX509Ca();
  const std::string kid = ca->ActiveJwtKid();
  const std::string prepared_kid = ca->PreparedJwtKid();
  const uint64_t seq = ca->Bundle()->sequence();
  ca.reset();

  auto km = DiskKeyManager::Create(dir_.path() + "/keys");
  ASSERT_TRUE(km.ok());
  km_ = std::move(*km);
  auto again = StartManager();
  ASSERT_NE(again, nullptr);
  EXPECT_EQ(*again->ActiveX509Ca(), active);
  EXPECT_EQ(*again->PreparedX509Ca(), prepared);
  EXPECT_EQ(again->ActiveJwtKid(), kid);
  EXPECT_EQ(again->PreparedJwtKid(), prepared_kid);
  EXPECT_EQ(again->Bundle()->sequence(), seq);  // nothing new was published
  // The restored CA still signs.
  auto id = *common::SpiffeId::Parse("spiffe://example.org/w");
  auto svid = again->SignX509SvidFromCsr(Csr(), id, absl::Hours(1), {});
  ASSERT_TRUE(svid.ok()) << svid.status();
  EXPECT_TRUE(common::VerifyX509Svid(Chain(*svid), *again->Bundle(), clock_.Now()).ok());
}

TEST_F(CaManagerTest, RestartAfterExpiryCreatesFreshCa) {
  auto ca = StartManager();
  ASSERT_NE(ca, nullptr);
  const auto old = *ca->ActiveX509Ca();
  ca.reset();
  clock_.Advance(absl::Hours(48));
  auto again = StartManager();
  ASSERT_NE(again, nullptr);
  EXPECT_NE(*again->ActiveX509Ca(), old);
  EXPECT_GT(again->ActiveX509Ca()->not_after(), clock_.Now() + absl::Hours(23));
}

TEST_F(CaManagerTest, RestartWithLostKeysCreatesFreshAuthorities) {
  MemoryKeyManager memory;
  auto first = CaManager::Create(DefaultOptions(), ds_.get(), &memory, clock_);
  ASSERT_TRUE(first.ok());
  ASSERT_TRUE((*first)->Start().ok());
  const auto old = *(*first)->ActiveX509Ca();
  first->reset();
  MemoryKeyManager empty;  // a memory key manager forgets everything on restart
  ::testing::internal::CaptureStderr();
  auto second = CaManager::Create(DefaultOptions(), ds_.get(), &empty, clock_);
  ASSERT_TRUE(second.ok());
  ASSERT_TRUE((*second)->Start().ok());
  ::testing::internal::GetCapturedStderr();
  EXPECT_NE(*(*second)->ActiveX509Ca(), old);
  // The unusable records were retired: only the new authorities are still active.
  auto journal = ds_->ListCaJournal("default");
  ASSERT_TRUE(journal.ok());
  int active = 0;
  for (const auto& e : *journal) active += e.status == datastore::AuthorityStatus::kActive;
  EXPECT_EQ(active, 2);
}

TEST_F(CaManagerTest, NeverActivatesPreparedCaThatIsAlmostExpired) {
  auto ca = StartManager();
  ASSERT_NE(ca, nullptr);
  AdvanceAndTick(*ca, absl::Hours(12) + absl::Minutes(10));
  const auto prepared = *ca->PreparedX509Ca();
  // The server was down: the prepared CA now has less than a sixth of its life left.
  clock_.Set(prepared.not_after() - absl::Hours(3));
  ASSERT_TRUE(ca->Tick().ok());
  auto active = ca->ActiveX509Ca();
  ASSERT_TRUE(active.has_value());
  EXPECT_NE(*active, prepared);
  EXPECT_GT(active->not_after(), clock_.Now() + absl::Hours(23));
}

TEST_F(CaManagerTest, PrunesExpiredAuthoritiesOnlyAfterGrace) {
  auto ca = StartManager();
  ASSERT_NE(ca, nullptr);
  const auto first = *ca->ActiveX509Ca();
  const std::string first_kid = ca->ActiveJwtKid();
  // Past the first CA's expiry but inside the one-hour grace period.
  AdvanceAndTick(*ca, absl::Hours(24) + absl::Minutes(30));
  EXPECT_TRUE(BundleHas(*ca->Bundle(), first));
  EXPECT_EQ(ca->Bundle()->jwt_authorities().count(first_kid), 1u);
  AdvanceAndTick(*ca, absl::Minutes(50));
  EXPECT_FALSE(BundleHas(*ca->Bundle(), first));
  EXPECT_EQ(ca->Bundle()->jwt_authorities().count(first_kid), 0u);
  EXPECT_TRUE(BundleHas(*ca->Bundle(), *ca->ActiveX509Ca()));
  // The retired key is destroyed with its journal record.
  auto ids = km_->ListKeyIds();
  ASSERT_TRUE(ids.ok());
  for (const auto& id : *ids) EXPECT_NE(id, "JWT-Signer-" + first_kid);
}

TEST_F(CaManagerTest, SelfSignedSvidChainIsLeafOnlyAndVerifies) {
  auto ca = StartManager();
  ASSERT_NE(ca, nullptr);
  auto id = *common::SpiffeId::Parse("spiffe://example.org/app");
  auto svid = ca->SignX509SvidFromCsr(Csr(), id, absl::Hours(1), {"app.example.org"});
  ASSERT_TRUE(svid.ok()) << svid.status();
  ASSERT_EQ(svid->size(), 1u);
  auto verified = common::VerifyX509Svid(Chain(*svid), *ca->Bundle(), clock_.Now());
  ASSERT_TRUE(verified.ok()) << verified.status();
  EXPECT_EQ(verified->String(), "spiffe://example.org/app");
}

TEST_F(CaManagerTest, SvidNotAfterIsCappedAtCaNotAfter) {
  auto ca = StartManager();
  ASSERT_NE(ca, nullptr);
  auto id = *common::SpiffeId::Parse("spiffe://example.org/app");
  auto svid = ca->SignX509SvidFromCsr(Csr(), id, absl::Hours(100), {});
  ASSERT_TRUE(svid.ok()) << svid.status();
  auto leaf = common::Certificate::FromDer(svid->front());
  ASSERT_TRUE(leaf.ok());
  EXPECT_EQ(leaf->not_after(), ca->ActiveX509Ca()->not_after());
}

TEST_F(CaManagerTest, BadCsrIsInvalidArgument) {
  auto ca = StartManager();
  ASSERT_NE(ca, nullptr);
  auto id = *common::SpiffeId::Parse("spiffe://example.org/app");
  EXPECT_EQ(ca->SignX509SvidFromCsr("not a csr", id, absl::Hours(1), {}).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST_F(CaManagerTest, JwtSvidVerifiesWithBundleKeyAndTtlIsCapped) {
  auto options = DefaultOptions();
  options.jwt_issuer = "https://issuer.example.org";
  auto ca = StartManager(options);
  ASSERT_NE(ca, nullptr);
  auto id = *common::SpiffeId::Parse("spiffe://example.org/app");
  auto token = ca->SignJwtSvid(id, {"aud1"}, absl::Hours(1000));
  ASSERT_TRUE(token.ok()) << token.status();
  auto svid = common::VerifyJwtSvid(*token, ca->Bundle()->jwt_authorities(), "aud1", clock_.Now());
  ASSERT_TRUE(svid.ok()) << svid.status();
  EXPECT_EQ(svid->kid, ca->ActiveJwtKid());
  EXPECT_EQ(svid->claims["iss"], "https://issuer.example.org");
  EXPECT_LE(svid->expiry, clock_.Now() + absl::Hours(24));
  EXPECT_GT(svid->expiry, clock_.Now() + absl::Hours(23));
}

TEST_F(CaManagerTest, JwtSvidWithoutAudienceIsInvalidArgument) {
  auto ca = StartManager();
  ASSERT_NE(ca, nullptr);
  auto id = *common::SpiffeId::Parse("spiffe://example.org/app");
  EXPECT_EQ(ca->SignJwtSvid(id, {}, absl::Minutes(5)).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST_F(CaManagerTest, SigningBeforeStartIsUnavailable) {
  auto ca = CaManager::Create(DefaultOptions(), ds_.get(), km_.get(), clock_);
  ASSERT_TRUE(ca.ok());
  auto id = *common::SpiffeId::Parse("spiffe://example.org/app");
  EXPECT_EQ((*ca)->SignX509SvidFromCsr(Csr(), id, absl::Hours(1), {}).status().code(),
            absl::StatusCode::kUnavailable);
}

TEST_F(CaManagerTest, StartWarnsWhenX509SvidTtlExceedsActivationThreshold) {
  auto options = DefaultOptions();
  options.default_x509_svid_ttl = absl::Hours(5);  // above min(24h/6, 7 days) = 4h
  ::testing::internal::CaptureStderr();
  auto ca = StartManager(options);
  const std::string err = ::testing::internal::GetCapturedStderr();
  ASSERT_NE(ca, nullptr);
  EXPECT_NE(err.find("default_x509_svid_ttl"), std::string::npos) << err;
  EXPECT_EQ(err.find("default_jwt_svid_ttl"), std::string::npos) << err;
}

TEST_F(CaManagerTest, StartDoesNotWarnForDefaults) {
  ::testing::internal::CaptureStderr();
  auto ca = StartManager();
  const std::string err = ::testing::internal::GetCapturedStderr();
  ASSERT_NE(ca, nullptr);
  EXPECT_EQ(err.find("exceeds"), std::string::npos) << err;
}

TEST(CaManagerRules, SvidTtlWarningThreshold) {
  EXPECT_FALSE(CaManager::SvidTtlTooLong(absl::Hours(24), absl::Hours(4)));
  EXPECT_TRUE(CaManager::SvidTtlTooLong(absl::Hours(24), absl::Hours(4) + absl::Seconds(1)));
  // The seven-day cap applies to long CA lifetimes.
  EXPECT_FALSE(CaManager::SvidTtlTooLong(absl::Hours(24 * 60), absl::Hours(24 * 7)));
  EXPECT_TRUE(CaManager::SvidTtlTooLong(absl::Hours(24 * 60), absl::Hours(24 * 7 + 1)));
}

TEST(CaManagerRules, ThresholdsAreCapped) {
  EXPECT_EQ(CaManager::PrepareThreshold(absl::Hours(24)), absl::Hours(12));
  EXPECT_EQ(CaManager::ActivateThreshold(absl::Hours(24)), absl::Hours(4));
  EXPECT_EQ(CaManager::PrepareThreshold(absl::Hours(24 * 365)), absl::Hours(24 * 30));
  EXPECT_EQ(CaManager::ActivateThreshold(absl::Hours(24 * 365)), absl::Hours(24 * 7));
}

TEST_F(CaManagerTest, SigningWhileRotatingIsSafe) {
  auto ca = StartManager();
  ASSERT_NE(ca, nullptr);
  const std::string csr = Csr();
  auto id = *common::SpiffeId::Parse("spiffe://example.org/app");
  std::atomic<bool> stop{false};
  std::atomic<int> failures{0}, signed_count{0};
  std::thread signer([&] {
    while (!stop) {
      auto svid = ca->SignX509SvidFromCsr(csr, id, absl::Minutes(5), {});
      auto jwt = ca->SignJwtSvid(id, {"a"}, absl::Minutes(5));
      if (!svid.ok() || !jwt.ok()) {
        failures++;
        ADD_FAILURE() << svid.status() << " / " << jwt.status();
      }
      signed_count++;
    }
  });
  // Two full rotations in one-hour steps (well inside the activation margin).
  // Fake time runs hours per millisecond here, so let the signer finish a full round after
  // each step: a signer holding a CA across several steps would see it expire, which real
  // time never allows.
  for (int i = 0; i < 48; ++i) {
    clock_.Advance(absl::Hours(1));
    EXPECT_TRUE(ca->Tick().ok());
    const int seen = signed_count.load();
    while (signed_count.load() < seen + 2) std::this_thread::yield();
  }
  while (signed_count.load() < 10) std::this_thread::yield();
  stop = true;
  signer.join();
  EXPECT_EQ(failures.load(), 0);
}

}  // namespace
}  // namespace trellis::server
