// Root and intermediate CA certificates follow the SPIFFE CA profile.
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "common/x509.h"
#include "gtest/gtest.h"
#include "tests/common/test_pki.h"

namespace trellis::common {
namespace {

using testing::TestPki;
using testing::Unwrap;

int ExtCritical(const Certificate& c, int nid) {
  int idx = X509_get_ext_by_NID(c.x509(), nid, -1);
  if (idx < 0) return -1;
  return X509_EXTENSION_get_critical(X509_get_ext(c.x509(), idx));
}

TEST(RootCa, IsCaWithCriticalBasicConstraintsAndNoPathLength) {
  TestPki pki;
  EXPECT_TRUE(pki.root.IsCa());
  EXPECT_EQ(ExtCritical(pki.root, NID_basic_constraints), 1);
  auto* bc = static_cast<BASIC_CONSTRAINTS*>(
      X509_get_ext_d2i(pki.root.x509(), NID_basic_constraints, nullptr, nullptr));
  ASSERT_NE(bc, nullptr);
  EXPECT_TRUE(bc->ca);
  EXPECT_EQ(bc->pathlen, nullptr);
  BASIC_CONSTRAINTS_free(bc);
}

TEST(RootCa, KeyUsageIsCriticalKeyCertSignAndCrlSign) {
  TestPki pki;
  EXPECT_EQ(ExtCritical(pki.root, NID_key_usage), 1);
  EXPECT_EQ(pki.root.key_usage(), kKeyUsageKeyCertSign | kKeyUsageCrlSign);
}

TEST(RootCa, HasTrustDomainUriSan) {
  TestPki pki;
  EXPECT_EQ(pki.root.UriSans(), std::vector<std::string>{"spiffe://example.org"});
}

TEST(RootCa, IsSelfSignedWithMatchingKeyIds) {
  TestPki pki;
  EXPECT_EQ(X509_verify(pki.root.x509(), X509_get0_pubkey(pki.root.x509())), 1);
  EXPECT_EQ(pki.root.Subject(), pki.root.Issuer());
  EXPECT_EQ(pki.root.SubjectKeyId().size(), 20u);
  EXPECT_EQ(pki.root.SubjectKeyId(), pki.root.AuthorityKeyId());
}

TEST(RootCa, ValidityIsBackdatedTenSeconds) {
  TestPki pki;
  EXPECT_EQ(pki.root.not_before(), testing::kTestEpoch - absl::Seconds(10));
  EXPECT_EQ(pki.root.not_after(), testing::kTestEpoch + absl::Hours(24 * 30));
}

TEST(RootCa, SubjectUsesDefaults) {
  TestPki pki;
  EXPECT_EQ(pki.root.Subject(), "O=SPIFFE,C=US");
}

TEST(RootCa, ZeroTtlIsInvalidArgument) {
  TestPki pki;
  EXPECT_EQ(CreateRootCa(pki.root_key, pki.td, absl::ZeroDuration(), pki.clock).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(IntermediateCa, IsSignedByParentWithAkiOfParentSki) {
  TestPki pki;
  EXPECT_EQ(X509_verify(pki.inter.x509(), X509_get0_pubkey(pki.root.x509())), 1);
  EXPECT_EQ(pki.inter.AuthorityKeyId(), pki.root.SubjectKeyId());
  EXPECT_EQ(pki.inter.Issuer(), pki.root.Subject());
}

TEST(IntermediateCa, HasCaProfile) {
  TestPki pki;
  EXPECT_TRUE(pki.inter.IsCa());
  EXPECT_EQ(ExtCritical(pki.inter, NID_basic_constraints), 1);
  EXPECT_EQ(ExtCritical(pki.inter, NID_key_usage), 1);
  EXPECT_EQ(pki.inter.key_usage(), kKeyUsageKeyCertSign | kKeyUsageCrlSign);
  EXPECT_EQ(pki.inter.UriSans(), std::vector<std::string>{"spiffe://example.org"});
}

TEST(IntermediateCa, NotAfterIsCappedAtParent) {
  TestPki pki;
  PrivateKey key = Unwrap(PrivateKey::Generate());
  Certificate ca = Unwrap(CreateIntermediateCa(pki.root, pki.root_key, key.public_key(), pki.td,
                                               absl::Hours(24 * 365), pki.clock));
  EXPECT_EQ(ca.not_after(), pki.root.not_after());
}

TEST(IntermediateCa, NestedDownstreamChainsToRoot) {
  TestPki pki;
  PrivateKey key = Unwrap(PrivateKey::Generate());
  Certificate downstream = Unwrap(CreateIntermediateCa(pki.inter, pki.inter_key, key.public_key(),
                                                       pki.td, absl::Hours(1), pki.clock));
  EXPECT_EQ(X509_verify(downstream.x509(), X509_get0_pubkey(pki.inter.x509())), 1);
  EXPECT_TRUE(downstream.IsCa());
}

TEST(IntermediateCa, ExpiredParentIsFailedPrecondition) {
  TestPki pki;
  pki.clock.Advance(absl::Hours(24 * 31));
  PrivateKey key = Unwrap(PrivateKey::Generate());
  EXPECT_EQ(CreateIntermediateCa(pki.root, pki.root_key, key.public_key(), pki.td, absl::Hours(1),
                                 pki.clock)
                .status()
                .code(),
            absl::StatusCode::kFailedPrecondition);
}

TEST(IntermediateCa, WrongParentKeyIsFailedPrecondition) {
  TestPki pki;
  PrivateKey key = Unwrap(PrivateKey::Generate());
  EXPECT_EQ(CreateIntermediateCa(pki.root, key, key.public_key(), pki.td, absl::Hours(1), pki.clock)
                .status()
                .code(),
            absl::StatusCode::kFailedPrecondition);
}

TEST(IntermediateCa, OtherTrustDomainIsInvalidArgument) {
  TestPki pki;
  PrivateKey key = Unwrap(PrivateKey::Generate());
  TrustDomain other = Unwrap(TrustDomain::Parse("other.org"));
  EXPECT_EQ(CreateIntermediateCa(pki.root, pki.root_key, key.public_key(), other, absl::Hours(1),
                                 pki.clock)
                .status()
                .code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(IntermediateCa, RsaHierarchyWorks) {
  TestPki pki(KeyType::kRsa2048);
  EXPECT_EQ(pki.inter.public_key().type(), KeyType::kRsa2048);
  EXPECT_EQ(X509_verify(pki.inter.x509(), X509_get0_pubkey(pki.root.x509())), 1);
}

}  // namespace
}  // namespace trellis::common
