// SPIFFE mTLS over real gRPC connections on loopback: who is accepted, who is refused.
#include "transport/grpc_status.h"
#include "transport/spiffe_tls.h"

#include <grpcpp/grpcpp.h>

#include <filesystem>
#include <memory>
#include <string>

#include "common/bundle.h"
#include "common/clock.h"
#include "common/file_util.h"
#include "common/keys.h"
#include "common/x509.h"
#include "gtest/gtest.h"
#include "tests/testutil/temp_dir.h"
#include "trellis/server/v1/agent.grpc.pb.h"

namespace trellis::transport {
namespace {

using common::Bundle;
using common::Certificate;
using common::PrivateKey;
using common::SpiffeId;
using common::TrustDomain;
namespace v1 = ::trellis::server::v1;

template <typename T>
T Must(absl::StatusOr<T> v) {
  if (!v.ok()) {
    ADD_FAILURE() << v.status();
    std::abort();
  }
  return *std::move(v);
}

// A CA for one trust domain that issues SVIDs on the real clock (TLS checks use real time).
struct Authority {
  explicit Authority(const std::string& td_name)
      : td(Must(TrustDomain::Parse(td_name))),
        key(Must(PrivateKey::Generate())),
        root(Must(common::CreateRootCa(key, td, absl::Hours(1), common::SystemClock::Get()))),
        issuer(Must(common::X509SvidIssuer::Create(root, key, common::SystemClock::Get()))),
        bundle(std::make_shared<Bundle>(td)) {
    EXPECT_TRUE(bundle->AddX509Authority(root).ok());
  }

  TlsIdentity Issue(const std::string& id) {
    PrivateKey leaf_key = Must(PrivateKey::Generate());
    std::string der = Must(issuer->IssueForPublicKey(leaf_key.public_key(),
                                                     Must(SpiffeId::Parse(id)), absl::Minutes(10)));
    Certificate leaf = Must(Certificate::FromDer(der));
    return TlsIdentity{leaf.ToPem(), std::string(Must(leaf_key.ToPem()).view())};
  }

  TrustDomain td;
  PrivateKey key;
  Certificate root;
  std::unique_ptr<common::X509SvidIssuer> issuer;
  std::shared_ptr<Bundle> bundle;
};

// Answers RenewAgent with the caller's authenticated SPIFFE ID (or its error) in spiffe_id.
class WhoAmI final : public v1::Agent::Service {
 public:
  explicit WhoAmI(std::shared_ptr<Bundle> bundle) : bundle_(std::move(bundle)) {}
  grpc::Status RenewAgent(grpc::ServerContext* ctx, const v1::RenewAgentRequest*,
                          v1::RenewAgentResponse* response) override {
    auto peer = AuthenticatePeer(*ctx, *bundle_, absl::Now());
    if (!peer.ok()) return ToGrpcStatus(peer.status());
    response->mutable_svid()->set_spiffe_id(peer->id.String() + " " + PeerAddress(*ctx));
    return grpc::Status::OK;
  }

 private:
  std::shared_ptr<Bundle> bundle_;
};

class SpiffeTlsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    tmp_ = std::make_unique<testutil::TempDir>("trellis-tls");
    dir_ = tmp_->path();
    ASSERT_TRUE(common::EnsurePrivateDir(dir_.string()).ok());
  }

  void StartServer(const std::string& server_id) {
    TlsIdentity identity = ca_.Issue(server_id);
    std::string cert = (dir_ / "svid.pem").string();
    std::string key = (dir_ / "svid.key").string();
    ASSERT_TRUE(common::WriteFileAtomic(cert, identity.cert_chain_pem, 0644).ok());
    ASSERT_TRUE(common::WritePrivateFile(key, identity.private_key_pem).ok());
    auto creds = SpiffeServerCredentials(cert, key);
    ASSERT_TRUE(creds.ok()) << creds.status();
    service_ = std::make_unique<WhoAmI>(ca_.bundle);
    grpc::ServerBuilder builder;
    builder.AddListeningPort("127.0.0.1:0", *creds, &port_);
    builder.RegisterService(service_.get());
    server_ = builder.BuildAndStart();
    ASSERT_NE(server_, nullptr);
    ASSERT_GT(port_, 0);
  }

  void TearDown() override {
    if (server_) server_->Shutdown(std::chrono::system_clock::now());
    tmp_.reset();
  }

  grpc::Status Call(std::shared_ptr<grpc::ChannelCredentials> creds, std::string* who) {
    auto channel = grpc::CreateChannel("127.0.0.1:" + std::to_string(port_), creds);
    auto stub = v1::Agent::NewStub(channel);
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
    v1::RenewAgentRequest request;
    v1::RenewAgentResponse response;
    grpc::Status status = stub->RenewAgent(&ctx, request, &response);
    *who = response.svid().spiffe_id();
    return status;
  }

  BundleSource BundleOf(const Authority& a) {
    std::shared_ptr<const Bundle> b = a.bundle;
    return [b] { return b; };
  }

  SpiffeId ServerId() { return Must(SpiffeId::Parse("spiffe://example.org/spire/server")); }

  Authority ca_{"example.org"};
  std::unique_ptr<testutil::TempDir> tmp_;
  std::filesystem::path dir_;
  std::unique_ptr<WhoAmI> service_;
  std::unique_ptr<grpc::Server> server_;
  int port_ = 0;
};

TEST_F(SpiffeTlsTest, MutualTlsAuthenticatesClientSpiffeIdAndAddress) {
  StartServer("spiffe://example.org/spire/server");
  std::string who;
  auto status = Call(SpiffeClientCredentials(ca_.Issue("spiffe://example.org/spire/agent/x/1"),
                                             BundleOf(ca_), ServerId()),
                     &who);
  ASSERT_TRUE(status.ok()) << status.error_message();
  EXPECT_EQ(who, "spiffe://example.org/spire/agent/x/1 127.0.0.1");
}

TEST_F(SpiffeTlsTest, ClientWithoutCertificateIsUnauthenticatedInHandler) {
  StartServer("spiffe://example.org/spire/server");
  std::string who;
  auto status = Call(SpiffeClientCredentials(std::nullopt, BundleOf(ca_), ServerId()), &who);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::UNAUTHENTICATED);
}

TEST_F(SpiffeTlsTest, ClientCertificateFromOtherAuthorityIsUnauthenticated) {
  StartServer("spiffe://example.org/spire/server");
  Authority other("example.org");
  std::string who;
  auto status = Call(SpiffeClientCredentials(other.Issue("spiffe://example.org/spire/agent/x/2"),
                                             BundleOf(ca_), ServerId()),
                     &who);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::UNAUTHENTICATED);
}

TEST_F(SpiffeTlsTest, ServerWithUnexpectedIdIsRefusedAtHandshake) {
  StartServer("spiffe://example.org/not/the/server");
  std::string who;
  auto status = Call(SpiffeClientCredentials(std::nullopt, BundleOf(ca_), ServerId()), &who);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::UNAVAILABLE);
}

TEST_F(SpiffeTlsTest, ServerChainingToAnotherBundleIsRefused) {
  StartServer("spiffe://example.org/spire/server");
  Authority other("example.org");
  std::string who;
  auto status = Call(SpiffeClientCredentials(std::nullopt, BundleOf(other), ServerId()), &who);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::UNAVAILABLE);
}

TEST_F(SpiffeTlsTest, InsecureBootstrapChecksOnlyTheServerId) {
  StartServer("spiffe://example.org/spire/server");
  Authority other("example.org");
  std::string who;
  // Without verification of the chain the right ID is enough ...
  auto ok = Call(SpiffeClientCredentials(std::nullopt, BundleOf(other), ServerId(), true), &who);
  EXPECT_EQ(ok.error_code(), grpc::StatusCode::UNAUTHENTICATED);  // reached the handler
  // ... and the wrong ID is still refused.
  auto wrong =
      Call(SpiffeClientCredentials(std::nullopt, BundleOf(other),
                                   Must(SpiffeId::Parse("spiffe://example.org/other")), true),
           &who);
  EXPECT_EQ(wrong.error_code(), grpc::StatusCode::UNAVAILABLE);
}

TEST_F(SpiffeTlsTest, ServerCredentialsRefuseMissingFiles) {
  auto creds =
      SpiffeServerCredentials((dir_ / "absent.pem").string(), (dir_ / "absent.key").string());
  EXPECT_EQ(creds.status().code(), absl::StatusCode::kFailedPrecondition);
}

TEST(StatusConversion, RoundTripsCodeAndMessage) {
  absl::Status s = absl::PermissionDeniedError("agent is banned");
  grpc::Status g = ToGrpcStatus(s);
  EXPECT_EQ(g.error_code(), grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_EQ(g.error_message(), "agent is banned");
  EXPECT_EQ(FromGrpcStatus(g), s);
  EXPECT_TRUE(ToGrpcStatus(absl::OkStatus()).ok());
}

}  // namespace
}  // namespace trellis::transport
