// CSR building, strict DER parsing, key bounds and signature checks.
#include "common/csr.h"

#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>

#include <string>

#include "gtest/gtest.h"
#include "tests/common/test_pki.h"

namespace trellis::common {
namespace {

using testing::Unwrap;

SpiffeId TestId() { return Unwrap(SpiffeId::Parse("spiffe://example.org/w")); }

TEST(Csr, BuiltCsrParsesWithOpenSsl) {
  PrivateKey key = Unwrap(PrivateKey::Generate());
  std::string der = Unwrap(BuildCsr(key, TestId()));
  const unsigned char* p = reinterpret_cast<const unsigned char*>(der.data());
  X509ReqPtr req(d2i_X509_REQ(nullptr, &p, static_cast<long>(der.size())));
  ASSERT_TRUE(req);
  EXPECT_EQ(X509_REQ_verify(req.get(), X509_REQ_get0_pubkey(req.get())), 1);
}

TEST(Csr, ParsedPublicKeyMatchesSigner) {
  PrivateKey key = Unwrap(PrivateKey::Generate(KeyType::kEcP384));
  CertificateRequest csr = Unwrap(CertificateRequest::FromDer(Unwrap(BuildCsr(key))));
  EXPECT_EQ(csr.public_key(), key.public_key());
}

TEST(Csr, SignatureVerifiesForEveryKeyType) {
  for (KeyType t : {KeyType::kEcP256, KeyType::kEcP384, KeyType::kEcP521, KeyType::kRsa2048}) {
    PrivateKey key = Unwrap(PrivateKey::Generate(t));
    CertificateRequest csr = Unwrap(CertificateRequest::FromDer(Unwrap(BuildCsr(key))));
    EXPECT_TRUE(csr.VerifySignature().ok()) << KeyTypeName(t);
  }
}

TEST(Csr, UriSanIsCarried) {
  PrivateKey key = Unwrap(PrivateKey::Generate());
  CertificateRequest csr = Unwrap(CertificateRequest::FromDer(Unwrap(BuildCsr(key, TestId()))));
  EXPECT_EQ(Unwrap(csr.UriSans()), std::vector<std::string>{"spiffe://example.org/w"});
}

TEST(Csr, TamperedSignatureIsInvalidArgument) {
  PrivateKey key = Unwrap(PrivateKey::Generate());
  std::string der = Unwrap(BuildCsr(key));
  der[der.size() - 5] ^= 0x01;  // inside the ECDSA s value
  CertificateRequest csr = Unwrap(CertificateRequest::FromDer(der));
  EXPECT_EQ(csr.VerifySignature().code(), absl::StatusCode::kInvalidArgument);
}

TEST(Csr, TamperedInfoIsInvalidArgument) {
  PrivateKey key = Unwrap(PrivateKey::Generate());
  std::string der = Unwrap(BuildCsr(key, TestId()));
  size_t pos = der.find("example.org");
  ASSERT_NE(pos, std::string::npos);
  der[pos] = 'X';
  CertificateRequest csr = Unwrap(CertificateRequest::FromDer(der));
  EXPECT_EQ(csr.VerifySignature().code(), absl::StatusCode::kInvalidArgument);
}

TEST(Csr, TrailingBytesAreRefused) {
  std::string der = Unwrap(BuildCsr(Unwrap(PrivateKey::Generate())));
  auto csr = CertificateRequest::FromDer(der + std::string(1, '\0'));
  ASSERT_EQ(csr.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(csr.status().message().find("trailing"), std::string::npos) << csr.status();
}

TEST(Csr, TruncatedInputIsRefused) {
  std::string der = Unwrap(BuildCsr(Unwrap(PrivateKey::Generate())));
  for (size_t n : {size_t{0}, size_t{1}, size_t{10}, der.size() - 1}) {
    EXPECT_EQ(CertificateRequest::FromDer(der.substr(0, n)).status().code(),
              absl::StatusCode::kInvalidArgument)
        << n;
  }
}

TEST(Csr, NonMinimalLengthIsRefused) {
  std::string der = Unwrap(BuildCsr(Unwrap(PrivateKey::Generate())));
  // Re-encode the outer length in long form with a leading zero octet.
  ASSERT_EQ(static_cast<uint8_t>(der[1]), 0x81);
  std::string bad = std::string("\x30\x82\x00", 3) + der.substr(2);
  EXPECT_EQ(CertificateRequest::FromDer(bad).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(Csr, GarbageIsInvalidArgument) {
  EXPECT_EQ(CertificateRequest::FromDer("hello world").status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(Csr, PemParses) {
  PrivateKey key = Unwrap(PrivateKey::Generate());
  std::string der = Unwrap(BuildCsr(key));
  const unsigned char* p = reinterpret_cast<const unsigned char*>(der.data());
  X509ReqPtr req(d2i_X509_REQ(nullptr, &p, static_cast<long>(der.size())));
  BioPtr bio(BIO_new(BIO_s_mem()));
  PEM_write_bio_X509_REQ(bio.get(), req.get());
  CertificateRequest csr = Unwrap(CertificateRequest::FromPem(BioToString(bio.get())));
  EXPECT_EQ(csr.der(), der);
}

// Builds a CSR with OpenSSL for a key PrivateKey refuses to wrap (weak RSA, odd curves).
std::string RawCsr(EVP_PKEY* pkey) {
  X509ReqPtr req(X509_REQ_new());
  X509_REQ_set_pubkey(req.get(), pkey);
  X509_REQ_sign(req.get(), pkey, EVP_sha256());
  unsigned char* der = nullptr;
  int len = i2d_X509_REQ(req.get(), &der);
  std::string out(reinterpret_cast<char*>(der), static_cast<size_t>(len));
  OPENSSL_free(der);
  return out;
}

TEST(Csr, Rsa1024KeyIsRefused) {
  EvpPkeyPtr weak(EVP_RSA_gen(1024));
  auto csr = CertificateRequest::FromDer(RawCsr(weak.get()));
  ASSERT_EQ(csr.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(csr.status().message().find("RSA key size"), std::string::npos) << csr.status();
}

TEST(Csr, Secp256k1KeyIsRefused) {
  EvpPkeyPtr odd(EVP_EC_gen("secp256k1"));
  auto csr = CertificateRequest::FromDer(RawCsr(odd.get()));
  ASSERT_EQ(csr.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(csr.status().message().find("curve"), std::string::npos) << csr.status();
}

TEST(Csr, PointOffTheCurveIsRefusedAtVerification) {
  PrivateKey key = Unwrap(PrivateKey::Generate());
  std::string der = Unwrap(BuildCsr(key));
  size_t pos = der.find(key.spki_der());
  ASSERT_NE(pos, std::string::npos);
  der[pos + key.spki_der().size() - 1] ^= 0x01;  // last byte of Y
  auto view = internal::ParseCsrView(der);
  ASSERT_TRUE(view.ok()) << view.status();
  auto verified = internal::VerifyCsrView(*view);
  ASSERT_EQ(verified.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(verified.message().find("curve"), std::string::npos) << verified;
}

TEST(Csr, SignatureAlgorithmMismatchIsRefused) {
  // An EC key with an RSA signature algorithm OID.
  PrivateKey key = Unwrap(PrivateKey::Generate());
  std::string der = Unwrap(BuildCsr(key));
  const std::string ecdsa_sha256("\x2a\x86\x48\xce\x3d\x04\x03\x02", 8);
  size_t pos = der.rfind(ecdsa_sha256);
  ASSERT_NE(pos, std::string::npos);
  // Same length swap: ecdsa-with-SHA384 is allowed, so use an unknown arc instead.
  der[pos + 7] = 0x09;
  auto csr = CertificateRequest::FromDer(der);
  ASSERT_EQ(csr.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(csr.status().message().find("signature algorithm"), std::string::npos) << csr.status();
}

}  // namespace
}  // namespace trellis::common
