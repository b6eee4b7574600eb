// Certificate parsing and encodings: DER/PEM, chains, fingerprints and malformed input.
#include <openssl/bn.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include "common/openssl_util.h"
#include "common/x509.h"
#include "gtest/gtest.h"
#include "tests/common/test_pki.h"

namespace trellis::common {
namespace {

using testing::TestPki;
using testing::Unwrap;

TEST(Certificate, DerRoundTripIsByteExact) {
  TestPki pki;
  EXPECT_EQ(Unwrap(Certificate::FromDer(pki.root.der())).der(), pki.root.der());
}

TEST(Certificate, PemRoundTrip) {
  TestPki pki;
  std::string pem = pki.root.ToPem();
  EXPECT_EQ(pem.rfind("-----BEGIN CERTIFICATE-----\n", 0), 0u);
  EXPECT_EQ(Unwrap(Certificate::FromPem(pem)), pki.root);
}

TEST(Certificate, PemMatchesOpenSslEncoding) {
  TestPki pki;
  BioPtr bio(BIO_new(BIO_s_mem()));
  PEM_write_bio_X509(bio.get(), pki.inter.x509());
  EXPECT_EQ(BioToString(bio.get()), pki.inter.ToPem());
}

TEST(Certificate, ChainPemRoundTripKeepsOrder) {
  TestPki pki;
  std::vector<Certificate> chain{pki.inter, pki.root};
  EXPECT_EQ(Unwrap(Certificate::ChainFromPem(Certificate::ChainToPem(chain))), chain);
}

TEST(Certificate, ChainDerRoundTripKeepsOrder) {
  TestPki pki;
  std::vector<Certificate> chain{pki.inter, pki.root};
  EXPECT_EQ(Unwrap(Certificate::ChainFromDer(Certificate::ChainToDer(chain))), chain);
}

TEST(Certificate, PemWithOtherBlockIsRefused) {
  TestPki pki;
  std::string pem =
      pki.root.ToPem() + "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n";
  auto chain = Certificate::ChainFromPem(pem);
  ASSERT_EQ(chain.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(chain.status().message().find("PRIVATE KEY"), std::string::npos) << chain.status();
}

TEST(Certificate, PemWithGarbageTextIsRefused) {
  TestPki pki;
  EXPECT_EQ(Certificate::ChainFromPem("hello\n" + pki.root.ToPem()).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(Certificate, PemWithBadBase64IsRefused) {
  EXPECT_EQ(
      Certificate::ChainFromPem("-----BEGIN CERTIFICATE-----\n!!!!\n-----END CERTIFICATE-----\n")
          .status()
          .code(),
      absl::StatusCode::kInvalidArgument);
}

TEST(Certificate, EmptyPemIsRefused) {
  EXPECT_EQ(Certificate::ChainFromPem("  \n").status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(Certificate, SinglePemWithTwoBlocksIsRefused) {
  TestPki pki;
  EXPECT_EQ(Certificate::FromPem(pki.root.ToPem() + pki.inter.ToPem()).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(Certificate, TrailingBytesAfterDerAreRefused) {
  TestPki pki;
  EXPECT_EQ(Certificate::FromDer(pki.root.der() + "x").status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(Certificate, TruncatedDerChainNamesTheCertificate) {
  TestPki pki;
  std::string der = pki.inter.der() + pki.root.der();
  auto chain = Certificate::ChainFromDer(der.substr(0, der.size() - 3));
  ASSERT_EQ(chain.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(chain.status().message().find("certificate 2"), std::string::npos) << chain.status();
}

TEST(Certificate, FingerprintsMatchDigestsOfDer) {
  TestPki pki;
  EXPECT_EQ(pki.root.Sha256Fingerprint(), HexEncode(Sha256(pki.root.der())));
  EXPECT_EQ(pki.root.Sha1Fingerprint().size(), 40u);
  unsigned char md[20];
  unsigned int len = 0;
  X509_digest(pki.root.x509(), EVP_sha1(), md, &len);
  EXPECT_EQ(pki.root.Sha1Fingerprint(), HexEncode(std::string(reinterpret_cast<char*>(md), len)));
}

TEST(Certificate, SerialHexMatchesOpenSsl) {
  TestPki pki;
  BignumPtr bn(ASN1_INTEGER_to_BN(X509_get0_serialNumber(pki.root.x509()), nullptr));
  char* hex = BN_bn2hex(bn.get());
  std::string expected(hex);
  OPENSSL_free(hex);
  for (char& c : expected) c = static_cast<char>(std::tolower(c));
  while (expected.size() < pki.root.SerialHex().size()) expected = "0" + expected;
  EXPECT_EQ(pki.root.SerialHex(), expected);
}

TEST(Certificate, CaSpiffeIdIsTrustDomainId) {
  TestPki pki;
  EXPECT_TRUE(Unwrap(pki.root.GetSpiffeId()).IsTrustDomainId());
}

TEST(Certificate, KeyMatchCheck) {
  TestPki pki;
  EXPECT_TRUE(CheckKeyMatchesCertificate(pki.root_key, pki.root).ok());
  EXPECT_EQ(CheckKeyMatchesCertificate(pki.inter_key, pki.root).code(),
            absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace trellis::common
