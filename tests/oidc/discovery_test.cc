// OIDC discovery documents, and the listener answering them over plain HTTP on loopback.
#include "oidc/discovery.h"

#include <httplib.h>

#include <nlohmann/json.hpp>

#include "absl/synchronization/mutex.h"
#include "common/jwt.h"
#include "common/keys.h"
#include "common/x509.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testutil/temp_dir.h"

namespace trellis::oidc {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

datastore::JwtAuthority Authority(const std::string& kid, absl::Time expires, bool tainted = false,
                                  common::KeyType type = common::KeyType::kEcP256) {
  absl::StatusOr<common::PrivateKey> key = common::PrivateKey::Generate(type);
  EXPECT_TRUE(key.ok());
  return {kid, key->spki_der(), expires, tainted};
}

std::vector<std::string> Kids(const std::string& jwks) {
  std::vector<std::string> out;
  const nlohmann::json doc = nlohmann::json::parse(jwks);
  for (const auto& k : doc["keys"]) out.push_back(k["kid"]);
  return out;
}

const absl::Time kNow = absl::FromUnixSeconds(1800000000);

TEST(DiscoveryDocument, NamesTheIssuerKeysAndWhatIsSupported) {
  nlohmann::json doc = nlohmann::json::parse(
      DiscoveryDocument("https://oidc.example.org", "https://oidc.example.org/keys"));
  EXPECT_EQ(doc["issuer"], "https://oidc.example.org");
  EXPECT_EQ(doc["jwks_uri"], "https://oidc.example.org/keys");
  EXPECT_EQ(doc["subject_types_supported"], nlohmann::json({"public"}));
  EXPECT_EQ(doc["response_types_supported"], nlohmann::json({"id_token"}));
  EXPECT_EQ(doc["id_token_signing_alg_values_supported"],
            nlohmann::json({"RS256", "ES256", "ES384", "ES512"}));
}

TEST(KeysDocument, LeavesOutTaintedAndExpiredKeys) {
  std::string jwks = *KeysDocument(
      {Authority("live", kNow + absl::Hours(1)), Authority("tainted", kNow + absl::Hours(1), true),
       Authority("expired", kNow - absl::Seconds(1))},
      kNow);
  EXPECT_THAT(Kids(jwks), ElementsAre("live"));
}

TEST(KeysDocument, EachKeyCarriesUseAlgAndKeyMaterialThatReadsBack) {
  datastore::JwtAuthority ec = Authority("ec", kNow + absl::Hours(2));
  datastore::JwtAuthority ec384 =
      Authority("ec384", kNow + absl::Hours(1), false, common::KeyType::kEcP384);
  datastore::JwtAuthority rsa =
      Authority("rsa", kNow + absl::Hours(3), false, common::KeyType::kRsa2048);
  nlohmann::json jwks = nlohmann::json::parse(*KeysDocument({ec, ec384, rsa}, kNow));
  ASSERT_EQ(jwks["keys"].size(), 3u);
  // Latest to expire first.
  EXPECT_EQ(jwks["keys"][0]["kid"], "rsa");
  EXPECT_EQ(jwks["keys"][0]["alg"], "RS256");
  EXPECT_EQ(jwks["keys"][1]["alg"], "ES256");
  EXPECT_EQ(jwks["keys"][2]["alg"], "ES384");
  for (const auto& k : jwks["keys"]) EXPECT_EQ(k["use"], "sig");
  absl::StatusOr<common::PublicKey> back = common::PublicKeyFromJwk(jwks["keys"][1]);
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(back->spki_der(), ec.public_key_der);
}

TEST(KeysDocument, IsBoundedToTheLatestKeys) {
  std::vector<datastore::JwtAuthority> many;
  for (size_t i = 0; i < kMaxKeys + 10; ++i) {
    many.push_back(Authority("k" + std::to_string(i), kNow + absl::Minutes(10 + i)));
  }
  std::vector<std::string> kids = Kids(*KeysDocument(many, kNow));
  ASSERT_EQ(kids.size(), kMaxKeys);
  EXPECT_EQ(kids.front(), "k" + std::to_string(kMaxKeys + 9));
}

TEST(KeysDocument, AnUnreadableStoredKeyNamesItsKid) {
  datastore::JwtAuthority bad{"broken", "not a key", kNow + absl::Hours(1), false};
  absl::StatusOr<std::string> doc = KeysDocument({bad}, kNow);
  EXPECT_EQ(doc.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(doc.status().message()), HasSubstr("JWT authority broken"));
}

class DiscoveryServerTest : public ::testing::Test {
 protected:
  void Start(DiscoveryServer::Options o) {
    o.address = "127.0.0.1";
    o.port = 0;
    o.now = [] { return kNow; };
    if (!o.authorities) {
      o.authorities = [this]() -> absl::StatusOr<std::vector<datastore::JwtAuthority>> {
        absl::MutexLock lock(&mu_);
        return authorities_;
      };
    }
    absl::StatusOr<std::unique_ptr<DiscoveryServer>> s = DiscoveryServer::Start(std::move(o));
    ASSERT_TRUE(s.ok()) << s.status();
    server_ = *std::move(s);
    client_ = std::make_unique<httplib::Client>("127.0.0.1", server_->port());
  }
  std::string Base() const { return "http://127.0.0.1:" + std::to_string(server_->port()); }

  absl::Mutex mu_;
  std::vector<datastore::JwtAuthority> authorities_ ABSL_GUARDED_BY(mu_) = {
      Authority("kid1", kNow + absl::Hours(1))};
  std::unique_ptr<DiscoveryServer> server_;
  std::unique_ptr<httplib::Client> client_;
};

TEST_F(DiscoveryServerTest, IssuerAndKeysUriFollowTheRequestHostByDefault) {
  Start({});
  httplib::Result res = client_->Get("/.well-known/openid-configuration");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 200);
  EXPECT_EQ(res->get_header_value("Content-Type"), "application/json");
  nlohmann::json doc = nlohmann::json::parse(res->body);
  EXPECT_EQ(doc["issuer"], Base());
  EXPECT_EQ(doc["jwks_uri"], Base() + "/keys");
}

TEST_F(DiscoveryServerTest, TheConfiguredIssuerAndKeysUriWin) {
  DiscoveryServer::Options o;
  o.issuer = "https://oidc.example.org";
  o.jwks_uri = "https://keys.example.org/keys";
  Start(std::move(o));
  nlohmann::json doc =
      nlohmann::json::parse(client_->Get("/.well-known/openid-configuration")->body);
  EXPECT_EQ(doc["issuer"], "https://oidc.example.org");
  EXPECT_EQ(doc["jwks_uri"], "https://keys.example.org/keys");
}

TEST_F(DiscoveryServerTest, KeysAreServedAndFollowTheBundle) {
  Start({});
  httplib::Result res = client_->Get("/keys");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 200);
  EXPECT_THAT(Kids(res->body), ElementsAre("kid1"));
  {
    absl::MutexLock lock(&mu_);
    authorities_.push_back(Authority("kid2", kNow + absl::Hours(2)));
    authorities_[0].tainted = true;
  }
  EXPECT_THAT(Kids(client_->Get("/keys")->body), ElementsAre("kid2"));
}

TEST_F(DiscoveryServerTest, HostsOutsideTheDomainsAreRefused) {
  DiscoveryServer::Options o;
  o.domains = {"oidc.example.org"};
  Start(std::move(o));
  httplib::Result res = client_->Get("/keys");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 400);
  EXPECT_THAT(res->body, HasSubstr("domain not allowed"));
  httplib::Headers named = {{"Host", "oidc.example.org:8008"}};
  res = client_->Get("/.well-known/openid-configuration", named);
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 200);
  EXPECT_EQ(nlohmann::json::parse(res->body)["jwks_uri"], "http://oidc.example.org:8008/keys");
}

TEST_F(DiscoveryServerTest, AKeySourceFailureIs503AndOtherPathsAre404) {
  DiscoveryServer::Options o;
  o.authorities = []() -> absl::StatusOr<std::vector<datastore::JwtAuthority>> {
    return absl::UnavailableError("datastore down");
  };
  Start(std::move(o));
  EXPECT_EQ(client_->Get("/keys")->status, 503);
  EXPECT_EQ(client_->Get("/")->status, 404);
  EXPECT_EQ(client_->Post("/keys", "", "text/plain")->status, 405);
}

TEST(DiscoveryServerTls, ServesOverHttpsWithTheConfiguredCertificate) {
  testutil::TempDir dir("oidc");
  common::TrustDomain td = *common::TrustDomain::Parse("web-pki.test");
  common::PrivateKey ca_key = *common::PrivateKey::Generate();
  common::Certificate ca =
      *common::CreateRootCa(ca_key, td, absl::Hours(1), common::SystemClock::Get());
  auto issuer = *common::X509SvidIssuer::Create(ca, ca_key, common::SystemClock::Get());
  common::PrivateKey key = *common::PrivateKey::Generate();
  common::Certificate leaf = *common::Certificate::FromDer(*issuer->IssueForPublicKey(
      key.public_key(), *common::SpiffeId::Parse("spiffe://web-pki.test/oidc"), absl::Hours(1),
      {"localhost"}));
  std::string cert_path = dir.Write("oidc.pem", common::Certificate::ChainToPem({leaf}));
  std::string key_path = dir.Write("oidc.key", std::string(key.ToPem()->view()));
  std::string ca_path = dir.Write("ca.pem", ca.ToPem());

  DiscoveryServer::Options o;
  o.address = "127.0.0.1";
  o.port = 0;
  o.tls = std::make_shared<web::TlsFiles>(cert_path, key_path);
  o.issuer = "https://localhost";
  o.authorities = []() -> absl::StatusOr<std::vector<datastore::JwtAuthority>> {
    return std::vector<datastore::JwtAuthority>{Authority("kid1", absl::Now() + absl::Hours(1))};
  };
  absl::StatusOr<std::unique_ptr<DiscoveryServer>> server = DiscoveryServer::Start(std::move(o));
  ASSERT_TRUE(server.ok()) << server.status();
  httplib::SSLClient client("localhost", (*server)->port());
  client.set_ca_cert_path(ca_path.c_str());
  client.enable_server_certificate_verification(true);
  httplib::Result res = client.Get("/.well-known/openid-configuration");
  ASSERT_TRUE(res) << httplib::to_string(res.error());
  EXPECT_EQ(res->status, 200);
  nlohmann::json doc = nlohmann::json::parse(res->body);
  EXPECT_EQ(doc["jwks_uri"], "https://localhost:" + std::to_string((*server)->port()) + "/keys");
  res = client.Get("/keys");
  ASSERT_TRUE(res);
  EXPECT_THAT(Kids(res->body), ElementsAre("kid1"));
  // A client that does not trust the issuing CA is refused the handshake.
  httplib::SSLClient stranger("localhost", (*server)->port());
  stranger.enable_server_certificate_verification(true);
  stranger.set_ca_cert_path(cert_path.c_str());
  EXPECT_FALSE(stranger.Get("/keys"));
}

}  // namespace
}  // namespace trellis::oidc
