// X509-SVID chain verification against bundle authorities: one rule per test.
#include <openssl/evp.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "common/bundle.h"
#include "common/csr.h"
#include "common/x509.h"
#include "gtest/gtest.h"
#include "tests/common/test_pki.h"

namespace trellis::common {
namespace {

using testing::TestPki;
using testing::Unwrap;

Certificate Leaf(TestPki& pki, const SpiffeId& id, absl::Duration ttl = absl::Hours(1)) {
  PrivateKey key = Unwrap(PrivateKey::Generate());
  return Unwrap(
      Certificate::FromDer(Unwrap(pki.issuer->IssueFromCsr(Unwrap(BuildCsr(key)), id, ttl))));
}

// A leaf with an arbitrary profile, built with the OpenSSL API and signed by the intermediate.
Certificate CustomLeaf(TestPki& pki, const std::vector<std::pair<int, std::string>>& exts) {
  PrivateKey key = Unwrap(PrivateKey::Generate());
  X509Ptr x(X509_new());
  X509_set_version(x.get(), 2);
  ASN1_INTEGER_set(X509_get_serialNumber(x.get()), 7);
  X509_set_issuer_name(x.get(), X509_get_subject_name(pki.inter.x509()));
  ASN1_TIME_set(X509_getm_notBefore(x.get()), absl::ToTimeT(pki.clock.Now()) - 10);
  ASN1_TIME_set(X509_getm_notAfter(x.get()), absl::ToTimeT(pki.clock.Now()) + 3600);
  X509_set_pubkey(x.get(), key.pkey());
  for (const auto& [nid, value] : exts) {
    X509V3_CTX ctx;
    X509V3_set_ctx(&ctx, pki.inter.x509(), x.get(), nullptr, nullptr, 0);
    X509ExtensionPtr ext(X509V3_EXT_conf_nid(nullptr, &ctx, nid, value.c_str()));
    EXPECT_TRUE(ext) << value;
    X509_add_ext(x.get(), ext.get(), -1);
  }
  X509_sign(x.get(), pki.inter_key.pkey(), EVP_sha256());
  unsigned char* der = nullptr;
  int len = i2d_X509(x.get(), &der);
  std::string out(reinterpret_cast<char*>(der), static_cast<size_t>(len));
  OPENSSL_free(der);
  return Unwrap(Certificate::FromDer(out));
}

void ExpectUnauthenticated(const absl::StatusOr<SpiffeId>& r, const std::string& fragment) {
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), absl::StatusCode::kUnauthenticated) << r.status();
  EXPECT_NE(r.status().message().find(fragment), std::string::npos) << r.status();
}

TEST(VerifyX509Svid, ValidChainReturnsId) {
  TestPki pki;
  Certificate leaf = Leaf(pki, pki.id);
  EXPECT_EQ(Unwrap(VerifyX509Svid({leaf, pki.inter}, {pki.root}, pki.td, pki.clock.Now())), pki.id);
}

TEST(VerifyX509Svid, IntermediateAsAuthorityIsAnAnchor) {
  TestPki pki;
  Certificate leaf = Leaf(pki, pki.id);
  EXPECT_TRUE(VerifyX509Svid({leaf}, {pki.inter}, pki.td, pki.clock.Now()).ok());
}

TEST(VerifyX509Svid, BundleOverloadUsesItsTrustDomain) {
  TestPki pki;
  Bundle bundle(pki.td);
  ASSERT_TRUE(bundle.AddX509Authority(pki.root).ok());
  EXPECT_TRUE(VerifyX509Svid({Leaf(pki, pki.id), pki.inter}, bundle, pki.clock.Now()).ok());
}

TEST(VerifyX509Svid, EmptyChainIsInvalidArgument) {
  TestPki pki;
  EXPECT_EQ(VerifyX509Svid({}, {pki.root}, pki.td, pki.clock.Now()).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(VerifyX509Svid, OverlongChainIsInvalidArgument) {
  TestPki pki;
  std::vector<Certificate> chain(kMaxChainLength + 1, pki.inter);
  chain[0] = Leaf(pki, pki.id);
  EXPECT_EQ(VerifyX509Svid(chain, {pki.root}, pki.td, pki.clock.Now()).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(VerifyX509Svid, MissingIntermediateIsUnauthenticated) {
  TestPki pki;
  ExpectUnauthenticated(VerifyX509Svid({Leaf(pki, pki.id)}, {pki.root}, pki.td, pki.clock.Now()),
                        "issuer");
}

TEST(VerifyX509Svid, UnknownRootIsUnauthenticated) {
  TestPki pki;
  TestPki other;
  ExpectUnauthenticated(
      VerifyX509Svid({Leaf(pki, pki.id), pki.inter}, {other.root}, pki.td, pki.clock.Now()),
      "X509-SVID");
}

TEST(VerifyX509Svid, NoAuthoritiesIsUnauthenticated) {
  TestPki pki;
  ExpectUnauthenticated(VerifyX509Svid({Leaf(pki, pki.id), pki.inter}, {}, pki.td, pki.clock.Now()),
                        "no X.509 authorities");
}

TEST(VerifyX509Svid, ExpiredLeafIsUnauthenticated) {
  TestPki pki;
  Certificate leaf = Leaf(pki, pki.id, absl::Minutes(5));
  ExpectUnauthenticated(
      VerifyX509Svid({leaf, pki.inter}, {pki.root}, pki.td, pki.clock.Now() + absl::Minutes(6)),
      "expired");
}

TEST(VerifyX509Svid, NotYetValidLeafIsUnauthenticated) {
  TestPki pki;
  Certificate leaf = Leaf(pki, pki.id);
  ExpectUnauthenticated(
      VerifyX509Svid({leaf, pki.inter}, {pki.root}, pki.td, pki.clock.Now() - absl::Minutes(1)),
      "not yet valid");
}

TEST(VerifyX509Svid, WrongTrustDomainIsUnauthenticated) {
  TestPki pki;
  TrustDomain other = Unwrap(TrustDomain::Parse("other.org"));
  ExpectUnauthenticated(
      VerifyX509Svid({Leaf(pki, pki.id), pki.inter}, {pki.root}, other, pki.clock.Now()),
      "not in trust domain");
}

TEST(VerifyX509Svid, LeafWithoutUriSanIsUnauthenticated) {
  TestPki pki;
  Certificate leaf = CustomLeaf(pki, {{NID_basic_constraints, "critical,CA:FALSE"},
                                      {NID_key_usage, "critical,digitalSignature"}});
  ExpectUnauthenticated(VerifyX509Svid({leaf, pki.inter}, {pki.root}, pki.td, pki.clock.Now()),
                        "URI SAN");
}

TEST(VerifyX509Svid, LeafWithTwoUriSansIsUnauthenticated) {
  TestPki pki;
  Certificate leaf = CustomLeaf(
      pki, {{NID_basic_constraints, "critical,CA:FALSE"},
            {NID_key_usage, "critical,digitalSignature"},
            {NID_subject_alt_name, "URI:spiffe://example.org/a,URI:spiffe://example.org/b"}});
  ExpectUnauthenticated(VerifyX509Svid({leaf, pki.inter}, {pki.root}, pki.td, pki.clock.Now()),
                        "2 URI SANs");
}

TEST(VerifyX509Svid, LeafWithNonSpiffeUriIsUnauthenticated) {
  TestPki pki;
  Certificate leaf = CustomLeaf(pki, {{NID_basic_constraints, "critical,CA:FALSE"},
                                      {NID_key_usage, "critical,digitalSignature"},
                                      {NID_subject_alt_name, "URI:https://example.org/a"}});
  ExpectUnauthenticated(VerifyX509Svid({leaf, pki.inter}, {pki.root}, pki.td, pki.clock.Now()),
                        "URI SAN");
}

TEST(VerifyX509Svid, LeafWithTrustDomainOnlyIdIsUnauthenticated) {
  TestPki pki;
  Certificate leaf = CustomLeaf(pki, {{NID_basic_constraints, "critical,CA:FALSE"},
                                      {NID_key_usage, "critical,digitalSignature"},
                                      {NID_subject_alt_name, "URI:spiffe://example.org"}});
  ExpectUnauthenticated(VerifyX509Svid({leaf, pki.inter}, {pki.root}, pki.td, pki.clock.Now()),
                        "no path");
}

TEST(VerifyX509Svid, CaLeafIsUnauthenticated) {
  TestPki pki;
  Certificate leaf = CustomLeaf(pki, {{NID_basic_constraints, "critical,CA:TRUE"},
                                      {NID_key_usage, "critical,digitalSignature"},
                                      {NID_subject_alt_name, "URI:spiffe://example.org/a"}});
  ExpectUnauthenticated(VerifyX509Svid({leaf, pki.inter}, {pki.root}, pki.td, pki.clock.Now()),
                        "is a CA");
}

TEST(VerifyX509Svid, LeafWithoutDigitalSignatureIsUnauthenticated) {
  TestPki pki;
  Certificate leaf = CustomLeaf(pki, {{NID_basic_constraints, "critical,CA:FALSE"},
                                      {NID_key_usage, "critical,keyEncipherment"},
                                      {NID_subject_alt_name, "URI:spiffe://example.org/a"}});
  ExpectUnauthenticated(VerifyX509Svid({leaf, pki.inter}, {pki.root}, pki.td, pki.clock.Now()),
                        "digitalSignature");
}

TEST(VerifyX509Svid, LeafWithKeyCertSignIsUnauthenticated) {
  TestPki pki;
  Certificate leaf = CustomLeaf(pki, {{NID_basic_constraints, "critical,CA:FALSE"},
                                      {NID_key_usage, "critical,digitalSignature,keyCertSign"},
                                      {NID_subject_alt_name, "URI:spiffe://example.org/a"}});
  ExpectUnauthenticated(VerifyX509Svid({leaf, pki.inter}, {pki.root}, pki.td, pki.clock.Now()),
                        "keyCertSign");
}

TEST(VerifyX509Svid, NonCaIntermediateIsUnauthenticated) {
  TestPki pki;
  Certificate leaf = Leaf(pki, pki.id);
  Certificate other_leaf = Leaf(pki, pki.id);
  ExpectUnauthenticated(
      VerifyX509Svid({leaf, other_leaf, pki.inter}, {pki.root}, pki.td, pki.clock.Now()),
      "not a CA");
}

TEST(VerifyX509Svid, IntermediateWithoutKeyCertSignIsUnauthenticated) {
  TestPki pki;
  // A CA:TRUE certificate whose key usage lacks keyCertSign, signed by the root.
  PrivateKey key = Unwrap(PrivateKey::Generate());
  X509Ptr x(X509_new());
  X509_set_version(x.get(), 2);
  ASN1_INTEGER_set(X509_get_serialNumber(x.get()), 9);
  X509_set_issuer_name(x.get(), X509_get_subject_name(pki.root.x509()));
  X509_set_subject_name(x.get(), X509_get_subject_name(pki.root.x509()));
  ASN1_TIME_set(X509_getm_notBefore(x.get()), absl::ToTimeT(pki.clock.Now()) - 10);
  ASN1_TIME_set(X509_getm_notAfter(x.get()), absl::ToTimeT(pki.clock.Now()) + 3600);
  X509_set_pubkey(x.get(), key.pkey());
  for (auto [nid, value] : std::vector<std::pair<int, const char*>>{
           {NID_basic_constraints, "critical,CA:TRUE"}, {NID_key_usage, "critical,cRLSign"}}) {
    X509ExtensionPtr ext(X509V3_EXT_conf_nid(nullptr, nullptr, nid, value));
    X509_add_ext(x.get(), ext.get(), -1);
  }
  X509_sign(x.get(), pki.root_key.pkey(), EVP_sha256());
  unsigned char* der = nullptr;
  int len = i2d_X509(x.get(), &der);
  Certificate bad_ca = Unwrap(
      Certificate::FromDer(std::string(reinterpret_cast<char*>(der), static_cast<size_t>(len))));
  OPENSSL_free(der);
  auto issuer = X509SvidIssuer::Create(bad_ca, key, pki.clock);
  EXPECT_EQ(issuer.status().code(), absl::StatusCode::kFailedPrecondition);
  Certificate leaf = Leaf(pki, pki.id);
  ExpectUnauthenticated(VerifyX509Svid({leaf, bad_ca}, {pki.root}, pki.td, pki.clock.Now()),
                        "keyCertSign");
}

}  // namespace
}  // namespace trellis::common
