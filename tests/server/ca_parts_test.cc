// The CA parts on their own: the signer's swap, the journal's resume, the upstream link's taint
// events, and the rotator's background loop.
#include <atomic>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/escaping.h"
#include "absl/synchronization/notification.h"
#include "common/csr.h"
#include "common/jwt.h"
#include "gtest/gtest.h"
#include "server/authority_dependents.h"
#include "server/bundle_keeper.h"
#include "server/ca_journal.h"
#include "server/ca_signer.h"
#include "server/upstream_link.h"
#include "tests/server/ca_manager_fixture.h"
#include "tests/testutil/status_matchers.h"

namespace trellis::server::testing {
namespace {

using testutil::IsOk;
using testutil::StatusIs;

common::SpiffeId Id(const std::string& path) {
  return *common::SpiffeId::Parse("spiffe://example.org/" + path);
}

TEST(CaSignerTest, RefusesToSignBeforeAnAuthorityIsInstalled) {
  common::FakeClock clock{kTestStart};
  CaSigner signer(Td(), "", clock);
  auto key = common::PrivateKey::Generate();
  ASSERT_TRUE(key.ok());
  EXPECT_THAT(signer.SignX509SvidFromCsr(*common::BuildCsr(*key), Id("w"), absl::Minutes(5), {},
                                         nullptr)
                  .status(),
              StatusIs(absl::StatusCode::kUnavailable));
  EXPECT_THAT(signer.SignJwtSvid(Id("w"), {"aud"}, absl::Minutes(5)).status(),
              StatusIs(absl::StatusCode::kUnavailable));
}

TEST(CaSignerTest, ChainsFollowTheInstalledAuthorityAndJwtExpiryIsCapped) {
  common::FakeClock clock{kTestStart};
  CaSigner signer(Td(), "https://issuer.example", clock);
  auto ca_key = common::PrivateKey::Generate();
  ASSERT_TRUE(ca_key.ok());
  auto root = common::CreateRootCa(*ca_key, Td(), absl::Hours(24), clock, {});
  ASSERT_TRUE(root.ok()) << root.status();
  auto issuer = common::X509SvidIssuer::Create(*root, *ca_key, clock);
  ASSERT_TRUE(issuer.ok()) << issuer.status();
  signer.SetX509(std::move(*issuer), {"intermediate-1", "intermediate-2"});
  auto leaf_key = common::PrivateKey::Generate();
  auto chain = signer.SignX509SvidForKey(leaf_key->public_key(), Id("w"), absl::Minutes(5), {});
  ASSERT_TRUE(chain.ok()) << chain.status();
  ASSERT_EQ(chain->size(), 3u);
  EXPECT_EQ((*chain)[1], "intermediate-1");
  EXPECT_EQ((*chain)[2], "intermediate-2");
  auto leaf = common::Certificate::FromDer((*chain)[0]);
  ASSERT_TRUE(leaf.ok());
  EXPECT_TRUE(common::VerifyX509Svid({*leaf}, {*root}, Td(), clock.Now()).ok());

  auto jwt_key = common::PrivateKey::Generate();
  signer.SetJwt("kid-1", *jwt_key, kTestStart + absl::Minutes(1));
  auto token = signer.SignJwtSvid(Id("w"), {"aud"}, absl::Hours(1));
  ASSERT_TRUE(token.ok()) << token.status();
  auto peek = common::PeekJwt(*token);
  ASSERT_TRUE(peek.ok()) << peek.status();
  EXPECT_EQ(peek->header.value("kid", ""), "kid-1");
  EXPECT_EQ(peek->claims.value("exp", int64_t{0}), absl::ToUnixSeconds(kTestStart) + 60);
  EXPECT_EQ(peek->claims.value("iss", ""), "https://issuer.example");
  EXPECT_THAT(signer.SignJwtSvid(*common::SpiffeId::Parse("spiffe://other.org/w"), {"aud"},
                                 absl::Minutes(1))
                  .status(),
              StatusIs(absl::StatusCode::kInvalidArgument));
  clock.Advance(absl::Minutes(2));
  EXPECT_THAT(signer.SignJwtSvid(Id("w"), {"aud"}, absl::Minutes(1)).status(),
              StatusIs(absl::StatusCode::kUnavailable));
}

class CaJournalTest : public CaManagerTest {
 protected:
  X509Slot NewRootSlot(const std::string& id, CaJournal& journal) {
    auto key = journal.GenerateX509Key(id, common::KeyType::kEcP256);
    EXPECT_TRUE(key.ok()) << key.status();
    auto root = common::CreateRootCa(*key, Td(), absl::Hours(24), clock_, {});
    EXPECT_TRUE(root.ok()) << root.status();
    return X509Slot{id, {*root}, {*root}, *key, nullptr};
  }
  static std::shared_ptr<const common::X509SvidIssuer> IssuerFor(const X509Slot& slot,
                                                                 const common::Clock& clock) {
    auto issuer = common::X509SvidIssuer::Create(slot.ca(), slot.key, clock);
    EXPECT_TRUE(issuer.ok()) << issuer.status();
    return std::move(*issuer);
  }
};

TEST_F(CaJournalTest, ARestartResumesTheActiveThePreparedAndTheRetiredAuthority) {
  {
    CaJournal journal(ds_.get(), km_.get(), "server-a", clock_);
    ASSERT_THAT(journal.Resume(), IsOk());
    EXPECT_THAT(journal.ActivateX509(nullptr), StatusIs(absl::StatusCode::kFailedPrecondition));
    X509Slot first = NewRootSlot("aa01", journal);
    ASSERT_THAT(journal.PrepareX509(first), IsOk());
    ASSERT_THAT(journal.ActivateX509(IssuerFor(first, clock_)), IsOk());
    clock_.Advance(absl::Minutes(1));
    X509Slot second = NewRootSlot("aa02", journal);
    ASSERT_THAT(journal.PrepareX509(second), IsOk());
    ASSERT_THAT(journal.ActivateX509(IssuerFor(second, clock_)), IsOk());
    ASSERT_THAT(journal.PrepareX509(NewRootSlot("aa03", journal)), IsOk());
    EXPECT_EQ(journal.X509Generation(), 2u);
  }
  CaJournal resumed(ds_.get(), km_.get(), "server-a", clock_);
  ASSERT_THAT(resumed.Resume(), IsOk());
  AuthoritySlots slots = resumed.Slots();
  ASSERT_TRUE(slots.x509_active);
  EXPECT_EQ(slots.x509_active->id, "aa02");
  ASSERT_NE(slots.x509_active->issuer, nullptr);
  ASSERT_TRUE(slots.x509_prepared);
  EXPECT_EQ(slots.x509_prepared->id, "aa03");
  EXPECT_EQ(slots.x509_prepared->issuer, nullptr);
  ASSERT_TRUE(slots.x509_old);
  EXPECT_EQ(slots.x509_old->id, "aa01");
  EXPECT_EQ(slots.x509_old->retired_at, kTestStart + absl::Minutes(1));
  EXPECT_EQ(resumed.X509Generation(), 1u);

  // Another server's records sharing the store are not ours to resume.
  CaJournal other(ds_.get(), km_.get(), "server-b", clock_);
  ASSERT_THAT(other.Resume(), IsOk());
  EXPECT_FALSE(other.ActiveX509());
}

TEST_F(CaJournalTest, ARetiredPreparedAuthorityIsNotResumedAndExpiredOnesArePruned) {
  {
    CaJournal journal(ds_.get(), km_.get(), "server-a", clock_);
    ASSERT_THAT(journal.Resume(), IsOk());
    ASSERT_THAT(journal.PrepareX509(NewRootSlot("bb01", journal)), IsOk());
    ASSERT_THAT(journal.RetirePreparedX509(), IsOk());
    EXPECT_FALSE(journal.PreparedX509());
  }
  CaJournal resumed(ds_.get(), km_.get(), "server-a", clock_);
  ASSERT_THAT(resumed.Resume(), IsOk());
  EXPECT_FALSE(resumed.PreparedX509());
  auto records = ds_->ListCaJournal("server-a");
  ASSERT_TRUE(records.ok());
  ASSERT_EQ(records->size(), 1u);
  EXPECT_EQ((*records)[0].status, datastore::AuthorityStatus::kOld);

  clock_.Advance(absl::Hours(26));
  ASSERT_THAT(resumed.Prune(clock_.Now() - absl::Hours(1)), IsOk());
  records = ds_->ListCaJournal("server-a");
  ASSERT_TRUE(records.ok());
  EXPECT_TRUE(records->empty());
  EXPECT_THAT(km_->GetKey("x509-CA-bb01").status(), StatusIs(absl::StatusCode::kNotFound));
}

// An upstream that is never called: the merge works on the bundles it is handed.
class SilentUpstream : public UpstreamAuthority {
 public:
  absl::StatusOr<MintResult> MintX509Ca(const common::PrivateKey&, const common::TrustDomain&,
                                        absl::Duration) override {
    return absl::UnavailableError("not reachable in this test");
  }
  bool OwnsBundle() const override { return true; }
};

TEST_F(CaManagerTest, UpstreamLinkReportsEachNewlyTaintedAuthorityOnce) {
  CaOptions options = DefaultOptions();
  options.upstream = std::make_shared<SilentUpstream>();
  CaJournal journal(ds_.get(), km_.get(), "default", clock_);
  BundleKeeper bundle(options, ds_.get());
  AuthorityDependents dependents(options, ds_.get(), &journal, &bundle, clock_);
  UpstreamLink link(options, &bundle, &journal, &dependents, clock_);
  int wakes = 0;
  link.SetEventListener([&wakes] { ++wakes; });

  auto root_key = common::PrivateKey::Generate();
  auto root = common::CreateRootCa(*root_key, Td(), absl::Hours(24), clock_, {});
  ASSERT_TRUE(root.ok());
  datastore::Bundle upstream;
  upstream.trust_domain = "example.org";
  upstream.x509_authorities = {{root->der(), root->not_after(), false}};
  upstream.jwt_authorities = {{"kid-up", root_key->spki_der(), root->not_after(), false}};
  ASSERT_THAT(link.Merge(upstream), IsOk());
  EXPECT_TRUE(link.TakeTaintEvents().empty());
  EXPECT_EQ(wakes, 0);
  ASSERT_NE(bundle.Bundle(), nullptr);
  EXPECT_EQ(bundle.Bundle()->x509_authorities().size(), 1u);

  upstream.x509_authorities[0].tainted = true;
  upstream.jwt_authorities[0].tainted = true;
  ASSERT_THAT(link.Merge(upstream), IsOk());
  std::vector<UpstreamLink::TaintEvent> events = link.TakeTaintEvents();
  ASSERT_EQ(events.size(), 2u);
  EXPECT_EQ(events[0].kind, datastore::AuthorityKind::kX509);
  EXPECT_EQ(events[0].id, absl::BytesToHexString(root->SubjectKeyId()));
  EXPECT_EQ(events[1].kind, datastore::AuthorityKind::kJwt);
  EXPECT_EQ(events[1].id, "kid-up");
  EXPECT_EQ(wakes, 1);
  EXPECT_EQ(bundle.TaintedX509KeyIds().count(root->SubjectKeyId()), 1u);

  // The same bundle again changes nothing and reports nothing.
  ASSERT_THAT(link.Merge(upstream), IsOk());
  EXPECT_TRUE(link.TakeTaintEvents().empty());
  EXPECT_EQ(wakes, 1);

  upstream.trust_domain = "other.org";
  EXPECT_THAT(link.Merge(upstream), StatusIs(absl::StatusCode::kInvalidArgument));
}

TEST_F(CaManagerTest, BackgroundRotationActivatesOnScheduleWithoutTicks) {
  auto ca = StartManager();
  ASSERT_NE(ca, nullptr);
  const common::Certificate first = *ca->ActiveX509Ca();
  const uint64_t generation = ca->X509Generation();
  // Past the activation threshold (4 h left of 24 h): the loop prepares and activates.
  clock_.Advance(absl::Hours(20) + absl::Minutes(10));
  std::atomic<int> activations{0};
  ca->SetX509ActivationListener([&activations] { activations++; });
  ca->StartRotation();
  const absl::Time deadline = absl::Now() + absl::Seconds(60);
  while (ca->X509Generation() == generation && absl::Now() < deadline) {
    absl::SleepFor(absl::Milliseconds(20));
  }
  ca->StopRotation();
  EXPECT_GT(ca->X509Generation(), generation);
  EXPECT_FALSE(*ca->ActiveX509Ca() == first);
  EXPECT_GE(activations.load(), 1);
  ca->StopRotation();  // idempotent
}

}  // namespace
}  // namespace trellis::server::testing
