// The agent against an in-process fake of the server's Agent API over real SPIFFE mTLS:
// attestation, sync, batched minting, persistence across restarts, JWT caching, watch pushes.
#include "agent/agent.h"

#include <grpcpp/grpcpp.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <filesystem>

#include "absl/strings/str_cat.h"
#include "common/csr.h"
#include "common/file_util.h"
#include "common/jwt.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/telemetry/scrape_util.h"
#include "transport/spiffe_tls.h"
#include "trellis/server/v1/agent.grpc.pb.h"
#include "workload.grpc.pb.h"

namespace trellis::agent {
namespace {

namespace v1 = ::trellis::server::v1;
using common::SpiffeId;

constexpr char kToken[] = "tok123";

// A minimal Agent API: join_token attestation, one entry for this test's uid, SVIDs from a
// real CA, JWTs from a real key, and a watch stream that pushes on demand.
class FakeAgentService final : public v1::Agent::Service {
 public:
  FakeAgentService()
      : td_(*common::TrustDomain::Parse("example.org")),
        ca_key_(*common::PrivateKey::Generate()),
        ca_(*common::CreateRootCa(ca_key_, td_, absl::Hours(24), common::SystemClock::Get())),
        issuer_(*common::X509SvidIssuer::Create(ca_, ca_key_, common::SystemClock::Get())),
        jwt_key_(*common::PrivateKey::Generate()) {}

  v1::Bundle BundleProto() {
    v1::Bundle b;
    b.set_trust_domain("example.org");
    auto* x = b.add_x509_authorities();
    x->set_asn1(ca_.der());
    x->set_tainted(tainted_.load());
    auto* j = b.add_jwt_authorities();
    j->set_key_id("k1");
    j->set_public_key(jwt_key_.spki_der());
    b.set_sequence_number(tainted_.load() ? 2 : 1);
    return b;
  }

  absl::Status WriteServerFiles(const std::string& cert, const std::string& key) {
    auto server_key = *common::PrivateKey::Generate();
    auto leaf =
        issuer_->IssueForPublicKey(server_key.public_key(), common::ServerId(td_), absl::Hours(1));
    if (!leaf.ok()) return leaf.status();
    auto absl_status = common::WriteFileAtomic(cert, common::Certificate::FromDer(*leaf)->ToPem());
    if (!absl_status.ok()) return absl_status;
    return common::WritePrivateFile(key, server_key.ToPem()->view());
  }

  grpc::Status AttestAgent(
      grpc::ServerContext*,
      grpc::ServerReaderWriter<v1::AttestAgentResponse, v1::AttestAgentRequest>* stream) override {
    v1::AttestAgentRequest req;
    if (!stream->Read(&req)) return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "no params");
    attestations++;
    if (req.params().data().type() != "join_token" || req.params().data().payload() != kToken ||
        token_spent_.exchange(true)) {
      return grpc::Status(grpc::StatusCode::PERMISSION_DENIED, "bad token");
    }
    auto id =
        *SpiffeId::Parse(absl::StrCat("spiffe://example.org/spire/agent/join_token/", kToken));
    auto leaf = issuer_->IssueFromCsr(req.params().csr(), id, absl::Hours(1));
    if (!leaf.ok()) return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "bad csr");
    v1::AttestAgentResponse resp;
    resp.mutable_result()->mutable_svid()->set_spiffe_id(id.String());
    resp.mutable_result()->mutable_svid()->add_cert_chain(*leaf);
    *resp.mutable_result()->mutable_bundle() = BundleProto();
    stream->Write(resp);
    return grpc::Status::OK;
  }

  grpc::Status SyncAuthorizedEntries(grpc::ServerContext* ctx,
                                     const v1::SyncAuthorizedEntriesRequest* req,
                                     v1::SyncAuthorizedEntriesResponse* resp) override {
    if (ctx->auth_context()->GetPeerIdentity().empty()) {
      return grpc::Status(grpc::StatusCode::UNAUTHENTICATED, "no client certificate");
    }
    syncs++;
    std::lock_guard<std::mutex> lock(mu_);
    auto it = req->known_revisions().find("e1");
    if (it == req->known_revisions().end() || it->second != revision_) {
      v1::Entry* e = resp->add_changed();
      e->set_id("e1");
      e->set_spiffe_id("spiffe://example.org/app");
      e->set_parent_id(absl::StrCat("spiffe://example.org/spire/agent/join_token/", kToken));
      auto* s = e->add_selectors();
      s->set_type("unix");
      s->set_value(absl::StrCat("uid:", getuid()));
      e->set_revision_number(revision_);
    }
    if (req->bundle_sequence() != (tainted_.load() ? 2u : 1u)) {
      *resp->mutable_bundle() = BundleProto();
    }
    return grpc::Status::OK;
  }

  grpc::Status BatchNewX509SVID(grpc::ServerContext*, const v1::BatchNewX509SVIDRequest* req,
                                v1::BatchNewX509SVIDResponse* resp) override {
    batches++;
    for (const auto& p : req->params()) {
      minted++;
      auto* r = resp->add_results();
      r->set_entry_id(p.entry_id());
      auto leaf = issuer_->IssueFromCsr(p.csr(), *SpiffeId::Parse("spiffe://example.org/app"),
                                        absl::Hours(1));
      if (!leaf.ok()) {
        r->set_code(3);
        continue;
      }
      r->mutable_svid()->add_cert_chain(*leaf);
    }
    return grpc::Status::OK;
  }

  grpc::Status NewJWTSVID(grpc::ServerContext*, const v1::NewJWTSVIDRequest* req,
                          v1::NewJWTSVIDResponse* resp) override {
    jwts++;
    absl::Time now = absl::Now();
    std::vector<std::string> aud(req->audience().begin(), req->audience().end());
    auto token = common::SignJwtSvid(jwt_key_, "k1", *SpiffeId::Parse("spiffe://example.org/app"),
                                     aud, now, now + absl::Minutes(5));
    resp->mutable_svid()->set_token(*token);
    resp->mutable_svid()->set_issued_at(absl::ToUnixSeconds(now));
    resp->mutable_svid()->set_expires_at(absl::ToUnixSeconds(now + absl::Minutes(5)));
    return grpc::Status::OK;
  }

  grpc::Status WatchChanges(grpc::ServerContext* ctx, const v1::WatchChangesRequest*,
                            grpc::ServerWriter<v1::ChangeNotice>* writer) override {
    uint64_t sent = 0;
    while (!ctx->IsCancelled()) {
      uint64_t want;
      {
        std::unique_lock<std::mutex> lock(mu_);
        cv_.wait_for(lock, std::chrono::milliseconds(50));
        want = notices_;
      }
      if (want != sent || sent == 0) {
        v1::ChangeNotice n;
        n.set_entries_version(want);
        if (!writer->Write(n)) break;
        sent = want == 0 ? 1 : want;
      }
    }
    return grpc::Status::OK;
  }

  void BumpRevision() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      revision_++;
      notices_++;
    }
    cv_.notify_all();
  }

  void TaintCa() {
    tainted_ = true;
    {
      std::lock_guard<std::mutex> lock(mu_);
      notices_++;
    }
    cv_.notify_all();
  }

  std::atomic<int> attestations{0}, syncs{0}, batches{0}, minted{0}, jwts{0};

 private:
  common::TrustDomain td_;
  common::PrivateKey ca_key_;
  common::Certificate ca_;
  std::unique_ptr<common::X509SvidIssuer> issuer_;
  common::PrivateKey jwt_key_;
  std::atomic<bool> token_spent_{false};
  std::atomic<bool> tainted_{false};
  std::mutex mu_;
  std::condition_variable cv_;
  int64_t revision_ = 1;  // guarded by mu_
  uint64_t notices_ = 1;  // guarded by mu_
};

class AgentTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() /
           absl::StrCat("trellis-agent-", getpid(), "-",
                        ::testing::UnitTest::GetInstance()->current_test_info()->name());
    std::filesystem::remove_all(dir_);
    std::filesystem::create_directories(dir_);
    std::string cert = (dir_ / "server.pem").string(), key = (dir_ / "server.key").string();
    ASSERT_TRUE(fake_.WriteServerFiles(cert, key).ok());
    auto creds = transport::SpiffeServerCredentials(cert, key);
    ASSERT_TRUE(creds.ok()) << creds.status();
    grpc::ServerBuilder builder;
    builder.AddListeningPort("127.0.0.1:0", *creds, &port_);
    builder.RegisterService(&fake_);
    server_ = builder.BuildAndStart();
    ASSERT_NE(server_, nullptr);
  }
  void TearDown() override {
    for (auto& a : agents_) a->Stop();
    agents_.clear();
    server_->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(1));
    std::filesystem::remove_all(dir_);
  }

  common::config::AgentConfig Config() {
    common::config::AgentConfig c(*common::TrustDomain::Parse("example.org"));
    c.server_address = absl::StrCat("127.0.0.1:", port_);
    c.data_dir = (dir_ / "data").string();
    c.socket_path = (dir_ / "api.sock").string();
    c.insecure_bootstrap = true;
    c.telemetry = telemetry_;
    return c;
  }

  Agent* StartAgent(const std::string& token, absl::Status* status = nullptr) {
    Agent::Options options;
    options.join_token = token;
    auto agent = Agent::Create(Config(), options, common::SystemClock::Get());
    EXPECT_TRUE(agent.ok()) << agent.status();
    absl::Status s = (*agent)->Start();
    if (status) *status = s;
    agents_.push_back(std::move(*agent));
    return agents_.back().get();
  }

  // Polls (no fixed sleep) until the agent's cache holds an SVID of `revision`.
  bool WaitForSvid(Agent* agent, int64_t revision) {
    absl::Time deadline = absl::Now() + absl::Seconds(20);
    while (absl::Now() < deadline) {
      auto snap = agent->cache()->Snapshot();
      auto it = snap->svids.find("e1");
      if (it != snap->svids.end() && it->second->entry_revision == revision) return true;
      absl::SleepFor(absl::Milliseconds(10));
    }
    return false;
  }

  std::unique_ptr<SpiffeWorkloadAPI::Stub> WorkloadStub() {
    return SpiffeWorkloadAPI::NewStub(grpc::CreateChannel("unix://" + (dir_ / "api.sock").string(),
                                                          grpc::InsecureChannelCredentials()));
  }

  std::filesystem::path dir_;
  common::config::TelemetryConfig telemetry_;
  FakeAgentService fake_;
  std::unique_ptr<grpc::Server> server_;
  int port_ = 0;
  std::vector<std::unique_ptr<Agent>> agents_;
};

TEST_F(AgentTest, AttestsSyncsAndMintsTheWorkloadSvid) {
  absl::Status st;
  Agent* agent = StartAgent(kToken, &st);
  ASSERT_TRUE(st.ok()) << st;
  ASSERT_TRUE(WaitForSvid(agent, 1));
  EXPECT_EQ(fake_.attestations.load(), 1);
  EXPECT_EQ(agent->agent_id()->String(), "spiffe://example.org/spire/agent/join_token/tok123");
}

TEST_F(AgentTest, PersistsTheAgentSvidPrivately) {
  absl::Status st;
  StartAgent(kToken, &st);
  ASSERT_TRUE(st.ok()) << st;
  struct stat sb;
  ASSERT_EQ(stat((dir_ / "data").c_str(), &sb), 0);
  EXPECT_EQ(sb.st_mode & 0777, 0700u);
  ASSERT_EQ(stat((dir_ / "data" / "agent_svid.key").c_str(), &sb), 0);
  EXPECT_EQ(sb.st_mode & 0777, 0600u);
}

TEST_F(AgentTest, RestartReusesThePersistedSvidWithoutAToken) {
  absl::Status st;
  Agent* first = StartAgent(kToken, &st);
  ASSERT_TRUE(st.ok()) << st;
  first->Stop();
  Agent* second = StartAgent("", &st);
  ASSERT_TRUE(st.ok()) << st;
  ASSERT_TRUE(WaitForSvid(second, 1));
  EXPECT_EQ(fake_.attestations.load(), 1);
}

TEST_F(AgentTest, RefusedAttestationFailsStart) {
  absl::Status st;
  StartAgent("wrong-token", &st);
  EXPECT_EQ(st.code(), absl::StatusCode::kPermissionDenied);
}

TEST_F(AgentTest, WatchNoticeOnRevisionChangeRemintsAtOnce) {
  absl::Status st;
  Agent* agent = StartAgent(kToken, &st);
  ASSERT_TRUE(st.ok()) << st;
  ASSERT_TRUE(WaitForSvid(agent, 1));
  fake_.BumpRevision();
  // Well inside the 5 s periodic sync when pushed; the poll allows for a loaded machine.
  ASSERT_TRUE(WaitForSvid(agent, 2));
  EXPECT_GE(fake_.minted.load(), 2);
}

TEST_F(AgentTest, TaintedIssuerTriggersRenewalWithoutRevisionChange) {
  absl::Status st;
  Agent* agent = StartAgent(kToken, &st);
  ASSERT_TRUE(st.ok()) << st;
  ASSERT_TRUE(WaitForSvid(agent, 1));
  std::string before = agent->cache()->Snapshot()->svids.at("e1")->chain_der[0];
  int minted_before = fake_.minted.load();
  fake_.TaintCa();
  absl::Time deadline = absl::Now() + absl::Seconds(20);
  while (absl::Now() < deadline &&
         agent->cache()->Snapshot()->svids.at("e1")->chain_der[0] == before) {
    absl::SleepFor(absl::Milliseconds(10));
  }
  EXPECT_NE(agent->cache()->Snapshot()->svids.at("e1")->chain_der[0], before);
  EXPECT_GT(fake_.minted.load(), minted_before);
}

TEST_F(AgentTest, JwtSvidIsCachedPerAudienceSet) {
  absl::Status st;
  Agent* agent = StartAgent(kToken, &st);
  ASSERT_TRUE(st.ok()) << st;
  ASSERT_TRUE(WaitForSvid(agent, 1));
  auto stub = WorkloadStub();
  auto fetch = [&](std::vector<std::string> aud) {
    grpc::ClientContext ctx;
    ctx.AddMetadata("workload.spiffe.io", "true");
    JWTSVIDRequest req;
    for (auto& a : aud) req.add_audience(a);
    JWTSVIDResponse resp;
    grpc::Status s = stub->FetchJWTSVID(&ctx, req, &resp);
    EXPECT_TRUE(s.ok()) << s.error_message();
    return resp.svids_size() == 1 ? resp.svids(0).svid() : std::string();
  };
  std::string t1 = fetch({"a", "b"});
  std::string t2 = fetch({"b", "a"});  // same set, other order
  EXPECT_FALSE(t1.empty());
  EXPECT_EQ(t1, t2);
  EXPECT_EQ(fake_.jwts.load(), 1);
  fetch({"c"});
  EXPECT_EQ(fake_.jwts.load(), 2);
}

TEST_F(AgentTest, WorkloadGetsItsSvidOverTheSocket) {
  absl::Status st;
  Agent* agent = StartAgent(kToken, &st);
  ASSERT_TRUE(st.ok()) << st;
  ASSERT_TRUE(WaitForSvid(agent, 1));
  auto stub = WorkloadStub();
  grpc::ClientContext ctx;
  ctx.AddMetadata("workload.spiffe.io", "true");
  auto reader = stub->FetchX509SVID(&ctx, X509SVIDRequest());
  X509SVIDResponse resp;
  ASSERT_TRUE(reader->Read(&resp));
  ASSERT_EQ(resp.svids_size(), 1);
  EXPECT_EQ(resp.svids(0).spiffe_id(), "spiffe://example.org/app");
  ctx.TryCancel();
  reader->Finish();
}

TEST_F(AgentTest, TelemetryCountsSyncsWorkloadCallsAndCachedSvids) {
  telemetry_.prometheus = common::config::PrometheusConfig{"127.0.0.1", 0};
  absl::Status st;
  Agent* agent = StartAgent(kToken, &st);
  ASSERT_TRUE(st.ok()) << st;
  ASSERT_TRUE(WaitForSvid(agent, 1));
  ASSERT_GT(agent->metrics_port(), 0);
  auto stub = WorkloadStub();
  for (bool with_header : {true, false}) {
    grpc::ClientContext ctx;
    if (with_header) ctx.AddMetadata("workload.spiffe.io", "true");
    JWTSVIDRequest req;
    req.add_audience("a");
    JWTSVIDResponse resp;
    EXPECT_EQ(stub->FetchJWTSVID(&ctx, req, &resp).ok(), with_header);
  }

  using telemetry::testing::SampleValue;
  // The cache is published inside a sync, the sync counted after it: poll for the count.
  std::string text;
  absl::Time deadline = absl::Now() + absl::Seconds(20);
  do {
    text = telemetry::testing::Scrape(agent->metrics_port());
    if (SampleValue(text, "trellis_agent_sync_total", {{"result", "ok"}}).value_or(0) >= 1) break;
    absl::SleepFor(absl::Milliseconds(10));
  } while (absl::Now() < deadline);
  EXPECT_GE(SampleValue(text, "trellis_agent_sync_total", {{"result", "ok"}}).value_or(0), 1);
  EXPECT_THAT(SampleValue(text, "trellis_agent_cached_svids", {}), ::testing::Optional(1.0));
  EXPECT_THAT(SampleValue(text, "trellis_rpc_requests_total",
                          {{"service", "SpiffeWorkloadAPI"},
                           {"method", "FetchJWTSVID"},
                           {"code", "OK"}}),
              ::testing::Optional(1.0));
  EXPECT_THAT(SampleValue(text, "trellis_rpc_requests_total",
                          {{"method", "FetchJWTSVID"}, {"code", "INVALID_ARGUMENT"}}),
              ::testing::Optional(1.0));
}

TEST_F(AgentTest, UnusableTelemetryAddressFailsStart) {
  telemetry_.prometheus = common::config::PrometheusConfig{"no-such-host.invalid", 0};
  absl::Status st;
  StartAgent(kToken, &st);
  EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(fake_.attestations.load(), 0);
}

}  // namespace
}  // namespace trellis::agent
