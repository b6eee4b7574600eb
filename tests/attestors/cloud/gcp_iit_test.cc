// Tests of gcp_iit node attestation against a fake metadata server, key endpoint and Google APIs.
#include "attestors/cloud/gcp_iit.h"

#include <nlohmann/json.hpp>
#include <thread>

#include "absl/synchronization/notification.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/attestors/cloud/fake_cloud_identity.h"
#include "tests/testutil/status_matchers.h"

namespace trellis::attestors {
namespace {

using cloudtest::FakeGcpMetadataServer;
using cloudtest::FakeGoogleApis;
using cloudtest::FakeKeyServer;
using cloudtest::Must;
using cloudtest::SigningKey;
using cloudtest::TestTls;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::UnorderedElementsAre;
using testutil::IsOk;
using testutil::StatusIs;
using json = nlohmann::json;

const auto kNoChallenge = [](std::string) -> absl::StatusOr<std::string> {
  return absl::InternalError("no challenge expected");
};

std::vector<std::string> SelectorValues(const ServerNodeAttestor::Result& r) {
  std::vector<std::string> out;
  for (const auto& s : r.selectors) {
    EXPECT_EQ(s.type, "gcp_iit");
    out.push_back(s.value);
  }
  return out;
}

struct GcpFixture {
  GcpFixture() : clock(absl::Now()), keys(tls), google{"google-kid-1", cloudtest::RsaKey(1)} {
    keys.SetKeys({&google});
    config.projectid_allow_list = {"my-project", "other-project"};
    config.google_certs_url = keys.Url("/oauth2/v3/certs");
  }
  cloud_jwt::HttpOptions Http() const {
    cloud_jwt::HttpOptions h;
    h.ca_file = tls.ca_file();
    h.timeout = absl::Seconds(5);
    return h;
  }
  std::unique_ptr<GcpIitServerAttestor> Server() {
    return Must(GcpIitServerAttestor::Create(td, config, clock, Http()));
  }
  json Claims() const {
    const absl::Time now = clock.Now();
    return {{"aud", kGcpIitAudience},
            {"azp", "111111111111111111111"},
            {"email", "123456789012-compute@developer.gserviceaccount.com"},
            {"email_verified", true},
            {"iss", "https://accounts.google.com"},
            {"sub", "111111111111111111111"},
            {"iat", absl::ToUnixSeconds(now)},
            {"exp", absl::ToUnixSeconds(now + absl::Hours(1))},
            {"google",
             {{"compute_engine",
               {{"instance_creation_timestamp", 1700000000},
                {"instance_id", "4567890123456789012"},
                {"instance_name", "web-1"},
                {"project_id", "my-project"},
                {"project_number", 123456789012},
                {"zone", "us-west1-b"}}}}}};
  }
  std::string Token() const { return google.Sign(Claims()); }
  std::string Token(const json& claims) const { return google.Sign(claims); }

  common::TrustDomain td = Must(common::TrustDomain::Parse("example.org"));
  TestTls tls;
  common::FakeClock clock;
  FakeKeyServer keys;
  SigningKey google;
  common::config::GcpIitServerAttestorConfig config;
};

TEST(GcpIitServerAttestor, AttestsAValidToken) {
  GcpFixture f;
  auto result = Must(f.Server()->Attest(f.Token(), kNoChallenge));
  EXPECT_EQ(result.agent_id.String(),
            "spiffe://example.org/spire/agent/gcp_iit/my-project/4567890123456789012");
  EXPECT_THAT(SelectorValues(result),
              ElementsAre("project-id:my-project", "zone:us-west1-b", "instance-name:web-1"));
  EXPECT_FALSE(result.reattestable);
}

TEST(GcpIitServerAttestor, ReattestableFollowsAllowReattestation) {
  GcpFixture f;
  f.config.allow_reattestation = true;
  EXPECT_TRUE(Must(f.Server()->Attest(f.Token(), kNoChallenge)).reattestable);
}

TEST(GcpIitServerAttestor, AcceptsTheIssuerWithoutScheme) {
  GcpFixture f;
  json c = f.Claims();
  c["iss"] = "accounts.google.com";
  EXPECT_THAT(f.Server()->Attest(f.Token(c), kNoChallenge), IsOk());
}

TEST(GcpIitServerAttestor, AgentPathTemplateShapesTheId) {
  GcpFixture f;
  f.config.agent_path_template = "{{ .PluginName }}/{{ .Zone }}/{{ .InstanceName }}";
  EXPECT_EQ(Must(f.Server()->Attest(f.Token(), kNoChallenge)).agent_id.String(),
            "spiffe://example.org/spire/agent/gcp_iit/us-west1-b/web-1");
  f.config.agent_path_template = "{{ .Nope }}";
  EXPECT_THAT(GcpIitServerAttestor::Create(f.td, f.config, f.clock, f.Http()),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("Nope")));
}

TEST(GcpIitServerAttestor, ReadsGooglesPemCertificateMap) {
  GcpFixture f;
  f.keys.SetBody(
      json{{"google-kid-1", cloudtest::CertificatePem(f.google.key, "accounts.google.com", false)}}
          .dump());
  f.config.google_certs_url = f.keys.Url("/oauth2/v1/certs");
  EXPECT_THAT(f.Server()->Attest(f.Token(), kNoChallenge), IsOk());
}

TEST(GcpIitServerAttestor, RefusesASignatureByAnotherKey) {
  GcpFixture f;
  SigningKey forger{"google-kid-1", cloudtest::RsaKey(2)};
  EXPECT_THAT(
      f.Server()->Attest(forger.Sign(f.Claims()), kNoChallenge),
      StatusIs(absl::StatusCode::kPermissionDenied, "gcp_iit: token signature does not verify"));
}

TEST(GcpIitServerAttestor, RefusesAnUnknownKid) {
  GcpFixture f;
  SigningKey other{"not-googles", cloudtest::RsaKey(2)};
  EXPECT_THAT(f.Server()->Attest(other.Sign(f.Claims()), kNoChallenge),
              StatusIs(absl::StatusCode::kPermissionDenied, HasSubstr("unknown key ID")));
}

TEST(GcpIitServerAttestor, FetchesARotatedKeyOnDemand) {
  GcpFixture f;
  auto server = f.Server();
  ASSERT_THAT(server->Attest(f.Token(), kNoChallenge), IsOk());
  SigningKey next{"google-kid-2", cloudtest::RsaKey(2)};
  f.keys.SetKeys({&f.google, &next});
  f.clock.Advance(absl::Seconds(61));
  json c = f.Claims();
  EXPECT_THAT(server->Attest(next.Sign(c), kNoChallenge), IsOk());
  EXPECT_EQ(f.keys.requests(), 2);
}

TEST(GcpIitServerAttestor, RefusesAnExpiredToken) {
  GcpFixture f;
  std::string token = f.Token();
  f.clock.Advance(absl::Hours(1) + absl::Minutes(1));
  EXPECT_THAT(f.Server()->Attest(token, kNoChallenge),
              StatusIs(absl::StatusCode::kPermissionDenied, HasSubstr("gcp_iit: token expired")));
}

TEST(GcpIitServerAttestor, RefusesATokenNotYetValid) {
  GcpFixture f;
  json c = f.Claims();
  c["iat"] = absl::ToUnixSeconds(f.clock.Now() + absl::Minutes(10));
  EXPECT_THAT(f.Server()->Attest(f.Token(c), kNoChallenge),
              StatusIs(absl::StatusCode::kPermissionDenied, HasSubstr("future")));
  c = f.Claims();
  c["nbf"] = absl::ToUnixSeconds(f.clock.Now() + absl::Minutes(10));
  EXPECT_THAT(f.Server()->Attest(f.Token(c), kNoChallenge),
              StatusIs(absl::StatusCode::kPermissionDenied, HasSubstr("not valid before")));
}

TEST(GcpIitServerAttestor, RefusesAWrongAudience) {
  GcpFixture f;
  json c = f.Claims();
  c["aud"] = "https://some-other-service";
  EXPECT_THAT(f.Server()->Attest(f.Token(c), kNoChallenge),
              StatusIs(absl::StatusCode::kPermissionDenied, HasSubstr("audience")));
  // A configured audience is what the server then asks for.
  f.config.audience = "https://some-other-service";
  EXPECT_THAT(f.Server()->Attest(f.Token(c), kNoChallenge), IsOk());
}

TEST(GcpIitServerAttestor, RefusesAWrongIssuer) {
  GcpFixture f;
  json c = f.Claims();
  c["iss"] = "https://sts.windows.net/x/";
  EXPECT_THAT(f.Server()->Attest(f.Token(c), kNoChallenge),
              StatusIs(absl::StatusCode::kPermissionDenied, HasSubstr("issuer")));
}

TEST(GcpIitServerAttestor, RefusesAProjectNotAllowed) {
  GcpFixture f;
  json c = f.Claims();
  c["google"]["compute_engine"]["project_id"] = "stranger";
  EXPECT_THAT(f.Server()->Attest(f.Token(c), kNoChallenge),
              StatusIs(absl::StatusCode::kPermissionDenied,
                       "gcp_iit: project \"stranger\" is not in projectid_allow_list"));
}

TEST(GcpIitServerAttestor, RefusesTokensWithoutComputeEngineClaims) {
  GcpFixture f;
  json c = f.Claims();
  c.erase("google");
  EXPECT_THAT(f.Server()->Attest(f.Token(c), kNoChallenge),
              StatusIs(absl::StatusCode::kPermissionDenied, HasSubstr("format=full")));
  for (const char* field : {"project_id", "zone", "instance_id", "instance_name", "project_number",
                            "instance_creation_timestamp"}) {
    c = f.Claims();
    c["google"]["compute_engine"].erase(field);
    EXPECT_THAT(f.Server()->Attest(f.Token(c), kNoChallenge),
                StatusIs(absl::StatusCode::kPermissionDenied))
        << field;
  }
  c = f.Claims();
  c["google"]["compute_engine"]["instance_name"] = "../../evil";
  EXPECT_THAT(f.Server()->Attest(f.Token(c), kNoChallenge),
              StatusIs(absl::StatusCode::kPermissionDenied, HasSubstr("invalid name")));
}

TEST(GcpIitServerAttestor, RefusesMalformedPayloads) {
  GcpFixture f;
  auto server = f.Server();
  for (const std::string& bad : {std::string(""), std::string("not a token"),
                                 std::string("{\"token\":\"x\"}"), std::string(70000, 'a')}) {
    EXPECT_THAT(server->Attest(bad, kNoChallenge),
                StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("gcp_iit: ")));
  }
}

TEST(GcpIitServerAttestor, KeyServerDownOrMalformedIsUnavailable) {
  GcpFixture f;
  f.keys.SetBody(R"({"keys": "nope"})");
  EXPECT_THAT(f.Server()->Attest(f.Token(), kNoChallenge),
              StatusIs(absl::StatusCode::kUnavailable, HasSubstr("Google's signing keys")));
  f.keys.Stop();
  EXPECT_THAT(f.Server()->Attest(f.Token(), kNoChallenge),
              StatusIs(absl::StatusCode::kUnavailable, HasSubstr("cannot reach")));
}

TEST(GcpIitServerAttestor, RefusesBadConfigurations) {
  GcpFixture f;
  auto config = f.config;
  config.projectid_allow_list.clear();
  EXPECT_THAT(GcpIitServerAttestor::Create(f.td, config, f.clock),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("projectid_allow_list")));
  config = f.config;
  config.google_certs_url = "http://www.googleapis.com/oauth2/v3/certs";
  EXPECT_THAT(GcpIitServerAttestor::Create(f.td, config, f.clock),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("https://")));
  config = f.config;
  config.use_instance_metadata = true;
  EXPECT_THAT(GcpIitServerAttestor::Create(f.td, config, f.clock),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("service_account_file")));
  config.service_account_file = f.tls.dir().Write("sa.json", R"({"type":"authorized_user"})");
  EXPECT_THAT(GcpIitServerAttestor::Create(f.td, config, f.clock),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("authorized_user")));
  config.service_account_file = f.tls.dir().Write("sa2.json", "not json");
  EXPECT_THAT(GcpIitServerAttestor::Create(f.td, config, f.clock),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("not a JSON object")));
}

// use_instance_metadata against the fake OAuth endpoint and Compute API.
struct MetadataFixture : GcpFixture {
  MetadataFixture()
      : account_key(cloudtest::RsaKey(4)),
        apis(tls, account_key, "trellis@my-project.iam.gserviceaccount.com") {
    config.use_instance_metadata = true;
    config.compute_endpoint = apis.base_url();
    config.service_account_file = tls.dir().Write(
        "sa.json",
        FakeGoogleApis::ServiceAccountJson(
            account_key, "trellis@my-project.iam.gserviceaccount.com", apis.token_uri()));
    config.allowed_label_keys = {"env", "team"};
    config.allowed_metadata_keys = {"role"};
    apis.SetInstance(
        "my-project", "us-west1-b", "web-1",
        {{"kind", "compute#instance"},
         {"id", "4567890123456789012"},
         {"name", "web-1"},
         {"tags", {{"items", {"http-server", "frontend"}}, {"fingerprint", "abc="}}},
         {"labels", {{"env", "prod"}, {"secret", "hidden"}}},
         {"metadata",
          {{"items",
            {{{"key", "role"}, {"value", "web"}}, {{"key", "ssh-keys"}, {"value", "x"}}}}}},
         {"serviceAccounts",
          {{{"email", "123456789012-compute@developer.gserviceaccount.com"},
            {"scopes", {"https://www.googleapis.com/auth/cloud-platform"}}}}}});
  }
  common::PrivateKey account_key;
  FakeGoogleApis apis;
};

TEST(GcpIitServerAttestor, AddsInstanceSelectorsFromTheComputeApi) {
  MetadataFixture f;
  auto result = Must(f.Server()->Attest(f.Token(), kNoChallenge));
  EXPECT_THAT(SelectorValues(result),
              UnorderedElementsAre("project-id:my-project", "zone:us-west1-b",
                                   "instance-name:web-1", "tag:http-server", "tag:frontend",
                                   "sa:123456789012-compute@developer.gserviceaccount.com",
                                   "label:env:prod", "metadata:role:web"));
}

TEST(GcpIitServerAttestor, ReusesTheAccessTokenUntilItExpires) {
  MetadataFixture f;
  auto server = f.Server();
  ASSERT_THAT(server->Attest(f.Token(), kNoChallenge), IsOk());
  ASSERT_THAT(server->Attest(f.Token(), kNoChallenge), IsOk());
  EXPECT_EQ(f.apis.token_requests(), 1);
  EXPECT_EQ(f.apis.instance_requests(), 2);
  // A token is renewed a minute before it expires: one of 62 s serves for 2 s.
  f.apis.set_token_lifetime(absl::Seconds(62));
  server = f.Server();
  ASSERT_THAT(server->Attest(f.Token(), kNoChallenge), IsOk());
  ASSERT_THAT(server->Attest(f.Token(), kNoChallenge), IsOk());
  EXPECT_EQ(f.apis.token_requests(), 2);
  f.clock.Advance(absl::Seconds(3));
  ASSERT_THAT(server->Attest(f.Token(), kNoChallenge), IsOk());
  EXPECT_EQ(f.apis.token_requests(), 3);
}

TEST(GcpIitServerAttestor, ClampsTheAccessTokenLifetime) {
  MetadataFixture f;
  f.apis.set_clock(&f.clock);
  // A lifetime below zero (here the most negative expires_in) means "expired": the next
  // attestation asks again.
  f.apis.set_token_lifetime(-absl::InfiniteDuration());
  auto server = f.Server();
  ASSERT_THAT(server->Attest(f.Token(), kNoChallenge), IsOk());
  ASSERT_THAT(server->Attest(f.Token(), kNoChallenge), IsOk());
  EXPECT_EQ(f.apis.token_requests(), 2);
  // A lifetime of years is believed for a day at most.
  f.apis.set_token_lifetime(absl::Hours(24 * 365 * 1000));
  server = f.Server();
  ASSERT_THAT(server->Attest(f.Token(), kNoChallenge), IsOk());
  f.clock.Advance(absl::Hours(23));
  ASSERT_THAT(server->Attest(f.Token(), kNoChallenge), IsOk());
  EXPECT_EQ(f.apis.token_requests(), 3);
  f.clock.Advance(absl::Hours(1));
  ASSERT_THAT(server->Attest(f.Token(), kNoChallenge), IsOk());
  EXPECT_EQ(f.apis.token_requests(), 4);
}

TEST(GcpIitServerAttestor, RefusesAnInstanceRecreatedUnderTheSameName) {
  MetadataFixture f;
  json instance = {{"kind", "compute#instance"},
                   {"id", "9999999999999999999"},
                   {"name", "web-1"},
                   {"tags", {{"items", {"admin"}}}}};
  f.apis.SetInstance("my-project", "us-west1-b", "web-1", instance);
  EXPECT_THAT(f.Server()->Attest(f.Token(), kNoChallenge),
              StatusIs(absl::StatusCode::kPermissionDenied,
                       HasSubstr("now has ID 9999999999999999999, not the token's "
                                 "4567890123456789012")));
  instance.erase("id");
  f.apis.SetInstance("my-project", "us-west1-b", "web-1", instance);
  EXPECT_THAT(f.Server()->Attest(f.Token(), kNoChallenge),
              StatusIs(absl::StatusCode::kUnavailable, HasSubstr("id is missing")));
  // The API writes the ID as a decimal string; a number is read the same.
  instance["id"] = uint64_t{4567890123456789012u};
  f.apis.SetInstance("my-project", "us-west1-b", "web-1", instance);
  EXPECT_THAT(SelectorValues(Must(f.Server()->Attest(f.Token(), kNoChallenge))),
              ::testing::Contains("tag:admin"));
}

TEST(GcpIitServerAttestor, AStuckTokenRequestDoesNotHoldOtherAttestations) {
  MetadataFixture f;
  cloud_jwt::HttpOptions http = f.Http();
  http.timeout = absl::Seconds(60);  // the stuck request would outlast the test
  auto server = Must(GcpIitServerAttestor::Create(f.td, f.config, f.clock, http));
  const std::string token = f.Token();
  f.apis.HoldTokenRequests(1);
  absl::Notification first_done;
  std::thread first([&] {
    server->Attest(token, kNoChallenge).IgnoreError();
    first_done.Notify();
  });
  ASSERT_TRUE(f.apis.AwaitTokenRequests(1));
  // The first attestation waits on the token endpoint; the second gets its own token.
  absl::StatusOr<ServerNodeAttestor::Result> second = absl::UnknownError("not run");
  absl::Notification second_done;
  std::thread other([&] {
    second = server->Attest(token, kNoChallenge);
    second_done.Notify();
  });
  EXPECT_TRUE(second_done.WaitForNotificationWithTimeout(absl::Seconds(20)));
  EXPECT_FALSE(first_done.HasBeenNotified());
  f.apis.ReleaseTokenRequests();
  other.join();
  first.join();
  EXPECT_THAT(second, IsOk());
  EXPECT_EQ(f.apis.token_requests(), 2);
}

TEST(GcpIitServerAttestor, RefusesOversizedMetadataValues) {
  MetadataFixture f;
  f.config.max_metadata_value_size = 2;
  EXPECT_THAT(f.Server()->Attest(f.Token(), kNoChallenge),
              StatusIs(absl::StatusCode::kPermissionDenied, HasSubstr("max_metadata_value_size")));
}

TEST(GcpIitServerAttestor, RefusesAnInstanceTheApiDoesNotKnow) {
  MetadataFixture f;
  json c = f.Claims();
  c["google"]["compute_engine"]["instance_name"] = "web-2";
  EXPECT_THAT(f.Server()->Attest(f.Token(c), kNoChallenge),
              StatusIs(absl::StatusCode::kPermissionDenied, HasSubstr("does not exist")));
}

TEST(GcpIitServerAttestor, ServiceAccountKeyTheTokenEndpointRefusesIsUnavailable) {
  MetadataFixture f;
  f.config.service_account_file = f.tls.dir().Write(
      "other-sa.json",
      FakeGoogleApis::ServiceAccountJson(
          cloudtest::RsaKey(2), "trellis@my-project.iam.gserviceaccount.com", f.apis.token_uri()));
  EXPECT_THAT(f.Server()->Attest(f.Token(), kNoChallenge),
              StatusIs(absl::StatusCode::kUnavailable, HasSubstr("HTTP 400")));
  EXPECT_EQ(f.apis.instance_requests(), 0);
}

TEST(GcpIitAgentAttestor, FetchesAFullIdentityTokenForTheSpireAudience) {
  FakeGcpMetadataServer metadata;
  metadata.SetToken(cloudtest::SigningKey{"k", cloudtest::RsaKey(1)}.Sign({{"a", 1}}));
  common::config::GcpIitAgentAttestorConfig config;
  config.identity_token_host = metadata.host();
  auto agent = Must(GcpIitAgentAttestor::Create(config));
  EXPECT_EQ(agent->Name(), "gcp_iit");
  std::string payload = Must(agent->Payload());
  EXPECT_EQ(Must(common::PeekJwt(payload)).claims["a"], 1);
  EXPECT_EQ(metadata.audience(), "spire-gcp-node-attestor");
  EXPECT_EQ(metadata.format(), "full");
  EXPECT_EQ(metadata.account(), "default");
  EXPECT_THAT(agent->Answer("x"), StatusIs(absl::StatusCode::kInvalidArgument));
}

TEST(GcpIitAgentAttestor, FakeMetadataServerRequiresTheFlavorHeader) {
  FakeGcpMetadataServer metadata;
  metadata.SetToken("aaa.bbb.ccc");
  cloud_jwt::HttpOptions http;
  auto res = Must(cloud_jwt::HttpRequest(
      "GET",
      metadata.base_url() +
          "/computeMetadata/v1/instance/service-accounts/default/identity?audience=a",
      {}, http));
  EXPECT_EQ(res.status, 403);
}

TEST(GcpIitAgentAttestor, AsksForTheConfiguredServiceAccount) {
  FakeGcpMetadataServer metadata;
  metadata.SetToken(cloudtest::SigningKey{"k", cloudtest::RsaKey(1)}.Sign({{"a", 1}}));
  common::config::GcpIitAgentAttestorConfig config;
  config.identity_token_host = metadata.host();
  config.service_account = "node@my-project.iam.gserviceaccount.com";
  ASSERT_THAT(Must(GcpIitAgentAttestor::Create(config))->Payload(), IsOk());
  EXPECT_EQ(metadata.account(), "node@my-project.iam.gserviceaccount.com");
}

TEST(GcpIitAgentAttestor, ReportsMetadataServerFailures) {
  FakeGcpMetadataServer metadata;
  common::config::GcpIitAgentAttestorConfig config;
  config.identity_token_host = metadata.host();
  auto agent = Must(GcpIitAgentAttestor::Create(config));
  metadata.SetToken("service account not found", 404);
  EXPECT_THAT(agent->Payload(), StatusIs(absl::StatusCode::kUnavailable, HasSubstr("HTTP 404")));
  metadata.SetToken("<html>not a token</html>");
  EXPECT_THAT(agent->Payload(),
              StatusIs(absl::StatusCode::kUnavailable, HasSubstr("did not answer an identity")));
  metadata.Stop();
  EXPECT_THAT(agent->Payload(),
              StatusIs(absl::StatusCode::kUnavailable, HasSubstr("cannot reach")));
}

TEST(GcpIitAgentAttestor, RefusesBadHosts) {
  common::config::GcpIitAgentAttestorConfig config;
  for (const char* bad : {"", "http://metadata", "host/path", "user@host", "host:99999"}) {
    config.identity_token_host = bad;
    EXPECT_THAT(GcpIitAgentAttestor::Create(config), StatusIs(absl::StatusCode::kInvalidArgument))
        << bad;
  }
}

TEST(GcpIit, AgentPayloadAttestsOnTheServer) {
  GcpFixture f;
  FakeGcpMetadataServer metadata;
  metadata.SetToken(f.Token());
  common::config::GcpIitAgentAttestorConfig config;
  config.identity_token_host = metadata.host();
  std::string payload = Must(Must(GcpIitAgentAttestor::Create(config))->Payload());
  EXPECT_EQ(Must(f.Server()->Attest(payload, kNoChallenge)).agent_id.String(),
            "spiffe://example.org/spire/agent/gcp_iit/my-project/4567890123456789012");
}

}  // namespace
}  // namespace trellis::attestors
