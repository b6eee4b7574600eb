// The refresher against a real bundle endpoint on loopback and a SQLite datastore, its
// schedule driven by a fake clock.
#include "federation/bundle_refresher.h"

#include <stdlib.h>

#include <atomic>

#include "absl/synchronization/mutex.h"
#include "datastore/factory.h"
#include "federation/bundle_endpoint.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/api_convert.h"
#include "tests/federation/test_pki.h"
#include "transport/wire_convert.h"

namespace trellis::federation {
namespace {

using ::testing::HasSubstr;
using testing::Must;
using testing::TestDomain;

class BundleRefresherTest : public ::testing::Test {
 protected:
  BundleRefresherTest()
      : own_("own.test"), b_("b.test"), web_("web-pki.test"), dir_("refr"), clock_(absl::Now()) {
    ds_ = Must(datastore::CreateDataStore("sqlite3", dir_.Sub("ds.sqlite3")));
    ::setenv("SSL_CERT_FILE", dir_.Write("web-roots.pem", web_.ca.ToPem()).c_str(), 1);
    BundleEndpoint::Options o;
    o.address = "127.0.0.1";
    o.port = 0;
    o.identity = MakeIdentity(web_.WriteSvid(dir_, "web", "/endpoint", {"localhost"}));
    o.document = [this]() -> absl::StatusOr<std::string> {
      ++requests_;
      absl::MutexLock lock(&mu_);
      return document_;
    };
    web_endpoint_ = Must(BundleEndpoint::Start(std::move(o)));
    BundleRefresher::Options ro(own_.td);
    ro.clock = &clock_;
    ro.own_bundle = [this] { return std::make_shared<const common::Bundle>(own_.Bundle()); };
    ro.after_write = [this] { ++writes_; };
    refresher_ = std::make_unique<BundleRefresher>(ro, ds_.get());
  }
  ~BundleRefresherTest() override { ::unsetenv("SSL_CERT_FILE"); }

  static std::shared_ptr<web::TlsFiles> MakeIdentity(const std::pair<std::string, std::string>& f) {
    return std::make_shared<web::TlsFiles>(f.first, f.second);
  }

  void Serve(const common::Bundle& bundle) {
    absl::MutexLock lock(&mu_);
    document_ = Must(common::SpiffeBundleToJson(bundle));
  }
  void ServeText(std::string text) {
    absl::MutexLock lock(&mu_);
    document_ = std::move(text);
  }

  void RelateWeb() {
    datastore::FederationRelationship r;
    r.trust_domain = "b.test";
    r.bundle_endpoint_url = "https://localhost:" + std::to_string(web_endpoint_->port());
    r.profile = datastore::BundleEndpointProfile::kHttpsWeb;
    ASSERT_TRUE(ds_->CreateFederationRelationship(r).ok());
  }

  common::Bundle Stored() {
    return Must(transport::BundleFromProto(server::BundleToProto(Must(ds_->GetBundle("b.test")))));
  }

  // b.test's bundle with a second CA, so it differs from b_.Bundle().
  common::Bundle Rotated(uint64_t sequence) {
    TestDomain next("b.test");
    common::Bundle bundle = b_.Bundle(sequence);
    EXPECT_TRUE(bundle.AddX509Authority(next.ca).ok());
    return bundle;
  }

  TestDomain own_;
  TestDomain b_;
  TestDomain web_;
  testutil::TempDir dir_;
  common::FakeClock clock_;
  std::unique_ptr<datastore::DataStore> ds_;
  absl::Mutex mu_;
  std::string document_ ABSL_GUARDED_BY(mu_);
  std::atomic<int> requests_{0};
  std::atomic<int> writes_{0};
  std::unique_ptr<BundleEndpoint> web_endpoint_;
  std::unique_ptr<BundleRefresher> refresher_;
};

TEST_F(BundleRefresherTest, FetchesStoresAndWaitsForTheRefreshHint) {
  RelateWeb();
  common::Bundle served = b_.Bundle(3);
  served.set_refresh_hint_seconds(30);
  Serve(served);
  refresher_->RunDue();
  EXPECT_TRUE(Stored().SameAuthorities(served));
  EXPECT_EQ(writes_.load(), 1);
  std::optional<BundleRefresher::State> st = refresher_->StateOf("b.test");
  ASSERT_TRUE(st.has_value());
  EXPECT_EQ(st->next_attempt, clock_.Now() + absl::Seconds(30));
  EXPECT_EQ(st->last_sequence, 3u);
  EXPECT_TRUE(st->last_error.empty());

  clock_.Advance(absl::Seconds(29));
  refresher_->RunDue();
  EXPECT_EQ(requests_.load(), 1) << "fetched before the hint ran out";
  clock_.Advance(absl::Seconds(1));
  refresher_->RunDue();
  EXPECT_EQ(requests_.load(), 2);
  EXPECT_EQ(writes_.load(), 1) << "the same authorities are not written again";
}

TEST_F(BundleRefresherTest, AMissingHintUsesTheDefaultAndHintsAreClamped) {
  RelateWeb();
  Serve(b_.Bundle());
  refresher_->RunDue();
  EXPECT_EQ(refresher_->StateOf("b.test")->next_attempt, clock_.Now() + absl::Minutes(5));
  common::Bundle week = Rotated(2);
  week.set_refresh_hint_seconds(7 * 24 * 3600);
  Serve(week);
  ASSERT_TRUE(refresher_->RefreshNow("b.test").ok());
  EXPECT_EQ(refresher_->StateOf("b.test")->next_attempt, clock_.Now() + absl::Hours(1));
}

TEST_F(BundleRefresherTest, AFailedFetchKeepsTheLastGoodBundleAndBacksOff) {
  RelateWeb();
  common::Bundle good = b_.Bundle(1);
  good.set_refresh_hint_seconds(60);
  Serve(good);
  refresher_->RunDue();
  ServeText("<html>maintenance</html>");
  clock_.Advance(absl::Seconds(60));
  refresher_->RunDue();
  EXPECT_TRUE(Stored().SameAuthorities(good));
  std::optional<BundleRefresher::State> st = refresher_->StateOf("b.test");
  EXPECT_THAT(st->last_error, HasSubstr("did not serve a valid SPIFFE bundle"));
  EXPECT_EQ(st->failures, 1);
  EXPECT_EQ(st->next_attempt, clock_.Now() + absl::Seconds(5));
  clock_.Advance(absl::Seconds(5));
  refresher_->RunDue();
  EXPECT_EQ(refresher_->StateOf("b.test")->next_attempt, clock_.Now() + absl::Seconds(10));
  // Recovery resets the schedule to the hint.
  common::Bundle next = Rotated(2);
  Serve(next);
  clock_.Advance(absl::Seconds(10));
  refresher_->RunDue();
  EXPECT_TRUE(Stored().SameAuthorities(next));
  EXPECT_EQ(refresher_->StateOf("b.test")->failures, 0);
  EXPECT_TRUE(refresher_->StateOf("b.test")->last_error.empty());
}

TEST_F(BundleRefresherTest, AnOlderSequenceIsRefused) {
  RelateWeb();
  common::Bundle newer = b_.Bundle(9);
  Serve(newer);
  ASSERT_TRUE(refresher_->RefreshNow("b.test").ok());
  Serve(Rotated(4));
  absl::Status st = refresher_->RefreshNow("b.test");
  EXPECT_EQ(st.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(std::string(st.message()), HasSubstr("sequence 4, older than sequence 9"));
  EXPECT_TRUE(Stored().SameAuthorities(newer));
}

TEST_F(BundleRefresherTest, ARelationshipPointedElsewhereForgetsTheOldSequence) {
  RelateWeb();
  Serve(b_.Bundle(9));
  ASSERT_TRUE(refresher_->RefreshNow("b.test").ok());
  // The trust domain moved its endpoint; the new one counts from 4.
  common::Bundle moved = Rotated(4);
  BundleEndpoint::Options o;
  o.address = "127.0.0.1";
  o.port = 0;
  o.identity = MakeIdentity(web_.WriteSvid(dir_, "web2", "/endpoint", {"localhost"}));
  o.document = [&moved] { return Must(common::SpiffeBundleToJson(moved)); };
  std::unique_ptr<BundleEndpoint> second = Must(BundleEndpoint::Start(std::move(o)));
  datastore::FederationRelationship r = Must(ds_->GetFederationRelationship("b.test"));
  r.bundle_endpoint_url = "https://localhost:" + std::to_string(second->port());
  ASSERT_TRUE(ds_->UpdateFederationRelationship(r).ok());
  EXPECT_TRUE(refresher_->RefreshNow("b.test").ok());
  EXPECT_TRUE(Stored().SameAuthorities(moved));
  EXPECT_EQ(refresher_->StateOf("b.test")->last_sequence, 4u);
}

TEST_F(BundleRefresherTest, AnotherTrustDomainsBundleIsRefused) {
  RelateWeb();
  Serve(b_.Bundle());
  ASSERT_TRUE(refresher_->RefreshNow("b.test").ok());
  Serve(own_.Bundle(5));
  absl::Status st = refresher_->RefreshNow("b.test");
  EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(st.message()), HasSubstr("trust domain own.test"));
  EXPECT_TRUE(Stored().SameAuthorities(b_.Bundle()));
}

TEST_F(BundleRefresherTest, HttpsSpiffeChainsToTheStoredBundleOfTheEndpointsDomain) {
  BundleEndpoint::Options o;
  o.address = "127.0.0.1";
  o.port = 0;
  o.identity = MakeIdentity(b_.WriteSvid(dir_, "b-server", "/spire/server"));
  o.document = [this] { return Must(common::SpiffeBundleToJson(b_.Bundle(2))); };
  std::unique_ptr<BundleEndpoint> b_endpoint = Must(BundleEndpoint::Start(std::move(o)));
  datastore::FederationRelationship r;
  r.trust_domain = "b.test";
  r.bundle_endpoint_url = "https://127.0.0.1:" + std::to_string(b_endpoint->port());
  r.profile = datastore::BundleEndpointProfile::kHttpsSpiffe;
  r.endpoint_spiffe_id = "spiffe://b.test/spire/server";
  ASSERT_TRUE(ds_->CreateFederationRelationship(r).ok());
  absl::Status first = refresher_->RefreshNow("b.test");
  EXPECT_EQ(first.code(), absl::StatusCode::kFailedPrecondition) << first;
  // Bootstrapped by hand, as `bundle set` or `federation create -trustDomainBundlePath` do.
  ASSERT_TRUE(
      ds_->SetBundle(Must(server::BundleFromProto(transport::BundleToProto(b_.Bundle(1))))).ok());
  EXPECT_TRUE(refresher_->RefreshNow("b.test").ok());
  EXPECT_EQ(refresher_->StateOf("b.test")->last_sequence, 2u);
}

TEST_F(BundleRefresherTest, AnEndpointOfOurOwnTrustDomainUsesOurBundle) {
  BundleEndpoint::Options o;
  o.address = "127.0.0.1";
  o.port = 0;
  o.identity = MakeIdentity(own_.WriteSvid(dir_, "own-fetcher", "/bundle-proxy"));
  o.document = [this] { return Must(common::SpiffeBundleToJson(b_.Bundle(2))); };
  std::unique_ptr<BundleEndpoint> proxy = Must(BundleEndpoint::Start(std::move(o)));
  datastore::FederationRelationship r;
  r.trust_domain = "b.test";
  r.bundle_endpoint_url = "https://127.0.0.1:" + std::to_string(proxy->port());
  r.profile = datastore::BundleEndpointProfile::kHttpsSpiffe;
  r.endpoint_spiffe_id = "spiffe://own.test/bundle-proxy";
  ASSERT_TRUE(ds_->CreateFederationRelationship(r).ok());
  EXPECT_TRUE(refresher_->RefreshNow("b.test").ok());
  EXPECT_TRUE(Stored().SameAuthorities(b_.Bundle()));
}

TEST_F(BundleRefresherTest, UnknownRelationshipIsNotFoundAndDeletedOnesLoseTheirState) {
  EXPECT_EQ(refresher_->RefreshNow("nobody.test").code(), absl::StatusCode::kNotFound);
  RelateWeb();
  Serve(b_.Bundle());
  refresher_->RunDue();
  ASSERT_TRUE(refresher_->StateOf("b.test").has_value());
  ASSERT_TRUE(ds_->DeleteFederationRelationship("b.test").ok());
  refresher_->RunDue();
  EXPECT_FALSE(refresher_->StateOf("b.test").has_value());
  // The bundle itself stays until `bundle delete`.
  EXPECT_TRUE(ds_->GetBundle("b.test").ok());
}

TEST_F(BundleRefresherTest, TheLoopFetchesWithoutBeingDriven) {
  RelateWeb();
  Serve(b_.Bundle());
  refresher_->Start();
  absl::Time deadline = absl::Now() + absl::Seconds(60);
  while (writes_.load() == 0 && absl::Now() < deadline) absl::SleepFor(absl::Milliseconds(20));
  refresher_->Stop();
  EXPECT_EQ(writes_.load(), 1);
  EXPECT_TRUE(Stored().SameAuthorities(b_.Bundle()));
}

}  // namespace
}  // namespace trellis::federation
