// A nested server's copy of the upstream's federated bundles, on a SQLite datastore.
#include "federation/upstream_bundles.h"

#include "datastore/factory.h"
#include "gtest/gtest.h"
#include "server/api_convert.h"
#include "tests/federation/test_pki.h"
#include "transport/wire_convert.h"

namespace trellis::federation {
namespace {

using testing::Must;
using testing::TestDomain;

class UpstreamBundlesTest : public ::testing::Test {
 protected:
  UpstreamBundlesTest() : dir_("upb"), b_("b.test"), c_("c.test") {
    ds_ = Must(datastore::CreateDataStore("sqlite3", dir_.Sub("ds.sqlite3")));
    mirror_ = std::make_unique<UpstreamBundles>(Must(common::TrustDomain::Parse("own.test")),
                                                ds_.get(), [this] { ++writes_; });
  }

  static datastore::Bundle Row(const common::Bundle& b) {
    return Must(server::BundleFromProto(transport::BundleToProto(b)));
  }

  testutil::TempDir dir_;
  TestDomain b_;
  TestDomain c_;
  std::unique_ptr<datastore::DataStore> ds_;
  std::unique_ptr<UpstreamBundles> mirror_;
  int writes_ = 0;
};

TEST_F(UpstreamBundlesTest, StoresNewAndChangedBundlesOnce) {
  ASSERT_TRUE(mirror_->Apply({Row(b_.Bundle()), Row(c_.Bundle())}).ok());
  EXPECT_TRUE(ds_->GetBundle("b.test").ok());
  EXPECT_TRUE(ds_->GetBundle("c.test").ok());
  EXPECT_EQ(writes_, 1);
  int64_t seq = Must(ds_->GetBundle("b.test")).sequence_number;
  ASSERT_TRUE(mirror_->Apply({Row(b_.Bundle(9)), Row(c_.Bundle())}).ok());
  EXPECT_EQ(Must(ds_->GetBundle("b.test")).sequence_number, seq) << "same authorities rewritten";
  EXPECT_EQ(writes_, 1);
  TestDomain b_next("b.test");
  common::Bundle rotated = b_.Bundle();
  ASSERT_TRUE(rotated.AddX509Authority(b_next.ca).ok());
  ASSERT_TRUE(mirror_->Apply({Row(rotated), Row(c_.Bundle())}).ok());
  EXPECT_EQ(Must(ds_->GetBundle("b.test")).x509_authorities.size(), 2u);
  EXPECT_EQ(writes_, 2);
}

TEST_F(UpstreamBundlesTest, ABundleRemovedUpstreamIsDeletedUnlessEntriesStillUseIt) {
  ASSERT_TRUE(mirror_->Apply({Row(b_.Bundle()), Row(c_.Bundle())}).ok());
  datastore::RegistrationEntry e;
  e.spiffe_id = "spiffe://own.test/app";
  e.parent_id = "spiffe://own.test/agent";
  e.selectors = {{"unix", "uid:1"}};
  e.federates_with = {"c.test"};
  ASSERT_TRUE(ds_->CreateEntry(e).ok());
  ASSERT_TRUE(mirror_->Apply({}).ok());
  EXPECT_EQ(ds_->GetBundle("b.test").status().code(), absl::StatusCode::kNotFound);
  EXPECT_TRUE(ds_->GetBundle("c.test").ok()) << "an entry still federates with c.test";
}

TEST_F(UpstreamBundlesTest, ALocalRelationshipAndBundlesNeverReceivedAreLeftAlone) {
  datastore::FederationRelationship r;
  r.trust_domain = "b.test";
  r.bundle_endpoint_url = "https://127.0.0.1:1/";
  ASSERT_TRUE(ds_->CreateFederationRelationship(r).ok());
  ASSERT_TRUE(ds_->SetBundle(Row(c_.Bundle())).ok());  // set here by hand
  ASSERT_TRUE(mirror_->Apply({Row(b_.Bundle())}).ok());
  EXPECT_EQ(ds_->GetBundle("b.test").status().code(), absl::StatusCode::kNotFound)
      << "b.test has a relationship here: its own fetches own it";
  ASSERT_TRUE(mirror_->Apply({}).ok());
  EXPECT_TRUE(ds_->GetBundle("c.test").ok()) << "never came from the upstream";
}

TEST_F(UpstreamBundlesTest, TheOwnTrustDomainIsNeverWritten) {
  TestDomain own("own.test");
  ASSERT_TRUE(mirror_->Apply({Row(own.Bundle())}).ok());
  EXPECT_EQ(ds_->GetBundle("own.test").status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(writes_, 0);
}

}  // namespace
}  // namespace trellis::federation
