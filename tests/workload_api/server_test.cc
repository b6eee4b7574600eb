// The Workload API over a real Unix socket: this test process is the workload, identified by
// the kernel through the connection the server accepted.
#include "workload_api/server.h"

#include <grpcpp/grpcpp.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "absl/strings/str_cat.h"
#include "agent/svid_cache.h"
#include "common/bundle.h"
#include "common/jwt.h"
#include "common/keys.h"
#include "common/log.h"
#include "common/x509.h"
#include "envoy/extensions/transport_sockets/tls/v3/secret.pb.h"
#include "envoy/extensions/transport_sockets/tls/v3/tls_spiffe_validator_config.pb.h"
#include "envoy/service/secret/v3/sds.grpc.pb.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "workload.grpc.pb.h"
#include "workload_api/sds_service.h"

namespace trellis::workload_api {
namespace {

using common::SpiffeId;
using ::testing::HasSubstr;

// Records the credentials the server hands over, and gives selectors from them.
class RecordingAttestor final : public attestors::WorkloadAttestor {
 public:
  std::string Name() const override { return "recording"; }
  absl::StatusOr<std::vector<std::string>> Attest(
      const attestors::CallerCredentials& caller) override {
    last_pid = caller.pid;
    last_uid = caller.uid;
    calls++;
    if (fail) return absl::UnauthenticatedError("process vanished");
    return std::vector<std::string>{absl::StrCat("unix:uid:", caller.uid)};
  }
  bool NonBlocking() const override { return non_blocking; }
  bool non_blocking = false;  // set before the server starts
  std::atomic<pid_t> last_pid{0};
  std::atomic<uid_t> last_uid{0};
  std::atomic<int> calls{0};
  std::atomic<bool> fail{false};
};

struct Pki {
  common::TrustDomain td = *common::TrustDomain::Parse("example.org");
  common::PrivateKey ca_key = *common::PrivateKey::Generate();
  common::Certificate ca =
      *common::CreateRootCa(ca_key, td, absl::Hours(24), common::SystemClock::Get());
  std::unique_ptr<common::X509SvidIssuer> issuer =
      *common::X509SvidIssuer::Create(ca, ca_key, common::SystemClock::Get());
  common::PrivateKey jwt_key = *common::PrivateKey::Generate();

  CachedSvid Svid(const std::string& id, const std::string& entry_id) {
    common::PrivateKey key = *common::PrivateKey::Generate();
    std::string leaf =
        *issuer->IssueForPublicKey(key.public_key(), *SpiffeId::Parse(id), absl::Hours(1));
    CachedSvid svid(entry_id, {leaf}, key.ToPkcs8Der()->view());
    auto cert = common::Certificate::FromDer(leaf);
    svid.not_before = cert->not_before();
    svid.not_after = cert->not_after();
    return svid;
  }
  std::shared_ptr<const common::Bundle> Bundle(bool with_second_jwt_key = false) {
    auto b = std::make_shared<common::Bundle>(td);
    EXPECT_TRUE(b->AddX509Authority(ca).ok());
    EXPECT_TRUE(b->AddJwtAuthority("kid1", jwt_key.public_key()).ok());
    if (with_second_jwt_key) {
      EXPECT_TRUE(b->AddJwtAuthority("kid2", common::PrivateKey::Generate()->public_key()).ok());
    }
    return b;
  }
};

CachedEntry Entry(const std::string& id, const std::string& spiffe_id,
                  std::vector<std::string> selectors, int64_t created_at = 1) {
  return CachedEntry{id, *SpiffeId::Parse(spiffe_id), std::move(selectors), {}, "", 1, created_at,
                     0};
}

std::string MyUidSelector() { return absl::StrCat("unix:uid:", getuid()); }

class WorkloadApiTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() /
           absl::StrCat("trellis-wapi-", getpid(), "-", counter_++);
    std::filesystem::create_directories(dir_);
    socket_ = (dir_ / "sock" / "api.sock").string();
  }
  void TearDown() override {
    // Client first: a gRPC channel outliving its server can take seconds to wind down.
    channel_.reset();
    if (server_) server_->Stop();
    std::filesystem::remove_all(dir_);
  }

  void StartServer(WorkloadApiServer::JwtMinter minter = nullptr) {
    auto s = WorkloadApiServer::Start({socket_, 2}, &cache_, {&attestor_}, std::move(minter),
                                      common::SystemClock::Get());
    ASSERT_TRUE(s.ok()) << s.status();
    server_ = std::move(*s);
  }

  // A ready snapshot with one entry for this process's uid and its SVID.
  IdentitySnapshot ReadySnapshot(const std::string& id = "spiffe://example.org/app") {
    IdentitySnapshot snap;
    snap.ready = true;
    snap.bundle = RenderedBundle::Of(pki_.Bundle());
    snap.entries.Put(std::make_shared<const CachedEntry>(Entry("e1", id, {MyUidSelector()})));
    snap.svids.Put(std::make_shared<const CachedSvid>(pki_.Svid(id, "e1")));
    return snap;
  }

  std::unique_ptr<SpiffeWorkloadAPI::Stub> Stub() {
    channel_ = grpc::CreateChannel("unix://" + socket_, grpc::InsecureChannelCredentials());
    return SpiffeWorkloadAPI::NewStub(channel_);
  }

  static void Header(grpc::ClientContext* ctx) {
    ctx->AddMetadata("workload.spiffe.io", "true");
    ctx->set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(20));
  }

  // ValidateJWTSVID with the required header.
  grpc::Status Validate(const std::string& audience, const std::string& token,
                        ValidateJWTSVIDResponse* resp) {
    auto stub = Stub();
    grpc::ClientContext ctx;
    Header(&ctx);
    ValidateJWTSVIDRequest req;
    req.set_audience(audience);
    req.set_svid(token);
    return stub->ValidateJWTSVID(&ctx, req, resp);
  }

  // A JWT-SVID for `id` signed by the test trust domain's JWT key, valid for 5 minutes.
  std::string SignToken(const std::string& id) {
    return *common::SignJwtSvid(pki_.jwt_key, "kid1", *SpiffeId::Parse(id), {"svc"}, absl::Now(),
                                absl::Now() + absl::Minutes(5));
  }

  static int counter_;
  std::filesystem::path dir_;
  std::string socket_;
  Pki pki_;
  agent::SvidCache cache_;
  RecordingAttestor attestor_;
  std::unique_ptr<WorkloadApiServer> server_;
  std::shared_ptr<grpc::Channel> channel_;
};
int WorkloadApiTest::counter_ = 0;

TEST_F(WorkloadApiTest, SocketIsOpenToEveryLocalUser) {
  StartServer();
  struct stat st;
  ASSERT_EQ(stat(socket_.c_str(), &st), 0);
  EXPECT_TRUE(S_ISSOCK(st.st_mode));
  EXPECT_EQ(st.st_mode & 0777, 0777u);
  ASSERT_EQ(stat((dir_ / "sock").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0755u);
}

TEST_F(WorkloadApiTest, SocketOfARunningServerIsNotTakenOver) {
  StartServer();
  auto second = WorkloadApiServer::Start({socket_, 1}, &cache_, {&attestor_}, nullptr,
                                         common::SystemClock::Get());
  EXPECT_EQ(second.status().code(), absl::StatusCode::kFailedPrecondition);
}

TEST_F(WorkloadApiTest, StaleSocketFileIsReplaced) {
  StartServer();
  server_->Stop();
  // Leave a dead socket file behind, as a crashed agent would.
  int fd = socket(AF_UNIX, SOCK_STREAM, 0);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::memcpy(addr.sun_path, socket_.c_str(), socket_.size());
  ASSERT_EQ(bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
  close(fd);
  server_.reset();
  StartServer();
  EXPECT_NE(server_, nullptr);
}

TEST_F(WorkloadApiTest, MissingHeaderIsInvalidArgument) {
  cache_.Publish(ReadySnapshot());
  StartServer();
  auto stub = Stub();
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(20));
  auto reader = stub->FetchX509SVID(&ctx, X509SVIDRequest());
  X509SVIDResponse resp;
  EXPECT_FALSE(reader->Read(&resp));
  EXPECT_EQ(reader->Finish().error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(attestor_.calls.load(), 0);  // checked before anything else
}

TEST_F(WorkloadApiTest, WrongHeaderValueIsInvalidArgument) {
  cache_.Publish(ReadySnapshot());
  StartServer();
  auto stub = Stub();
  grpc::ClientContext ctx;
  ctx.AddMetadata("workload.spiffe.io", "yes");
  ValidateJWTSVIDRequest req;
  req.set_audience("a");
  req.set_svid("x.y.z");
  ValidateJWTSVIDResponse resp;
  EXPECT_EQ(stub->ValidateJWTSVID(&ctx, req, &resp).error_code(),
            grpc::StatusCode::INVALID_ARGUMENT);
}

TEST_F(WorkloadApiTest, NonBlockingAttestorStillAttestsEveryStream) {
  attestor_.non_blocking = true;
  cache_.Publish(ReadySnapshot());
  StartServer();
  auto stub = Stub();
  for (int i = 0; i < 2; ++i) {
    grpc::ClientContext ctx;
    Header(&ctx);
    auto reader = stub->FetchX509SVID(&ctx, X509SVIDRequest());
    X509SVIDResponse resp;
    ASSERT_TRUE(reader->Read(&resp));
    EXPECT_EQ(resp.svids_size(), 1);
    ctx.TryCancel();
    reader->Finish();
  }
  EXPECT_EQ(attestor_.calls.load(), 2);
  EXPECT_EQ(attestor_.last_pid.load(), getpid());
}

TEST_F(WorkloadApiTest, NonBlockingAttestorFailureIsUnauthenticated) {
  attestor_.non_blocking = true;
  attestor_.fail = true;
  cache_.Publish(ReadySnapshot());
  StartServer();
  auto stub = Stub();
  grpc::ClientContext ctx;
  Header(&ctx);
  auto reader = stub->FetchX509SVID(&ctx, X509SVIDRequest());
  X509SVIDResponse resp;
  EXPECT_FALSE(reader->Read(&resp));
  EXPECT_EQ(reader->Finish().error_code(), grpc::StatusCode::UNAUTHENTICATED);
}

TEST_F(WorkloadApiTest, CallerIsIdentifiedByKernelCredentials) {
  cache_.Publish(ReadySnapshot());
  StartServer();
  auto stub = Stub();
  grpc::ClientContext ctx;
  Header(&ctx);
  auto reader = stub->FetchX509SVID(&ctx, X509SVIDRequest());
  X509SVIDResponse resp;
  ASSERT_TRUE(reader->Read(&resp));
  EXPECT_EQ(attestor_.last_pid.load(), getpid());
  EXPECT_EQ(attestor_.last_uid.load(), getuid());
  ctx.TryCancel();
  reader->Finish();
}

TEST_F(WorkloadApiTest, FetchX509SvidReturnsDefaultIdentityWithKeyAndBundle) {
  IdentitySnapshot snap = ReadySnapshot();
  snap.entries.Put(std::make_shared<const CachedEntry>(
                Entry("e0", "spiffe://example.org/older", {MyUidSelector()}, 0)));
  snap.svids.Put(std::make_shared<const CachedSvid>(pki_.Svid("spiffe://example.org/older", "e0")));
  cache_.Publish(snap);
  StartServer();
  auto stub = Stub();
  grpc::ClientContext ctx;
  Header(&ctx);
  auto reader = stub->FetchX509SVID(&ctx, X509SVIDRequest());
  X509SVIDResponse resp;
  ASSERT_TRUE(reader->Read(&resp));
  ASSERT_EQ(resp.svids_size(), 2);
  EXPECT_EQ(resp.svids(0).spiffe_id(), "spiffe://example.org/older");
  EXPECT_EQ(resp.svids(1).spiffe_id(), "spiffe://example.org/app");
  EXPECT_EQ(resp.svids(0).bundle(), pki_.ca.der());
  auto cert = common::Certificate::FromDer(resp.svids(0).x509_svid());
  auto key = common::PrivateKey::FromPkcs8Der(resp.svids(0).x509_svid_key());
  ASSERT_TRUE(cert.ok() && key.ok());
  EXPECT_TRUE(common::CheckKeyMatchesCertificate(*key, *cert).ok());
  ctx.TryCancel();
  reader->Finish();
}

TEST_F(WorkloadApiTest, NoMatchingEntryIsPermissionDenied) {
  IdentitySnapshot snap = ReadySnapshot();
  std::shared_ptr<const CachedEntry> e1 = snap.entries.at("e1");
  snap.entries.Put(std::make_shared<const CachedEntry>(
      Entry("e1", std::string(e1->spiffe_id()), {"unix:uid:999999"}, e1->created_at())));
  cache_.Publish(snap);
  StartServer();
  auto stub = Stub();
  grpc::ClientContext ctx;
  Header(&ctx);
  auto reader = stub->FetchX509SVID(&ctx, X509SVIDRequest());
  X509SVIDResponse resp;
  EXPECT_FALSE(reader->Read(&resp));
  EXPECT_EQ(reader->Finish().error_code(), grpc::StatusCode::PERMISSION_DENIED);
}

// The line of a refused call names the calling process and the method.
TEST_F(WorkloadApiTest, RefusedCallLineNamesTheCallerAndTheMethod) {
  IdentitySnapshot snap = ReadySnapshot();
  std::shared_ptr<const CachedEntry> e1 = snap.entries.at("e1");
  snap.entries.Put(std::make_shared<const CachedEntry>(
      Entry("e1", std::string(e1->spiffe_id()), {"unix:uid:999999"}, e1->created_at())));
  cache_.Publish(snap);
  StartServer();
  auto stub = Stub();
  grpc::ClientContext ctx;
  Header(&ctx);
  ::testing::internal::CaptureStderr();
  auto reader = stub->FetchX509SVID(&ctx, X509SVIDRequest());
  X509SVIDResponse resp;
  EXPECT_FALSE(reader->Read(&resp));
  EXPECT_EQ(reader->Finish().error_code(), grpc::StatusCode::PERMISSION_DENIED);
  std::string out = ::testing::internal::GetCapturedStderr();
  size_t at = out.find("Workload API call refused");
  ASSERT_NE(at, std::string::npos) << out;
  std::string line = out.substr(at, out.find('\n', at) - at);
  EXPECT_THAT(line, HasSubstr(" code=PERMISSION_DENIED"));
  EXPECT_THAT(line, HasSubstr(" caller_pid=" + std::to_string(::getpid())));
  EXPECT_THAT(line, HasSubstr(" caller_uid=" + std::to_string(::getuid())));
  EXPECT_THAT(line, HasSubstr(" method=/SpiffeWorkloadAPI/FetchX509SVID"));
}

// At debug level, a served call names the SPIFFE IDs the caller received.
TEST_F(WorkloadApiTest, ServedJwtCallLineNamesTheIdsServed) {
  cache_.Publish(ReadySnapshot());
  StartServer([](const CachedEntry&,
                 const std::vector<std::string>&) -> absl::StatusOr<std::string> { return "t"; });
  auto stub = Stub();
  grpc::ClientContext ctx;
  Header(&ctx);
  JWTSVIDRequest req;
  req.add_audience("svc");
  JWTSVIDResponse resp;
  common::SetLogLevel(common::config::LogLevel::kDebug);
  ::testing::internal::CaptureStderr();
  grpc::Status st = stub->FetchJWTSVID(&ctx, req, &resp);
  std::string out = ::testing::internal::GetCapturedStderr();
  common::SetLogLevel(common::config::LogLevel::kInfo);
  ASSERT_TRUE(st.ok()) << st.error_message();
  size_t at = out.find("Workload API identities served");
  ASSERT_NE(at, std::string::npos) << out;
  std::string line = out.substr(at, out.find('\n', at) - at);
  EXPECT_THAT(line, HasSubstr(" caller_pid=" + std::to_string(::getpid())));
  EXPECT_THAT(line, HasSubstr(" caller_id=spiffe://example.org/app"));
  EXPECT_THAT(line, HasSubstr(" method=/SpiffeWorkloadAPI/FetchJWTSVID"));
}

TEST_F(WorkloadApiTest, NotSyncedYetIsUnavailable) {
  StartServer();
  auto stub = Stub();
  grpc::ClientContext ctx;
  Header(&ctx);
  auto reader = stub->FetchX509SVID(&ctx, X509SVIDRequest());
  X509SVIDResponse resp;
  EXPECT_FALSE(reader->Read(&resp));
  EXPECT_EQ(reader->Finish().error_code(), grpc::StatusCode::UNAVAILABLE);
}

TEST_F(WorkloadApiTest, VanishedCallerIsUnauthenticated) {
  cache_.Publish(ReadySnapshot());
  attestor_.fail = true;
  StartServer();
  auto stub = Stub();
  grpc::ClientContext ctx;
  Header(&ctx);
  auto reader = stub->FetchX509SVID(&ctx, X509SVIDRequest());
  X509SVIDResponse resp;
  EXPECT_FALSE(reader->Read(&resp));
  EXPECT_EQ(reader->Finish().error_code(), grpc::StatusCode::UNAUTHENTICATED);
}

TEST_F(WorkloadApiTest, StreamSendsFullStateOnRotation) {
  cache_.Publish(ReadySnapshot());
  StartServer();
  auto stub = Stub();
  grpc::ClientContext ctx;
  Header(&ctx);
  auto reader = stub->FetchX509SVID(&ctx, X509SVIDRequest());
  X509SVIDResponse first, second;
  ASSERT_TRUE(reader->Read(&first));
  IdentitySnapshot rotated = ReadySnapshot();  // same entry, a new SVID
  cache_.Publish(rotated);
  ASSERT_TRUE(reader->Read(&second));
  ASSERT_EQ(second.svids_size(), 1);
  EXPECT_NE(second.svids(0).x509_svid(), first.svids(0).x509_svid());
  EXPECT_EQ(second.svids(0).x509_svid(), rotated.svids.at("e1")->leaf());
  ctx.TryCancel();
  reader->Finish();
}

TEST_F(WorkloadApiTest, LosingLastIdentityEndsStreamWithPermissionDenied) {
  cache_.Publish(ReadySnapshot());
  StartServer();
  auto stub = Stub();
  grpc::ClientContext ctx;
  Header(&ctx);
  auto reader = stub->FetchX509SVID(&ctx, X509SVIDRequest());
  X509SVIDResponse resp;
  ASSERT_TRUE(reader->Read(&resp));
  IdentitySnapshot empty;
  empty.ready = true;
  empty.bundle = RenderedBundle::Of(pki_.Bundle());
  cache_.Publish(empty);
  EXPECT_FALSE(reader->Read(&resp));
  EXPECT_EQ(reader->Finish().error_code(), grpc::StatusCode::PERMISSION_DENIED);
}

TEST_F(WorkloadApiTest, BundleStreamSkipsIdenticalMessages) {
  IdentitySnapshot snap = ReadySnapshot();
  cache_.Publish(snap);
  StartServer();
  auto stub = Stub();
  grpc::ClientContext ctx;
  Header(&ctx);
  auto reader = stub->FetchX509Bundles(&ctx, X509BundlesRequest());
  X509BundlesResponse first, next;
  ASSERT_TRUE(reader->Read(&first));
  EXPECT_EQ(first.bundles().at("spiffe://example.org"), pki_.ca.der());
  // An SVID rotation leaves the bundles as they were: nothing must be sent for it.
  cache_.Publish(ReadySnapshot());
  // A new CA is a change: the next message must be this one, not a repeat.
  common::PrivateKey key2 = *common::PrivateKey::Generate();
  common::Certificate ca2 =
      *common::CreateRootCa(key2, pki_.td, absl::Hours(24), common::SystemClock::Get());
  auto bundle2 = std::make_shared<common::Bundle>(*pki_.Bundle());
  ASSERT_TRUE(bundle2->AddX509Authority(ca2).ok());
  IdentitySnapshot changed = ReadySnapshot();
  changed.bundle = RenderedBundle::Of(bundle2);
  cache_.Publish(changed);
  ASSERT_TRUE(reader->Read(&next));
  EXPECT_EQ(next.bundles().at("spiffe://example.org"), common::BundleToDer(*bundle2));
  ctx.TryCancel();
  reader->Finish();
}

TEST_F(WorkloadApiTest, JwtBundlesArePlainJwksWithKid) {
  cache_.Publish(ReadySnapshot());
  StartServer();
  auto stub = Stub();
  grpc::ClientContext ctx;
  Header(&ctx);
  auto reader = stub->FetchJWTBundles(&ctx, JWTBundlesRequest());
  JWTBundlesResponse resp;
  ASSERT_TRUE(reader->Read(&resp));
  auto jwks = nlohmann::json::parse(resp.bundles().at("spiffe://example.org"));
  ASSERT_EQ(jwks["keys"].size(), 1u);
  EXPECT_EQ(jwks["keys"][0]["kid"], "kid1");
  EXPECT_FALSE(jwks["keys"][0].contains("use"));
  ctx.TryCancel();
  reader->Finish();
}

TEST_F(WorkloadApiTest, ValidateJwtSvidReturnsIdAndAudienceArray) {
  cache_.Publish(ReadySnapshot());
  StartServer();
  nlohmann::json claims = {{"sub", "spiffe://example.org/app"},
                           {"aud", "svc"},  // a single string must come back as an array
                           {"exp", absl::ToUnixSeconds(absl::Now() + absl::Minutes(5))},
                           {"iat", absl::ToUnixSeconds(absl::Now())}};
  std::string token = *common::SignJwt(pki_.jwt_key, "kid1", claims);
  ValidateJWTSVIDResponse resp;
  grpc::Status st = Validate("svc", token, &resp);
  ASSERT_TRUE(st.ok()) << st.error_message();
  EXPECT_EQ(resp.spiffe_id(), "spiffe://example.org/app");
  const auto& aud = resp.claims().fields().at("aud");
  ASSERT_TRUE(aud.has_list_value());
  EXPECT_EQ(aud.list_value().values(0).string_value(), "svc");
}

TEST_F(WorkloadApiTest, ValidateJwtSvidWithWrongAudienceIsInvalidArgument) {
  cache_.Publish(ReadySnapshot());
  StartServer();
  ValidateJWTSVIDResponse resp;
  EXPECT_EQ(Validate("other", SignToken("spiffe://example.org/app"), &resp).error_code(),
            grpc::StatusCode::INVALID_ARGUMENT);
}

TEST_F(WorkloadApiTest, ValidateJwtSvidOfUnknownTrustDomainIsInvalidArgument) {
  cache_.Publish(ReadySnapshot());
  StartServer();
  ValidateJWTSVIDResponse resp;
  EXPECT_EQ(Validate("svc", SignToken("spiffe://other.org/app"), &resp).error_code(),
            grpc::StatusCode::INVALID_ARGUMENT);
}

TEST_F(WorkloadApiTest, ValidateJwtSvidNamesWhatIsWrongWithAMalformedToken) {
  cache_.Publish(ReadySnapshot());
  StartServer();
  const std::string header = common::Base64UrlEncode(R"({"alg":"ES256","kid":"kid1"})");
  const std::string no_sub = common::Base64UrlEncode(R"({"aud":"svc"})");
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"only.two", "token is not a compact JWS"},
      {header + "." + no_sub + ".sig.extra", "token is not a compact JWS"},
      {header + ".not*base64url.sig", "token payload is not base64url"},
      {header + "." + common::Base64UrlEncode("not json") + ".sig", "token has no sub claim"},
      {header + "." + no_sub + ".sig", "token has no sub claim"},
  };
  for (const auto& [token, message] : cases) {
    ValidateJWTSVIDResponse resp;
    grpc::Status st = Validate("svc", token, &resp);
    EXPECT_EQ(st.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << token;
    EXPECT_EQ(st.error_message(), message) << token;
  }
}

TEST_F(WorkloadApiTest, FetchJwtSvidMintsForEachIdentity) {
  cache_.Publish(ReadySnapshot());
  std::vector<std::string> seen_audience;
  StartServer([&](const CachedEntry& entry,
                  const std::vector<std::string>& aud) -> absl::StatusOr<std::string> {
    seen_audience = aud;
    return "token-for-" + std::string(entry.id());
  });
  auto stub = Stub();
  grpc::ClientContext ctx;
  Header(&ctx);
  JWTSVIDRequest req;
  req.add_audience("svc");
  JWTSVIDResponse resp;
  grpc::Status st = stub->FetchJWTSVID(&ctx, req, &resp);
  ASSERT_TRUE(st.ok()) << st.error_message();
  ASSERT_EQ(resp.svids_size(), 1);
  EXPECT_EQ(resp.svids(0).spiffe_id(), "spiffe://example.org/app");
  EXPECT_EQ(resp.svids(0).svid(), "token-for-e1");
  EXPECT_EQ(seen_audience, std::vector<std::string>{"svc"});
}

TEST_F(WorkloadApiTest, FetchJwtSvidWithoutAudienceIsInvalidArgument) {
  cache_.Publish(ReadySnapshot());
  StartServer();
  auto stub = Stub();
  grpc::ClientContext ctx;
  Header(&ctx);
  JWTSVIDResponse resp;
  EXPECT_EQ(stub->FetchJWTSVID(&ctx, JWTSVIDRequest(), &resp).error_code(),
            grpc::StatusCode::INVALID_ARGUMENT);
}

TEST_F(WorkloadApiTest, FetchJwtSvidForAnotherIdIsPermissionDenied) {
  cache_.Publish(ReadySnapshot());
  StartServer([](const CachedEntry&,
                 const std::vector<std::string>&) -> absl::StatusOr<std::string> { return "t"; });
  auto stub = Stub();
  grpc::ClientContext ctx;
  Header(&ctx);
  JWTSVIDRequest req;
  req.add_audience("svc");
  req.set_spiffe_id("spiffe://example.org/not-mine");
  JWTSVIDResponse resp;
  EXPECT_EQ(stub->FetchJWTSVID(&ctx, req, &resp).error_code(), grpc::StatusCode::PERMISSION_DENIED);
}

TEST_F(WorkloadApiTest, ClosedConnectionsLeaveNoRecord) {
  cache_.Publish(ReadySnapshot());
  StartServer();
  {
    auto stub = Stub();
    grpc::ClientContext ctx;
    Header(&ctx);
    JWTSVIDResponse resp;
    stub->FetchJWTSVID(&ctx, JWTSVIDRequest(), &resp);
    EXPECT_EQ(server_->TrackedConnections(), 1u);
    stub.reset();
    channel_.reset();
  }
  // gRPC closes the fd asynchronously once the client is gone.
  absl::Time deadline = absl::Now() + absl::Seconds(20);
  while (server_->TrackedConnections() != 0 && absl::Now() < deadline) {
    absl::SleepFor(absl::Milliseconds(20));
  }
  EXPECT_EQ(server_->TrackedConnections(), 0u);
}

TEST_F(WorkloadApiTest, StopEndsOpenStreams) {
  cache_.Publish(ReadySnapshot());
  StartServer();
  auto stub = Stub();
  grpc::ClientContext ctx;
  Header(&ctx);
  auto reader = stub->FetchX509SVID(&ctx, X509SVIDRequest());
  X509SVIDResponse resp;
  ASSERT_TRUE(reader->Read(&resp));
  server_->Stop();
  EXPECT_FALSE(reader->Read(&resp));
  EXPECT_EQ(reader->Finish().error_code(), grpc::StatusCode::UNAVAILABLE);
  EXPECT_EQ(cache_.ListenerCount(), 0u);
}

// ---- Envoy SDS on the same socket ----

namespace sds = envoy::service::secret::v3;
namespace discovery = envoy::service::discovery::v3;
namespace tls = envoy::extensions::transport_sockets::tls::v3;

discovery::DiscoveryRequest SdsRequest(std::vector<std::string> names,
                                       const discovery::DiscoveryResponse* ack = nullptr) {
  discovery::DiscoveryRequest req;
  req.set_type_url(kSecretTypeUrl);
  for (auto& n : names) req.add_resource_names(std::move(n));
  if (ack) {
    req.set_version_info(ack->version_info());
    req.set_response_nonce(ack->nonce());
  }
  return req;
}

std::map<std::string, tls::Secret> SecretsOf(const discovery::DiscoveryResponse& resp) {
  std::map<std::string, tls::Secret> out;
  for (const auto& any : resp.resources()) {
    tls::Secret s;
    EXPECT_TRUE(any.UnpackTo(&s));
    out[s.name()] = s;
  }
  return out;
}

class SdsTest : public WorkloadApiTest {
 protected:
  std::unique_ptr<sds::SecretDiscoveryService::Stub> SdsStub() {
    channel_ = grpc::CreateChannel("unix://" + socket_, grpc::InsecureChannelCredentials());
    return sds::SecretDiscoveryService::NewStub(channel_);
  }
  static void Deadline(grpc::ClientContext* ctx) {
    ctx->set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(20));
  }
};

TEST_F(SdsTest, StreamServesTheNamedSecretsWithoutTheSecurityHeader) {
  IdentitySnapshot snap = ReadySnapshot();
  cache_.Publish(snap);
  StartServer();
  auto stub = SdsStub();
  grpc::ClientContext ctx;
  Deadline(&ctx);
  auto stream = stub->StreamSecrets(&ctx);
  ASSERT_TRUE(stream->Write(SdsRequest({"default", "spiffe://example.org/app", "ROOTCA",
                                        "spiffe://example.org", "ALL", "nothing"})));
  discovery::DiscoveryResponse resp;
  ASSERT_TRUE(stream->Read(&resp));
  EXPECT_EQ(resp.type_url(), kSecretTypeUrl);
  EXPECT_FALSE(resp.version_info().empty());
  EXPECT_FALSE(resp.nonce().empty());
  std::map<std::string, tls::Secret> got = SecretsOf(resp);
  ASSERT_EQ(got.size(), 5u) << "an unknown name is left out";
  const tls::TlsCertificate& cert = got["default"].tls_certificate();
  auto chain = common::Certificate::ChainFromPem(cert.certificate_chain().inline_bytes());
  ASSERT_TRUE(chain.ok()) << chain.status();
  EXPECT_EQ(chain->front().der(), snap.svids.at("e1")->leaf());
  auto key = common::PrivateKey::FromPem(cert.private_key().inline_bytes());
  ASSERT_TRUE(key.ok()) << key.status();
  EXPECT_TRUE(common::CheckKeyMatchesCertificate(*key, chain->front()).ok());
  EXPECT_EQ(got["spiffe://example.org/app"].tls_certificate().certificate_chain().inline_bytes(),
            cert.certificate_chain().inline_bytes());
  auto roots = common::Certificate::ChainFromPem(
      got["ROOTCA"].validation_context().trusted_ca().inline_bytes());
  ASSERT_TRUE(roots.ok());
  EXPECT_EQ(roots->front(), pki_.ca);
  EXPECT_EQ(got["spiffe://example.org"].validation_context().trusted_ca().inline_bytes(),
            got["ROOTCA"].validation_context().trusted_ca().inline_bytes());
  const auto& validator = got["ALL"].validation_context().custom_validator_config();
  EXPECT_EQ(validator.name(), kSpiffeValidatorName);
  tls::SPIFFECertValidatorConfig config;
  ASSERT_TRUE(validator.typed_config().UnpackTo(&config));
  ASSERT_EQ(config.trust_domains_size(), 1);
  EXPECT_EQ(config.trust_domains(0).name(), "example.org");
  ctx.TryCancel();
  stream->Finish();
}

TEST_F(SdsTest, OnlyAChangePushesAndAckedStateIsNotResent) {
  cache_.Publish(ReadySnapshot());
  StartServer();
  auto stub = SdsStub();
  grpc::ClientContext ctx;
  Deadline(&ctx);
  auto stream = stub->StreamSecrets(&ctx);
  ASSERT_TRUE(stream->Write(SdsRequest({"default"})));
  discovery::DiscoveryResponse first, second;
  ASSERT_TRUE(stream->Read(&first));
  ASSERT_TRUE(stream->Write(SdsRequest({"default"}, &first)));  // ACK
  // The same identities again (a sync that changed nothing here), then a rotation: the next
  // message must be the rotation.
  IdentitySnapshot same = ReadySnapshot();
  same.svids = cache_.Snapshot()->svids;
  cache_.Publish(same);
  IdentitySnapshot rotated = ReadySnapshot();
  cache_.Publish(rotated);
  ASSERT_TRUE(stream->Read(&second));
  EXPECT_NE(second.version_info(), first.version_info());
  EXPECT_NE(second.nonce(), first.nonce());
  auto chain = common::Certificate::ChainFromPem(
      SecretsOf(second)["default"].tls_certificate().certificate_chain().inline_bytes());
  ASSERT_TRUE(chain.ok());
  EXPECT_EQ(chain->front().der(), rotated.svids.at("e1")->leaf());
  ctx.TryCancel();
  stream->Finish();
}

TEST_F(SdsTest, AnotherResourceTypeIsInvalidArgument) {
  cache_.Publish(ReadySnapshot());
  StartServer();
  auto stub = SdsStub();
  grpc::ClientContext ctx;
  Deadline(&ctx);
  auto stream = stub->StreamSecrets(&ctx);
  discovery::DiscoveryRequest req = SdsRequest({"default"});
  req.set_type_url("type.googleapis.com/envoy.config.cluster.v3.Cluster");
  ASSERT_TRUE(stream->Write(req));
  discovery::DiscoveryResponse resp;
  EXPECT_FALSE(stream->Read(&resp));
  grpc::Status st = stream->Finish();
  EXPECT_EQ(st.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(st.error_message(), ::testing::HasSubstr("tls.v3.Secret"));
}

TEST_F(SdsTest, ACallerWithoutIdentityIsPermissionDenied) {
  IdentitySnapshot snap = ReadySnapshot();
  snap.entries = {};
  snap.entries.Put(std::make_shared<const CachedEntry>(
      Entry("e1", "spiffe://example.org/app", {"unix:uid:999999"})));
  cache_.Publish(snap);
  StartServer();
  auto stub = SdsStub();
  discovery::DiscoveryResponse resp;
  grpc::ClientContext ctx;
  Deadline(&ctx);
  EXPECT_EQ(stub->FetchSecrets(&ctx, SdsRequest({"default"}), &resp).error_code(),
            grpc::StatusCode::PERMISSION_DENIED);
}

TEST_F(SdsTest, FetchSecretsAnswersOnceAndStopEndsStreams) {
  cache_.Publish(ReadySnapshot());
  StartServer();
  auto stub = SdsStub();
  {
    discovery::DiscoveryResponse resp;
    grpc::ClientContext ctx;
    Deadline(&ctx);
    ASSERT_TRUE(stub->FetchSecrets(&ctx, SdsRequest({"ROOTCA"}), &resp).ok());
    EXPECT_EQ(SecretsOf(resp).size(), 1u);
  }
  grpc::ClientContext ctx;
  Deadline(&ctx);
  auto stream = stub->StreamSecrets(&ctx);
  ASSERT_TRUE(stream->Write(SdsRequest({"default"})));
  discovery::DiscoveryResponse resp;
  ASSERT_TRUE(stream->Read(&resp));
  server_->Stop();
  EXPECT_FALSE(stream->Read(&resp));
  EXPECT_EQ(stream->Finish().error_code(), grpc::StatusCode::UNAVAILABLE);
  EXPECT_EQ(cache_.ListenerCount(), 0u);
}

// A queue thread re-arms a method after answering its call: the server stopping just after a
// client has its answer must not find that request racing the queue's shutdown.
TEST_F(WorkloadApiTest, StoppingRightAfterAnswersIsClean) {
  cache_.Publish(ReadySnapshot());
  for (int round = 0; round < 20; ++round) {
    StartServer([](const CachedEntry&,
                   const std::vector<std::string>&) -> absl::StatusOr<std::string> { return "t"; });
    auto stub = Stub();
    grpc::ClientContext jwt_ctx;
    Header(&jwt_ctx);
    JWTSVIDRequest req;
    req.add_audience("svc");
    JWTSVIDResponse jwt;
    ASSERT_TRUE(stub->FetchJWTSVID(&jwt_ctx, req, &jwt).ok()) << "round " << round;
    grpc::ClientContext x509_ctx;
    Header(&x509_ctx);
    auto reader = stub->FetchX509SVID(&x509_ctx, X509SVIDRequest());
    X509SVIDResponse x509;
    ASSERT_TRUE(reader->Read(&x509)) << "round " << round;
    server_->Stop();
    EXPECT_FALSE(reader->Read(&x509));
    reader->Finish();
    stub.reset();
    channel_.reset();
    server_.reset();
  }
}

TEST_F(WorkloadApiTest, ManyConcurrentStreamsAllReceiveUpdates) {
  cache_.Publish(ReadySnapshot());
  StartServer();
  auto stub = Stub();
  constexpr int kStreams = 1000;
  std::vector<std::unique_ptr<grpc::ClientContext>> ctxs;
  std::vector<std::unique_ptr<grpc::ClientReader<X509SVIDResponse>>> readers;
  for (int i = 0; i < kStreams; ++i) {
    ctxs.push_back(std::make_unique<grpc::ClientContext>());
    Header(ctxs.back().get());
    readers.push_back(stub->FetchX509SVID(ctxs.back().get(), X509SVIDRequest()));
  }
  X509SVIDResponse resp;
  for (auto& r : readers) ASSERT_TRUE(r->Read(&resp));
  IdentitySnapshot rotated = ReadySnapshot();
  cache_.Publish(rotated);
  for (auto& r : readers) {
    ASSERT_TRUE(r->Read(&resp));
    EXPECT_EQ(resp.svids(0).x509_svid(), rotated.svids.at("e1")->leaf());
  }
  for (auto& c : ctxs) c->TryCancel();
  for (auto& r : readers) r->Finish();
}

}  // namespace
}  // namespace trellis::workload_api
