// The UpstreamAuthority contract, run against every implementation: "disk" (an operator's CA
// on disk) and "spire" (a nested server reaching a real in-process upstream tier through its
// agent's Workload API and the Upstream API).
#include <openssl/x509.h>
#include <openssl/x509_vfy.h>

#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "common/clock.h"
#include "common/keys.h"
#include "common/status.h"
#include "common/x509.h"
#include "downstream/spire_upstream_authority.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/upstream_authority.h"
#include "tests/testutil/status_matchers.h"
#include "tests/testutil/temp_dir.h"
#include "tests/upstream/upstream_tier.h"
#include "upstream/disk_upstream_authority.h"

namespace trellis::upstream {
namespace {

using server::UpstreamAuthority;
using ::testing::HasSubstr;
using testutil::IsOk;
using testutil::StatusIs;

common::TrustDomain Td() { return *common::TrustDomain::Parse("example.org"); }

// One implementation set up for a test, with what the test needs to know about its upstream.
class UpstreamUnderTest {
 public:
  virtual ~UpstreamUnderTest() = default;
  virtual UpstreamAuthority& authority() = 0;
  // The certificate that signs minted CAs: no minted CA outlives it.
  virtual common::Certificate Issuer() = 0;
  // The trust domain's roots as the upstream holds them.
  virtual std::vector<common::Certificate> Roots() = 0;
  // For implementations that own no bundle these are never called.
  // The upstream's bundle as it stands.
  virtual absl::StatusOr<datastore::Bundle> UpstreamBundle() = 0;
  // Changes the upstream's bundle (a new JWT key prepared there) and returns its key id.
  virtual absl::StatusOr<std::string> ChangeUpstreamBundle() = 0;
};

// The operator's CA on disk: a self-signed root, or (`intermediate`) a CA under a root given
// in the bundle file.
class DiskUnderTest final : public UpstreamUnderTest {
 public:
  static absl::StatusOr<std::unique_ptr<UpstreamUnderTest>> Create(bool intermediate) {
    std::unique_ptr<DiskUnderTest> t(new DiskUnderTest());
    const common::Clock& clock = common::SystemClock::Get();
    TRELLIS_ASSIGN_OR_RETURN(common::PrivateKey root_key, common::PrivateKey::Generate());
    TRELLIS_ASSIGN_OR_RETURN(common::Certificate root,
                             common::CreateRootCa(root_key, Td(), absl::Hours(24 * 30), clock));
    DiskUpstreamOptions options;
    if (intermediate) {
      TRELLIS_ASSIGN_OR_RETURN(common::PrivateKey up_key, common::PrivateKey::Generate());
      TRELLIS_ASSIGN_OR_RETURN(common::Certificate up,
                               common::CreateIntermediateCa(root, root_key, up_key.public_key(),
                                                            Td(), absl::Hours(24 * 10), clock));
      TRELLIS_ASSIGN_OR_RETURN(common::SecretBytes key_pem, up_key.ToPem());
      options = {t->dir_.Write("up.pem", up.ToPem()), t->dir_.Write("up.key", key_pem.view()),
                 t->dir_.Write("roots.pem", root.ToPem())};
      t->issuer_ = std::move(up);
    } else {
      TRELLIS_ASSIGN_OR_RETURN(common::SecretBytes key_pem, root_key.ToPem());
      options = {t->dir_.Write("up.pem", root.ToPem()), t->dir_.Write("up.key", key_pem.view()),
                 ""};
      t->issuer_ = root;
    }
    TRELLIS_ASSIGN_OR_RETURN(t->authority_, CreateDiskUpstreamAuthority(options, clock));
    t->root_ = std::move(root);
    return std::unique_ptr<UpstreamUnderTest>(std::move(t));
  }
  UpstreamAuthority& authority() override { return *authority_; }
  common::Certificate Issuer() override { return *issuer_; }
  std::vector<common::Certificate> Roots() override { return {*root_}; }
  absl::StatusOr<datastore::Bundle> UpstreamBundle() override {
    return absl::UnimplementedError("the disk upstream keeps no bundle");
  }
  absl::StatusOr<std::string> ChangeUpstreamBundle() override {
    return absl::UnimplementedError("the disk upstream keeps no bundle");
  }

 private:
  DiskUnderTest() = default;
  testutil::TempDir dir_{"trellis-ua"};
  std::optional<common::Certificate> root_;
  std::optional<common::Certificate> issuer_;
  std::unique_ptr<UpstreamAuthority> authority_;
};

class SpireUnderTest final : public UpstreamUnderTest {
 public:
  static absl::StatusOr<std::unique_ptr<UpstreamUnderTest>> Create() {
    std::unique_ptr<SpireUnderTest> t(new SpireUnderTest());
    TRELLIS_ASSIGN_OR_RETURN(t->tier_, testing::UpstreamTier::Start({}));
    TRELLIS_RETURN_IF_ERROR(t->tier_->PublishSvid(testing::kDownstreamId).status());
    downstream::SpireUpstreamOptions options(Td());
    options.server_address = "127.0.0.1";
    options.server_port = static_cast<uint16_t>(t->tier_->upstream_port());
    options.workload_api_socket = t->tier_->workload_api_socket();
    options.svid_wait = absl::Seconds(20);
    TRELLIS_ASSIGN_OR_RETURN(t->authority_, downstream::CreateSpireUpstreamAuthority(options));
    return std::unique_ptr<UpstreamUnderTest>(std::move(t));
  }
  ~SpireUnderTest() override {
    // The authority's streams end before the tier they talk to.
    authority_.reset();
  }
  UpstreamAuthority& authority() override { return *authority_; }
  common::Certificate Issuer() override { return tier_->ActiveCa(); }
  std::vector<common::Certificate> Roots() override {
    return tier_->ca().Bundle()->x509_authorities();
  }
  absl::StatusOr<datastore::Bundle> UpstreamBundle() override { return tier_->ca().StoredBundle(); }
  absl::StatusOr<std::string> ChangeUpstreamBundle() override {
    TRELLIS_ASSIGN_OR_RETURN(auto prepared, tier_->ca().PrepareJwt());
    return prepared.id;
  }

 private:
  SpireUnderTest() = default;
  std::unique_ptr<testing::UpstreamTier> tier_;
  std::unique_ptr<UpstreamAuthority> authority_;
};

struct UpstreamKind {
  std::string name;
  // Whether the implementation promises to own the bundle (JWT publication, bundle stream).
  bool owns_bundle;
  std::function<absl::StatusOr<std::unique_ptr<UpstreamUnderTest>>()> create;
};

const UpstreamKind kDisk{"Disk", false, [] { return DiskUnderTest::Create(false); }};
const UpstreamKind kDiskIntermediate{"DiskIntermediate", false,
                                     [] { return DiskUnderTest::Create(true); }};
const UpstreamKind kSpire{"Spire", true, &SpireUnderTest::Create};

// OpenSSL's own path building and checks: `ca_chain` (CA first) must lead to one of `roots`.
std::string OpensslVerifyError(const std::vector<common::Certificate>& ca_chain,
                               const std::vector<common::Certificate>& roots) {
  std::unique_ptr<X509_STORE, decltype(&X509_STORE_free)> store(X509_STORE_new(), X509_STORE_free);
  for (const auto& r : roots) X509_STORE_add_cert(store.get(), r.x509());
  std::unique_ptr<STACK_OF(X509), void (*)(STACK_OF(X509)*)> untrusted(
      sk_X509_new_null(), [](STACK_OF(X509) * s) { sk_X509_free(s); });
  for (size_t i = 1; i < ca_chain.size(); ++i) sk_X509_push(untrusted.get(), ca_chain[i].x509());
  std::unique_ptr<X509_STORE_CTX, decltype(&X509_STORE_CTX_free)> ctx(X509_STORE_CTX_new(),
                                                                      X509_STORE_CTX_free);
  if (X509_STORE_CTX_init(ctx.get(), store.get(), ca_chain.front().x509(), untrusted.get()) != 1) {
    return "X509_STORE_CTX_init failed";
  }
  X509_STORE_CTX_set_flags(ctx.get(), X509_V_FLAG_X509_STRICT);
  if (X509_verify_cert(ctx.get()) == 1) return "";
  return X509_verify_cert_error_string(X509_STORE_CTX_get_error(ctx.get()));
}

bool HasKid(const datastore::Bundle& b, const std::string& kid) {
  for (const auto& a : b.jwt_authorities) {
    if (a.kid == kid) return true;
  }
  return false;
}

// Bundles a WatchBundle callback received, and whether any arrived after it was told to stop.
class BundleRecorder {
 public:
  std::function<void(const datastore::Bundle&)> Callback() {
    return [this](const datastore::Bundle& b) {
      absl::MutexLock lock(&mu_);
      if (closed_) late_++;
      bundles_.push_back(b);
    };
  }
  // Waits until a received bundle satisfies `pred`.
  bool WaitFor(const std::function<bool(const datastore::Bundle&)>& pred, absl::Duration timeout) {
    absl::MutexLock lock(&mu_);
    auto found = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      for (const auto& b : bundles_) {
        if (pred(b)) return true;
      }
      return false;
    };
    return mu_.AwaitWithTimeout(absl::Condition(&found), timeout);
  }
  void Close() {
    absl::MutexLock lock(&mu_);
    closed_ = true;
  }
  int late() const {
    absl::MutexLock lock(&mu_);
    return late_;
  }
  size_t count() const {
    absl::MutexLock lock(&mu_);
    return bundles_.size();
  }

 private:
  mutable absl::Mutex mu_;
  std::vector<datastore::Bundle> bundles_ ABSL_GUARDED_BY(mu_);
  bool closed_ ABSL_GUARDED_BY(mu_) = false;
  int late_ ABSL_GUARDED_BY(mu_) = 0;
};

class UpstreamAuthorityConformance : public ::testing::TestWithParam<UpstreamKind> {
 protected:
  void SetUp() override {
    auto created = GetParam().create();
    ASSERT_THAT(created, IsOk());
    under_test_ = std::move(*created);
  }
  UpstreamAuthority& authority() { return under_test_->authority(); }

  std::unique_ptr<UpstreamUnderTest> under_test_;
};

TEST_P(UpstreamAuthorityConformance, MintedCaCarriesTheGivenKeyAndIsACaOfTheTrustDomain) {
  auto key = common::PrivateKey::Generate();
  ASSERT_THAT(key, IsOk());
  auto minted = authority().MintX509Ca(*key, Td(), absl::Hours(2));
  ASSERT_THAT(minted, IsOk());
  ASSERT_FALSE(minted->ca_chain.empty());
  const common::Certificate& ca = minted->ca_chain.front();
  EXPECT_EQ(ca.public_key().spki_der(), key->spki_der());
  EXPECT_TRUE(ca.IsCa());
  EXPECT_NE(ca.key_usage() & common::kKeyUsageKeyCertSign, 0u);
  EXPECT_THAT(ca.UriSans(), ::testing::ElementsAre("spiffe://example.org"));
  auto id = ca.GetSpiffeId();
  ASSERT_THAT(id, IsOk());
  EXPECT_EQ(id->trust_domain(), Td());
}

TEST_P(UpstreamAuthorityConformance, MintedChainVerifiesToTheReturnedRootsWithOpenssl) {
  auto key = common::PrivateKey::Generate();
  auto minted = authority().MintX509Ca(*key, Td(), absl::Hours(2));
  ASSERT_THAT(minted, IsOk());
  ASSERT_FALSE(minted->roots.empty());
  EXPECT_EQ(minted->roots, under_test_->Roots());
  for (const auto& c : minted->ca_chain) {
    for (const auto& r : minted->roots) EXPECT_FALSE(c == r) << "the chain must not hold a root";
  }
  EXPECT_EQ(OpensslVerifyError(minted->ca_chain, minted->roots), "");
  // And not against roots of another CA.
  auto other_key = common::PrivateKey::Generate();
  auto other = common::CreateRootCa(*other_key, Td(), absl::Hours(1), common::SystemClock::Get());
  ASSERT_THAT(other, IsOk());
  EXPECT_NE(OpensslVerifyError(minted->ca_chain, {*other}), "");
  // A leaf the minted CA signs verifies as an X509-SVID of the trust domain.
  auto issuer =
      common::X509SvidIssuer::Create(minted->ca_chain.front(), *key, common::SystemClock::Get());
  ASSERT_THAT(issuer, IsOk());
  auto leaf_key = common::PrivateKey::Generate();
  auto leaf_der = (*issuer)->IssueForPublicKey(leaf_key->public_key(),
                                               *common::SpiffeId::Parse("spiffe://example.org/app"),
                                               absl::Minutes(5));
  ASSERT_THAT(leaf_der, IsOk());
  std::vector<common::Certificate> chain{*common::Certificate::FromDer(*leaf_der)};
  for (const auto& c : minted->ca_chain) chain.push_back(c);
  EXPECT_THAT(common::VerifyX509Svid(chain, minted->roots, Td(), absl::Now()), IsOk());
}

// Within the upstream's cap, the CA gets the lifetime asked for and no more.
TEST_P(UpstreamAuthorityConformance, MintedCaLivesNoLongerThanRequested) {
  auto key = common::PrivateKey::Generate();
  const absl::Duration ttl = absl::Hours(2);
  auto minted = authority().MintX509Ca(*key, Td(), ttl);
  const absl::Time after = absl::Now();
  ASSERT_THAT(minted, IsOk());
  const common::Certificate& ca = minted->ca_chain.front();
  EXPECT_LE(ca.not_after(), after + ttl);
  EXPECT_GT(ca.not_after(), after + ttl - absl::Minutes(5));
  EXPECT_LE(ca.not_before(), after);
}

TEST_P(UpstreamAuthorityConformance, MintedCaIsCappedAtTheUpstreamCa) {
  auto key = common::PrivateKey::Generate();
  const common::Certificate issuer = under_test_->Issuer();
  auto minted = authority().MintX509Ca(*key, Td(), absl::Hours(24 * 365));
  ASSERT_THAT(minted, IsOk());
  EXPECT_EQ(minted->ca_chain.front().not_after(), issuer.not_after());
  EXPECT_EQ(minted->ca_chain.front().AuthorityKeyId(), issuer.SubjectKeyId());
  // The issuer is in the chain unless it is itself a root.
  const bool issuer_is_root =
      issuer.SubjectKeyId() == issuer.AuthorityKeyId() || issuer.AuthorityKeyId().empty();
  if (!issuer_is_root) {
    ASSERT_GE(minted->ca_chain.size(), 2u);
    EXPECT_EQ(minted->ca_chain[1], issuer);
  }
}

TEST_P(UpstreamAuthorityConformance, EachMintIsANewCertificateForItsOwnKey) {
  auto first_key = common::PrivateKey::Generate();
  auto second_key = common::PrivateKey::Generate(common::KeyType::kEcP384);
  auto first = authority().MintX509Ca(*first_key, Td(), absl::Hours(1));
  auto second = authority().MintX509Ca(*second_key, Td(), absl::Hours(1));
  ASSERT_THAT(first, IsOk());
  ASSERT_THAT(second, IsOk());
  EXPECT_FALSE(first->ca_chain.front() == second->ca_chain.front());
  EXPECT_EQ(second->ca_chain.front().public_key().spki_der(), second_key->spki_der());
  EXPECT_EQ(second->ca_chain.front().public_key().type(), common::KeyType::kEcP384);
}

TEST_P(UpstreamAuthorityConformance, AnotherTrustDomainIsRefused) {
  auto key = common::PrivateKey::Generate();
  auto other = *common::TrustDomain::Parse("other.org");
  EXPECT_THAT(authority().MintX509Ca(*key, other, absl::Hours(1)),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("other.org")));
}

TEST_P(UpstreamAuthorityConformance, NegativeTtlIsRefused) {
  auto key = common::PrivateKey::Generate();
  EXPECT_THAT(authority().MintX509Ca(*key, Td(), -absl::Hours(1)),
              StatusIs(absl::StatusCode::kInvalidArgument));
}

TEST_P(UpstreamAuthorityConformance, OwnsBundleIsWhatTheImplementationPromises) {
  EXPECT_EQ(authority().OwnsBundle(), GetParam().owns_bundle);
}

TEST_P(UpstreamAuthorityConformance, PublishingAJwtKeyAgreesWithOwnsBundle) {
  auto key = common::PrivateKey::Generate();
  datastore::JwtAuthority published{
      "conformance-kid", key->spki_der(),
      absl::FromUnixSeconds(absl::ToUnixSeconds(absl::Now())) + absl::Hours(1), false};
  auto bundle = authority().PublishJwtAuthority(published);
  if (!authority().OwnsBundle()) {
    EXPECT_THAT(bundle, StatusIs(absl::StatusCode::kFailedPrecondition));
    return;
  }
  ASSERT_THAT(bundle, IsOk());
  bool found = false;
  for (const auto& a : bundle->jwt_authorities) {
    if (a.kid == published.kid) {
      found = true;
      EXPECT_EQ(a.public_key_der, published.public_key_der);
      EXPECT_EQ(a.expires_at, published.expires_at);
    }
  }
  EXPECT_TRUE(found);
  // The returned bundle is the upstream's, as stored there now.
  auto upstream = under_test_->UpstreamBundle();
  ASSERT_THAT(upstream, IsOk());
  EXPECT_TRUE(HasKid(*upstream, published.kid));
  EXPECT_EQ(bundle->x509_authorities.size(), upstream->x509_authorities.size());
}

TEST_P(UpstreamAuthorityConformance, WatchBundleDeliversTheUpstreamBundleOnlyWhenOwned) {
  BundleRecorder recorder;
  authority().WatchBundle(recorder.Callback());
  if (!authority().OwnsBundle()) {
    EXPECT_FALSE(
        recorder.WaitFor([](const datastore::Bundle&) { return true; }, absl::Milliseconds(500)));
    authority().Stop();
    EXPECT_EQ(recorder.count(), 0u);
    return;
  }
  auto upstream = under_test_->UpstreamBundle();
  ASSERT_THAT(upstream, IsOk());
  const int64_t sequence = upstream->sequence_number;
  std::vector<std::string> root_ders;
  for (const auto& r : under_test_->Roots()) root_ders.push_back(r.der());
  EXPECT_TRUE(recorder.WaitFor(
      [&](const datastore::Bundle& b) {
        std::vector<std::string> got;
        for (const auto& a : b.x509_authorities) got.push_back(a.ca_der);
        return b.sequence_number == sequence && got == root_ders;
      },
      absl::Seconds(20)));
  // A later change upstream is delivered too.
  auto kid = under_test_->ChangeUpstreamBundle();
  ASSERT_THAT(kid, IsOk());
  EXPECT_TRUE(recorder.WaitFor([&](const datastore::Bundle& b) { return HasKid(b, *kid); },
                               absl::Seconds(20)));
}

TEST_P(UpstreamAuthorityConformance, NoBundleCallbackRunsOnceStopReturns) {
  BundleRecorder recorder;
  authority().WatchBundle(recorder.Callback());
  if (authority().OwnsBundle()) {
    ASSERT_TRUE(recorder.WaitFor([](const datastore::Bundle&) { return true; }, absl::Seconds(20)));
  }
  authority().Stop();
  recorder.Close();
  if (authority().OwnsBundle()) {
    auto kid = under_test_->ChangeUpstreamBundle();
    ASSERT_THAT(kid, IsOk());
  }
  absl::SleepFor(absl::Milliseconds(1500));
  EXPECT_EQ(recorder.late(), 0);
}

TEST_P(UpstreamAuthorityConformance, StopIsIdempotentAndWatchingAfterItDeliversNothing) {
  authority().Stop();
  authority().Stop();
  BundleRecorder recorder;
  authority().WatchBundle(recorder.Callback());
  recorder.Close();
  absl::SleepFor(absl::Milliseconds(500));
  authority().Stop();
  EXPECT_EQ(recorder.count(), 0u);
}

INSTANTIATE_TEST_SUITE_P(Implementations, UpstreamAuthorityConformance,
                         ::testing::Values(kDisk, kDiskIntermediate, kSpire),
                         [](const ::testing::TestParamInfo<UpstreamKind>& info) {
                           return info.param.name;
                         });

}  // namespace
}  // namespace trellis::upstream
