// Server configuration to CaManager options, the UpstreamAuthority "disk" included.
#include "runtime/ca_manager_options.h"

#include "common/clock.h"
#include "gtest/gtest.h"

namespace trellis::runtime {
namespace {

using server::CaManager;

common::TrustDomain Td() { return *common::TrustDomain::Parse("example.org"); }

TEST(CaManagerOptionsFromConfig, CopiesTtlsKeyTypesAndIssuer) {
  common::config::ServerConfig config(Td());
  config.ca_ttl = absl::Hours(48);
  config.default_x509_svid_ttl = absl::Hours(2);
  config.default_jwt_svid_ttl = absl::Minutes(10);
  config.ca_key_type = common::config::KeyType::kEcP384;
  config.jwt_issuer = "https://oidc.example.org";
  config.ca_subject.common_name = "Trellis CA";
  auto o = CaManagerOptionsFromConfig(config, common::SystemClock::Get());
  ASSERT_TRUE(o.ok()) << o.status();
  EXPECT_EQ(o->ca_ttl, absl::Hours(48));
  EXPECT_EQ(o->default_x509_svid_ttl, absl::Hours(2));
  EXPECT_EQ(o->default_jwt_svid_ttl, absl::Minutes(10));
  EXPECT_EQ(o->ca_key_type, common::KeyType::kEcP384);
  EXPECT_EQ(o->jwt_issuer, "https://oidc.example.org");
  EXPECT_EQ(o->ca_subject.common_name, "Trellis CA");
  EXPECT_EQ(o->ca_subject.country, "US");
  EXPECT_EQ(o->upstream, nullptr);
}

TEST(CaManagerOptionsFromConfig, MissingUpstreamFilesFailStartUp) {
  common::config::ServerConfig config(Td());
  config.upstream_authority =
      common::config::DiskUpstreamAuthorityConfig{"/nonexistent/ca.pem", "/nonexistent/ca.key", ""};
  EXPECT_EQ(CaManagerOptionsFromConfig(config, common::SystemClock::Get()).status().code(),
            absl::StatusCode::kNotFound);
}

// ---- UpstreamAuthority "disk" ----

}  // namespace
}  // namespace trellis::runtime
