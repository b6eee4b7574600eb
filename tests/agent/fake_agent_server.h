// An in-process fake of the server's Agent API over real SPIFFE mTLS, and a fixture that runs
// it, for the tests of the agent's pipeline and of the agent process around it.
#pragma once

#include <grpcpp/grpcpp.h>
#include <unistd.h>

#include <atomic>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "agent/svid_cache.h"
#include "common/clock.h"
#include "common/config/agent_config.h"
#include "common/csr.h"
#include "common/file_util.h"
#include "common/jwt.h"
#include "common/keys.h"
#include "common/x509.h"
#include "gtest/gtest.h"
#include "transport/spiffe_tls.h"
#include "trellis/server/v1/agent.grpc.pb.h"
#include "workload.grpc.pb.h"

namespace trellis::agent::testing {

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
    absl::MutexLock lock(&mu_);
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
        absl::MutexLock lock(&mu_);
        cv_.WaitWithTimeout(&mu_, absl::Milliseconds(50));
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
    absl::MutexLock lock(&mu_);
    revision_++;
    notices_++;
    cv_.SignalAll();
  }

  void TaintCa() {
    tainted_ = true;
    absl::MutexLock lock(&mu_);
    notices_++;
    cv_.SignalAll();
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
  absl::Mutex mu_;
  absl::CondVar cv_;
  int64_t revision_ ABSL_GUARDED_BY(mu_) = 1;
  uint64_t notices_ ABSL_GUARDED_BY(mu_) = 1;
};

// Runs a FakeAgentService on 127.0.0.1 with a fresh directory for the agent's data and socket;
// the agents a test starts (an AgentT has Stop()) are stopped before the server goes.
template <typename AgentT>
class FakeAgentServerTest : public ::testing::Test {
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

  // Polls (no fixed sleep) until `cache` holds an SVID of `revision`.
  static bool WaitForSvid(SvidCache* cache, int64_t revision) {
    absl::Time deadline = absl::Now() + absl::Seconds(20);
    while (absl::Now() < deadline) {
      auto snap = cache->Snapshot();
      auto it = snap->svids.find("e1");
      if (it != snap->svids.end() && (*it)->entry_revision == revision) return true;
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
  std::vector<std::unique_ptr<AgentT>> agents_;
};

}  // namespace trellis::agent::testing
