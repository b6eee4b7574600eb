// UpstreamAuthority "disk": our CA as an intermediate under operator-held files, checked with
// openssl verify, and a CaManager that keeps signing while its upstream is unreachable.
#include "upstream/disk_upstream_authority.h"

#include <atomic>
#include <cstdlib>
#include <memory>
#include <vector>

#include "common/csr.h"
#include "common/file_util.h"
#include "gtest/gtest.h"
#include "server/ca_manager.h"
#include "tests/server/ca_manager_fixture.h"

namespace trellis::upstream {
namespace {

using server::CaManager;
using server::UpstreamAuthority;
using server::testing::CaManagerTest;
using server::testing::DefaultOptions;
using server::testing::Td;

// ---- UpstreamAuthority "disk" ----

class DiskUpstreamTest : public CaManagerTest {
 protected:
  // openssl verify uses the real time, so these tests start at the current time.
  void SetUp() override {
    clock_.Set(absl::Now());
    CaManagerTest::SetUp();
  }

  std::string Write(const std::string& name, const std::string& data) {
    std::string path = dir_.path() + "/" + name;
    EXPECT_TRUE(common::WritePrivateFile(path, data).ok());
    return path;
  }

  // A CaManager whose CA is minted by the disk upstream `up`.
  std::unique_ptr<CaManager> StartUnder(const DiskUpstreamOptions& up) {
    auto upstream = CreateDiskUpstreamAuthority(up, clock_);
    EXPECT_TRUE(upstream.ok()) << upstream.status();
    if (!upstream.ok()) return nullptr;
    auto options = DefaultOptions();
    options.upstream = std::move(*upstream);
    return StartManager(options);
  }

  // The chain (leaf first) of an SVID for spiffe://example.org/app; empty when signing fails.
  std::vector<common::Certificate> SignApp(CaManager& ca) {
    auto id = *common::SpiffeId::Parse("spiffe://example.org/app");
    auto svid = ca.SignX509SvidFromCsr(Csr(), id, absl::Hours(1), {});
    EXPECT_TRUE(svid.ok()) << svid.status();
    return svid.ok() ? Chain(*svid) : std::vector<common::Certificate>{};
  }

  int OpensslVerify(const std::string& root_pem, const std::string& untrusted_pem,
                    const std::string& leaf_pem) {
    std::string cmd = "openssl verify -CAfile " + Write("v-root.pem", root_pem);
    if (!untrusted_pem.empty()) cmd += " -untrusted " + Write("v-untrusted.pem", untrusted_pem);
    cmd += " " + Write("v-leaf.pem", leaf_pem) + " >/dev/null 2>&1";
    return std::system(cmd.c_str());
  }
};

TEST_F(DiskUpstreamTest, SelfSignedUpstreamMakesOurCaAnIntermediate) {
  auto root_key = common::PrivateKey::Generate();
  auto root = common::CreateRootCa(*root_key, Td(), absl::Hours(24 * 365), clock_);
  ASSERT_TRUE(root.ok());
  DiskUpstreamOptions up{Write("up.pem", root->ToPem()),
                         Write("up.key", std::string(root_key->ToPem()->view())), ""};
  auto ca = StartUnder(up);
  ASSERT_NE(ca, nullptr);

  auto bundle = ca->Bundle();
  ASSERT_EQ(bundle->x509_authorities().size(), 1u);
  EXPECT_EQ(bundle->x509_authorities()[0], *root);
  auto chain = SignApp(*ca);
  ASSERT_EQ(chain.size(), 2u);
  EXPECT_EQ(chain[1], *ca->ActiveX509Ca());
  EXPECT_TRUE(common::VerifyX509Svid(chain, *bundle, clock_.Now()).ok());
  EXPECT_EQ(OpensslVerify(root->ToPem(), chain[1].ToPem(), chain[0].ToPem()), 0);
}

TEST_F(DiskUpstreamTest, UpstreamIntermediateWithBundleFileChainsToItsRoot) {
  auto root_key = common::PrivateKey::Generate();
  auto root = common::CreateRootCa(*root_key, Td(), absl::Hours(24 * 365), clock_);
  auto up_key = common::PrivateKey::Generate();
  auto up_cert = common::CreateIntermediateCa(*root, *root_key, up_key->public_key(), Td(),
                                              absl::Hours(24 * 100), clock_);
  ASSERT_TRUE(up_cert.ok()) << up_cert.status();
  DiskUpstreamOptions up{Write("up.pem", up_cert->ToPem()),
                         Write("up.key", std::string(up_key->ToPem()->view())),
                         Write("roots.pem", root->ToPem())};
  auto ca = StartUnder(up);
  ASSERT_NE(ca, nullptr);

  auto bundle = ca->Bundle();
  ASSERT_EQ(bundle->x509_authorities().size(), 1u);
  EXPECT_EQ(bundle->x509_authorities()[0], *root);
  auto chain = SignApp(*ca);
  ASSERT_EQ(chain.size(), 3u);
  EXPECT_EQ(chain[2], *up_cert);
  auto verified = common::VerifyX509Svid(chain, *bundle, clock_.Now());
  EXPECT_TRUE(verified.ok()) << verified.status();
  EXPECT_EQ(OpensslVerify(root->ToPem(), chain[1].ToPem() + chain[2].ToPem(), chain[0].ToPem()), 0);
}

TEST_F(DiskUpstreamTest, NonRootWithoutBundleFileIsRefused) {
  auto root_key = common::PrivateKey::Generate();
  auto root = common::CreateRootCa(*root_key, Td(), absl::Hours(24 * 365), clock_);
  auto up_key = common::PrivateKey::Generate();
  auto up_cert = common::CreateIntermediateCa(*root, *root_key, up_key->public_key(), Td(),
                                              absl::Hours(24 * 100), clock_);
  ASSERT_TRUE(up_cert.ok());
  DiskUpstreamOptions up{Write("up.pem", up_cert->ToPem()),
                         Write("up.key", std::string(up_key->ToPem()->view())), ""};
  EXPECT_EQ(CreateDiskUpstreamAuthority(up, clock_).status().code(),
            absl::StatusCode::kInvalidArgument);
}

// Wraps an upstream and can be switched off, like an unreachable upstream server.
class FlakyUpstream final : public UpstreamAuthority {
 public:
  explicit FlakyUpstream(std::unique_ptr<UpstreamAuthority> inner) : inner_(std::move(inner)) {}
  absl::StatusOr<MintResult> MintX509Ca(const common::PrivateKey& key, const common::TrustDomain& td,
                                        absl::Duration ttl) override {
    if (down) return absl::UnavailableError("upstream unreachable");
    return inner_->MintX509Ca(key, td, ttl);
  }
  std::atomic<bool> down{false};

 private:
  std::unique_ptr<UpstreamAuthority> inner_;
};

TEST_F(DiskUpstreamTest, UnreachableUpstreamKeepsSigningAndActivatesPreparedCa) {
  auto root_key = common::PrivateKey::Generate();
  auto root = common::CreateRootCa(*root_key, Td(), absl::Hours(24 * 365), clock_);
  DiskUpstreamOptions up{Write("up.pem", root->ToPem()),
                         Write("up.key", std::string(root_key->ToPem()->view())), ""};
  auto disk = CreateDiskUpstreamAuthority(up, clock_);
  ASSERT_TRUE(disk.ok());
  auto flaky = std::make_shared<FlakyUpstream>(std::move(*disk));
  auto options = DefaultOptions();
  options.upstream = flaky;
  auto ca = StartManager(options);
  ASSERT_NE(ca, nullptr);
  AdvanceAndTick(*ca, absl::Hours(12) + absl::Minutes(10));
  const auto prepared = ca->PreparedX509Ca();
  ASSERT_TRUE(prepared.has_value());
  flaky->down = true;
  const std::string jwt_before = ca->ActiveJwtKid();
  // Past activation time: the prepared CA is activated without the upstream.
  clock_.Advance(absl::Hours(8));
  ASSERT_TRUE(ca->Tick().ok());
  EXPECT_EQ(*ca->ActiveX509Ca(), *prepared);
  EXPECT_NE(ca->ActiveJwtKid(), jwt_before);
  // Past the next preparation time: preparation fails and is retried, signing goes on.
  clock_.Advance(absl::Hours(5));
  EXPECT_EQ(ca->Tick().code(), absl::StatusCode::kUnavailable);
  EXPECT_FALSE(ca->PreparedX509Ca().has_value());
  EXPECT_NE(ca->PreparedJwtKid(), "");  // JWT rotation does not depend on the upstream
  auto id = *common::SpiffeId::Parse("spiffe://example.org/app");
  EXPECT_TRUE(ca->SignX509SvidFromCsr(Csr(), id, absl::Hours(1), {}).ok());
  flaky->down = false;
  // Retries wait out a backoff (1 s after the first failure) rather than every tick.
  ASSERT_TRUE(ca->Tick().ok());
  EXPECT_FALSE(ca->PreparedX509Ca().has_value());
  clock_.Advance(absl::Seconds(2));
  ASSERT_TRUE(ca->Tick().ok());
  EXPECT_TRUE(ca->PreparedX509Ca().has_value());
}

TEST_F(DiskUpstreamTest, MismatchedKeyIsRefused) {
  auto root_key = common::PrivateKey::Generate();
  auto other_key = common::PrivateKey::Generate();
  auto root = common::CreateRootCa(*root_key, Td(), absl::Hours(24 * 365), clock_);
  DiskUpstreamOptions up{Write("up.pem", root->ToPem()),
                         Write("up.key", std::string(other_key->ToPem()->view())), ""};
  EXPECT_EQ(CreateDiskUpstreamAuthority(up, clock_).status().code(),
            absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace trellis::upstream
