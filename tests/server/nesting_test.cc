// Nesting in one process: a root CaManager as the upstream of a downstream CaManager, each with
// its own datastore and keys; minting, JWT key publication, bundle merging, forced rotation,
// taint and revoke, and the refusals operators rely on.
#include <memory>

#include "common/csr.h"
#include "common/jwt.h"
#include "gtest/gtest.h"
#include "server/ca_manager.h"
#include "server/disk_key_manager.h"
#include "tests/server/server_test_util.h"

namespace trellis::server {
namespace {

using testing::OpenTestStore;
using testutil::TempDir;

common::TrustDomain Td() { return *common::TrustDomain::Parse("example.org"); }
common::SpiffeId Id(const std::string& path) {
  return *common::SpiffeId::Parse("spiffe://example.org" + path);
}

// The root tier's CaManager reached directly, as the "spire" upstream reaches it over gRPC.
class InProcessUpstream final : public UpstreamAuthority {
 public:
  InProcessUpstream(CaManager* up, common::SpiffeId caller) : up_(up), caller_(caller) {}
  absl::StatusOr<MintResult> MintX509Ca(const common::PrivateKey& key, const common::TrustDomain&,
                                        absl::Duration ttl) override {
    mint_calls++;
    if (down) return absl::UnavailableError("upstream unreachable");
    auto csr = common::BuildCsr(key);
    if (!csr.ok()) return csr.status();
    return up_->MintDownstreamCa(*csr, ttl, caller_);
  }
  bool OwnsBundle() const override { return true; }
  absl::StatusOr<datastore::Bundle> PublishJwtAuthority(const datastore::JwtAuthority& a) override {
    if (down) return absl::UnavailableError("upstream unreachable");
    return up_->AcceptPublishedJwtAuthority(a);
  }
  bool down = false;
  int mint_calls = 0;

 private:
  CaManager* up_;
  common::SpiffeId caller_;
};

struct Tier {
  TempDir dir;
  std::unique_ptr<datastore::DataStore> ds;
  std::unique_ptr<KeyManager> km;
  std::unique_ptr<CaManager> ca;
};

class NestingTest : public ::testing::Test {
 protected:
  CaManager::Options Options(absl::Duration ca_ttl) {
    CaManager::Options o(Td());
    o.ca_ttl = ca_ttl;
    o.default_x509_svid_ttl = absl::Minutes(10);
    o.default_jwt_svid_ttl = absl::Minutes(5);
    return o;
  }

  // Opens (or reopens, keeping its directory) a tier's store and keys and starts its CA.
  absl::Status StartTier(Tier& t, CaManager::Options options) {
    t.ca.reset();
    t.ds = OpenTestStore(t.dir, clock_);
    if (t.ds == nullptr) return absl::InternalError("no test store");
    auto km = DiskKeyManager::Create(t.dir.path() + "/keys");
    if (!km.ok()) return km.status();
    t.km = std::move(*km);
    auto ca = CaManager::Create(std::move(options), t.ds.get(), t.km.get(), clock_);
    if (!ca.ok()) return ca.status();
    t.ca = std::move(*ca);
    return t.ca->Start();
  }

  void SetUp() override {
    auto root_options = Options(absl::Hours(48));
    root_options.agent_svid_ttl = kAgentTtl;
    ASSERT_TRUE(StartTier(root_, root_options).ok());
    upstream_ = std::make_shared<InProcessUpstream>(root_.ca.get(), Id("/region-a/server"));
    auto o = Options(absl::Hours(12));
    o.upstream = upstream_;
    o.agent_svid_ttl = kAgentTtl;
    ASSERT_TRUE(StartTier(region_, o).ok());
    Sync();
  }

  static constexpr absl::Duration kAgentTtl = absl::Hours(1);

  // An attested agent whose SVID was issued now (NotAfter = now + agent TTL).
  void AttestAgentNow(Tier& t, const std::string& path) {
    datastore::AttestedNode n;
    n.spiffe_id = "spiffe://example.org/spire/agent/join_token/" + path;
    n.attestation_data_type = "join_token";
    n.cert_serial_number = "01";
    n.cert_not_after = clock_.Now() + kAgentTtl;
    ASSERT_TRUE(t.ds->CreateNode(n).ok());
  }
  // The agent renewed now.
  void RenewAgentNow(Tier& t, const std::string& path) {
    datastore::AttestedNode n;
    n.spiffe_id = "spiffe://example.org/spire/agent/join_token/" + path;
    n.attestation_data_type = "join_token";
    n.cert_serial_number = "02";
    n.cert_not_after = clock_.Now() + kAgentTtl;
    ASSERT_TRUE(t.ds->UpdateNode(n, std::nullopt).ok());
  }

  // What the bundle stream does: the root's bundle reaches the region.
  void Sync() {
    auto b = root_.ca->StoredBundle();
    ASSERT_TRUE(b.ok()) << b.status();
    auto st = region_.ca->ApplyUpstreamBundle(*b);
    ASSERT_TRUE(st.ok()) << st;
  }

  std::vector<common::Certificate> Svid(CaManager& ca, const std::string& path) {
    auto key = common::PrivateKey::Generate();
    auto chain = ca.SignX509SvidFromCsr(*common::BuildCsr(*key), Id(path), absl::Minutes(5), {});
    EXPECT_TRUE(chain.ok()) << chain.status();
    std::vector<common::Certificate> out;
    if (!chain.ok()) return out;
    for (const auto& d : *chain) out.push_back(*common::Certificate::FromDer(d));
    return out;
  }

  absl::Status Verifies(const std::vector<common::Certificate>& chain, const CaManager& against) {
    return common::VerifyX509Svid(chain, against.Bundle()->x509_authorities(), Td(), clock_.Now())
        .status();
  }

  static bool HasKid(const datastore::Bundle& b, const std::string& kid) {
    for (const auto& a : b.jwt_authorities) {
      if (a.kid == kid) return true;
    }
    return false;
  }

  common::FakeClock clock_{testing::kTestStart};
  Tier root_, region_;
  std::shared_ptr<InProcessUpstream> upstream_;
};

TEST_F(NestingTest, RegionSvidsChainThroughItsCaToTheRootAndVerifyInBothTiers) {
  auto chain = Svid(*region_.ca, "/region-a/app");
  ASSERT_EQ(chain.size(), 2u);  // leaf, region CA; the root stays in the bundle
  EXPECT_EQ(chain[1], *region_.ca->ActiveX509Ca());
  EXPECT_EQ(chain[1].AuthorityKeyId(), root_.ca->ActiveX509Ca()->SubjectKeyId());
  EXPECT_TRUE(Verifies(chain, *root_.ca).ok());
  EXPECT_TRUE(Verifies(chain, *region_.ca).ok());
  EXPECT_TRUE(Verifies(Svid(*root_.ca, "/root/app"), *region_.ca).ok());
}

TEST_F(NestingTest, DownstreamCaIsCappedAtTheIssuingCaNotAfter) {
  auto key = common::PrivateKey::Generate();
  auto minted = root_.ca->MintDownstreamCa(*common::BuildCsr(*key), absl::Hours(24 * 365),
                                           Id("/region-b/server"));
  ASSERT_TRUE(minted.ok()) << minted.status();
  ASSERT_EQ(minted->ca_chain.size(), 1u);
  EXPECT_EQ(minted->ca_chain[0].not_after(), root_.ca->ActiveX509Ca()->not_after());
  EXPECT_EQ(minted->roots, root_.ca->Bundle()->x509_authorities());
}

TEST_F(NestingTest, ThirdTierChainCarriesEveryIntermediate) {
  Tier cluster;
  auto via_region = std::make_shared<InProcessUpstream>(region_.ca.get(), Id("/cluster/server"));
  auto o = Options(absl::Hours(6));
  o.upstream = via_region;
  ASSERT_TRUE(StartTier(cluster, o).ok());
  auto chain = Svid(*cluster.ca, "/cluster/app");
  ASSERT_EQ(chain.size(), 3u);  // leaf, cluster CA, region CA
  EXPECT_EQ(chain[2], *region_.ca->ActiveX509Ca());
  EXPECT_TRUE(Verifies(chain, *root_.ca).ok());
  // The cluster's JWT key went up through the region to the root.
  EXPECT_TRUE(HasKid(*root_.ca->StoredBundle(), cluster.ca->ActiveJwtKid()));
}

TEST_F(NestingTest, MintRefusesACsrWithABadSignature) {
  auto key = common::PrivateKey::Generate();
  std::string csr = *common::BuildCsr(*key);
  csr[csr.size() - 3] ^= 0x01;  // inside the signature
  EXPECT_EQ(root_.ca->MintDownstreamCa(csr, absl::Hours(1), Id("/x")).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(root_.ca->MintDownstreamCa("not a csr", absl::Hours(1), Id("/x")).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST_F(NestingTest, RegionJwtKeyIsPublishedToTheRootBeforeUseAndValidatesEverywhere) {
  const std::string kid = region_.ca->ActiveJwtKid();
  ASSERT_FALSE(kid.empty());
  EXPECT_TRUE(HasKid(*root_.ca->StoredBundle(), kid));
  auto token = region_.ca->SignJwtSvid(Id("/region-a/app"), {"aud"}, absl::Minutes(5));
  ASSERT_TRUE(token.ok());
  auto claims =
      common::VerifyJwtSvid(*token, root_.ca->Bundle()->jwt_authorities(), "aud", clock_.Now());
  EXPECT_TRUE(claims.ok()) << claims.status();
}

TEST_F(NestingTest, PublishedJwtKeysAreCheckedBeforeTheyEnterTheBundle) {
  const std::string kid = region_.ca->ActiveJwtKid();
  const absl::Time later = clock_.Now() + absl::Hours(1);
  auto other = common::PrivateKey::Generate();
  EXPECT_EQ(root_.ca->AcceptPublishedJwtAuthority({kid, other->spki_der(), later, false})
                .status()
                .code(),
            absl::StatusCode::kAlreadyExists);
  EXPECT_EQ(root_.ca->AcceptPublishedJwtAuthority({"k1", "not a key", later, false})
                .status()
                .code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(root_.ca->AcceptPublishedJwtAuthority({"k2", other->spki_der(), clock_.Now(), false})
                .status()
                .code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(root_.ca->AcceptPublishedJwtAuthority({"", other->spki_der(), later, false})
                .status()
                .code(),
            absl::StatusCode::kInvalidArgument);
  // Publishing the same key again is harmless, and a tainted flag from the publisher is ignored.
  auto again = root_.ca->AcceptPublishedJwtAuthority({"k3", other->spki_der(), later, true});
  ASSERT_TRUE(again.ok()) << again.status();
  for (const auto& a : again->jwt_authorities) {
    if (a.kid == "k3") {
      EXPECT_FALSE(a.tainted);
    }
  }
  EXPECT_TRUE(root_.ca->AcceptPublishedJwtAuthority({"k3", other->spki_der(), later, false}).ok());
}

TEST_F(NestingTest, UnreachableUpstreamLeavesTheRegionWithoutAJwtKeyRatherThanAnUnpublishedOne) {
  Tier other;
  auto down = std::make_shared<InProcessUpstream>(root_.ca.get(), Id("/region-b/server"));
  auto o = Options(absl::Hours(12));
  o.upstream = down;
  ASSERT_TRUE(StartTier(other, o).ok());
  const std::string kid = other.ca->ActiveJwtKid();
  // Restart with the upstream down: the persisted CA and key keep it signing.
  down->down = true;
  ASSERT_TRUE(StartTier(other, o).ok());
  EXPECT_EQ(other.ca->ActiveJwtKid(), kid);
  EXPECT_EQ(Svid(*other.ca, "/region-b/app").size(), 2u);
}

TEST_F(NestingTest, FirstStartWithoutUpstreamFails) {
  Tier fresh;
  auto down = std::make_shared<InProcessUpstream>(root_.ca.get(), Id("/region-c/server"));
  down->down = true;
  auto o = Options(absl::Hours(12));
  o.upstream = down;
  EXPECT_EQ(StartTier(fresh, o).code(), absl::StatusCode::kUnavailable);
}

TEST_F(NestingTest, RetriesFollowABackoffWhileTheUpstreamIsDown) {
  clock_.Advance(absl::Hours(6) + absl::Minutes(1));  // past the region's preparation point
  upstream_->down = true;
  const int before = upstream_->mint_calls;
  EXPECT_EQ(region_.ca->Tick().code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(upstream_->mint_calls, before + 1);
  ASSERT_TRUE(region_.ca->Tick().ok());  // inside the 1 s backoff: no call
  EXPECT_EQ(upstream_->mint_calls, before + 1);
  clock_.Advance(absl::Seconds(1));
  EXPECT_FALSE(region_.ca->Tick().ok());
  clock_.Advance(absl::Seconds(1));  // the next wait is 2 s
  ASSERT_TRUE(region_.ca->Tick().ok());
  EXPECT_EQ(upstream_->mint_calls, before + 2);
  upstream_->down = false;
  clock_.Advance(absl::Seconds(2));
  ASSERT_TRUE(region_.ca->Tick().ok());
  EXPECT_TRUE(region_.ca->PreparedX509Ca().has_value());
}

TEST_F(NestingTest, ShortCaFromAnExpiringUpstreamIsNotActivated) {
  // The root's CA has 1 h left (it is not ticked here, as if about to rotate): whatever it
  // mints is capped there, below the region's activation threshold (12h/6 = 2h), and lives
  // no longer than the region's current CA.
  clock_.Advance(absl::Hours(47));
  Tier region_b;
  auto up = std::make_shared<InProcessUpstream>(root_.ca.get(), Id("/region-b/server"));
  auto o = Options(absl::Hours(12));
  o.upstream = up;
  // With no CA at all, a short one is still better than none.
  ASSERT_TRUE(StartTier(region_b, o).ok());
  const auto active = *region_b.ca->ActiveX509Ca();
  EXPECT_EQ(active.not_after(), root_.ca->ActiveX509Ca()->not_after());
  clock_.Advance(absl::Minutes(1));
  auto prepared = region_b.ca->PrepareX509();
  EXPECT_EQ(prepared.status().code(), absl::StatusCode::kUnavailable) << prepared.status();
  EXPECT_EQ(*region_b.ca->ActiveX509Ca(), active);
}

TEST_F(NestingTest, RootRotationAndTaintMoveEveryTierToTheNewRoot) {
  const std::string old_root = root_.ca->X509Authorities().active->id;
  auto prepared = root_.ca->PrepareX509();
  ASSERT_TRUE(prepared.ok()) << prepared.status();
  Sync();
  // The new root reached the region's bundle before anything is signed with it.
  EXPECT_EQ(region_.ca->Bundle()->x509_authorities().size(), 2u);
  auto activated = root_.ca->ActivateX509(prepared->id);
  ASSERT_TRUE(activated.ok()) << activated.status();
  EXPECT_EQ(root_.ca->X509Authorities().old->id, old_root);
  // Until the taint, the region keeps its CA under the old root, and it still verifies.
  auto before = Svid(*region_.ca, "/region-a/app");
  EXPECT_TRUE(Verifies(Svid(*root_.ca, "/root/app"), *region_.ca).ok());
  ASSERT_TRUE(root_.ca->TaintX509(old_root).ok());
  Sync();  // the region sees the taint and replaces its CA at once
  auto after = Svid(*region_.ca, "/region-a/app");
  EXPECT_EQ(after[1].AuthorityKeyId(), root_.ca->ActiveX509Ca()->SubjectKeyId());
  EXPECT_NE(before[1], after[1]);
  EXPECT_TRUE(Verifies(after, *root_.ca).ok());
  // Both roots stay until the revoke; then the old one leaves every tier.
  ASSERT_TRUE(root_.ca->RevokeX509(old_root).ok());
  Sync();
  EXPECT_EQ(region_.ca->Bundle()->x509_authorities().size(), 1u);
  EXPECT_TRUE(Verifies(after, *region_.ca).ok());
}

TEST_F(NestingTest, RevokingARootADownstreamStillChainsToIsRefused) {
  const std::string old_root = root_.ca->X509Authorities().active->id;
  auto prepared = root_.ca->PrepareX509();
  ASSERT_TRUE(prepared.ok());
  ASSERT_TRUE(root_.ca->ActivateX509(prepared->id).ok());
  ASSERT_TRUE(root_.ca->TaintX509(old_root).ok());
  // The region has not seen the taint yet: its CA still chains to the old root.
  auto revoke = root_.ca->RevokeX509(old_root);
  EXPECT_EQ(revoke.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(revoke.status().message().find("region-a"), std::string::npos) << revoke.status();
}

TEST_F(NestingTest, RevokingARootAgentsStillDependOnIsRefusedUntilTheyRenew) {
  AttestAgentNow(root_, "a1");
  const std::string old_root = root_.ca->X509Authorities().active->id;
  clock_.Advance(absl::Minutes(1));
  auto prepared = root_.ca->PrepareX509();
  ASSERT_TRUE(prepared.ok());
  ASSERT_TRUE(root_.ca->ActivateX509(prepared->id).ok());
  ASSERT_TRUE(root_.ca->TaintX509(old_root).ok());
  Sync();  // the region moves to the new root
  auto revoke = root_.ca->RevokeX509(old_root);
  EXPECT_EQ(revoke.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(revoke.status().message().find("join_token/a1"), std::string::npos)
      << revoke.status();
  clock_.Advance(absl::Seconds(5));
  RenewAgentNow(root_, "a1");
  auto retried = root_.ca->RevokeX509(old_root);
  EXPECT_TRUE(retried.ok()) << retried.status();
}

TEST_F(NestingTest, RegionKeepsARevokedRootWhileItsAgentsStillDependOnIt) {
  AttestAgentNow(region_, "r1");
  const std::string old_root = root_.ca->X509Authorities().active->id;
  clock_.Advance(absl::Minutes(1));
  auto prepared = root_.ca->PrepareX509();
  ASSERT_TRUE(prepared.ok());
  ASSERT_TRUE(root_.ca->ActivateX509(prepared->id).ok());
  ASSERT_TRUE(root_.ca->TaintX509(old_root).ok());
  Sync();  // the region replaces its CA; its agent still holds an SVID under the old one
  clock_.Advance(absl::Seconds(5));
  ASSERT_TRUE(root_.ca->RevokeX509(old_root).ok());  // the root's own tier is clear
  Sync();
  auto count_roots = [&] { return region_.ca->StoredBundle()->x509_authorities.size(); };
  EXPECT_EQ(count_roots(), 2u);  // kept, tainted, for the region's agent
  EXPECT_EQ(root_.ca->StoredBundle()->x509_authorities.size(), 1u);
  RenewAgentNow(region_, "r1");
  ASSERT_TRUE(region_.ca->Tick().ok());
  EXPECT_EQ(count_roots(), 1u);
}

TEST_F(NestingTest, UnsafeLocalAuthorityStepsAreRefused) {
  const std::string active = root_.ca->X509Authorities().active->id;
  EXPECT_EQ(root_.ca->TaintX509(active).status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(root_.ca->RevokeX509(active).status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(root_.ca->ActivateX509("0011").status().code(),
            absl::StatusCode::kFailedPrecondition);  // nothing prepared
  auto prepared = root_.ca->PrepareX509();
  ASSERT_TRUE(prepared.ok());
  EXPECT_EQ(root_.ca->PrepareX509().status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(root_.ca->ActivateX509(active).status().code(),
            absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(root_.ca->TaintX509(prepared->id).status().code(),
            absl::StatusCode::kFailedPrecondition);
  ASSERT_TRUE(root_.ca->ActivateX509(prepared->id).ok());
  // The old root is not tainted yet: revoking it is refused.
  EXPECT_EQ(root_.ca->RevokeX509(active).status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(root_.ca->TaintX509("ffff").status().code(), absl::StatusCode::kNotFound);
  // A nested server's X.509 CA is not in the bundle, and its bundle belongs to the root.
  const std::string region_ca = region_.ca->X509Authorities().active->id;
  EXPECT_EQ(region_.ca->TaintX509(region_ca).status().code(),
            absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(region_.ca->TaintJwt(region_.ca->ActiveJwtKid()).status().code(),
            absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(root_.ca->TaintUpstreamX509(active).code(), absl::StatusCode::kFailedPrecondition);
}

TEST_F(NestingTest, JwtRotationAndTaintReachTheRegion) {
  const std::string old_kid = root_.ca->ActiveJwtKid();
  auto prepared = root_.ca->PrepareJwt();
  ASSERT_TRUE(prepared.ok()) << prepared.status();
  Sync();
  EXPECT_TRUE(HasKid(*region_.ca->StoredBundle(), prepared->id));
  ASSERT_TRUE(root_.ca->ActivateJwt(prepared->id).ok());
  EXPECT_EQ(root_.ca->ActiveJwtKid(), prepared->id);
  EXPECT_EQ(root_.ca->RevokeJwt(old_kid).status().code(), absl::StatusCode::kFailedPrecondition);
  ASSERT_TRUE(root_.ca->TaintJwt(old_kid).ok());
  Sync();
  bool tainted = false;
  const datastore::Bundle region_bundle = *region_.ca->StoredBundle();
  for (const auto& a : region_bundle.jwt_authorities) {
    if (a.kid == old_kid) tainted = a.tainted;
  }
  EXPECT_TRUE(tainted);
  ASSERT_TRUE(root_.ca->RevokeJwt(old_kid).ok());
  Sync();
  EXPECT_FALSE(HasKid(*region_.ca->StoredBundle(), old_kid));
}

TEST_F(NestingTest, RegionReplacesItsJwtKeyWhenTheRootTaintsIt) {
  const std::string region_kid = region_.ca->ActiveJwtKid();
  ASSERT_TRUE(root_.ca->TaintJwt(region_kid).ok());
  Sync();
  const std::string next = region_.ca->ActiveJwtKid();
  EXPECT_NE(next, region_kid);
  EXPECT_TRUE(HasKid(*root_.ca->StoredBundle(), next));
}

TEST_F(NestingTest, UpstreamTaintIsKeptAcrossBundleUpdatesAndGuardsTheActiveChain) {
  // The region's CA chains to the root: tainting the root from the region is refused.
  const std::string root_id = root_.ca->X509Authorities().active->id;
  EXPECT_EQ(region_.ca->TaintUpstreamX509(root_id).code(), absl::StatusCode::kFailedPrecondition);
  auto prepared = root_.ca->PrepareX509();
  ASSERT_TRUE(prepared.ok());
  ASSERT_TRUE(root_.ca->ActivateX509(prepared->id).ok());
  Sync();
  // The region moves to the new root first, then may taint the old one locally.
  ASSERT_TRUE(region_.ca->PrepareX509().ok());
  ASSERT_TRUE(region_.ca->ActivateX509(region_.ca->X509Authorities().prepared->id).ok());
  ASSERT_TRUE(region_.ca->TaintUpstreamX509(root_id).ok());
  Sync();  // the root has not tainted it, but the local mark stays
  int tainted = 0;
  const datastore::Bundle region_bundle = *region_.ca->StoredBundle();
  for (const auto& a : region_bundle.x509_authorities) tainted += a.tainted;
  EXPECT_EQ(tainted, 1);
  // The root still publishes it: revoking it here would be undone, so it is refused.
  EXPECT_EQ(region_.ca->RevokeUpstreamX509(root_id).code(), absl::StatusCode::kFailedPrecondition);
}

}  // namespace
}  // namespace trellis::server
