// Agent API rules over a real in-process TLS server: attestation with join tokens, the node
// re-check on every call, per-entry authorisation, sync diffs and pushed change notices.
#include "server/agent_service.h"

#include <grpcpp/grpcpp.h>
#include <stdlib.h>

#include <atomic>
#include <filesystem>
#include <memory>
#include <string>
#include <thread>

#include "attestors/node/node_attestor_factory.h"
#include "attestors/node/x509pop.h"
#include "common/bundle.h"
#include "common/csr.h"
#include "common/jwt.h"
#include "common/keys.h"
#include "common/x509.h"
#include "datastore/datastore.h"
#include "datastore/factory.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/ca_manager.h"
#include "server/entry_index.h"
#include "server/memory_key_manager.h"
#include "server/server_svid.h"
#include "tests/testutil/temp_dir.h"
#include "transport/spiffe_tls.h"

namespace trellis::server {
namespace {

using ::testing::HasSubstr;
using v1::Agent;

const common::TrustDomain kTd = *common::TrustDomain::Parse("example.org");

template <typename T>
T Must(absl::StatusOr<T> v) {
  EXPECT_TRUE(v.ok()) << v.status();
  return std::move(v).value();
}

// An agent's key and its current SVID.
struct AgentCreds {
  common::PrivateKey key;
  v1::X509SVID svid;
};

// A mechanism like the cloud instance documents: the same proof attests the same agent ID
// every time, and the server alone stops a second attestation (trust on first use).
class FirstUseAttestor final : public attestors::ServerNodeAttestor {
 public:
  std::string Name() const override { return "first_use_test"; }
  absl::StatusOr<Result> Attest(
      std::string_view payload,
      const std::function<absl::StatusOr<std::string>(std::string)>&) override {
    Result r{Must(common::SpiffeId::Parse("spiffe://example.org/spire/agent/first_use_test/" +
                                          std::string(payload))),
             {{"first_use_test", "instance:" + std::string(payload)}},
             /*reattestable=*/false};
    return r;
  }
};

class AgentServiceTest : public ::testing::Test {
 protected:
  void SetUp() override { Build(RateLimits{}); }

  void Build(RateLimits limits) {
    tmp_ = std::make_unique<testutil::TempDir>("trellis-agentsvc");
    dir_ = tmp_->path();
    ds_ = Must(datastore::CreateDataStore("sqlite3", dir_ + "/ds.sqlite3"));
    km_ = std::make_unique<MemoryKeyManager>();
    CaManager::Options ca_opts(kTd);
    ca_opts.server_instance_id = "test";
    ca_ = Must(CaManager::Create(ca_opts, ds_.get(), km_.get(), clock_));
    ASSERT_TRUE(ca_->Start().ok());
    ServerSvidRotator::Options svid_opts;
    svid_opts.data_dir = dir_;
    svid_ = Must(ServerSvidRotator::Create(svid_opts, ca_.get(), clock_));
    ASSERT_TRUE(svid_->Start().ok());
    index_ = Must(EntryIndex::Create(ds_.get(), clock_));
    std::vector<std::shared_ptr<attestors::ServerNodeAttestor>> attestors;
    attestors.push_back(Must(attestors::CreateServerNodeAttestor(
        common::config::JoinTokenServerAttestorConfig{}, kTd, ds_.get(), clock_)));
    pop_ca_key_ = Must(common::PrivateKey::Generate());
    pop_ca_ = Must(common::CreateRootCa(*pop_ca_key_, *common::TrustDomain::Parse("pop-ca.test"),
                                        absl::Hours(24), clock_));
    attestors.push_back(
        Must(attestors::X509PopServerAttestor::CreateFromCerts(kTd, {*pop_ca_}, clock_)));
    attestors.push_back(std::make_shared<FirstUseAttestor>());

    AgentService::Options opts{kTd};
    opts.rate_limits = limits;
    opts.clock = &clock_;
    CaManager* ca = ca_.get();
    const common::Clock* clock = &clock_;
    opts.authenticate =
        [ca, clock](const grpc::ServerContextBase& ctx) -> absl::StatusOr<CallerIdentity> {
      absl::StatusOr<transport::PeerIdentity> p =
          transport::AuthenticatePeer(ctx, *ca->Bundle(), clock->Now());
      if (!p.ok()) return p.status();
      return CallerIdentity{p->id, p->serial_hex, p->not_after};
    };
    opts.peer_address = [](const grpc::ServerContextBase& ctx) {
      return transport::PeerAddress(ctx);
    };
    opts.x509_svid_signed = [this] { ++x509_signed_; };
    opts.jwt_svid_signed = [this] { ++jwt_signed_; };
    service_ = std::make_unique<AgentService>(opts, ds_.get(), ca_.get(), index_.get(),
                                              std::move(attestors));
    AgentService* svc = service_.get();
    index_->SetChangeListener(
        [svc](uint64_t, const EntryIndex::Change& change) { svc->NotifyAgents(change.agents); });

    grpc::ServerBuilder builder;
    builder.AddListeningPort(
        "127.0.0.1:0",
        Must(transport::SpiffeServerCredentials(svid_->CertChainPath(), svid_->KeyPath())), &port_);
    builder.RegisterService(service_.get());
    server_ = builder.BuildAndStart();
    ASSERT_NE(server_, nullptr);
  }

  void TearDown() override {
    if (service_) service_->Shutdown();
    if (server_) server_->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(2));
    if (index_) index_->SetChangeListener(nullptr);
    tmp_.reset();
  }

  transport::BundleSource Bundle() {
    CaManager* ca = ca_.get();
    return [ca] { return ca->Bundle(); };
  }

  std::unique_ptr<Agent::Stub> Anonymous() {
    auto creds = transport::SpiffeClientCredentials(std::nullopt, Bundle(), common::ServerId(kTd));
    return Agent::NewStub(grpc::CreateChannel("127.0.0.1:" + std::to_string(port_), creds));
  }

  std::unique_ptr<Agent::Stub> As(const AgentCreds& a) {
    std::vector<common::Certificate> chain;
    for (const auto& der : a.svid.cert_chain())
      chain.push_back(Must(common::Certificate::FromDer(der)));
    transport::TlsIdentity id{common::Certificate::ChainToPem(chain),
                              std::string(Must(a.key.ToPem()).view())};
    auto creds = transport::SpiffeClientCredentials(id, Bundle(), common::ServerId(kTd));
    return Agent::NewStub(grpc::CreateChannel("127.0.0.1:" + std::to_string(port_), creds));
  }

  std::string NewToken() {
    std::string token = "tok" + std::to_string(++token_counter_);
    EXPECT_TRUE(ds_->CreateJoinToken({token, clock_.Now() + absl::Minutes(10)}).ok());
    return token;
  }

  // Runs AttestAgent with a join token; returns the final status and fills `out`.
  grpc::Status Attest(const std::string& type, const std::string& payload, const std::string& csr,
                      v1::AttestAgentResponse* out) {
    auto stub = Anonymous();
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
    auto stream = stub->AttestAgent(&ctx);
    v1::AttestAgentRequest req;
    req.mutable_params()->mutable_data()->set_type(type);
    req.mutable_params()->mutable_data()->set_payload(payload);
    req.mutable_params()->set_csr(csr);
    stream->Write(req);
    stream->WritesDone();
    while (stream->Read(out)) {
    }
    return stream->Finish();
  }

  AgentCreds AttestNew(std::string* token_out = nullptr) {
    std::string token = NewToken();
    if (token_out) *token_out = token;
    common::PrivateKey key = Must(common::PrivateKey::Generate());
    v1::AttestAgentResponse resp;
    grpc::Status st = Attest("join_token", token, Must(common::BuildCsr(key)), &resp);
    EXPECT_TRUE(st.ok()) << st.error_message();
    return AgentCreds{key, resp.result().svid()};
  }

  // Renews `a`'s agent SVID with a fresh key; the RPC status goes to `status`.
  AgentCreds Renew(const AgentCreds& a, grpc::Status* status) {
    common::PrivateKey key = Must(common::PrivateKey::Generate());
    v1::RenewAgentRequest renew;
    renew.set_csr(Must(common::BuildCsr(key)));
    v1::RenewAgentResponse renewed;
    auto stub = As(a);
    grpc::ClientContext ctx;
    *status = stub->RenewAgent(&ctx, renew, &renewed);
    return AgentCreds{key, renewed.svid()};
  }

  grpc::Status Sync(const AgentCreds& a, const v1::SyncAuthorizedEntriesRequest& req,
                    v1::SyncAuthorizedEntriesResponse* resp) {
    auto stub = As(a);
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
    return stub->SyncAuthorizedEntries(&ctx, req, resp);
  }

  datastore::RegistrationEntry AddEntry(const std::string& parent, const std::string& spiffe_id) {
    datastore::RegistrationEntry e;
    e.spiffe_id = spiffe_id;
    e.parent_id = parent;
    e.selectors = {{"unix", "uid:1000"}};
    e.dns_names = {"app.example.org"};
    datastore::RegistrationEntry created = Must(ds_->CreateEntry(e));
    EXPECT_TRUE(index_->Poll().ok());
    return created;
  }

  const common::Clock& clock_ = common::SystemClock::Get();
  std::unique_ptr<testutil::TempDir> tmp_;
  std::string dir_;
  std::unique_ptr<datastore::DataStore> ds_;
  std::unique_ptr<MemoryKeyManager> km_;
  std::unique_ptr<CaManager> ca_;
  std::unique_ptr<ServerSvidRotator> svid_;
  std::unique_ptr<EntryIndex> index_;
  std::unique_ptr<AgentService> service_;
  std::atomic<int> x509_signed_{0};
  std::atomic<int> jwt_signed_{0};
  std::unique_ptr<grpc::Server> server_;
  int port_ = 0;
  int token_counter_ = 0;
  std::optional<common::PrivateKey> pop_ca_key_;
  std::optional<common::Certificate> pop_ca_;
};

// A node certificate from the x509pop CA and the agent side that proves possession of it.
struct PopNode {
  common::Certificate leaf;
  std::unique_ptr<attestors::X509PopAgentAttestor> agent;
};

class X509PopAgentServiceTest : public AgentServiceTest {
 protected:
  PopNode NewNode() {
    auto issuer = Must(common::X509SvidIssuer::Create(*pop_ca_, *pop_ca_key_, clock_));
    common::PrivateKey key = Must(common::PrivateKey::Generate());
    common::Certificate leaf = Must(common::Certificate::FromDer(Must(issuer->IssueForPublicKey(
        key.public_key(), Must(common::SpiffeId::Parse("spiffe://pop-ca.test/node")),
        absl::Hours(1)))));
    return {leaf, std::make_unique<attestors::X509PopAgentAttestor>(
                      key, std::vector<common::Certificate>{leaf})};
  }

  // One attestation with a challenge round; `tamper` spoils the answer.
  grpc::Status AttestPop(PopNode& node, bool tamper, v1::AttestAgentResponse* result) {
    auto stub = Anonymous();
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
    auto stream = stub->AttestAgent(&ctx);
    v1::AttestAgentRequest req;
    req.mutable_params()->mutable_data()->set_type("x509pop");
    req.mutable_params()->mutable_data()->set_payload(Must(node.agent->Payload()));
    common::PrivateKey key = Must(common::PrivateKey::Generate());
    req.mutable_params()->set_csr(Must(common::BuildCsr(key)));
    EXPECT_TRUE(stream->Write(req));
    v1::AttestAgentResponse challenge;
    if (!stream->Read(&challenge)) return stream->Finish();
    EXPECT_EQ(challenge.step_case(), v1::AttestAgentResponse::kChallenge);
    std::string answer = Must(node.agent->Answer(challenge.challenge()));
    if (tamper) answer[answer.size() / 2] ^= 0x01;
    v1::AttestAgentRequest reply;
    reply.set_challenge_response(answer);
    EXPECT_TRUE(stream->Write(reply));
    stream->WritesDone();
    while (stream->Read(result)) {
    }
    return stream->Finish();
  }
};

TEST_F(X509PopAgentServiceTest, ChallengeAnsweredByTheLeafKeyAttests) {
  PopNode node = NewNode();
  v1::AttestAgentResponse resp;
  grpc::Status st = AttestPop(node, false, &resp);
  ASSERT_TRUE(st.ok()) << st.error_message();
  const std::string id = "spiffe://example.org/spire/agent/x509pop/" + node.leaf.Sha1Fingerprint();
  EXPECT_EQ(resp.result().svid().spiffe_id(), id);
  EXPECT_TRUE(resp.result().reattestable());
  std::vector<datastore::Selector> selectors = Must(ds_->GetNodeSelectors(id));
  EXPECT_THAT(selectors, ::testing::Contains(datastore::Selector{
                             "x509pop", "serialnumber:" + node.leaf.SerialHex()}));
}

TEST_F(X509PopAgentServiceTest, WrongChallengeAnswerIsDenied) {
  PopNode node = NewNode();
  v1::AttestAgentResponse resp;
  EXPECT_EQ(AttestPop(node, true, &resp).error_code(), grpc::StatusCode::PERMISSION_DENIED);
}

TEST_F(X509PopAgentServiceTest, ReattestationRefreshesTheNodeSerial) {
  PopNode node = NewNode();
  v1::AttestAgentResponse first, second;
  ASSERT_TRUE(AttestPop(node, false, &first).ok());
  ASSERT_TRUE(AttestPop(node, false, &second).ok());
  common::Certificate leaf =
      Must(common::Certificate::FromDer(second.result().svid().cert_chain(0)));
  EXPECT_EQ(Must(ds_->GetNode(second.result().svid().spiffe_id(), false)).cert_serial_number,
            leaf.SerialHex());
}

TEST_F(AgentServiceTest, JoinTokenAttestationIssuesTheAgentSvid) {
  std::string token;
  AgentCreds a = AttestNew(&token);
  const std::string id = "spiffe://example.org/spire/agent/join_token/" + token;
  EXPECT_EQ(a.svid.spiffe_id(), id);
  ASSERT_GE(a.svid.cert_chain_size(), 1);
  common::Certificate leaf = Must(common::Certificate::FromDer(a.svid.cert_chain(0)));
  EXPECT_EQ(Must(leaf.GetSpiffeId()).String(), id);
  datastore::AttestedNode node = Must(ds_->GetNode(id, false));
  EXPECT_EQ(node.attestation_data_type, "join_token");
  EXPECT_EQ(node.cert_serial_number, leaf.SerialHex());
  EXPECT_FALSE(node.can_reattest);
}

TEST_F(AgentServiceTest, AttestationResultCarriesTheBundle) {
  std::string token = NewToken();
  common::PrivateKey key = Must(common::PrivateKey::Generate());
  v1::AttestAgentResponse resp;
  ASSERT_TRUE(Attest("join_token", token, Must(common::BuildCsr(key)), &resp).ok());
  EXPECT_EQ(resp.result().bundle().trust_domain(), "example.org");
  EXPECT_GE(resp.result().bundle().x509_authorities_size(), 1);
  EXPECT_FALSE(resp.result().reattestable());
}

TEST_F(AgentServiceTest, ReusedJoinTokenIsRefused) {
  std::string token;
  AttestNew(&token);
  common::PrivateKey key = Must(common::PrivateKey::Generate());
  v1::AttestAgentResponse resp;
  grpc::Status st = Attest("join_token", token, Must(common::BuildCsr(key)), &resp);
  EXPECT_EQ(st.error_code(), grpc::StatusCode::PERMISSION_DENIED) << st.error_message();
}

TEST_F(AgentServiceTest, NonReattestableAgentIsAdmittedOnlyOnce) {
  common::PrivateKey key = Must(common::PrivateKey::Generate());
  v1::AttestAgentResponse first, second;
  ASSERT_TRUE(Attest("first_use_test", "i-0abc", Must(common::BuildCsr(key)), &first).ok());
  const std::string id = "spiffe://example.org/spire/agent/first_use_test/i-0abc";
  EXPECT_EQ(first.result().svid().spiffe_id(), id);
  const std::string serial = Must(ds_->GetNode(id, false)).cert_serial_number;
  grpc::Status st = Attest("first_use_test", "i-0abc", Must(common::BuildCsr(key)), &second);
  EXPECT_EQ(st.error_code(), grpc::StatusCode::PERMISSION_DENIED) << st.error_message();
  EXPECT_NE(st.error_message().find("already attested"), std::string::npos) << st.error_message();
  EXPECT_EQ(Must(ds_->GetNode(id, false)).cert_serial_number, serial);
  // Another instance is a new agent.
  ASSERT_TRUE(Attest("first_use_test", "i-0def", Must(common::BuildCsr(key)), &second).ok());
}

TEST_F(AgentServiceTest, ConcurrentAttestationsWithOneTokenAdmitExactlyOne) {
  std::string token = NewToken();
  constexpr int kRacers = 4;
  std::vector<grpc::StatusCode> codes(kRacers);
  std::vector<std::string> csrs;
  for (int i = 0; i < kRacers; ++i) {
    csrs.push_back(Must(common::BuildCsr(Must(common::PrivateKey::Generate()))));
  }
  std::vector<std::thread> threads;
  for (int i = 0; i < kRacers; ++i) {
    threads.emplace_back([&, i] {
      v1::AttestAgentResponse resp;
      codes[i] = Attest("join_token", token, csrs[i], &resp).error_code();
    });
  }
  for (auto& t : threads) t.join();
  int ok = 0;
  for (grpc::StatusCode c : codes) {
    if (c == grpc::StatusCode::OK) {
      ++ok;
    } else {
      EXPECT_EQ(c, grpc::StatusCode::PERMISSION_DENIED);
    }
  }
  EXPECT_EQ(ok, 1);
}

TEST_F(AgentServiceTest, UnknownJoinTokenIsRefused) {
  common::PrivateKey key = Must(common::PrivateKey::Generate());
  v1::AttestAgentResponse resp;
  grpc::Status st = Attest("join_token", "never-issued", Must(common::BuildCsr(key)), &resp);
  EXPECT_EQ(st.error_code(), grpc::StatusCode::PERMISSION_DENIED) << st.error_message();
}

TEST_F(AgentServiceTest, UnknownAttestorTypeIsNotFound) {
  common::PrivateKey key = Must(common::PrivateKey::Generate());
  v1::AttestAgentResponse resp;
  grpc::Status st = Attest("aws_iid", "x", Must(common::BuildCsr(key)), &resp);
  EXPECT_EQ(st.error_code(), grpc::StatusCode::NOT_FOUND);
}

TEST_F(AgentServiceTest, MalformedCsrIsInvalidAndKeepsTheToken) {
  std::string token = NewToken();
  v1::AttestAgentResponse resp;
  grpc::Status st = Attest("join_token", token, "not a csr", &resp);
  EXPECT_EQ(st.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  common::PrivateKey key = Must(common::PrivateKey::Generate());
  EXPECT_TRUE(Attest("join_token", token, Must(common::BuildCsr(key)), &resp).ok());
}

TEST_F(AgentServiceTest, AttestationIsRateLimitedPerAddress) {
  TearDown();
  RateLimits limits;
  limits.attestation = {0.001, 1, 100};
  Build(limits);
  AttestNew();
  common::PrivateKey key = Must(common::PrivateKey::Generate());
  v1::AttestAgentResponse resp;
  grpc::Status st = Attest("join_token", NewToken(), Must(common::BuildCsr(key)), &resp);
  EXPECT_EQ(st.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
}

TEST_F(AgentServiceTest, GetBundleNeedsNoClientCertificate) {
  auto stub = Anonymous();
  grpc::ClientContext ctx;
  v1::Bundle resp;
  ASSERT_TRUE(stub->GetBundle(&ctx, {}, &resp).ok());
  EXPECT_EQ(resp.trust_domain(), "example.org");
  EXPECT_EQ(resp.sequence_number(), ca_->Bundle()->sequence());
  ASSERT_GE(resp.jwt_authorities_size(), 1);
  EXPECT_GT(resp.jwt_authorities(0).expires_at(), absl::ToUnixSeconds(absl::Now()));
}

TEST_F(AgentServiceTest, SyncWithoutClientCertificateIsUnauthenticated) {
  auto stub = Anonymous();
  grpc::ClientContext ctx;
  v1::SyncAuthorizedEntriesResponse resp;
  EXPECT_EQ(stub->SyncAuthorizedEntries(&ctx, {}, &resp).error_code(),
            grpc::StatusCode::UNAUTHENTICATED);
}

TEST_F(AgentServiceTest, BannedAgentIsRefused) {
  AgentCreds a = AttestNew();
  datastore::AttestedNode ban;
  ban.spiffe_id = a.svid.spiffe_id();
  ban.banned = true;
  datastore::NodeMask mask;
  mask.banned = true;
  ASSERT_TRUE(ds_->UpdateNode(ban, mask).ok());
  ASSERT_TRUE(index_->Poll().ok());
  v1::SyncAuthorizedEntriesResponse resp;
  grpc::Status st = Sync(a, {}, &resp);
  EXPECT_EQ(st.error_code(), grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_THAT(st.error_message(), HasSubstr("banned"));
}

TEST_F(AgentServiceTest, EvictedAgentIsRefused) {
  AgentCreds a = AttestNew();
  ASSERT_TRUE(ds_->DeleteNode(a.svid.spiffe_id()).ok());
  ASSERT_TRUE(index_->Poll().ok());
  v1::SyncAuthorizedEntriesResponse resp;
  grpc::Status st = Sync(a, {}, &resp);
  EXPECT_EQ(st.error_code(), grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_THAT(st.error_message(), HasSubstr("not attested or was evicted"));
}

TEST_F(AgentServiceTest, BannedAgentCannotAttestAgain) {
  // x509pop agents may re-attest; a join-token agent never can. Either way a banned node is
  // refused: simulate with a node row that already exists for the token's agent ID.
  std::string token = NewToken();
  datastore::AttestedNode node;
  node.spiffe_id = "spiffe://example.org/spire/agent/join_token/" + token;
  node.attestation_data_type = "join_token";
  node.cert_serial_number = "01";
  node.banned = true;
  ASSERT_TRUE(ds_->CreateNode(node).ok());
  common::PrivateKey key = Must(common::PrivateKey::Generate());
  v1::AttestAgentResponse resp;
  grpc::Status st = Attest("join_token", token, Must(common::BuildCsr(key)), &resp);
  EXPECT_EQ(st.error_code(), grpc::StatusCode::PERMISSION_DENIED);
}

TEST_F(AgentServiceTest, RenewedSvidIsPromotedAndTheOldOneStopsWorking) {
  AgentCreds a = AttestNew();
  grpc::Status renewed;
  AgentCreds b = Renew(a, &renewed);
  ASSERT_TRUE(renewed.ok());
  EXPECT_EQ(b.svid.spiffe_id(), a.svid.spiffe_id());
  v1::SyncAuthorizedEntriesResponse resp;
  // Until the new SVID is used, the old one still works.
  ASSERT_TRUE(Sync(a, {}, &resp).ok());
  ASSERT_TRUE(Sync(b, {}, &resp).ok());
  grpc::Status st = Sync(a, {}, &resp);
  EXPECT_EQ(st.error_code(), grpc::StatusCode::PERMISSION_DENIED);
  common::Certificate leaf2 = Must(common::Certificate::FromDer(b.svid.cert_chain(0)));
  EXPECT_EQ(Must(ds_->GetNode(a.svid.spiffe_id(), false)).cert_serial_number, leaf2.SerialHex());
}

TEST_F(AgentServiceTest, StaleIndexDoesNotPromoteARenewalSupersededInTheStore) {
  AgentCreds a = AttestNew();
  grpc::Status renewed;
  AgentCreds b = Renew(a, &renewed);
  ASSERT_TRUE(renewed.ok());
  // A later renewal (the agent dropped `b`) reached the store; this server's index has not
  // heard of it yet and still shows `b` as pending.
  datastore::AttestedNode later;
  later.spiffe_id = a.svid.spiffe_id();
  later.new_cert_serial_number = "0badc0de";
  later.new_cert_not_after = absl::Now() + absl::Hours(1);
  datastore::NodeMask mask;
  mask.new_cert_serial_number = mask.new_cert_not_after = true;
  ASSERT_TRUE(ds_->UpdateNode(later, mask).ok());
  v1::SyncAuthorizedEntriesResponse resp;
  EXPECT_EQ(Sync(b, {}, &resp).error_code(), grpc::StatusCode::PERMISSION_DENIED);
  datastore::AttestedNode stored = Must(ds_->GetNode(a.svid.spiffe_id(), false));
  EXPECT_EQ(stored.new_cert_serial_number, "0badc0de");
  common::Certificate leaf1 = Must(common::Certificate::FromDer(a.svid.cert_chain(0)));
  EXPECT_EQ(stored.cert_serial_number, leaf1.SerialHex());
  // The SVID still current in the store keeps working.
  EXPECT_TRUE(Sync(a, {}, &resp).ok());
}

TEST_F(AgentServiceTest, SvidWithUnknownSerialIsRefused) {
  AgentCreds a = AttestNew();
  datastore::AttestedNode update;
  update.spiffe_id = a.svid.spiffe_id();
  update.cert_serial_number = "abcdef";
  datastore::NodeMask mask;
  mask.cert_serial_number = true;
  ASSERT_TRUE(ds_->UpdateNode(update, mask).ok());
  ASSERT_TRUE(index_->Poll().ok());
  v1::SyncAuthorizedEntriesResponse resp;
  EXPECT_EQ(Sync(a, {}, &resp).error_code(), grpc::StatusCode::PERMISSION_DENIED);
}

TEST_F(AgentServiceTest, BatchNewX509SvidMintsAuthorisedEntriesOnly) {
  AgentCreds a = AttestNew();
  datastore::RegistrationEntry mine = AddEntry(a.svid.spiffe_id(), "spiffe://example.org/app");
  datastore::RegistrationEntry other = AddEntry(
      "spiffe://example.org/spire/agent/join_token/someone-else", "spiffe://example.org/x");
  common::PrivateKey wkey = Must(common::PrivateKey::Generate());
  std::string csr = Must(common::BuildCsr(wkey));
  v1::BatchNewX509SVIDRequest req;
  auto* p1 = req.add_params();
  p1->set_entry_id(mine.id);
  p1->set_csr(csr);
  auto* p2 = req.add_params();
  p2->set_entry_id(other.id);
  p2->set_csr(csr);
  auto* p3 = req.add_params();
  p3->set_entry_id(mine.id);
  p3->set_csr("garbage");
  v1::BatchNewX509SVIDResponse resp;
  auto stub = As(a);
  grpc::ClientContext ctx;
  ASSERT_TRUE(stub->BatchNewX509SVID(&ctx, req, &resp).ok());
  ASSERT_EQ(resp.results_size(), 3);
  EXPECT_EQ(resp.results(0).code(), 0) << resp.results(0).message();
  EXPECT_EQ(resp.results(0).svid().spiffe_id(), "spiffe://example.org/app");
  common::Certificate leaf =
      Must(common::Certificate::FromDer(resp.results(0).svid().cert_chain(0)));
  EXPECT_EQ(leaf.DnsSans(), std::vector<std::string>{"app.example.org"});
  EXPECT_EQ(resp.results(1).code(), static_cast<int>(grpc::StatusCode::PERMISSION_DENIED));
  EXPECT_EQ(resp.results(2).code(), static_cast<int>(grpc::StatusCode::INVALID_ARGUMENT));
}

TEST_F(AgentServiceTest, NewJwtSvidForAuthorisedEntry) {
  AgentCreds a = AttestNew();
  datastore::RegistrationEntry mine = AddEntry(a.svid.spiffe_id(), "spiffe://example.org/app");
  v1::NewJWTSVIDRequest req;
  req.set_entry_id(mine.id);
  req.add_audience("db");
  v1::NewJWTSVIDResponse resp;
  auto stub = As(a);
  grpc::ClientContext ctx;
  ASSERT_TRUE(stub->NewJWTSVID(&ctx, req, &resp).ok());
  EXPECT_EQ(resp.svid().spiffe_id(), "spiffe://example.org/app");
  auto verified = common::VerifyJwtSvid(resp.svid().token(), ca_->Bundle()->jwt_authorities(), "db",
                                        absl::Now());
  ASSERT_TRUE(verified.ok()) << verified.status();
  EXPECT_EQ(absl::ToUnixSeconds(verified->expiry), resp.svid().expires_at());
}

TEST_F(AgentServiceTest, SigningHooksCountEverySignedSvidOnly) {
  AgentCreds a = AttestNew();
  EXPECT_EQ(x509_signed_.load(), 1);  // the agent SVID
  datastore::RegistrationEntry mine = AddEntry(a.svid.spiffe_id(), "spiffe://example.org/app");
  v1::BatchNewX509SVIDRequest req;
  auto* good = req.add_params();
  good->set_entry_id(mine.id);
  good->set_csr(Must(common::BuildCsr(Must(common::PrivateKey::Generate()))));
  auto* bad = req.add_params();
  bad->set_entry_id(mine.id);
  bad->set_csr("garbage");
  v1::BatchNewX509SVIDResponse resp;
  auto stub = As(a);
  {
    grpc::ClientContext ctx;
    ASSERT_TRUE(stub->BatchNewX509SVID(&ctx, req, &resp).ok());
  }
  EXPECT_EQ(x509_signed_.load(), 2);
  v1::NewJWTSVIDRequest jwt_req;
  jwt_req.set_entry_id(mine.id);
  jwt_req.add_audience("db");
  v1::NewJWTSVIDResponse jwt_resp;
  grpc::ClientContext ctx;
  ASSERT_TRUE(stub->NewJWTSVID(&ctx, jwt_req, &jwt_resp).ok());
  EXPECT_EQ(jwt_signed_.load(), 1);
  EXPECT_EQ(x509_signed_.load(), 2);
}

TEST_F(AgentServiceTest, OpenWatchesCountsLiveStreams) {
  AgentCreds a = AttestNew();
  auto stub = As(a);
  EXPECT_EQ(service_->OpenWatches(), 0);
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(20));
  auto reader = stub->WatchChanges(&ctx, {});
  v1::ChangeNotice first;
  ASSERT_TRUE(reader->Read(&first));
  EXPECT_EQ(service_->OpenWatches(), 1);
  ctx.TryCancel();
  reader->Finish();
  // The handler notices the cancellation at its next recheck.
  absl::Time deadline = absl::Now() + absl::Seconds(20);
  while (service_->OpenWatches() != 0 && absl::Now() < deadline) {
    absl::SleepFor(absl::Milliseconds(10));
  }
  EXPECT_EQ(service_->OpenWatches(), 0);
}

TEST_F(AgentServiceTest, NewJwtSvidForForeignEntryIsDenied) {
  AgentCreds a = AttestNew();
  datastore::RegistrationEntry other = AddEntry(
      "spiffe://example.org/spire/agent/join_token/someone-else", "spiffe://example.org/x");
  v1::NewJWTSVIDRequest req;
  req.set_entry_id(other.id);
  req.add_audience("db");
  v1::NewJWTSVIDResponse resp;
  auto stub = As(a);
  grpc::ClientContext ctx;
  EXPECT_EQ(stub->NewJWTSVID(&ctx, req, &resp).error_code(), grpc::StatusCode::PERMISSION_DENIED);
}

TEST_F(AgentServiceTest, NewJwtSvidWithoutAudienceIsInvalid) {
  AgentCreds a = AttestNew();
  datastore::RegistrationEntry mine = AddEntry(a.svid.spiffe_id(), "spiffe://example.org/app");
  v1::NewJWTSVIDRequest req;
  req.set_entry_id(mine.id);
  v1::NewJWTSVIDResponse resp;
  auto stub = As(a);
  grpc::ClientContext ctx;
  EXPECT_EQ(stub->NewJWTSVID(&ctx, req, &resp).error_code(), grpc::StatusCode::INVALID_ARGUMENT);
}

TEST_F(AgentServiceTest, SyncSendsNewEntriesAndAStaleBundle) {
  AgentCreds a = AttestNew();
  datastore::RegistrationEntry mine = AddEntry(a.svid.spiffe_id(), "spiffe://example.org/app");
  v1::SyncAuthorizedEntriesResponse resp;
  ASSERT_TRUE(Sync(a, {}, &resp).ok());
  ASSERT_EQ(resp.changed_size(), 1);
  EXPECT_EQ(resp.changed(0).id(), mine.id);
  EXPECT_TRUE(resp.has_bundle());
  EXPECT_EQ(resp.removed_ids_size(), 0);
}

TEST_F(AgentServiceTest, SyncWithCurrentStateSendsNothing) {
  AgentCreds a = AttestNew();
  datastore::RegistrationEntry mine = AddEntry(a.svid.spiffe_id(), "spiffe://example.org/app");
  v1::SyncAuthorizedEntriesRequest req;
  (*req.mutable_known_revisions())[mine.id] = mine.revision_number;
  req.set_bundle_sequence(ca_->Bundle()->sequence());
  v1::SyncAuthorizedEntriesResponse resp;
  ASSERT_TRUE(Sync(a, req, &resp).ok());
  EXPECT_EQ(resp.changed_size(), 0);
  EXPECT_EQ(resp.removed_ids_size(), 0);
  EXPECT_FALSE(resp.has_bundle());
}

TEST_F(AgentServiceTest, SyncReportsUpdatedAndRemovedEntries) {
  AgentCreds a = AttestNew();
  datastore::RegistrationEntry kept = AddEntry(a.svid.spiffe_id(), "spiffe://example.org/a");
  datastore::RegistrationEntry gone = AddEntry(a.svid.spiffe_id(), "spiffe://example.org/b");
  kept.selectors = {{"unix", "uid:2000"}};
  datastore::RegistrationEntry updated = Must(ds_->UpdateEntry(kept, std::nullopt));
  ASSERT_TRUE(ds_->DeleteEntry(gone.id).ok());
  ASSERT_TRUE(index_->Poll().ok());
  v1::SyncAuthorizedEntriesRequest req;
  (*req.mutable_known_revisions())[kept.id] = 0;
  (*req.mutable_known_revisions())[gone.id] = 0;
  v1::SyncAuthorizedEntriesResponse resp;
  ASSERT_TRUE(Sync(a, req, &resp).ok());
  ASSERT_EQ(resp.changed_size(), 1);
  EXPECT_EQ(resp.changed(0).revision_number(), updated.revision_number);
  ASSERT_EQ(resp.removed_ids_size(), 1);
  EXPECT_EQ(resp.removed_ids(0), gone.id);
}

TEST_F(AgentServiceTest, SyncSendsFederatedBundlesOnlyWhenStaleAndNeeded) {
  AgentCreds a = AttestNew();
  common::PrivateKey other_key = Must(common::PrivateKey::Generate());
  common::Certificate other_ca = Must(common::CreateRootCa(
      other_key, *common::TrustDomain::Parse("other.org"), absl::Hours(24), clock_));
  datastore::Bundle fed;
  fed.trust_domain = "other.org";
  fed.x509_authorities.push_back({other_ca.der(), other_ca.not_after()});
  datastore::Bundle stored = Must(ds_->SetBundle(fed));
  ASSERT_TRUE(service_->RefreshFederatedBundles().ok());
  datastore::RegistrationEntry e;
  e.spiffe_id = "spiffe://example.org/fed";
  e.parent_id = a.svid.spiffe_id();
  e.selectors = {{"unix", "uid:1"}};
  e.federates_with = {"other.org"};
  ASSERT_TRUE(ds_->CreateEntry(e).ok());
  ASSERT_TRUE(index_->Poll().ok());

  v1::SyncAuthorizedEntriesRequest req;
  (*req.mutable_federated_bundle_sequences())["gone.org"] = 3;
  v1::SyncAuthorizedEntriesResponse resp;
  ASSERT_TRUE(Sync(a, req, &resp).ok());
  ASSERT_EQ(resp.federated_bundles_size(), 1);
  EXPECT_EQ(resp.federated_bundles(0).trust_domain(), "other.org");
  ASSERT_EQ(resp.removed_federated_bundles_size(), 1);
  EXPECT_EQ(resp.removed_federated_bundles(0), "gone.org");

  v1::SyncAuthorizedEntriesRequest current;
  (*current.mutable_federated_bundle_sequences())["other.org"] =
      static_cast<uint64_t>(stored.sequence_number);
  v1::SyncAuthorizedEntriesResponse again;
  ASSERT_TRUE(Sync(a, current, &again).ok());
  EXPECT_EQ(again.federated_bundles_size(), 0);
  EXPECT_EQ(again.removed_federated_bundles_size(), 0);
}

TEST_F(AgentServiceTest, SigningIsRateLimitedPerAddress) {
  TearDown();
  RateLimits limits;
  limits.signing = {0.001, 1, 100};
  Build(limits);
  AgentCreds a = AttestNew();
  datastore::RegistrationEntry mine = AddEntry(a.svid.spiffe_id(), "spiffe://example.org/app");
  v1::NewJWTSVIDRequest req;
  req.set_entry_id(mine.id);
  req.add_audience("db");
  auto stub = As(a);
  v1::NewJWTSVIDResponse resp;
  grpc::ClientContext first;
  ASSERT_TRUE(stub->NewJWTSVID(&first, req, &resp).ok());
  grpc::ClientContext second;
  EXPECT_EQ(stub->NewJWTSVID(&second, req, &resp).error_code(),
            grpc::StatusCode::RESOURCE_EXHAUSTED);
}

TEST_F(AgentServiceTest, WatchPushesANoticeWhenAFederatedBundleChanges) {
  AgentCreds a = AttestNew();
  auto stub = As(a);
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(20));
  auto reader = stub->WatchChanges(&ctx, {});
  v1::ChangeNotice first;
  ASSERT_TRUE(reader->Read(&first));
  common::PrivateKey other_key = Must(common::PrivateKey::Generate());
  common::Certificate other_ca = Must(common::CreateRootCa(
      other_key, *common::TrustDomain::Parse("other.org"), absl::Hours(24), clock_));
  datastore::Bundle fed;
  fed.trust_domain = "other.org";
  fed.x509_authorities.push_back({other_ca.der(), other_ca.not_after()});
  ASSERT_TRUE(ds_->SetBundle(fed).ok());
  ASSERT_TRUE(service_->RefreshFederatedBundles().ok());
  v1::ChangeNotice next;
  EXPECT_TRUE(reader->Read(&next));
  ctx.TryCancel();
  reader->Finish();
}

TEST_F(AgentServiceTest, WatchPushesANoticeWhenAnEntryIsCreated) {
  AgentCreds a = AttestNew();
  auto stub = As(a);
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(20));
  auto reader = stub->WatchChanges(&ctx, {});
  v1::ChangeNotice first;
  ASSERT_TRUE(reader->Read(&first));
  AddEntry(a.svid.spiffe_id(), "spiffe://example.org/app");
  v1::ChangeNotice next;
  ASSERT_TRUE(reader->Read(&next));
  EXPECT_GT(next.entries_version(), first.entries_version());
  ctx.TryCancel();
  reader->Finish();
}

TEST_F(AgentServiceTest, WatchStaysQuietForAnotherAgentsEntries) {
  AgentCreds a = AttestNew();
  auto stub = As(a);
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(20));
  auto reader = stub->WatchChanges(&ctx, {});
  v1::ChangeNotice first;
  ASSERT_TRUE(reader->Read(&first));
  AddEntry("spiffe://example.org/spire/agent/join_token/someone-else", "spiffe://example.org/x");
  AddEntry(a.svid.spiffe_id(), "spiffe://example.org/mine");
  uint64_t after_both = index_->Version();
  // Had the foreign entry produced a notice, this one would carry the version before ours.
  v1::ChangeNotice next;
  ASSERT_TRUE(reader->Read(&next));
  EXPECT_EQ(next.entries_version(), after_both);
  ctx.TryCancel();
  reader->Finish();
}

TEST_F(AgentServiceTest, WatchWakesOnlyTheStreamsOfTheAgentsAChangeConcerns) {
  AgentCreds a = AttestNew();
  AgentCreds b = AttestNew();
  auto stub_a = As(a);
  auto stub_b = As(b);
  grpc::ClientContext ctx_a, ctx_b;
  ctx_a.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(20));
  ctx_b.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(20));
  auto reader_a = stub_a->WatchChanges(&ctx_a, {});
  auto reader_b = stub_b->WatchChanges(&ctx_b, {});
  v1::ChangeNotice notice;
  ASSERT_TRUE(reader_a->Read(&notice));
  ASSERT_TRUE(reader_b->Read(&notice));
  const int64_t before = service_->WatchEvaluations();
  // An entry under an agent with no stream, then one under a: the notifier handles changes in
  // order, so once a's notice arrives both have been handled, and only a's stream was looked at.
  AddEntry("spiffe://example.org/spire/agent/join_token/nobody", "spiffe://example.org/x");
  AddEntry(a.svid.spiffe_id(), "spiffe://example.org/mine");
  ASSERT_TRUE(reader_a->Read(&notice));
  EXPECT_EQ(service_->WatchEvaluations() - before, 1);
  ctx_a.TryCancel();
  ctx_b.TryCancel();
  reader_a->Finish();
  reader_b->Finish();
}

TEST_F(AgentServiceTest, WatchEndsWhenTheAgentIsEvicted) {
  AgentCreds a = AttestNew();
  auto stub = As(a);
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(20));
  auto reader = stub->WatchChanges(&ctx, {});
  v1::ChangeNotice notice;
  ASSERT_TRUE(reader->Read(&notice));
  ASSERT_TRUE(ds_->DeleteNode(a.svid.spiffe_id()).ok());
  ASSERT_TRUE(index_->Poll().ok());
  while (reader->Read(&notice)) {
  }
  EXPECT_EQ(reader->Finish().error_code(), grpc::StatusCode::PERMISSION_DENIED);
}

TEST_F(AgentServiceTest, WatchEndsWhenTheAgentIsBanned) {
  AgentCreds a = AttestNew();
  auto stub = As(a);
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(20));
  auto reader = stub->WatchChanges(&ctx, {});
  v1::ChangeNotice notice;
  ASSERT_TRUE(reader->Read(&notice));
  datastore::AttestedNode ban;
  ban.spiffe_id = a.svid.spiffe_id();
  ban.banned = true;
  datastore::NodeMask mask;
  mask.banned = true;
  ASSERT_TRUE(ds_->UpdateNode(ban, mask).ok());
  ASSERT_TRUE(index_->Poll().ok());
  while (reader->Read(&notice)) {
  }
  grpc::Status st = reader->Finish();
  EXPECT_EQ(st.error_code(), grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_THAT(st.error_message(), HasSubstr("banned"));
}

TEST_F(AgentServiceTest, WatchEndsCleanlyOnShutdown) {
  AgentCreds a = AttestNew();
  auto stub = As(a);
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(20));
  auto reader = stub->WatchChanges(&ctx, {});
  v1::ChangeNotice notice;
  ASSERT_TRUE(reader->Read(&notice));
  service_->Shutdown();
  while (reader->Read(&notice)) {
  }
  EXPECT_TRUE(reader->Finish().ok());
}

// ---- Log lines name the caller and the method ----------------------------------------------

// The captured line holding `msg` (empty when none does).
std::string LineWith(const std::string& captured, const std::string& msg) {
  size_t at = captured.find(" " + msg);
  if (at == std::string::npos) return "";
  size_t start = captured.rfind('\n', at);
  start = start == std::string::npos ? 0 : start + 1;
  return captured.substr(start, captured.find('\n', at) - start);
}

TEST_F(AgentServiceTest, AttestationLineNamesTheAgentAndTheMethod) {
  ::testing::internal::CaptureStderr();
  std::string token;
  AgentCreds a = AttestNew(&token);
  std::string line = LineWith(::testing::internal::GetCapturedStderr(), "Agent attested");
  ASSERT_FALSE(line.empty());
  EXPECT_THAT(line, HasSubstr(" caller_id=spiffe://example.org/spire/agent/join_token/" + token));
  EXPECT_THAT(line, HasSubstr(" caller_address="));
  EXPECT_THAT(line, HasSubstr(" method=/trellis.server.v1.Agent/AttestAgent"));
}

TEST_F(AgentServiceTest, FailedAttestationLineNamesTheAddressAndTheMethod) {
  common::PrivateKey key = Must(common::PrivateKey::Generate());
  v1::AttestAgentResponse resp;
  ::testing::internal::CaptureStderr();
  grpc::Status st = Attest("join_token", "never-issued", Must(common::BuildCsr(key)), &resp);
  std::string line = LineWith(::testing::internal::GetCapturedStderr(), "Node attestation failed");
  ASSERT_FALSE(st.ok());
  ASSERT_FALSE(line.empty());
  EXPECT_THAT(line, HasSubstr(" caller_address=127.0.0.1 "));
  EXPECT_THAT(line, HasSubstr(" method=/trellis.server.v1.Agent/AttestAgent"));
  EXPECT_THAT(line, ::testing::Not(HasSubstr("caller_id=")));
}

TEST_F(AgentServiceTest, RenewalLineNamesTheCallerAndTheMethod) {
  AgentCreds a = AttestNew();
  ::testing::internal::CaptureStderr();
  grpc::Status renewed;
  Renew(a, &renewed);
  std::string line = LineWith(::testing::internal::GetCapturedStderr(), "Agent SVID renewed");
  ASSERT_TRUE(renewed.ok());
  ASSERT_FALSE(line.empty());
  EXPECT_THAT(line, HasSubstr(" caller_id=" + a.svid.spiffe_id()));
  EXPECT_THAT(line, HasSubstr(" method=/trellis.server.v1.Agent/RenewAgent"));
}

TEST_F(AgentServiceTest, RefusalLineNamesTheCallerAndTheMethod) {
  AgentCreds a = AttestNew();
  datastore::AttestedNode ban;
  ban.spiffe_id = a.svid.spiffe_id();
  ban.banned = true;
  datastore::NodeMask mask;
  mask.banned = true;
  ASSERT_TRUE(ds_->UpdateNode(ban, mask).ok());
  ASSERT_TRUE(index_->Poll().ok());
  v1::SyncAuthorizedEntriesResponse resp;
  ::testing::internal::CaptureStderr();
  grpc::Status st = Sync(a, {}, &resp);
  std::string line = LineWith(::testing::internal::GetCapturedStderr(), "Agent refused");
  EXPECT_EQ(st.error_code(), grpc::StatusCode::PERMISSION_DENIED);
  ASSERT_FALSE(line.empty());
  EXPECT_THAT(line, HasSubstr(" caller_id=" + a.svid.spiffe_id()));
  EXPECT_THAT(line, HasSubstr(" method=/trellis.server.v1.Agent/SyncAuthorizedEntries"));
}

}  // namespace
}  // namespace trellis::server
