// The bundle endpoint and the bundle client against each other on loopback, under both
// profiles, with certificates made in the test.
#include "federation/bundle_endpoint.h"

#include <arpa/inet.h>
#include <signal.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <filesystem>
#include <thread>

#include "absl/synchronization/mutex.h"
#include "federation/bundle_client.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/federation/test_pki.h"

namespace trellis::federation {
namespace {

using ::testing::HasSubstr;
using testing::Must;
using testing::TestDomain;

class BundleEndpointTest : public ::testing::Test {
 protected:
  // The server ignores SIGPIPE (a peer gone mid-write must not kill it); so do these tests,
  // whose endpoints and clients write to sockets the other side may have shut.
  BundleEndpointTest() : a_("a.test"), web_("web-pki.test"), dir_("fed") {
    ::signal(SIGPIPE, SIG_IGN);
  }

  void TearDown() override { ::unsetenv("SSL_CERT_FILE"); }

  // An endpoint serving `document_` with the chain and key in the two files.
  void Serve(const std::pair<std::string, std::string>& files) {
    BundleEndpoint::Options o;
    o.address = "127.0.0.1";
    o.port = 0;
    o.identity = std::make_shared<web::TlsFiles>(files.first, files.second);
    o.document = [this]() -> absl::StatusOr<std::string> {
      ++requests_;
      absl::MutexLock lock(&mu_);
      return document_;
    };
    endpoint_ = Must(BundleEndpoint::Start(std::move(o)));
  }

  void SetDocument(absl::StatusOr<std::string> doc) {
    absl::MutexLock lock(&mu_);
    document_ = std::move(doc);
  }

  BundleEndpointSpec Spiffe(const std::string& id, const TestDomain& authorities) const {
    BundleEndpointSpec spec;
    spec.url = "https://127.0.0.1:" + std::to_string(endpoint_->port());
    spec.profile = EndpointProfile::kHttpsSpiffe;
    spec.endpoint_spiffe_id = Must(common::SpiffeId::Parse(id));
    spec.endpoint_authorities = {authorities.ca};
    return spec;
  }

  BundleEndpointSpec Web(const std::string& host, const std::string& path = "/") const {
    BundleEndpointSpec spec;
    spec.url = "https://" + host + ":" + std::to_string(endpoint_->port()) + path;
    spec.profile = EndpointProfile::kHttpsWeb;
    return spec;
  }

  // Trusts `roots` as the Web PKI for the rest of the test.
  void TrustWebRoots(const TestDomain& roots) {
    std::string path = dir_.Write("web-roots.pem", roots.ca.ToPem());
    ::setenv("SSL_CERT_FILE", path.c_str(), 1);
  }

  TestDomain a_;
  TestDomain web_;
  testutil::TempDir dir_;
  absl::Mutex mu_;
  absl::StatusOr<std::string> document_ ABSL_GUARDED_BY(mu_) =
      Must(common::SpiffeBundleToJson(a_.Bundle(7)));
  std::atomic<int> requests_{0};
  std::unique_ptr<BundleEndpoint> endpoint_;
};

TEST_F(BundleEndpointTest, HttpsSpiffeFetchReturnsTheServedBundle) {
  Serve(a_.WriteSvid(dir_, "server", "/spire/server"));
  common::Bundle got =
      Must(FetchBundle(a_.td, Spiffe("spiffe://a.test/spire/server", a_), absl::Now()));
  EXPECT_TRUE(got.SameAuthorities(a_.Bundle()));
  EXPECT_EQ(got.sequence(), 7u);
  EXPECT_EQ(requests_.load(), 1);
}

TEST_F(BundleEndpointTest, HttpsSpiffeRefusesAnEndpointWithAnotherSpiffeId) {
  Serve(a_.WriteSvid(dir_, "server", "/spire/server"));
  absl::StatusOr<common::Bundle> got =
      FetchBundle(a_.td, Spiffe("spiffe://a.test/bundle-endpoint", a_), absl::Now());
  ASSERT_FALSE(got.ok());
  EXPECT_EQ(got.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(std::string(got.status().message()),
              HasSubstr("presented spiffe://a.test/spire/server, not "
                        "spiffe://a.test/bundle-endpoint"));
  EXPECT_EQ(requests_.load(), 0) << "no request may follow a refused handshake";
}

TEST_F(BundleEndpointTest, HttpsSpiffeRefusesAnSvidOfOtherAuthorities) {
  TestDomain impostor("a.test");
  Serve(impostor.WriteSvid(dir_, "server", "/spire/server"));
  absl::StatusOr<common::Bundle> got =
      FetchBundle(a_.td, Spiffe("spiffe://a.test/spire/server", a_), absl::Now());
  ASSERT_FALSE(got.ok());
  EXPECT_EQ(got.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(std::string(got.status().message()), HasSubstr("does not verify"));
  EXPECT_EQ(requests_.load(), 0);
}

TEST_F(BundleEndpointTest, HttpsSpiffeWithoutAuthoritiesIsAFailedPrecondition) {
  Serve(a_.WriteSvid(dir_, "server", "/spire/server"));
  BundleEndpointSpec spec = Spiffe("spiffe://a.test/spire/server", a_);
  spec.endpoint_authorities.clear();
  absl::StatusOr<common::Bundle> got = FetchBundle(a_.td, spec, absl::Now());
  EXPECT_EQ(got.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(std::string(got.status().message()), HasSubstr("set that trust domain's bundle"));
}

TEST_F(BundleEndpointTest, HttpsWebVerifiesTheWebRootsAndTheHostName) {
  Serve(web_.WriteSvid(dir_, "web", "/endpoint", {"localhost"}));
  TrustWebRoots(web_);
  common::Bundle got = Must(FetchBundle(a_.td, Web("localhost"), absl::Now()));
  EXPECT_TRUE(got.SameAuthorities(a_.Bundle()));
  // The certificate names localhost only.
  absl::StatusOr<common::Bundle> by_ip = FetchBundle(a_.td, Web("127.0.0.1"), absl::Now());
  EXPECT_EQ(by_ip.status().code(), absl::StatusCode::kUnavailable) << by_ip.status();
  EXPECT_THAT(std::string(by_ip.status().message()), HasSubstr("does not name host 127.0.0.1"));
}

TEST_F(BundleEndpointTest, HttpsWebRefusesACertificateFromUntrustedRoots) {
  Serve(web_.WriteSvid(dir_, "web", "/endpoint", {"localhost"}));
  TestDomain other("other-pki.test");
  TrustWebRoots(other);
  absl::StatusOr<common::Bundle> got = FetchBundle(a_.td, Web("localhost"), absl::Now());
  ASSERT_FALSE(got.ok());
  EXPECT_EQ(got.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(std::string(got.status().message()),
              HasSubstr("the server's certificate did not verify: unable to get local issuer"));
}

TEST_F(BundleEndpointTest, ARotatedCertificateIsServedWithoutRestart) {
  auto files = a_.WriteSvid(dir_, "server", "/spire/server");
  Serve(files);
  ASSERT_TRUE(FetchBundle(a_.td, Spiffe("spiffe://a.test/spire/server", a_), absl::Now()).ok());
  // Replaced in place, as the server SVID rotator does.
  auto next = a_.WriteSvid(dir_, "next", "/spire/server-next");
  std::filesystem::rename(next.first, files.first);
  std::filesystem::rename(next.second, files.second);
  EXPECT_TRUE(
      FetchBundle(a_.td, Spiffe("spiffe://a.test/spire/server-next", a_), absl::Now()).ok());
  EXPECT_FALSE(FetchBundle(a_.td, Spiffe("spiffe://a.test/spire/server", a_), absl::Now()).ok());
}

TEST_F(BundleEndpointTest, FilesCaughtMidRotationKeepTheLastGoodPairServed) {
  auto files = a_.WriteSvid(dir_, "server", "/spire/server");
  Serve(files);
  ASSERT_TRUE(FetchBundle(a_.td, Spiffe("spiffe://a.test/spire/server", a_), absl::Now()).ok());
  // The key renamed into place, the chain not yet: the pair does not match for a moment.
  auto next = a_.WriteSvid(dir_, "next", "/spire/server-next");
  std::filesystem::rename(next.second, files.second);
  EXPECT_TRUE(FetchBundle(a_.td, Spiffe("spiffe://a.test/spire/server", a_), absl::Now()).ok());
  std::filesystem::rename(next.first, files.first);
  EXPECT_TRUE(
      FetchBundle(a_.td, Spiffe("spiffe://a.test/spire/server-next", a_), absl::Now()).ok());
}

TEST_F(BundleEndpointTest, AnEndpointTricklingItsAnswerIsAbandonedAtTheDeadline) {
  // A TLS record header announcing 16 KiB, then one byte every 100 ms: every read succeeds
  // well within the per-read timeout, so only the whole-fetch deadline ends it.
  int listener = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  ASSERT_GE(listener, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(::bind(listener, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
  ASSERT_EQ(::listen(listener, 1), 0);
  socklen_t len = sizeof addr;
  ::getsockname(listener, reinterpret_cast<sockaddr*>(&addr), &len);
  std::atomic<bool> stop{false};
  std::thread trickler([&] {
    int fd = ::accept4(listener, nullptr, nullptr, SOCK_CLOEXEC);
    if (fd < 0) return;
    const unsigned char header[] = {0x16, 0x03, 0x03, 0x40, 0x00};
    (void)!::send(fd, header, sizeof header, MSG_NOSIGNAL);
    while (!stop) {
      char zero = 0;
      if (::send(fd, &zero, 1, MSG_NOSIGNAL) != 1) break;
      absl::SleepFor(absl::Milliseconds(100));
    }
    ::close(fd);
  });
  BundleEndpointSpec spec;
  spec.url = "https://127.0.0.1:" + std::to_string(ntohs(addr.sin_port)) + "/";
  absl::Time start = absl::Now();
  absl::StatusOr<common::Bundle> got = FetchBundle(a_.td, spec, absl::Now(), absl::Seconds(1));
  absl::Duration took = absl::Now() - start;
  stop = true;
  trickler.join();
  ::close(listener);
  EXPECT_EQ(got.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(std::string(got.status().message()), HasSubstr("no complete answer within 1s"));
  EXPECT_LT(took, absl::Seconds(30));
}

TEST_F(BundleEndpointTest, OnlyTheRootPathIsServed) {
  Serve(web_.WriteSvid(dir_, "web", "/endpoint", {"localhost"}));
  TrustWebRoots(web_);
  absl::StatusOr<common::Bundle> got = FetchBundle(a_.td, Web("localhost", "/other"), absl::Now());
  EXPECT_EQ(got.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(std::string(got.status().message()), HasSubstr("answered HTTP 404"));
}

TEST_F(BundleEndpointTest, ABundleNotReadyAnswers503) {
  Serve(web_.WriteSvid(dir_, "web", "/endpoint", {"localhost"}));
  TrustWebRoots(web_);
  SetDocument(absl::UnavailableError("not yet"));
  absl::StatusOr<common::Bundle> got = FetchBundle(a_.td, Web("localhost"), absl::Now());
  EXPECT_THAT(std::string(got.status().message()), HasSubstr("answered HTTP 503"));
}

TEST_F(BundleEndpointTest, GarbageAndOtherTrustDomainsAreInvalidArgument) {
  Serve(web_.WriteSvid(dir_, "web", "/endpoint", {"localhost"}));
  TrustWebRoots(web_);
  SetDocument(std::string("{\"keys\": [ not json"));
  absl::StatusOr<common::Bundle> got = FetchBundle(a_.td, Web("localhost"), absl::Now());
  EXPECT_EQ(got.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(got.status().message()),
              HasSubstr("did not serve a valid SPIFFE bundle"));
  // a.test's bundle fetched as b.test's: its CA names a.test.
  SetDocument(Must(common::SpiffeBundleToJson(a_.Bundle())));
  got = FetchBundle(Must(common::TrustDomain::Parse("b.test")), Web("localhost"), absl::Now());
  EXPECT_EQ(got.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(got.status().message()),
              HasSubstr("holds an X.509 authority of trust domain a.test"));
  SetDocument(std::string("{\"keys\": []}"));
  got = FetchBundle(a_.td, Web("localhost"), absl::Now());
  EXPECT_EQ(got.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(got.status().message()), HasSubstr("holds no authorities"));
}

TEST_F(BundleEndpointTest, AnOversizedAnswerIsRefused) {
  Serve(web_.WriteSvid(dir_, "web", "/endpoint", {"localhost"}));
  TrustWebRoots(web_);
  SetDocument(std::string(2 << 20, ' '));
  absl::StatusOr<common::Bundle> got = FetchBundle(a_.td, Web("localhost"), absl::Now());
  EXPECT_THAT(std::string(got.status().message()), HasSubstr("more than 1 MiB"));
}

TEST_F(BundleEndpointTest, AnUnreachableEndpointIsUnavailable) {
  BundleEndpointSpec spec;
  spec.url = "https://127.0.0.1:1/";
  absl::StatusOr<common::Bundle> got = FetchBundle(a_.td, spec, absl::Now(), absl::Seconds(5));
  EXPECT_EQ(got.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(std::string(got.status().message()), HasSubstr("https://127.0.0.1:1/"));
}

TEST_F(BundleEndpointTest, StartRefusesIdentityFilesThatDoNotMatch) {
  auto one = a_.WriteSvid(dir_, "one", "/spire/server");
  auto two = a_.WriteSvid(dir_, "two", "/spire/server");
  BundleEndpoint::Options o;
  o.address = "127.0.0.1";
  o.port = 0;
  o.identity = std::make_shared<web::TlsFiles>(one.first, two.second);
  o.document = [] { return absl::StatusOr<std::string>("{}"); };
  absl::StatusOr<std::unique_ptr<BundleEndpoint>> e = BundleEndpoint::Start(std::move(o));
  EXPECT_EQ(e.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(e.status().message()), HasSubstr("does not match the leaf"));
  BundleEndpoint::Options missing;
  missing.identity = std::make_shared<web::TlsFiles>(dir_.Sub("missing.pem"), one.second);
  missing.document = [] { return absl::StatusOr<std::string>("{}"); };
  e = BundleEndpoint::Start(std::move(missing));
  EXPECT_THAT(std::string(e.status().message()), HasSubstr("cannot read certificate file"));
}

}  // namespace
}  // namespace trellis::federation
