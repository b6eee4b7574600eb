// Private/public key generation, encodings, signatures, size bounds and key files.
#include "common/keys.h"

#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>
#include <sys/stat.h>

#include <filesystem>
#include <memory>
#include <string>

#include "common/file_util.h"
#include "gtest/gtest.h"
#include "tests/common/test_pki.h"
#include "tests/testutil/temp_dir.h"

namespace trellis::common {
namespace {

using testing::Unwrap;

class KeyTypes : public ::testing::TestWithParam<KeyType> {};

TEST_P(KeyTypes, GenerateReportsType) {
  PrivateKey key = Unwrap(PrivateKey::Generate(GetParam()));
  EXPECT_EQ(key.type(), GetParam());
  EXPECT_EQ(key.public_key().type(), GetParam());
}

TEST_P(KeyTypes, Pkcs8DerRoundTripKeepsKey) {
  PrivateKey key = Unwrap(PrivateKey::Generate(GetParam()));
  SecretBytes der = Unwrap(key.ToPkcs8Der());
  PrivateKey back = Unwrap(PrivateKey::FromPkcs8Der(der.view()));
  EXPECT_EQ(back.spki_der(), key.spki_der());
}

TEST_P(KeyTypes, PemRoundTripKeepsKey) {
  PrivateKey key = Unwrap(PrivateKey::Generate(GetParam()));
  SecretBytes pem = Unwrap(key.ToPem());
  EXPECT_NE(pem.view().find("-----BEGIN PRIVATE KEY-----"), std::string_view::npos);
  PrivateKey back = Unwrap(PrivateKey::FromPem(pem.view()));
  EXPECT_EQ(back.spki_der(), key.spki_der());
}

TEST_P(KeyTypes, SignatureVerifiesWithPublicKey) {
  PrivateKey key = Unwrap(PrivateKey::Generate(GetParam()));
  std::string sig = Unwrap(key.Sign("payload"));
  EXPECT_TRUE(key.public_key().Verify("payload", sig, key.DefaultHash()).ok());
}

TEST_P(KeyTypes, SignatureOverOtherDataIsUnauthenticated) {
  PrivateKey key = Unwrap(PrivateKey::Generate(GetParam()));
  std::string sig = Unwrap(key.Sign("payload"));
  EXPECT_EQ(key.public_key().Verify("payloaX", sig, key.DefaultHash()).code(),
            absl::StatusCode::kUnauthenticated);
}

INSTANTIATE_TEST_SUITE_P(All, KeyTypes,
                         ::testing::Values(KeyType::kEcP256, KeyType::kEcP384, KeyType::kEcP521,
                                           KeyType::kRsa2048));

TEST(PrivateKey, DefaultIsP256) {
  EXPECT_EQ(Unwrap(PrivateKey::Generate()).type(), KeyType::kEcP256);
}

TEST(PrivateKey, Rsa4096Generates) {
  PrivateKey key = Unwrap(PrivateKey::Generate(KeyType::kRsa4096));
  EXPECT_EQ(key.public_key().bits(), 4096);
}

TEST(PrivateKey, RsaPssSignatureVerifies) {
  PrivateKey key = Unwrap(PrivateKey::Generate(KeyType::kRsa2048));
  std::string sig = Unwrap(key.Sign("m", HashAlg::kSha384, /*pss=*/true));
  EXPECT_TRUE(key.public_key().Verify("m", sig, HashAlg::kSha384, true).ok());
  EXPECT_EQ(key.public_key().Verify("m", sig, HashAlg::kSha384, false).code(),
            absl::StatusCode::kUnauthenticated);
}

TEST(PrivateKey, PssOnEcKeyIsInvalidArgument) {
  PrivateKey key = Unwrap(PrivateKey::Generate());
  EXPECT_EQ(key.Sign("m", HashAlg::kSha256, true).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(PrivateKey, GarbageDerIsInvalidArgument) {
  EXPECT_EQ(PrivateKey::FromPkcs8Der("not a key").status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(PrivateKey, GarbagePemIsInvalidArgument) {
  EXPECT_EQ(PrivateKey::FromPem("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n")
                .status()
                .code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(PrivateKey, EncryptedPemIsInvalidArgumentWithoutPrompting) {
  PrivateKey key = Unwrap(PrivateKey::Generate());
  BioPtr bio(BIO_new(BIO_s_mem()));
  static char kPass[] = "secret";
  ASSERT_EQ(PEM_write_bio_PKCS8PrivateKey(bio.get(), key.pkey(), EVP_aes_128_cbc(), kPass, 6,
                                          nullptr, nullptr),
            1);
  EXPECT_EQ(PrivateKey::FromPem(BioToString(bio.get())).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(PrivateKey, TrailingBytesAfterDerAreRefused) {
  PrivateKey key = Unwrap(PrivateKey::Generate());
  std::string der(Unwrap(key.ToPkcs8Der()).view());
  EXPECT_EQ(PrivateKey::FromPkcs8Der(der + "x").status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(PrivateKey, Rsa1024IsRefused) {
  EvpPkeyPtr small(EVP_RSA_gen(1024));
  ASSERT_TRUE(small);
  unsigned char* der = nullptr;
  int len = i2d_PUBKEY(small.get(), &der);
  std::string spki(reinterpret_cast<char*>(der), static_cast<size_t>(len));
  OPENSSL_free(der);
  auto pub = PublicKey::FromSpkiDer(spki);
  ASSERT_FALSE(pub.ok());
  EXPECT_EQ(pub.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(pub.status().message().find("1024"), std::string::npos) << pub.status();
}

TEST(PrivateKey, UnsupportedCurveIsRefused) {
  EvpPkeyPtr k(EVP_EC_gen("secp256k1"));
  ASSERT_TRUE(k);
  unsigned char* der = nullptr;
  int len = i2d_PUBKEY(k.get(), &der);
  std::string spki(reinterpret_cast<char*>(der), static_cast<size_t>(len));
  OPENSSL_free(der);
  auto pub = PublicKey::FromSpkiDer(spki);
  ASSERT_FALSE(pub.ok());
  EXPECT_EQ(pub.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(pub.status().message().find("curve"), std::string::npos) << pub.status();
}

TEST(PublicKey, SpkiAndPemRoundTrip) {
  PrivateKey key = Unwrap(PrivateKey::Generate());
  PublicKey from_der = Unwrap(PublicKey::FromSpkiDer(key.spki_der()));
  PublicKey from_pem = Unwrap(PublicKey::FromPem(key.public_key().ToPem()));
  EXPECT_EQ(from_der, key.public_key());
  EXPECT_EQ(from_pem, key.public_key());
}

TEST(PublicKey, GarbageSpkiIsInvalidArgument) {
  EXPECT_EQ(PublicKey::FromSpkiDer("\x30\x03\x02\x01\x00").status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(KeyType, NamesRoundTrip) {
  for (KeyType t : {KeyType::kEcP256, KeyType::kEcP384, KeyType::kRsa2048, KeyType::kRsa4096}) {
    EXPECT_EQ(Unwrap(ParseKeyType(KeyTypeName(t))), t);
  }
}

TEST(KeyType, UnknownNameIsInvalidArgument) {
  EXPECT_EQ(ParseKeyType("dsa-1024").status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(SecretBytes, MoveLeavesSourceEmpty) {
  SecretBytes a(std::string("secret"));
  SecretBytes b(std::move(a));
  EXPECT_TRUE(a.empty());  // NOLINT(bugprone-use-after-move): checking the wipe
  EXPECT_EQ(b.view(), "secret");
}

class KeyFileTest : public ::testing::Test {
 protected:
  void SetUp() override {
    tmp_ = std::make_unique<testutil::TempDir>("trellis-keys");
    dir_ = tmp_->path();
  }
  void TearDown() override { tmp_.reset(); }
  std::unique_ptr<testutil::TempDir> tmp_;
  std::filesystem::path dir_;
};

TEST_F(KeyFileTest, WrittenKeyFileIs0600InA0700Dir) {
  PrivateKey key = Unwrap(PrivateKey::Generate());
  std::string path = (dir_ / "keys" / "ca.key").string();
  ASSERT_TRUE(WritePrivateKeyFile(path, key).ok());
  struct stat st;
  ASSERT_EQ(stat(path.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  ASSERT_EQ(stat((dir_ / "keys").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0700u);
}

TEST_F(KeyFileTest, ReadBackGivesSameKey) {
  PrivateKey key = Unwrap(PrivateKey::Generate(KeyType::kEcP384));
  std::string path = (dir_ / "k.pem").string();
  ASSERT_TRUE(WritePrivateKeyFile(path, key).ok());
  EXPECT_EQ(Unwrap(ReadPrivateKeyFile(path)).spki_der(), key.spki_der());
}

TEST_F(KeyFileTest, RewriteReplacesContentAndLeavesNoTempFiles) {
  std::string path = (dir_ / "k.pem").string();
  ASSERT_TRUE(WritePrivateKeyFile(path, Unwrap(PrivateKey::Generate())).ok());
  PrivateKey second = Unwrap(PrivateKey::Generate());
  ASSERT_TRUE(WritePrivateKeyFile(path, second).ok());
  EXPECT_EQ(Unwrap(ReadPrivateKeyFile(path)).spki_der(), second.spki_der());
  int entries = 0;
  for ([[maybe_unused]] const auto& e : std::filesystem::directory_iterator(dir_)) ++entries;
  EXPECT_EQ(entries, 1);
}

TEST_F(KeyFileTest, ExistingLooseDirIsTightenedTo0700) {
  std::filesystem::create_directories(dir_);
  ASSERT_EQ(chmod(dir_.c_str(), 0755), 0);
  ASSERT_TRUE(EnsurePrivateDir(dir_.string()).ok());
  struct stat st;
  ASSERT_EQ(stat(dir_.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0700u);
}

TEST_F(KeyFileTest, MissingKeyFileIsNotFound) {
  EXPECT_EQ(ReadPrivateKeyFile((dir_ / "none.pem").string()).status().code(),
            absl::StatusCode::kNotFound);
}

TEST_F(KeyFileTest, CorruptKeyFileIsInvalidArgumentNamingThePath) {
  std::string path = (dir_ / "bad.pem").string();
  ASSERT_TRUE(WritePrivateFile(path, "garbage").ok());
  auto key = ReadPrivateKeyFile(path);
  ASSERT_EQ(key.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(key.status().message().find(path), std::string::npos);
}

}  // namespace
}  // namespace trellis::common
