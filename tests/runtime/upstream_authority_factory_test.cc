// CreateUpstreamAuthority: each UpstreamAuthority configuration builds its implementation.
#include "runtime/upstream_authority_factory.h"

#include "common/clock.h"
#include "common/keys.h"
#include "common/x509.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testutil/status_matchers.h"
#include "tests/testutil/temp_dir.h"

namespace trellis::runtime {
namespace {

using ::testing::HasSubstr;
using testutil::IsOk;
using testutil::StatusIs;

namespace config = common::config;

common::TrustDomain Td() { return *common::TrustDomain::Parse("example.org"); }

TEST(CreateUpstreamAuthority, DiskSignsUnderTheConfiguredCertificate) {
  testutil::TempDir dir("trellis-uaf");
  auto root_key = common::PrivateKey::Generate();
  auto root = common::CreateRootCa(*root_key, Td(), absl::Hours(24), common::SystemClock::Get());
  ASSERT_THAT(root, IsOk());
  config::DiskUpstreamAuthorityConfig disk{dir.Write("ca.pem", root->ToPem()),
                                           dir.Write("ca.key", root_key->ToPem()->view()), ""};
  auto authority = CreateUpstreamAuthority(disk, Td(), common::SystemClock::Get());
  ASSERT_THAT(authority, IsOk());
  EXPECT_FALSE((*authority)->OwnsBundle());
  auto key = common::PrivateKey::Generate();
  auto minted = (*authority)->MintX509Ca(*key, Td(), absl::Hours(1));
  ASSERT_THAT(minted, IsOk());
  EXPECT_EQ(minted->ca_chain.front().AuthorityKeyId(), root->SubjectKeyId());
  ASSERT_EQ(minted->roots.size(), 1u);
  EXPECT_EQ(minted->roots[0], *root);
}

TEST(CreateUpstreamAuthority, DiskWithMissingFilesFails) {
  config::DiskUpstreamAuthorityConfig disk{"/nonexistent/ca.pem", "/nonexistent/ca.key", ""};
  EXPECT_THAT(CreateUpstreamAuthority(disk, Td(), common::SystemClock::Get()),
              StatusIs(absl::StatusCode::kNotFound));
}

TEST(CreateUpstreamAuthority, SpireBuildsANestedUpstreamThatOwnsTheBundle) {
  testutil::TempDir dir("trellis-uaf");
  config::SpireUpstreamAuthorityConfig spire{"127.0.0.1", 8081, dir.Sub("absent.sock")};
  auto authority = CreateUpstreamAuthority(spire, Td(), common::SystemClock::Get());
  ASSERT_THAT(authority, IsOk());
  EXPECT_TRUE((*authority)->OwnsBundle());
  (*authority)->Stop();
}

TEST(CreateUpstreamAuthority, SpireWithoutPortOrSocketIsRefused) {
  config::SpireUpstreamAuthorityConfig no_port{"127.0.0.1", 0, "/tmp/agent.sock"};
  EXPECT_THAT(CreateUpstreamAuthority(no_port, Td(), common::SystemClock::Get()),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("server_port")));
  config::SpireUpstreamAuthorityConfig no_socket{"127.0.0.1", 8081, ""};
  EXPECT_THAT(CreateUpstreamAuthority(no_socket, Td(), common::SystemClock::Get()),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("workload_api_socket")));
}

}  // namespace
}  // namespace trellis::runtime
