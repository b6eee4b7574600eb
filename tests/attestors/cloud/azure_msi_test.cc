// Tests of azure_msi node attestation against a fake IMDS and fake tenant key endpoints.
#include "attestors/cloud/azure_msi.h"

#include <nlohmann/json.hpp>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/attestors/cloud/fake_cloud_identity.h"
#include "tests/testutil/status_matchers.h"

namespace trellis::attestors {
namespace {

using cloudtest::FakeAzureImds;
using cloudtest::FakeKeyServer;
using cloudtest::Must;
using cloudtest::SigningKey;
using cloudtest::TestTls;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using testutil::IsOk;
using testutil::StatusIs;
using json = nlohmann::json;

constexpr char kTenant[] = "72f988bf-86f1-41af-91ab-2d7cd011db47";
constexpr char kOtherTenant[] = "00000000-1111-2222-3333-444444444444";
constexpr char kPrincipal[] = "9a2a8fa8-1f3c-4a41-b2a5-6f8c0f0f1c2d";
constexpr char kSubscription[] = "0b1c2d3e-4f50-6172-8394-a5b6c7d8e9f0";

const auto kNoChallenge = [](std::string) -> absl::StatusOr<std::string> {
  return absl::InternalError("no challenge expected");
};

std::string Payload(const std::string& token) { return json{{"token", token}}.dump(); }

std::vector<std::string> SelectorValues(const ServerNodeAttestor::Result& r) {
  std::vector<std::string> out;
  for (const auto& s : r.selectors) {
    EXPECT_EQ(s.type, "azure_msi");
    out.push_back(s.value);
  }
  return out;
}

struct AzureFixture {
  AzureFixture() : clock(absl::Now()), keys(tls), entra{"entra-kid-1", cloudtest::RsaKey(1)} {
    keys.SetKeys({&entra});
    config.tenants[kTenant] = {};
    config.tenants[kOtherTenant].resource_id = "api://trellis";
    config.jwks_url = keys.Url("/{tenant}/discovery/v2.0/keys");
  }
  cloud_jwt::HttpOptions Http() const {
    cloud_jwt::HttpOptions h;
    h.ca_file = tls.ca_file();
    h.timeout = absl::Seconds(5);
    return h;
  }
  std::unique_ptr<AzureMsiServerAttestor> Server() {
    return Must(AzureMsiServerAttestor::Create(td, config, clock, Http()));
  }
  json Claims(const std::string& tenant = kTenant) const {
    const int64_t now = absl::ToUnixSeconds(clock.Now());
    return {{"aud", "https://management.azure.com/"},
            {"iss", "https://sts.windows.net/" + tenant + "/"},
            {"iat", now - 5},
            {"nbf", now - 5},
            {"exp", now + 86400},
            {"aio", "E2ZgYJg"},
            {"appid", "11111111-2222-3333-4444-555555555555"},
            {"appidacr", "2"},
            {"idp", "https://sts.windows.net/" + tenant + "/"},
            {"oid", kPrincipal},
            {"sub", kPrincipal},
            {"tid", tenant},
            {"ver", "1.0"},
            {"xms_mirid", cloudtest::SystemAssignedMirid(kSubscription, "rg-web", "vm1")}};
  }
  std::string Token() const { return entra.Sign(Claims()); }

  common::TrustDomain td = Must(common::TrustDomain::Parse("example.org"));
  TestTls tls;
  common::FakeClock clock;
  FakeKeyServer keys;
  SigningKey entra;
  common::config::AzureMsiServerAttestorConfig config;
};

TEST(AzureMsiServerAttestor, AttestsAValidToken) {
  AzureFixture f;
  auto result = Must(f.Server()->Attest(Payload(f.Token()), kNoChallenge));
  EXPECT_EQ(result.agent_id.String(), std::string("spiffe://example.org/spire/agent/azure_msi/") +
                                          kTenant + "/" + kPrincipal);
  EXPECT_THAT(
      SelectorValues(result),
      ElementsAre(std::string("tenant-id:") + kTenant, std::string("principal-id:") + kPrincipal,
                  std::string("subscription-id:") + kSubscription, "vm-name:rg-web:vm1"));
  EXPECT_FALSE(result.reattestable);
  EXPECT_THAT(f.keys.paths(), ElementsAre(std::string("/") + kTenant + "/discovery/v2.0/keys"));
}

TEST(AzureMsiServerAttestor, AttestsAUserAssignedIdentityWithoutVmName) {
  AzureFixture f;
  json c = f.Claims();
  c["xms_mirid"] = cloudtest::UserAssignedMirid(kSubscription, "rg-identities", "web-identity");
  auto result = Must(f.Server()->Attest(Payload(f.entra.Sign(c)), kNoChallenge));
  EXPECT_EQ(result.agent_id.String(), std::string("spiffe://example.org/spire/agent/azure_msi/") +
                                          kTenant + "/" + kPrincipal);
  EXPECT_THAT(SelectorValues(result), ElementsAre(std::string("tenant-id:") + kTenant,
                                                  std::string("principal-id:") + kPrincipal,
                                                  std::string("subscription-id:") + kSubscription));
}

TEST(AzureMsiServerAttestor, ReadsTheResourceIdInAnyCaseOfItsFixedWords) {
  AzureFixture f;
  json c = f.Claims();
  c["xms_mirid"] = std::string("/SUBSCRIPTIONS/") + kSubscription +
                   "/resourceGroups/RG-Web/Providers/microsoft.compute/VirtualMachines/VM-1";
  auto result = Must(f.Server()->Attest(Payload(f.entra.Sign(c)), kNoChallenge));
  EXPECT_THAT(SelectorValues(result),
              ::testing::Contains(std::string("subscription-id:") + kSubscription));
  EXPECT_THAT(SelectorValues(result), ::testing::Contains("vm-name:RG-Web:VM-1"));
}

TEST(AzureMsiServerAttestor, RefusesATokenThatIsNotAManagedIdentitys) {
  AzureFixture f;
  auto server = f.Server();
  // What any user or application of the tenant gets for the resource: no xms_mirid.
  json c = f.Claims();
  c.erase("xms_mirid");
  EXPECT_THAT(server->Attest(Payload(f.entra.Sign(c)), kNoChallenge),
              StatusIs(absl::StatusCode::kPermissionDenied,
                       "azure_msi: token is not a managed identity token (no xms_mirid claim)"));
  c["xms_mirid"] = 42;
  EXPECT_THAT(server->Attest(Payload(f.entra.Sign(c)), kNoChallenge),
              StatusIs(absl::StatusCode::kPermissionDenied,
                       "azure_msi: token is not a managed identity token (no xms_mirid claim)"));
}

TEST(AzureMsiServerAttestor, RefusesAMalformedXmsMirid) {
  AzureFixture f;
  auto server = f.Server();
  const std::string sub = kSubscription;
  for (const std::string& bad : std::vector<std::string>{
           "",
           "subscriptions/" + sub +
               "/resourcegroups/rg/providers/Microsoft.Compute/virtualMachines/vm",
           "/subscriptions/",
           "/subscriptions/" + sub,
           "/subscriptions/" + sub + "/resourcegroups/rg",
           "/subscriptions/" + sub +
               "/resourcegroups/rg/providers/Microsoft.Compute/virtualMachines",
           "/subscriptions/" + sub +
               "/resourcegroups/rg/providers/Microsoft.Compute/virtualMachines/",
           "/subscriptions/" + sub +
               "/resourcegroups/rg/providers/Microsoft.Compute/virtualMachines/vm/x",
           "/subscriptions/" + sub + "/groups/rg/providers/Microsoft.Compute/virtualMachines/vm",
           "/subscriptions/" + sub +
               "/resourcegroups/rg/provider/Microsoft.Compute/virtualMachines/vm",
           "/subscriptions/" + sub +
               "/resourcegroups//providers/Microsoft.Compute/virtualMachines/vm",
           "/subscriptions/" + sub +
               "/resourcegroups/r:g/providers/Microsoft.Compute/virtualMachines/vm",
           "/subscriptions/" + sub +
               "/resourcegroups/rg/providers/Microsoft.Compute/virtualMachines/v m",
           "/subscriptions/a b/resourcegroups/rg/providers/Microsoft.Compute/virtualMachines/vm",
           "/subscriptions//resourcegroups/rg/providers/Microsoft.Compute/virtualMachines/vm",
           "/subscriptions/" + std::string(2000, 'a'),
       }) {
    json c = f.Claims();
    c["xms_mirid"] = bad;
    EXPECT_THAT(
        server->Attest(Payload(f.entra.Sign(c)), kNoChallenge),
        StatusIs(absl::StatusCode::kPermissionDenied, HasSubstr("azure_msi: token's xms_mirid")))
        << bad.substr(0, 100);
  }
}

TEST(AzureMsiServerAttestor, ReattestableFollowsAllowReattestation) {
  AzureFixture f;
  f.config.allow_reattestation = true;
  EXPECT_TRUE(Must(f.Server()->Attest(Payload(f.Token()), kNoChallenge)).reattestable);
}

TEST(AzureMsiServerAttestor, EachTenantHasItsOwnKeysAndResource) {
  AzureFixture f;
  auto server = f.Server();
  json c = f.Claims(kOtherTenant);
  EXPECT_THAT(server->Attest(Payload(f.entra.Sign(c)), kNoChallenge),
              StatusIs(absl::StatusCode::kPermissionDenied, HasSubstr("api://trellis")));
  c["aud"] = "api://trellis";
  auto result = Must(server->Attest(Payload(f.entra.Sign(c)), kNoChallenge));
  EXPECT_EQ(result.selectors[0].value, std::string("tenant-id:") + kOtherTenant);
  EXPECT_THAT(f.keys.paths(),
              ElementsAre(std::string("/") + kOtherTenant + "/discovery/v2.0/keys"));
}

TEST(AzureMsiServerAttestor, RefusesATenantNotConfigured) {
  AzureFixture f;
  EXPECT_THAT(
      f.Server()->Attest(Payload(f.entra.Sign(f.Claims("aaaaaaaa-0000-0000-0000-000000000000"))),
                         kNoChallenge),
      StatusIs(absl::StatusCode::kPermissionDenied,
               "azure_msi: tenant \"aaaaaaaa-0000-0000-0000-000000000000\" is not configured"));
  json c = f.Claims();
  c.erase("tid");
  EXPECT_THAT(f.Server()->Attest(Payload(f.entra.Sign(c)), kNoChallenge),
              StatusIs(absl::StatusCode::kPermissionDenied, HasSubstr("tid")));
  EXPECT_EQ(f.keys.requests(), 0);
}

TEST(AzureMsiServerAttestor, RefusesASignatureByAnotherKey) {
  AzureFixture f;
  SigningKey forger{"entra-kid-1", cloudtest::RsaKey(2)};
  EXPECT_THAT(
      f.Server()->Attest(Payload(forger.Sign(f.Claims())), kNoChallenge),
      StatusIs(absl::StatusCode::kPermissionDenied, "azure_msi: token signature does not verify"));
}

TEST(AzureMsiServerAttestor, RefusesAnUnknownKid) {
  AzureFixture f;
  SigningKey other{"unknown", cloudtest::RsaKey(2)};
  EXPECT_THAT(f.Server()->Attest(Payload(other.Sign(f.Claims())), kNoChallenge),
              StatusIs(absl::StatusCode::kPermissionDenied, HasSubstr("unknown key ID")));
}

TEST(AzureMsiServerAttestor, FetchesARotatedKeyOnDemand) {
  AzureFixture f;
  auto server = f.Server();
  ASSERT_THAT(server->Attest(Payload(f.Token()), kNoChallenge), IsOk());
  SigningKey next{"entra-kid-2", cloudtest::RsaKey(2)};
  f.keys.SetKeys({&next});
  // Within a minute of the last fetch the new kid is not fetched yet.
  EXPECT_THAT(server->Attest(Payload(next.Sign(f.Claims())), kNoChallenge),
              StatusIs(absl::StatusCode::kPermissionDenied, HasSubstr("unknown key ID")));
  f.clock.Advance(absl::Seconds(61));
  EXPECT_THAT(server->Attest(Payload(next.Sign(f.Claims())), kNoChallenge), IsOk());
  EXPECT_EQ(f.keys.requests(), 2);
}

TEST(AzureMsiServerAttestor, RefusesExpiredAndNotYetValidTokens) {
  AzureFixture f;
  auto server = f.Server();
  std::string token = f.Token();
  json c = f.Claims();
  c["nbf"] = absl::ToUnixSeconds(f.clock.Now() + absl::Minutes(5));
  EXPECT_THAT(server->Attest(Payload(f.entra.Sign(c)), kNoChallenge),
              StatusIs(absl::StatusCode::kPermissionDenied, HasSubstr("not valid before")));
  f.clock.Advance(absl::Hours(25));
  EXPECT_THAT(server->Attest(Payload(token), kNoChallenge),
              StatusIs(absl::StatusCode::kPermissionDenied, HasSubstr("expired")));
}

TEST(AzureMsiServerAttestor, RefusesAWrongAudience) {
  AzureFixture f;
  json c = f.Claims();
  c["aud"] = "https://graph.microsoft.com/";
  EXPECT_THAT(f.Server()->Attest(Payload(f.entra.Sign(c)), kNoChallenge),
              StatusIs(absl::StatusCode::kPermissionDenied, HasSubstr("audience")));
}

TEST(AzureMsiServerAttestor, RefusesAnIssuerOfAnotherTenant) {
  AzureFixture f;
  json c = f.Claims();
  c["iss"] = std::string("https://sts.windows.net/") + kOtherTenant + "/";
  EXPECT_THAT(f.Server()->Attest(Payload(f.entra.Sign(c)), kNoChallenge),
              StatusIs(absl::StatusCode::kPermissionDenied, HasSubstr("issuer")));
  c["iss"] = std::string("https://login.microsoftonline.com/") + kTenant + "/v2.0";
  EXPECT_THAT(f.Server()->Attest(Payload(f.entra.Sign(c)), kNoChallenge),
              StatusIs(absl::StatusCode::kPermissionDenied, HasSubstr("issuer")));
}

TEST(AzureMsiServerAttestor, RefusesATokenWithoutPrincipal) {
  AzureFixture f;
  json c = f.Claims();
  c.erase("sub");
  EXPECT_THAT(f.Server()->Attest(Payload(f.entra.Sign(c)), kNoChallenge),
              StatusIs(absl::StatusCode::kPermissionDenied, HasSubstr("\"sub\"")));
  c["sub"] = "../../x";
  EXPECT_THAT(f.Server()->Attest(Payload(f.entra.Sign(c)), kNoChallenge),
              StatusIs(absl::StatusCode::kPermissionDenied, HasSubstr("principal")));
}

TEST(AzureMsiServerAttestor, RefusesMalformedPayloads) {
  AzureFixture f;
  auto server = f.Server();
  for (const std::string& bad :
       {std::string(""), std::string("not json"), std::string("[]"), std::string("{}"),
        std::string(R"({"token": 5})"), std::string(R"({"token": ""})"),
        std::string(R"({"token": "a.b"})"), std::string(R"({"token": "a.!!.c"})"),
        Payload(f.Token()).replace(2, 5, "tokne"), std::string(40000, ' ')}) {
    EXPECT_THAT(server->Attest(bad, kNoChallenge),
                StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("azure_msi: ")))
        << bad.substr(0, 40);
  }
}

TEST(AzureMsiServerAttestor, KeyServerDownOrMalformedIsUnavailable) {
  AzureFixture f;
  f.keys.SetBody("<html>oops</html>", 200);
  EXPECT_THAT(f.Server()->Attest(Payload(f.Token()), kNoChallenge),
              StatusIs(absl::StatusCode::kUnavailable, HasSubstr(kTenant)));
  f.keys.Stop();
  EXPECT_THAT(f.Server()->Attest(Payload(f.Token()), kNoChallenge),
              StatusIs(absl::StatusCode::kUnavailable, HasSubstr("cannot reach")));
}

TEST(AzureMsiServerAttestor, RefusesBadConfigurations) {
  AzureFixture f;
  auto config = f.config;
  config.tenants.clear();
  EXPECT_THAT(AzureMsiServerAttestor::Create(f.td, config, f.clock),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("tenant")));
  config = f.config;
  config.tenants["bad/tenant"] = {};
  EXPECT_THAT(AzureMsiServerAttestor::Create(f.td, config, f.clock),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("bad/tenant")));
  config = f.config;
  config.jwks_url = "http://login.microsoftonline.com/{tenant}/discovery/v2.0/keys";
  EXPECT_THAT(AzureMsiServerAttestor::Create(f.td, config, f.clock),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("https://")));
  config = f.config;
  config.agent_path_template = "{{ .TenantID }}/{{ .VMName }}";
  EXPECT_THAT(AzureMsiServerAttestor::Create(f.td, config, f.clock),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("VMName")));
}

TEST(AzureMsiServerAttestor, AgentPathTemplateShapesTheId) {
  AzureFixture f;
  f.config.agent_path_template = "{{ .PluginName }}/{{ .PrincipalID }}";
  EXPECT_EQ(Must(f.Server()->Attest(Payload(f.Token()), kNoChallenge)).agent_id.String(),
            std::string("spiffe://example.org/spire/agent/azure_msi/") + kPrincipal);
}

TEST(AzureMsiServerAttestor, ReadsKeysFromAFile) {
  AzureFixture f;
  f.config.jwks_url =
      f.tls.dir().Write(std::string(kTenant) + ".json", cloudtest::Jwks({&f.entra}));
  f.config.jwks_url.replace(f.config.jwks_url.find(kTenant), std::string(kTenant).size(),
                            "{tenant}");
  EXPECT_THAT(f.Server()->Attest(Payload(f.Token()), kNoChallenge), IsOk());
}

TEST(AzureMsiAgentAttestor, AsksImdsForATokenForTheResource) {
  FakeAzureImds imds;
  imds.SetToken("header.claims.signature");
  common::config::AzureMsiAgentAttestorConfig config;
  config.metadata_endpoint = imds.base_url();
  auto agent = Must(AzureMsiAgentAttestor::Create(config));
  EXPECT_EQ(agent->Name(), "azure_msi");
  std::string payload = Must(agent->Payload());
  EXPECT_EQ(json::parse(payload), (json{{"token", "header.claims.signature"}}));
  EXPECT_EQ(imds.resource(), "https://management.azure.com/");
  EXPECT_EQ(imds.api_version(), "2018-02-01");
  EXPECT_THAT(agent->Answer("x"), StatusIs(absl::StatusCode::kInvalidArgument));
}

TEST(AzureMsiAgentAttestor, FakeImdsRequiresTheMetadataHeader) {
  FakeAzureImds imds;
  imds.SetToken("t");
  cloud_jwt::HttpOptions http;
  auto res = Must(cloud_jwt::HttpRequest(
      "GET", imds.base_url() + "/metadata/identity/oauth2/token?api-version=2018-02-01&resource=x",
      {}, http));
  EXPECT_EQ(res.status, 400);
  EXPECT_THAT(res.body, HasSubstr("metadata header"));
}

TEST(AzureMsiAgentAttestor, ReportsImdsFailures) {
  FakeAzureImds imds;
  common::config::AzureMsiAgentAttestorConfig config;
  config.metadata_endpoint = imds.base_url() + "/";
  config.resource_id = "api://trellis";
  auto agent = Must(AzureMsiAgentAttestor::Create(config));
  imds.SetToken("t", 500);
  EXPECT_THAT(agent->Payload(), StatusIs(absl::StatusCode::kUnavailable, HasSubstr("HTTP 500")));
  EXPECT_EQ(imds.resource(), "api://trellis");
  imds.SetToken("t", 200);
  imds.SetRawBody(R"({"token_type":"Bearer"})");
  EXPECT_THAT(agent->Payload(),
              StatusIs(absl::StatusCode::kUnavailable, HasSubstr("no access_token")));
  imds.SetRawBody("not json");
  EXPECT_THAT(agent->Payload(),
              StatusIs(absl::StatusCode::kUnavailable, HasSubstr("no access_token")));
  imds.Stop();
  EXPECT_THAT(agent->Payload(),
              StatusIs(absl::StatusCode::kUnavailable, HasSubstr("cannot reach")));
}

TEST(AzureMsiAgentAttestor, RefusesBadEndpoints) {
  common::config::AzureMsiAgentAttestorConfig config;
  for (const char* bad : {"", "169.254.169.254", "ftp://x", "http://x?y=1"}) {
    config.metadata_endpoint = bad;
    EXPECT_THAT(AzureMsiAgentAttestor::Create(config), StatusIs(absl::StatusCode::kInvalidArgument))
        << bad;
  }
}

TEST(AzureMsi, AgentPayloadAttestsOnTheServer) {
  AzureFixture f;
  FakeAzureImds imds;
  imds.MintTokens(&f.entra, kTenant, kPrincipal,
                  cloudtest::SystemAssignedMirid(kSubscription, "rg-web", "node-7"));
  common::config::AzureMsiAgentAttestorConfig config;
  config.metadata_endpoint = imds.base_url();
  std::string payload = Must(Must(AzureMsiAgentAttestor::Create(config))->Payload());
  auto result = Must(f.Server()->Attest(payload, kNoChallenge));
  EXPECT_EQ(result.agent_id.String(), std::string("spiffe://example.org/spire/agent/azure_msi/") +
                                          kTenant + "/" + kPrincipal);
  EXPECT_THAT(
      SelectorValues(result),
      ElementsAre(std::string("tenant-id:") + kTenant, std::string("principal-id:") + kPrincipal,
                  std::string("subscription-id:") + kSubscription, "vm-name:rg-web:node-7"));
}

}  // namespace
}  // namespace trellis::attestors
