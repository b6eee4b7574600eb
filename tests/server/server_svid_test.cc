// ServerSvidRotator: files on disk, the server ID, renewal at half-life and on CA activation.
#include "server/server_svid.h"

#include <sys/stat.h>

#include "common/bundle.h"
#include "common/file_util.h"
#include "gtest/gtest.h"
#include "server/memory_key_manager.h"
#include "tests/server/server_test_util.h"

namespace trellis::server {
namespace {

using testing::kTestStart;
using testing::OpenTestStore;
using testutil::TempDir;

class ServerSvidTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ds_ = OpenTestStore(dir_, clock_);
    ASSERT_NE(ds_, nullptr);
    CaManager::Options options(*common::TrustDomain::Parse("example.org"));
    options.ca_ttl = absl::Hours(24);
    options.default_x509_svid_ttl = absl::Hours(4);
    auto ca = CaManager::Create(options, ds_.get(), &km_, clock_);
    ASSERT_TRUE(ca.ok());
    ca_ = std::move(*ca);
    ASSERT_TRUE(ca_->Start().ok());
    auto rotator = ServerSvidRotator::Create({dir_.path() + "/data"}, ca_.get(), clock_);
    ASSERT_TRUE(rotator.ok()) << rotator.status();
    rotator_ = std::move(*rotator);
    ASSERT_TRUE(rotator_->Start().ok());
  }

  std::string Serial() { return rotator_->Current()->SerialHex(); }

  TempDir dir_;
  common::FakeClock clock_{kTestStart};
  std::unique_ptr<datastore::DataStore> ds_;
  MemoryKeyManager km_;
  std::unique_ptr<CaManager> ca_;
  std::unique_ptr<ServerSvidRotator> rotator_;
};

TEST_F(ServerSvidTest, WritesServerIdChainAndMatchingKey0600) {
  auto chain_pem = common::ReadFile(rotator_->CertChainPath());
  auto key_pem = common::ReadFile(rotator_->KeyPath());
  ASSERT_TRUE(chain_pem.ok() && key_pem.ok());
  auto chain = common::Certificate::ChainFromPem(*chain_pem);
  auto key = common::PrivateKey::FromPem(*key_pem);
  ASSERT_TRUE(chain.ok() && key.ok());
  auto id = common::VerifyX509Svid(*chain, *ca_->Bundle(), clock_.Now());
  ASSERT_TRUE(id.ok()) << id.status();
  EXPECT_EQ(id->String(), "spiffe://example.org/spire/server");
  EXPECT_TRUE(common::CheckKeyMatchesCertificate(*key, chain->front()).ok());
  for (const auto& path : {rotator_->CertChainPath(), rotator_->KeyPath()}) {
    struct stat st;
    ASSERT_EQ(stat(path.c_str(), &st), 0);
    EXPECT_EQ(st.st_mode & 0777, 0600u) << path;
  }
}

TEST_F(ServerSvidTest, RenewsOnlyAfterHalfLife) {
  const std::string first = Serial();
  clock_.Advance(absl::Hours(2) - absl::Minutes(1));
  ASSERT_TRUE(rotator_->Tick().ok());
  EXPECT_EQ(Serial(), first);
  clock_.Advance(absl::Minutes(2));
  ASSERT_TRUE(rotator_->Tick().ok());
  EXPECT_NE(Serial(), first);
  auto chain = common::Certificate::ChainFromPem(*common::ReadFile(rotator_->CertChainPath()));
  ASSERT_TRUE(chain.ok());
  EXPECT_EQ(chain->front().SerialHex(), Serial());
}

TEST_F(ServerSvidTest, RenewsWhenCaActivatesNewAuthority) {
  // Renewed at 19h (half-life passed), so by 20h10 only the CA change can trigger renewal.
  clock_.Advance(absl::Hours(19));
  ASSERT_TRUE(ca_->Tick().ok());
  ASSERT_TRUE(rotator_->Tick().ok());
  const std::string before = Serial();
  const auto old_ca = *ca_->ActiveX509Ca();
  clock_.Advance(absl::Hours(1) + absl::Minutes(10));
  ASSERT_TRUE(ca_->Tick().ok());
  ASSERT_NE(*ca_->ActiveX509Ca(), old_ca);
  ASSERT_TRUE(rotator_->Tick().ok());
  EXPECT_NE(Serial(), before);
  EXPECT_EQ(rotator_->Current()->AuthorityKeyId(), ca_->ActiveX509Ca()->SubjectKeyId());
}

}  // namespace
}  // namespace trellis::server
