// The direct-DER X509-SVID issuer: output is valid DER that OpenSSL parses and verifies, and
// every field follows the SPIFFE X509-SVID profile.
#include <openssl/evp.h>
#include <openssl/x509.h>
#include <openssl/x509_vfy.h>
#include <openssl/x509v3.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <thread>

#include "absl/strings/str_cat.h"
#include "common/csr.h"
#include "common/x509.h"
#include "gtest/gtest.h"
#include "tests/common/test_pki.h"
#include "tests/testutil/temp_dir.h"

namespace trellis::common {
namespace {

using testing::TestPki;
using testing::Unwrap;

struct Issued {
  PrivateKey key;
  Certificate leaf;
};

Issued IssueLeaf(TestPki& pki, KeyType type = KeyType::kEcP256, absl::Duration ttl = absl::Hours(1),
                 const std::vector<std::string>& dns = {}) {
  PrivateKey key = Unwrap(PrivateKey::Generate(type));
  std::string csr = Unwrap(BuildCsr(key, pki.id));
  std::string der = Unwrap(pki.issuer->IssueFromCsr(csr, pki.id, ttl, dns));
  return Issued{key, Unwrap(Certificate::FromDer(der))};
}

int ExtCritical(const Certificate& c, int nid) {
  int idx = X509_get_ext_by_NID(c.x509(), nid, -1);
  if (idx < 0) return -1;
  return X509_EXTENSION_get_critical(X509_get_ext(c.x509(), idx));
}

TEST(X509SvidIssuer, OutputIsCanonicalDer) {
  TestPki pki;
  PrivateKey key = Unwrap(PrivateKey::Generate());
  std::string der = Unwrap(pki.issuer->IssueFromCsr(Unwrap(BuildCsr(key)), pki.id, absl::Hours(1)));
  const unsigned char* p = reinterpret_cast<const unsigned char*>(der.data());
  X509Ptr x(d2i_X509(nullptr, &p, static_cast<long>(der.size())));
  ASSERT_TRUE(x);
  EXPECT_EQ(p, reinterpret_cast<const unsigned char*>(der.data()) + der.size());
  unsigned char* out = nullptr;
  int len = i2d_X509(x.get(), &out);
  std::string reencoded(reinterpret_cast<char*>(out), static_cast<size_t>(len));
  OPENSSL_free(out);
  EXPECT_EQ(reencoded, der);
}

TEST(X509SvidIssuer, SignatureVerifiesWithIssuerKey) {
  TestPki pki;
  Issued leaf = IssueLeaf(pki);
  EXPECT_EQ(X509_verify(leaf.leaf.x509(), X509_get0_pubkey(pki.inter.x509())), 1);
}

TEST(X509SvidIssuer, ChainVerifiesWithX509VerifyCert) {
  TestPki pki;
  Issued leaf = IssueLeaf(pki);
  X509StorePtr store(X509_STORE_new());
  X509_STORE_add_cert(store.get(), pki.root.x509());
  X509StackPtr untrusted(sk_X509_new_null());
  X509_up_ref(pki.inter.x509());
  sk_X509_push(untrusted.get(), pki.inter.x509());
  X509StoreCtxPtr ctx(X509_STORE_CTX_new());
  ASSERT_EQ(X509_STORE_CTX_init(ctx.get(), store.get(), leaf.leaf.x509(), untrusted.get()), 1);
  X509_VERIFY_PARAM_set_time(X509_STORE_CTX_get0_param(ctx.get()), absl::ToTimeT(pki.clock.Now()));
  X509_VERIFY_PARAM_set_flags(X509_STORE_CTX_get0_param(ctx.get()), X509_V_FLAG_X509_STRICT);
  EXPECT_EQ(X509_verify_cert(ctx.get()), 1)
      << X509_verify_cert_error_string(X509_STORE_CTX_get_error(ctx.get()));
}

// Runs `openssl verify` on PEM files in a temp dir; returns its exit status and output.
std::pair<int, std::string> OpenSslVerify(const TestPki& pki, const Certificate& leaf) {
  testutil::TempDir tmp("trellis-verify");
  std::filesystem::path dir = tmp.path();
  auto write = [&](const std::string& name, const std::string& data) {
    std::ofstream(dir / name) << data;
  };
  write("root.pem", pki.root.ToPem());
  write("inter.pem", pki.inter.ToPem());
  write("leaf.pem", leaf.ToPem());
  std::string cmd =
      absl::StrCat("openssl verify -x509_strict -attime ", absl::ToUnixSeconds(pki.clock.Now()),
                   " -CAfile ", (dir / "root.pem").string(), " -untrusted ",
                   (dir / "inter.pem").string(), " ", (dir / "leaf.pem").string(), " 2>&1");
  std::string output;
  FILE* f = popen(cmd.c_str(), "r");
  if (f == nullptr) return {-1, "popen failed"};
  char buf[512];
  while (fgets(buf, sizeof(buf), f) != nullptr) output += buf;
  int rc = pclose(f);
  return {WIFEXITED(rc) ? WEXITSTATUS(rc) : -1, output};
}

TEST(X509SvidIssuer, OpenSslCommandLineVerifiesChain) {
  TestPki pki;
  Issued leaf = IssueLeaf(pki);
  auto [rc, out] = OpenSslVerify(pki, leaf.leaf);
  EXPECT_EQ(rc, 0) << out;
  EXPECT_NE(out.find(": OK"), std::string::npos) << out;
}

TEST(X509SvidIssuer, OpenSslCommandLineVerifiesRsaHierarchy) {
  TestPki pki(KeyType::kRsa2048);
  Issued leaf = IssueLeaf(pki, KeyType::kRsa2048);
  auto [rc, out] = OpenSslVerify(pki, leaf.leaf);
  EXPECT_EQ(rc, 0) << out;
}

TEST(X509SvidIssuer, OpenSslCommandLineVerifiesP384Hierarchy) {
  TestPki pki(KeyType::kEcP384);
  Issued leaf = IssueLeaf(pki, KeyType::kEcP521, absl::Hours(1), {"web.example.org"});
  auto [rc, out] = OpenSslVerify(pki, leaf.leaf);
  EXPECT_EQ(rc, 0) << out;
}

TEST(X509SvidIssuer, OpenSslCommandLineRefusesLeafFromOtherCa) {
  TestPki pki;
  TestPki other;
  Issued leaf = IssueLeaf(other);
  auto [rc, out] = OpenSslVerify(pki, leaf.leaf);
  EXPECT_NE(rc, 0) << out;
}

TEST(X509SvidIssuer, LeafHasExactlyOneUriSanWithTheId) {
  TestPki pki;
  Issued leaf = IssueLeaf(pki);
  EXPECT_EQ(leaf.leaf.UriSans(), std::vector<std::string>{pki.id.String()});
  EXPECT_EQ(Unwrap(leaf.leaf.GetSpiffeId()), pki.id);
}

TEST(X509SvidIssuer, SubjectIsEmptyAndSanCritical) {
  TestPki pki;
  Issued leaf = IssueLeaf(pki);
  EXPECT_EQ(X509_NAME_entry_count(X509_get_subject_name(leaf.leaf.x509())), 0);
  EXPECT_EQ(ExtCritical(leaf.leaf, NID_subject_alt_name), 1);
}

TEST(X509SvidIssuer, DnsSansFollowTheUri) {
  TestPki pki;
  Issued leaf = IssueLeaf(pki, KeyType::kEcP256, absl::Hours(1), {"a.example.org", "*.b.org"});
  EXPECT_EQ(leaf.leaf.DnsSans(), (std::vector<std::string>{"a.example.org", "*.b.org"}));
  EXPECT_EQ(leaf.leaf.UriSans().size(), 1u);
}

TEST(X509SvidIssuer, BasicConstraintsCriticalCaFalse) {
  TestPki pki;
  Issued leaf = IssueLeaf(pki);
  EXPECT_EQ(ExtCritical(leaf.leaf, NID_basic_constraints), 1);
  EXPECT_FALSE(leaf.leaf.IsCa());
  auto* bc = static_cast<BASIC_CONSTRAINTS*>(
      X509_get_ext_d2i(leaf.leaf.x509(), NID_basic_constraints, nullptr, nullptr));
  ASSERT_NE(bc, nullptr);
  EXPECT_FALSE(bc->ca);
  BASIC_CONSTRAINTS_free(bc);
}

TEST(X509SvidIssuer, KeyUsageCriticalDigitalSignatureOnlyForEc) {
  TestPki pki;
  Issued leaf = IssueLeaf(pki);
  EXPECT_EQ(ExtCritical(leaf.leaf, NID_key_usage), 1);
  EXPECT_EQ(leaf.leaf.key_usage(), kKeyUsageDigitalSignature);
}

TEST(X509SvidIssuer, RsaLeafAddsKeyEncipherment) {
  TestPki pki;
  Issued leaf = IssueLeaf(pki, KeyType::kRsa2048);
  EXPECT_EQ(leaf.leaf.key_usage(), kKeyUsageDigitalSignature | kKeyUsageKeyEncipherment);
}

TEST(X509SvidIssuer, ExtendedKeyUsageServerAndClientAuth) {
  TestPki pki;
  Issued leaf = IssueLeaf(pki);
  EXPECT_EQ(X509_get_extended_key_usage(leaf.leaf.x509()),
            uint32_t{XKU_SSL_SERVER | XKU_SSL_CLIENT});
  EXPECT_EQ(ExtCritical(leaf.leaf, NID_ext_key_usage), 0);
}

TEST(X509SvidIssuer, SkiIsSha1OfKeyAndAkiIsIssuerSki) {
  TestPki pki;
  Issued leaf = IssueLeaf(pki);
  unsigned char md[20];
  unsigned int len = 0;
  ASSERT_EQ(X509_pubkey_digest(leaf.leaf.x509(), EVP_sha1(), md, &len), 1);
  EXPECT_EQ(leaf.leaf.SubjectKeyId(), std::string(reinterpret_cast<char*>(md), len));
  EXPECT_EQ(leaf.leaf.AuthorityKeyId(), pki.inter.SubjectKeyId());
}

TEST(X509SvidIssuer, IssuerNameIsCaSubject) {
  TestPki pki;
  Issued leaf = IssueLeaf(pki);
  EXPECT_EQ(X509_NAME_cmp(X509_get_issuer_name(leaf.leaf.x509()),
                          X509_get_subject_name(pki.inter.x509())),
            0);
}

TEST(X509SvidIssuer, NotBeforeIsNowMinusTenSeconds) {
  TestPki pki;
  Issued leaf = IssueLeaf(pki);
  EXPECT_EQ(leaf.leaf.not_before(), testing::kTestEpoch - absl::Seconds(10));
}

TEST(X509SvidIssuer, NotAfterIsNowPlusTtl) {
  TestPki pki;
  Issued leaf = IssueLeaf(pki, KeyType::kEcP256, absl::Minutes(90));
  EXPECT_EQ(leaf.leaf.not_after(), testing::kTestEpoch + absl::Minutes(90));
}

TEST(X509SvidIssuer, NotAfterIsCappedAtIssuerNotAfter) {
  TestPki pki;
  Issued leaf = IssueLeaf(pki, KeyType::kEcP256, absl::Hours(24 * 400));
  EXPECT_EQ(leaf.leaf.not_after(), pki.inter.not_after());
}

TEST(X509SvidIssuer, SerialIsPositiveAndRandom) {
  TestPki pki;
  Issued a = IssueLeaf(pki);
  Issued b = IssueLeaf(pki);
  EXPECT_NE(a.leaf.SerialHex(), b.leaf.SerialHex());
  EXPECT_NE(X509_get0_serialNumber(a.leaf.x509())->type, V_ASN1_NEG_INTEGER);
  EXPECT_GE(a.leaf.SerialHex().size(), 24u);  // about 128 bits
  EXPECT_LE(a.leaf.SerialHex().size(), 32u);
}

TEST(X509SvidIssuer, PublicKeyIsTheCsrKey) {
  TestPki pki;
  Issued leaf = IssueLeaf(pki);
  EXPECT_TRUE(CheckKeyMatchesCertificate(leaf.key, leaf.leaf).ok());
}

TEST(X509SvidIssuer, VersionIsV3) {
  TestPki pki;
  Issued leaf = IssueLeaf(pki);
  EXPECT_EQ(X509_get_version(leaf.leaf.x509()), 2);
}

TEST(X509SvidIssuer, IssueForPublicKeyMatchesProfile) {
  TestPki pki;
  PrivateKey key = Unwrap(PrivateKey::Generate());
  Certificate leaf = Unwrap(Certificate::FromDer(
      Unwrap(pki.issuer->IssueForPublicKey(key.public_key(), pki.id, absl::Hours(1)))));
  EXPECT_TRUE(CheckKeyMatchesCertificate(key, leaf).ok());
  EXPECT_EQ(X509_verify(leaf.x509(), X509_get0_pubkey(pki.inter.x509())), 1);
}

TEST(X509SvidIssuer, TamperedCsrSignatureIsInvalidArgument) {
  TestPki pki;
  PrivateKey key = Unwrap(PrivateKey::Generate());
  std::string csr = Unwrap(BuildCsr(key, pki.id));
  csr[csr.size() - 3] ^= 0x20;
  EXPECT_EQ(pki.issuer->IssueFromCsr(csr, pki.id, absl::Hours(1)).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(X509SvidIssuer, MalformedCsrIsInvalidArgument) {
  TestPki pki;
  EXPECT_EQ(
      pki.issuer->IssueFromCsr("\x30\x03\x02\x01\x00", pki.id, absl::Hours(1)).status().code(),
      absl::StatusCode::kInvalidArgument);
}

TEST(X509SvidIssuer, OtherTrustDomainIsInvalidArgument) {
  TestPki pki;
  PrivateKey key = Unwrap(PrivateKey::Generate());
  SpiffeId other = Unwrap(SpiffeId::Parse("spiffe://other.org/w"));
  EXPECT_EQ(pki.issuer->IssueFromCsr(Unwrap(BuildCsr(key)), other, absl::Hours(1)).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(X509SvidIssuer, TrustDomainOnlyIdIsInvalidArgument) {
  TestPki pki;
  PrivateKey key = Unwrap(PrivateKey::Generate());
  SpiffeId td_id = Unwrap(SpiffeId::Parse("spiffe://example.org"));
  EXPECT_EQ(pki.issuer->IssueFromCsr(Unwrap(BuildCsr(key)), td_id, absl::Hours(1)).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(X509SvidIssuer, BadDnsNameIsInvalidArgument) {
  TestPki pki;
  PrivateKey key = Unwrap(PrivateKey::Generate());
  EXPECT_EQ(pki.issuer->IssueFromCsr(Unwrap(BuildCsr(key)), pki.id, absl::Hours(1), {"bad name"})
                .status()
                .code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(X509SvidIssuer, NonPositiveTtlIsInvalidArgument) {
  TestPki pki;
  PrivateKey key = Unwrap(PrivateKey::Generate());
  EXPECT_EQ(
      pki.issuer->IssueFromCsr(Unwrap(BuildCsr(key)), pki.id, absl::ZeroDuration()).status().code(),
      absl::StatusCode::kInvalidArgument);
}

TEST(X509SvidIssuer, ExpiredCaIsFailedPrecondition) {
  TestPki pki;
  pki.clock.Advance(absl::Hours(25));
  PrivateKey key = Unwrap(PrivateKey::Generate());
  EXPECT_EQ(pki.issuer->IssueFromCsr(Unwrap(BuildCsr(key)), pki.id, absl::Hours(1)).status().code(),
            absl::StatusCode::kFailedPrecondition);
}

TEST(X509SvidIssuer, CreateRefusesLeafAsCa) {
  TestPki pki;
  Issued leaf = IssueLeaf(pki);
  EXPECT_EQ(X509SvidIssuer::Create(leaf.leaf, leaf.key, pki.clock).status().code(),
            absl::StatusCode::kFailedPrecondition);
}

TEST(X509SvidIssuer, CreateRefusesMismatchedKey) {
  TestPki pki;
  EXPECT_EQ(X509SvidIssuer::Create(pki.inter, pki.root_key, pki.clock).status().code(),
            absl::StatusCode::kFailedPrecondition);
}

TEST(X509SvidIssuer, ReferenceOpenSslPathProducesVerifiableLeaf) {
  TestPki pki;
  PrivateKey key = Unwrap(PrivateKey::Generate());
  Certificate leaf = Unwrap(Certificate::FromDer(Unwrap(IssueX509SvidWithOpenSsl(
      pki.inter, pki.inter_key, Unwrap(BuildCsr(key)), pki.id, absl::Hours(1), pki.clock))));
  EXPECT_EQ(Unwrap(VerifyX509Svid({leaf, pki.inter}, {pki.root}, pki.td, pki.clock.Now())), pki.id);
}

TEST(X509SvidIssuer, ConcurrentIssuanceProducesValidLeaves) {
  TestPki pki;
  std::vector<std::string> csrs;
  for (int i = 0; i < 4; ++i) csrs.push_back(Unwrap(BuildCsr(Unwrap(PrivateKey::Generate()))));
  std::vector<std::vector<std::string>> out(4);
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 25; ++i) {
        auto leaf = pki.issuer->IssueFromCsr(csrs[t], pki.id, absl::Hours(1));
        out[t].push_back(leaf.ok() ? *leaf : "");
      }
    });
  }
  for (auto& th : threads) th.join();
  for (const auto& leaves : out) {
    for (const auto& der : leaves) {
      auto cert = Certificate::FromDer(der);
      ASSERT_TRUE(cert.ok()) << cert.status();
      EXPECT_TRUE(VerifyX509Svid({*cert, pki.inter}, {pki.root}, pki.td, pki.clock.Now()).ok());
    }
  }
}

TEST(X509SvidIssuer, ReportedNotAfterMatchesLeaf) {
  TestPki pki;
  PrivateKey key = Unwrap(PrivateKey::Generate());
  absl::Time not_after = absl::InfinitePast();
  std::string der = Unwrap(
      pki.issuer->IssueFromCsr(Unwrap(BuildCsr(key)), pki.id, absl::Hours(1), {}, &not_after));
  EXPECT_EQ(not_after, Unwrap(Certificate::FromDer(der)).not_after());
}

}  // namespace
}  // namespace trellis::common
