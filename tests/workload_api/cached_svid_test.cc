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

TEST(CachedSvid, MovingCarriesTheBytesAndEmptiesTheSource) {
  Issued issued = Issue(common::KeyType::kEcP256);
  CachedSvid svid("entry-1", {issued.leaf}, issued.pkcs8);
  svid.entry_revision = 4;
  CachedSvid moved(std::move(svid));
  EXPECT_EQ(moved.entry_id(), "entry-1");
  EXPECT_EQ(moved.leaf(), issued.leaf);
  EXPECT_EQ(moved.entry_revision, 4);
  EXPECT_TRUE(svid.chain().empty());  // NOLINT(bugprone-use-after-move): moved-from is empty
  CachedSvid assigned("other", {"x"}, "k");
  assigned = std::move(moved);
  std::string key;
  assigned.KeyPkcs8Der(&key);
  EXPECT_EQ(key, issued.pkcs8);
  EXPECT_EQ(assigned.entry_id(), "entry-1");
}

TEST(CachedSvid, TheLeafEndsWhereItsDerHeaderSays) {
  const std::string short_form("\x30\x03" "abc", 5);
  EXPECT_EQ(CachedSvid("e", {short_form, "tail"}, "k").leaf(), short_form);
  const std::string long_form = std::string("\x30\x81\x81", 3) + std::string(0x81, 'x');
  EXPECT_EQ(CachedSvid("e", {long_form, "tail"}, "k").leaf(), long_form);
  // Not DER, or a length past the chain: the leaf is the whole chain, never past it.
  EXPECT_EQ(CachedSvid("e", {"not der", "tail"}, "k").leaf(), "not dertail");
  const std::string truncated("\x30\x82\x01", 3);
  EXPECT_EQ(CachedSvid("e", {truncated}, "k").leaf(), truncated);
  const std::string too_long("\x30\x10" "ab", 4);
  EXPECT_EQ(CachedSvid("e", {too_long}, "k").leaf(), too_long);
  EXPECT_EQ(CachedSvid("e", {}, "k").leaf(), "");
}

TEST(PackedTime, KeepsMicrosecondsAndTheInfinities) {
  const absl::Time t = absl::FromUnixMicros(1'700'000'000'123'456);
  EXPECT_EQ(static_cast<absl::Time>(PackedTime(t)), t);
  EXPECT_EQ(static_cast<absl::Time>(PackedTime(absl::UnixEpoch())), absl::UnixEpoch());
  const absl::Time before_epoch = absl::FromUnixMicros(-5);
  EXPECT_EQ(static_cast<absl::Time>(PackedTime(before_epoch)), before_epoch);
  EXPECT_EQ(static_cast<absl::Time>(PackedTime(absl::InfinitePast())), absl::InfinitePast());
  EXPECT_EQ(static_cast<absl::Time>(PackedTime(absl::InfiniteFuture())), absl::InfiniteFuture());
  // Sub-microsecond parts are dropped, never rounded up past the original.
  const absl::Time odd = t + absl::Nanoseconds(999);
  EXPECT_EQ(static_cast<absl::Time>(PackedTime(odd)), t);
  CachedSvid svid;
  EXPECT_EQ(static_cast<absl::Time>(svid.renew_at), absl::InfinitePast());
}

}  // namespace
}  // namespace trellis::workload_api
