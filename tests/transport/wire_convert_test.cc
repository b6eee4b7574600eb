// The shared wire conversions: bundles, chains, selector text and wire times, both ways, and
// the defects each refuses.
#include "transport/wire_convert.h"

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/common/test_pki.h"
#include "tests/testutil/status_matchers.h"

namespace trellis::transport {
namespace {

namespace v1 = ::trellis::server::v1;
using common::testing::TestPki;
using common::testing::Unwrap;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using testutil::IsOk;
using testutil::StatusIs;

common::Bundle FullBundle(const TestPki& pki, const common::PrivateKey& jwt_key) {
  common::Bundle b(pki.td);
  EXPECT_THAT(b.AddX509Authority(pki.root), IsOk());
  EXPECT_THAT(b.AddX509Authority(pki.inter), IsOk());
  EXPECT_THAT(b.AddJwtAuthority("kid-1", jwt_key.public_key()), IsOk());
  b.set_sequence(42);
  b.set_refresh_hint_seconds(300);
  return b;
}

// A wire bundle of example.org holding one valid CA.
v1::Bundle OneCaProto(const TestPki& pki) {
  v1::Bundle p;
  p.set_trust_domain("example.org");
  p.add_x509_authorities()->set_asn1(pki.root.der());
  return p;
}

TEST(WireBundle, RoundTripKeepsAuthoritiesSequenceAndRefreshHint) {
  TestPki pki;
  common::PrivateKey jwt_key = Unwrap(common::PrivateKey::Generate());
  common::Bundle original = FullBundle(pki, jwt_key);

  v1::Bundle proto = BundleToProto(original);
  EXPECT_EQ(proto.trust_domain(), "example.org");
  ASSERT_EQ(proto.x509_authorities_size(), 2);
  EXPECT_EQ(proto.x509_authorities(0).asn1(), pki.root.der());
  EXPECT_EQ(proto.x509_authorities(1).asn1(), pki.inter.der());
  ASSERT_EQ(proto.jwt_authorities_size(), 1);
  EXPECT_EQ(proto.jwt_authorities(0).key_id(), "kid-1");
  EXPECT_EQ(proto.jwt_authorities(0).public_key(), jwt_key.spki_der());
  EXPECT_EQ(proto.sequence_number(), 42u);
  EXPECT_EQ(proto.refresh_hint(), 300);

  absl::StatusOr<common::Bundle> back = BundleFromProto(proto);
  ASSERT_THAT(back, IsOk());
  EXPECT_TRUE(*back == original);
  EXPECT_EQ(back->sequence(), 42u);
  EXPECT_EQ(back->refresh_hint_seconds(), 300);
}

TEST(WireBundle, ZeroRefreshHintMeansNone) {
  TestPki pki;
  common::Bundle no_hint(pki.td);
  ASSERT_THAT(no_hint.AddX509Authority(pki.root), IsOk());
  EXPECT_EQ(BundleToProto(no_hint).refresh_hint(), 0);
  absl::StatusOr<common::Bundle> parsed = BundleFromProto(OneCaProto(pki));
  ASSERT_THAT(parsed, IsOk());
  EXPECT_FALSE(parsed->refresh_hint_seconds().has_value());
}

TEST(WireBundle, RepeatedCaIsKeptOnce) {
  TestPki pki;
  v1::Bundle p = OneCaProto(pki);
  p.add_x509_authorities()->set_asn1(pki.root.der());
  absl::StatusOr<common::Bundle> parsed = BundleFromProto(p);
  ASSERT_THAT(parsed, IsOk());
  EXPECT_THAT(parsed->x509_authorities(), ElementsAre(pki.root));
}

TEST(WireBundle, BadTrustDomainIsInvalidArgument) {
  TestPki pki;
  v1::Bundle p = OneCaProto(pki);
  p.set_trust_domain("Not A Domain");
  EXPECT_THAT(BundleFromProto(p), StatusIs(absl::StatusCode::kInvalidArgument));
}

TEST(WireBundle, UnparsableCertificateIsInvalidArgument) {
  TestPki pki;
  v1::Bundle p = OneCaProto(pki);
  p.add_x509_authorities()->set_asn1("not DER");
  EXPECT_THAT(BundleFromProto(p),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("certificate: DER")));
}

TEST(WireBundle, LeafCertificateIsNotAnAuthority) {
  TestPki pki;
  common::PrivateKey leaf_key = Unwrap(common::PrivateKey::Generate());
  std::string leaf = Unwrap(pki.issuer->IssueForPublicKey(leaf_key.public_key(), pki.id,
                                                          absl::Hours(1)));
  v1::Bundle p = OneCaProto(pki);
  p.add_x509_authorities()->set_asn1(leaf);
  EXPECT_THAT(BundleFromProto(p), StatusIs(absl::StatusCode::kInvalidArgument,
                                           "X.509 authority is not a CA certificate"));
}

TEST(WireBundle, UnparsableJwtKeyIsInvalidArgument) {
  TestPki pki;
  v1::Bundle p = OneCaProto(pki);
  v1::JWTAuthority* j = p.add_jwt_authorities();
  j->set_key_id("kid-1");
  j->set_public_key("not SPKI");
  EXPECT_THAT(BundleFromProto(p), StatusIs(absl::StatusCode::kInvalidArgument));
}

TEST(WireBundle, JwtKeyWithoutKidIsInvalidArgument) {
  TestPki pki;
  v1::Bundle p = OneCaProto(pki);
  p.add_jwt_authorities()->set_public_key(
      Unwrap(common::PrivateKey::Generate()).spki_der());
  EXPECT_THAT(BundleFromProto(p),
              StatusIs(absl::StatusCode::kInvalidArgument, "JWT authority without kid"));
}

TEST(WireBundle, KidHeldByTwoKeysIsAlreadyExists) {
  TestPki pki;
  v1::Bundle p = OneCaProto(pki);
  for (int i = 0; i < 2; ++i) {
    v1::JWTAuthority* j = p.add_jwt_authorities();
    j->set_key_id("kid-1");
    j->set_public_key(Unwrap(common::PrivateKey::Generate()).spki_der());
  }
  EXPECT_THAT(BundleFromProto(p),
              StatusIs(absl::StatusCode::kAlreadyExists, HasSubstr("kid-1")));
}

TEST(WireChain, ChainKeepsOrderLeafFirst) {
  TestPki pki;
  common::PrivateKey leaf_key = Unwrap(common::PrivateKey::Generate());
  std::string leaf = Unwrap(pki.issuer->IssueForPublicKey(leaf_key.public_key(), pki.id,
                                                          absl::Hours(1)));
  v1::X509SVID svid;
  svid.add_cert_chain(leaf);
  svid.add_cert_chain(pki.inter.der());
  absl::StatusOr<std::vector<common::Certificate>> chain = ChainFromProto(svid);
  ASSERT_THAT(chain, IsOk());
  ASSERT_EQ(chain->size(), 2u);
  EXPECT_EQ((*chain)[0].der(), leaf);
  EXPECT_EQ((*chain)[1], pki.inter);
}

TEST(WireChain, EmptyChainIsInvalidArgument) {
  EXPECT_THAT(ChainFromProto(v1::X509SVID()),
              StatusIs(absl::StatusCode::kInvalidArgument, "server returned an empty SVID chain"));
}

TEST(WireChain, UnparsableCertificateInTheChainIsInvalidArgument) {
  TestPki pki;
  v1::X509SVID svid;
  svid.add_cert_chain(pki.inter.der());
  svid.add_cert_chain("garbage");
  EXPECT_THAT(ChainFromProto(svid),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("certificate: DER")));
}

TEST(WireChain, NoCertificatesParseToAnEmptyList) {
  google::protobuf::RepeatedPtrField<std::string> none;
  absl::StatusOr<std::vector<common::Certificate>> certs = CertificatesFromDer(none);
  ASSERT_THAT(certs, IsOk());
  EXPECT_TRUE(certs->empty());
}

TEST(WireSelector, TextRoundTripKeepsColonsInTheValue) {
  absl::StatusOr<v1::Selector> s = SelectorFromText("k8s:ns:prod");
  ASSERT_THAT(s, IsOk());
  EXPECT_EQ(s->type(), "k8s");
  EXPECT_EQ(s->value(), "ns:prod");
  EXPECT_EQ(SelectorText(*s), "k8s:ns:prod");
}

TEST(WireSelector, TextWithoutBothSidesIsInvalidArgument) {
  for (const std::string text : {"", "unix", ":uid:0", "unix:"}) {
    EXPECT_THAT(SelectorFromText(text),
                StatusIs(absl::StatusCode::kInvalidArgument,
                         "selector \"" + text + "\" is not of the form type:value"))
        << text;
  }
}

TEST(WireSelector, CheckNamesTheFieldOfEachDefect) {
  v1::Selector s;
  s.set_value("uid:0");
  EXPECT_THAT(CheckSelector(s, "selectors"),
              StatusIs(absl::StatusCode::kInvalidArgument, "selectors: selector type is empty"));
  s.set_type("un:ix");
  EXPECT_THAT(CheckSelector(s, "selectors"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       "selectors: selector type \"un:ix\" holds ':'"));
  s.set_type("unix");
  s.clear_value();
  EXPECT_THAT(CheckSelector(s, "by_selectors"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       "by_selectors: selector \"unix\" has an empty value"));
  s.set_value("uid:0");
  EXPECT_THAT(CheckSelector(s, "selectors"), IsOk());
}

TEST(WireTime, ZeroMeansNeverBothWays) {
  EXPECT_EQ(ToUnixOrZero(absl::InfiniteFuture()), 0);
  EXPECT_EQ(FromUnixOrInfinite(0), absl::InfiniteFuture());
  absl::Time t = absl::FromUnixSeconds(1'800'000'000);
  EXPECT_EQ(ToUnixOrZero(t), 1'800'000'000);
  EXPECT_EQ(FromUnixOrInfinite(ToUnixOrZero(t)), t);
}

}  // namespace
}  // namespace trellis::transport
