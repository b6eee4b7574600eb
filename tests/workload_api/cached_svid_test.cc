// A cached SVID gives back exactly the chain and key it was made from, whether it keeps the
// key whole or as its P-256 scalar.
#include <string>
#include <vector>

#include "common/clock.h"
#include "common/keys.h"
#include "common/x509.h"
#include "gtest/gtest.h"
#include "workload_api/identity_snapshot.h"

namespace trellis::workload_api {
namespace {

struct Issued {
  std::string leaf;
  std::string pkcs8;
};

Issued Issue(common::KeyType type) {
  auto td = *common::TrustDomain::Parse("example.org");
  auto ca_key = *common::PrivateKey::Generate();
  auto ca = *common::CreateRootCa(ca_key, td, absl::Hours(1), common::SystemClock::Get());
  auto issuer = *common::X509SvidIssuer::Create(ca, ca_key, common::SystemClock::Get());
  auto key = *common::PrivateKey::Generate(type);
  std::string leaf = *issuer->IssueForPublicKey(
      key.public_key(), *common::SpiffeId::Parse("spiffe://example.org/w"), absl::Hours(1));
  return {leaf, std::string(key.ToPkcs8Der()->view())};
}

TEST(CachedSvid, P256KeyIsKeptAsItsScalarAndRebuiltByteForByte) {
  for (int i = 0; i < 20; ++i) {  // scalars with leading zero bytes turn up among these
    Issued issued = Issue(common::KeyType::kEcP256);
    CachedSvid svid("entry-1", {issued.leaf, "intermediate"}, issued.pkcs8);
    EXPECT_TRUE(svid.compact_key());
    std::string key;
    svid.KeyPkcs8Der(&key);
    ASSERT_EQ(key, issued.pkcs8);
    EXPECT_EQ(svid.entry_id(), "entry-1");
    EXPECT_EQ(svid.leaf(), issued.leaf);
    EXPECT_EQ(svid.chain(), issued.leaf + "intermediate");
    auto parsed = common::PrivateKey::FromPkcs8Der(key);
    ASSERT_TRUE(parsed.ok()) << parsed.status();
    EXPECT_TRUE(
        common::CheckKeyMatchesCertificate(*parsed, *common::Certificate::FromDer(issued.leaf))
            .ok());
  }
}

// The key is kept as given and comes back unchanged.
void ExpectKeptWhole(const std::string& leaf, const std::string& pkcs8) {
  CachedSvid svid("e", {leaf}, pkcs8);
  EXPECT_FALSE(svid.compact_key());
  std::string key;
  svid.KeyPkcs8Der(&key);
  EXPECT_EQ(key, pkcs8);
}

TEST(CachedSvid, OtherKeysAreKeptWhole) {
  Issued issued = Issue(common::KeyType::kEcP384);
  ExpectKeptWhole(issued.leaf, issued.pkcs8);
}

TEST(CachedSvid, KeyWhosePointIsNotInTheLeafIsKeptWhole) {
  Issued issued = Issue(common::KeyType::kEcP256);
  Issued other = Issue(common::KeyType::kEcP256);
  ExpectKeptWhole(other.leaf, issued.pkcs8);
}

}  // namespace
}  // namespace trellis::workload_api
