// Node attestors: join_token (single use, expiry, races) and x509pop (chain, key, challenge).
#include "attestors/node/node_attestor_factory.h"

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <stdlib.h>

#include <algorithm>
#include <atomic>
#include <filesystem>
#include <thread>

#include "attestors/node/join_token.h"
#include "attestors/node/x509pop.h"
#include "tests/attestors/x509_test_certs.h"
#include "common/file_util.h"
#include "datastore/factory.h"
#include "gtest/gtest.h"
#include "tests/testutil/temp_dir.h"

namespace trellis::attestors {
namespace {

using testcerts::EcKey;
using testcerts::Issued;
using testcerts::kStart;
using testcerts::MakeCert;
using testcerts::PemOfKey;
using testcerts::Pkey;
using testcerts::RsaKey;
using testcerts::Sha1Hex;
using testutil::TempDir;

common::TrustDomain Td() { return *common::TrustDomain::Parse("example.org"); }

using ChallengeFn = std::function<absl::StatusOr<std::string>(std::string)>;
const ChallengeFn kNoChallenge = [](std::string) -> absl::StatusOr<std::string> {
  return absl::InternalError("unexpected challenge");
};

// ---- join_token ----

class JoinTokenTest : public ::testing::Test {
 protected:
  void SetUp() override {
    datastore::DataStoreOptions options;
    options.clock = &clock_;
    auto ds = datastore::CreateDataStore("sqlite3", dir_.path() + "/ds.sqlite3", options);
    ASSERT_TRUE(ds.ok()) << ds.status();
    ds_ = std::move(*ds);
    attestor_ = std::make_unique<JoinTokenServerAttestor>(Td(), ds_.get(), clock_);
  }

  TempDir dir_;
  common::FakeClock clock_{kStart};
  std::unique_ptr<datastore::DataStore> ds_;
  std::unique_ptr<JoinTokenServerAttestor> attestor_;
};

TEST_F(JoinTokenTest, ValidTokenYieldsAgentIdWithoutSelectors) {
  ASSERT_TRUE(ds_->CreateJoinToken({"tok-1", kStart + absl::Minutes(10)}).ok());
  auto result = attestor_->Attest("tok-1", kNoChallenge);
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_EQ(result->agent_id.String(), "spiffe://example.org/spire/agent/join_token/tok-1");
  EXPECT_TRUE(result->selectors.empty());
  EXPECT_FALSE(result->reattestable);
}

TEST_F(JoinTokenTest, ReusedTokenIsPermissionDenied) {
  ASSERT_TRUE(ds_->CreateJoinToken({"tok-1", kStart + absl::Minutes(10)}).ok());
  ASSERT_TRUE(attestor_->Attest("tok-1", kNoChallenge).ok());
  EXPECT_EQ(attestor_->Attest("tok-1", kNoChallenge).status().code(),
            absl::StatusCode::kPermissionDenied);
}

TEST_F(JoinTokenTest, ExpiredTokenIsPermissionDenied) {
  ASSERT_TRUE(ds_->CreateJoinToken({"tok-1", kStart + absl::Minutes(10)}).ok());
  clock_.Advance(absl::Minutes(11));
  EXPECT_EQ(attestor_->Attest("tok-1", kNoChallenge).status().code(),
            absl::StatusCode::kPermissionDenied);
}

TEST_F(JoinTokenTest, UnknownTokenIsPermissionDenied) {
  EXPECT_EQ(attestor_->Attest("never-issued", kNoChallenge).status().code(),
            absl::StatusCode::kPermissionDenied);
}

TEST_F(JoinTokenTest, EmptyTokenIsInvalidArgument) {
  EXPECT_EQ(attestor_->Attest("", kNoChallenge).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST_F(JoinTokenTest, ExactlyOneOfRacingAttestationsWins) {
  ASSERT_TRUE(ds_->CreateJoinToken({"race", kStart + absl::Minutes(10)}).ok());
  constexpr int kThreads = 8;
  std::atomic<int> ready{0}, won{0}, denied{0};
  std::vector<std::thread> threads;
  for (int i = 0; i < kThreads; ++i) {
    threads.emplace_back([&] {
      ready++;
      while (ready.load() < kThreads) std::this_thread::yield();
      auto r = attestor_->Attest("race", kNoChallenge);
      if (r.ok()) {
        won++;
      } else if (r.status().code() == absl::StatusCode::kPermissionDenied) {
        denied++;
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(won.load(), 1);
  EXPECT_EQ(denied.load(), kThreads - 1);
}

TEST(JoinTokenAgent, PayloadIsTheTokenAndChallengesAreRefused) {
  JoinTokenAgentAttestor agent("tok-9");
  EXPECT_EQ(*agent.Payload(), "tok-9");
  EXPECT_EQ(agent.Answer("x").status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(CreateAgentNodeAttestor, JoinTokenWithoutTokenIsInvalidArgument) {
  EXPECT_EQ(
      CreateAgentNodeAttestor(common::config::JoinTokenAgentAttestorConfig{}, "").status().code(),
      absl::StatusCode::kInvalidArgument);
  auto a = CreateAgentNodeAttestor(common::config::JoinTokenAgentAttestorConfig{}, "t");
  ASSERT_TRUE(a.ok());
  EXPECT_EQ((*a)->Name(), "join_token");
}

// ---- x509pop ----

// Answers challenges the way an honest agent does, with `key`.
ChallengeFn Signer(EVP_PKEY* key) {
  return [key](std::string challenge) -> absl::StatusOr<std::string> {
    auto pk = common::PrivateKey::FromPem(PemOfKey(key));
    if (!pk.ok()) return pk.status();
    const bool rsa = EVP_PKEY_base_id(key) == EVP_PKEY_RSA;
    return pk->Sign(X509PopSignedMessage(challenge), common::HashAlg::kSha256, rsa);
  };
}

class X509PopTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ca_ = MakeCert("Test Root", root_key_.p, nullptr, root_key_.p, /*ca=*/true);
    inter_ = MakeCert("Test Intermediate", inter_key_.p, &ca_, root_key_.p, /*ca=*/true);
    leaf_ = MakeCert("node-1", leaf_key_.p, &inter_, inter_key_.p, /*ca=*/false,
                     "DNS:node1.example.org,URI:https://node1.example.org/x,"
                     "email:ops@example.org,IP:10.0.0.7",
                     "critical,digitalSignature", 0x0abc);
    auto attestor = X509PopServerAttestor::CreateFromCerts(
        Td(), {*common::Certificate::FromDer(ca_.der)}, clock_);
    ASSERT_TRUE(attestor.ok()) << attestor.status();
    attestor_ = std::move(*attestor);
  }

  std::string Chain() const { return leaf_.der + inter_.der; }

  common::FakeClock clock_{kStart};
  Pkey root_key_ = EcKey(), inter_key_ = EcKey(), leaf_key_ = EcKey();
  Issued ca_, inter_, leaf_;
  std::unique_ptr<X509PopServerAttestor> attestor_;
};

TEST_F(X509PopTest, ValidChainAndSignatureYieldIdAndExactSelectors) {
  auto result = attestor_->Attest(Chain(), Signer(leaf_key_.p));
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_EQ(result->agent_id.String(),
            "spiffe://example.org/spire/agent/x509pop/" + Sha1Hex(leaf_.der));
  EXPECT_TRUE(result->reattestable);
  std::vector<datastore::Selector> want = {
      {"x509pop", "subject:cn:node-1"},
      {"x509pop", "serialnumber:0abc"},
      {"x509pop", "san:dns:node1.example.org"},
      {"x509pop", "san:uri:https://node1.example.org/x"},
      {"x509pop", "san:email:ops@example.org"},
      {"x509pop", "san:ip:10.0.0.7"},
      {"x509pop", "ca:fingerprint:" + Sha1Hex(inter_.der)},
      {"x509pop", "ca:fingerprint:" + Sha1Hex(ca_.der)},
  };
  auto got = result->selectors;
  std::sort(got.begin(), got.end());
  std::sort(want.begin(), want.end());
  // Serial hex follows Certificate::SerialHex.
  for (auto& s : want) {
    if (s.value.rfind("serialnumber:", 0) == 0) {
      s.value = "serialnumber:" + common::Certificate::FromDer(leaf_.der)->SerialHex();
    }
  }
  std::sort(want.begin(), want.end());
  EXPECT_EQ(got, want);
}

TEST_F(X509PopTest, ChainToAnotherCaIsPermissionDenied) {
  Pkey other_key = EcKey();
  Issued other = MakeCert("Other Root", other_key.p, nullptr, other_key.p, true);
  auto attestor = X509PopServerAttestor::CreateFromCerts(
      Td(), {*common::Certificate::FromDer(other.der)}, clock_);
  ASSERT_TRUE(attestor.ok());
  EXPECT_EQ((*attestor)->Attest(Chain(), Signer(leaf_key_.p)).status().code(),
            absl::StatusCode::kPermissionDenied);
}

TEST_F(X509PopTest, SignatureByAnotherKeyIsPermissionDenied) {
  Pkey wrong = EcKey();
  EXPECT_EQ(attestor_->Attest(Chain(), Signer(wrong.p)).status().code(),
            absl::StatusCode::kPermissionDenied);
}

TEST_F(X509PopTest, TamperedSignatureIsPermissionDenied) {
  ChallengeFn honest = Signer(leaf_key_.p);
  ChallengeFn tampered = [&](std::string c) -> absl::StatusOr<std::string> {
    auto sig = honest(std::move(c));
    if (!sig.ok()) return sig;
    (*sig)[sig->size() / 2] ^= 0x01;
    return sig;
  };
  EXPECT_EQ(attestor_->Attest(Chain(), tampered).status().code(),
            absl::StatusCode::kPermissionDenied);
}

TEST_F(X509PopTest, SignatureWithoutContextPrefixIsPermissionDenied) {
  ChallengeFn raw = [&](std::string c) -> absl::StatusOr<std::string> {
    auto pk = common::PrivateKey::FromPem(PemOfKey(leaf_key_.p));
    return pk->Sign(c, common::HashAlg::kSha256);
  };
  EXPECT_EQ(attestor_->Attest(Chain(), raw).status().code(), absl::StatusCode::kPermissionDenied);
}

TEST_F(X509PopTest, ChainLongerThanEightIsRefusedWithoutChallenge) {
  std::string chain = leaf_.der;
  for (int i = 0; i < 8; ++i) chain += inter_.der;
  bool challenged = false;
  ChallengeFn spy = [&](std::string) -> absl::StatusOr<std::string> {
    challenged = true;
    return std::string();
  };
  EXPECT_EQ(attestor_->Attest(chain, spy).status().code(), absl::StatusCode::kPermissionDenied);
  EXPECT_FALSE(challenged);
}

TEST_F(X509PopTest, SmallRsaLeafKeyIsRefused) {
  Pkey small = RsaKey(1024);
  Issued leaf = MakeCert("small", small.p, &inter_, inter_key_.p, false);
  auto result = attestor_->Attest(leaf.der + inter_.der, Signer(small.p));
  // The key is refused where the certificate is read: no attestation, no signature work.
  EXPECT_EQ(result.status().code(), absl::StatusCode::kInvalidArgument);
}

TEST_F(X509PopTest, RsaLeafUsesPssSignature) {
  Pkey rsa = RsaKey(2048);
  Issued leaf = MakeCert("rsa-node", rsa.p, &inter_, inter_key_.p, false);
  auto result = attestor_->Attest(leaf.der + inter_.der, Signer(rsa.p));
  ASSERT_TRUE(result.ok()) << result.status();
  ChallengeFn pkcs1 = [&](std::string c) -> absl::StatusOr<std::string> {
    auto pk = common::PrivateKey::FromPem(PemOfKey(rsa.p));
    return pk->Sign(X509PopSignedMessage(c), common::HashAlg::kSha256, /*pss=*/false);
  };
  EXPECT_EQ(attestor_->Attest(leaf.der + inter_.der, pkcs1).status().code(),
            absl::StatusCode::kPermissionDenied);
}

TEST_F(X509PopTest, LeafWithoutDigitalSignatureUsageIsPermissionDenied) {
  Pkey key = EcKey();
  Issued leaf =
      MakeCert("enc-only", key.p, &inter_, inter_key_.p, false, "", "critical,keyEncipherment");
  EXPECT_EQ(attestor_->Attest(leaf.der + inter_.der, Signer(key.p)).status().code(),
            absl::StatusCode::kPermissionDenied);
}

TEST_F(X509PopTest, ConfiguredCaPresentedAsLeafIsPermissionDenied) {
  // Key usage allows signing, so only the CA check stands in the way.
  Pkey key = EcKey();
  Issued ca = MakeCert("Signing CA", key.p, nullptr, key.p, /*ca=*/true, "",
                       "critical,keyCertSign,digitalSignature");
  auto attestor =
      X509PopServerAttestor::CreateFromCerts(Td(), {*common::Certificate::FromDer(ca.der)}, clock_);
  ASSERT_TRUE(attestor.ok());
  EXPECT_EQ((*attestor)->Attest(ca.der, Signer(key.p)).status().code(),
            absl::StatusCode::kPermissionDenied);
}

TEST_F(X509PopTest, ExpiredLeafIsPermissionDenied) {
  clock_.Advance(absl::Hours(25));
  EXPECT_EQ(attestor_->Attest(Chain(), Signer(leaf_key_.p)).status().code(),
            absl::StatusCode::kPermissionDenied);
}

TEST_F(X509PopTest, GarbagePayloadIsInvalidArgument) {
  EXPECT_EQ(attestor_->Attest("garbage", Signer(leaf_key_.p)).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST_F(X509PopTest, AgentAttestorFromFilesCompletesAttestation) {
  TempDir dir;
  auto write = [&](const std::string& name, const std::string& data) {
    std::string path = dir.path() + "/" + name;
    EXPECT_TRUE(common::WritePrivateFile(path, data).ok());
    return path;
  };
  const std::string key = write("agent.key", PemOfKey(leaf_key_.p));
  const std::string cert = write("agent.pem", common::Certificate::FromDer(leaf_.der)->ToPem());
  const std::string inter = write("inter.pem", common::Certificate::FromDer(inter_.der)->ToPem());
  common::config::X509PopAgentAttestorConfig config{key, cert, inter};
  auto agent = CreateAgentNodeAttestor(config, "");
  ASSERT_TRUE(agent.ok()) << agent.status();
  EXPECT_EQ((*agent)->Name(), "x509pop");
  auto payload = (*agent)->Payload();
  ASSERT_TRUE(payload.ok());
  EXPECT_EQ(*payload, Chain());
  auto result = attestor_->Attest(*payload, [&](std::string c) { return (*agent)->Answer(c); });
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_EQ(result->agent_id.String(),
            "spiffe://example.org/spire/agent/x509pop/" + Sha1Hex(leaf_.der));
}

TEST_F(X509PopTest, AgentAttestorRefusesKeyThatDoesNotMatchCertificate) {
  TempDir dir;
  Pkey other = EcKey();
  const std::string key = dir.path() + "/k.pem";
  const std::string cert = dir.path() + "/c.pem";
  ASSERT_TRUE(common::WritePrivateFile(key, PemOfKey(other.p)).ok());
  ASSERT_TRUE(
      common::WritePrivateFile(cert, common::Certificate::FromDer(leaf_.der)->ToPem()).ok());
  EXPECT_EQ(X509PopAgentAttestor::Create(key, cert, "").status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST_F(X509PopTest, ServerFactoryReadsCaBundleFiles) {
  TempDir dir;
  const std::string bundle = dir.path() + "/ca.pem";
  ASSERT_TRUE(
      common::WritePrivateFile(bundle, common::Certificate::FromDer(ca_.der)->ToPem()).ok());
  common::config::X509PopServerAttestorConfig config;
  config.ca_bundle_paths = {bundle};
  auto attestor = CreateServerNodeAttestor(config, Td(), nullptr, clock_);
  ASSERT_TRUE(attestor.ok()) << attestor.status();
  EXPECT_EQ((*attestor)->Name(), "x509pop");
  EXPECT_TRUE((*attestor)->Attest(Chain(), Signer(leaf_key_.p)).ok());
}

TEST(X509PopAgent, ChallengeOfWrongSizeIsInvalidArgument) {
  auto key = common::PrivateKey::Generate();
  auto root = common::CreateRootCa(*key, Td(), absl::Hours(1), common::SystemClock::Get());
  X509PopAgentAttestor agent(*key, {*root});
  EXPECT_EQ(agent.Answer("short").status().code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace trellis::attestors
