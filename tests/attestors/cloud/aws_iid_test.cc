// aws_iid: the agent against a fake IMDSv2, the server's signature and policy checks, the
// EC2/IAM lookups against a fake query API, and SigV4 against AWS's published example.
#include "attestors/cloud/aws_iid.h"

#include <httplib.h>

#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "absl/strings/str_replace.h"
#include "common/clock.h"
#include "common/https_url.h"
#include "common/openssl_util.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/attestors/cloud/fake_aws.h"
#include "tests/testutil/status_matchers.h"
#include "tests/testutil/temp_dir.h"

namespace trellis::attestors {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::UnorderedElementsAre;
using ::testing::UnorderedElementsAreArray;
using testutil::IsOk;
using testutil::StatusIs;

constexpr char kAccessKeyId[] = "AKIAIOSFODNN7EXAMPLE";
constexpr char kSecretKey[] = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";
constexpr char kAgentId[] =
    "spiffe://example.org/spire/agent/aws_iid/123456789012/us-east-1/i-0123456789abcdef0";
constexpr char kProfileArn[] = "arn:aws:iam::123456789012:instance-profile/web/WebServer";
constexpr char kRoleArn[] = "arn:aws:iam::123456789012:role/web/WebServerRole";

const auto kNoChallenge = [](std::string) -> absl::StatusOr<std::string> {
  return absl::InternalError("aws_iid must not challenge");
};

datastore::Selector Sel(const std::string& value) { return {"aws_iid", value}; }

std::vector<datastore::Selector> BaseSelectors() {
  return {Sel("az:us-east-1a"), Sel("image:id:ami-0abcdef1234567890"),
          Sel("instance:id:i-0123456789abcdef0"), Sel("region:us-east-1")};
}

std::string PayloadOf(const std::string& doc, const std::string& signature,
                      const std::string& rsa2048) {
  nlohmann::json j = {{"document", doc}};
  if (!signature.empty()) j["signature"] = signature;
  if (!rsa2048.empty()) j["rsa2048_signature"] = rsa2048;
  return j.dump();
}

class AwsIidTest : public ::testing::Test {
 protected:
  AwsIidTest() : clock_(absl::FromUnixSeconds(1800000000)) {}  // 2027-01-15T08:00:00Z

  absl::StatusOr<std::unique_ptr<AwsIidServerAttestor>> Server(
      const common::config::AwsIidServerAttestorConfig& config,
      std::map<std::string, std::string> pems = {}) {
    if (pems.empty()) pems[""] = aws_.CertPem();
    return AwsIidServerAttestor::CreateWithCertificates(*common::TrustDomain::Parse("example.org"),
                                                        config, pems, clock_);
  }

  absl::StatusOr<ServerNodeAttestor::Result> Attest(
      const common::config::AwsIidServerAttestorConfig& config, const std::string& payload) {
    auto server = Server(config);
    if (!server.ok()) return server.status();
    return (*server)->Attest(payload, kNoChallenge);
  }

  // A payload as the agent builds it from the fake IMDS serving `doc` signed by aws_.
  std::string AgentPayload(const std::string& doc) {
    imds_.ServeSigned(doc, aws_);
    common::config::AwsIidAgentAttestorConfig config;
    config.ec2_metadata_endpoint = imds_.endpoint();
    auto agent = AwsIidAgentAttestor::Create(config);
    EXPECT_THAT(agent, IsOk());
    auto payload = (*agent)->Payload();
    EXPECT_THAT(payload, IsOk());
    return payload.ok() ? *payload : "";
  }

  common::config::AwsIidServerAttestorConfig ApiConfig() {
    common::config::AwsIidServerAttestorConfig config;
    config.access_key_id = kAccessKeyId;
    config.secret_access_key = kSecretKey;
    config.ec2_endpoint = api_.endpoint();
    config.iam_endpoint = api_.endpoint();
    return config;
  }

  common::FakeClock clock_;
  fakeaws::Signer aws_{"Fake AWS us-east-1"};
  fakeaws::FakeImds imds_;
  fakeaws::FakeAwsApi api_{{kAccessKeyId, kSecretKey}};
  fakeaws::Document doc_;
};

// ---- Happy paths ----

TEST_F(AwsIidTest, AttestsAgentPayloadWithExactIdAndSelectors) {
  std::string payload = AgentPayload(doc_.ToJson());
  auto result = Attest({}, payload);
  ASSERT_THAT(result, IsOk());
  EXPECT_EQ(result->agent_id.String(), kAgentId);
  EXPECT_THAT(result->selectors, UnorderedElementsAreArray(BaseSelectors()));
  EXPECT_FALSE(result->reattestable);
  EXPECT_EQ(imds_.tokens_issued(), 1);
  EXPECT_EQ(imds_.unauthorized(), 0);
}

TEST_F(AwsIidTest, AgentPayloadCarriesDocumentAndBothSignatures) {
  std::string payload = AgentPayload(doc_.ToJson());
  auto j = nlohmann::json::parse(payload);
  EXPECT_EQ(j["document"], doc_.ToJson());
  EXPECT_EQ(j["signature"], aws_.Signature(doc_.ToJson()));
  EXPECT_TRUE(j["rsa2048_signature"].is_string());
}

TEST_F(AwsIidTest, ReattestableFollowsAllowReattestation) {
  common::config::AwsIidServerAttestorConfig config;
  config.allow_reattestation = true;
  auto result = Attest(config, AgentPayload(doc_.ToJson()));
  ASSERT_THAT(result, IsOk());
  EXPECT_TRUE(result->reattestable);
}

TEST_F(AwsIidTest, FallsBackToBase64SignatureWithoutRsa2048) {
  const std::string doc = doc_.ToJson();
  imds_.Serve(doc, aws_.Signature(doc), /*rsa2048=*/"");
  common::config::AwsIidAgentAttestorConfig agent_config;
  agent_config.ec2_metadata_endpoint = imds_.endpoint();
  auto agent = AwsIidAgentAttestor::Create(agent_config);
  ASSERT_THAT(agent, IsOk());
  auto payload = (*agent)->Payload();
  ASSERT_THAT(payload, IsOk());
  EXPECT_FALSE(nlohmann::json::parse(*payload).contains("rsa2048_signature"));
  auto result = Attest({}, *payload);
  ASSERT_THAT(result, IsOk());
  EXPECT_EQ(result->agent_id.String(), kAgentId);
}

TEST_F(AwsIidTest, AcceptsPkcs7WithAttachedDocument) {
  const std::string doc = doc_.ToJson();
  auto result = Attest({}, PayloadOf(doc, "", aws_.Rsa2048(doc, /*detached=*/false)));
  ASSERT_THAT(result, IsOk());
  EXPECT_EQ(result->agent_id.String(), kAgentId);
}

TEST_F(AwsIidTest, AcceptsRsa1024CertificateForBase64Signature) {
  // AWS's certificates for the base64 signature are RSA-1024 in most regions.
  fakeaws::Signer legacy("Fake AWS RSA", 1024);
  const std::string doc = doc_.ToJson();
  auto server = Server({}, {{"us-east-1", legacy.CertPem()}});
  ASSERT_THAT(server, IsOk());
  EXPECT_THAT((*server)->Attest(PayloadOf(doc, legacy.Signature(doc), ""), kNoChallenge), IsOk());
}

TEST_F(AwsIidTest, DescribeInstancesAddsTagGroupAndRoleSelectors) {
  fakeaws::FakeAwsApi::Instance instance;
  instance.tags = {{"Name", "web-1"}, {"team", "payments"}};
  instance.security_groups = {{"sg-0aaa", "web"}, {"sg-0bbb", "ssh"}};
  instance.instance_profile_arn = kProfileArn;
  api_.AddInstance(instance);
  api_.AddInstanceProfile(kProfileArn, {kRoleArn});

  auto result = Attest(ApiConfig(), AgentPayload(doc_.ToJson()));
  ASSERT_THAT(result, IsOk());
  EXPECT_EQ(result->agent_id.String(), kAgentId);
  std::vector<datastore::Selector> want = BaseSelectors();
  for (const char* s : {"tag:Name:web-1", "tag:team:payments", "sg:id:sg-0aaa", "sg:id:sg-0bbb",
                        "sg:name:web", "sg:name:ssh"}) {
    want.push_back(Sel(s));
  }
  want.push_back(Sel(std::string("iamrole:") + kRoleArn));
  EXPECT_THAT(result->selectors, UnorderedElementsAreArray(want));
  auto calls = api_.calls();
  ASSERT_EQ(calls.size(), 2u);
  EXPECT_EQ(calls[0].service, "ec2");
  EXPECT_EQ(calls[0].region, "us-east-1");
  EXPECT_EQ(calls[0].action, "DescribeInstances");
  EXPECT_EQ(calls[1].service, "iam");
  EXPECT_EQ(calls[1].region, "us-east-1");
  EXPECT_EQ(calls[1].action, "GetInstanceProfile");
}

TEST_F(AwsIidTest, DisabledInstanceProfileSelectorsSkipIam) {
  fakeaws::FakeAwsApi::Instance instance;
  instance.instance_profile_arn = kProfileArn;
  api_.AddInstance(instance);
  auto config = ApiConfig();
  config.disable_instance_profile_selectors = true;
  auto result = Attest(config, AgentPayload(doc_.ToJson()));
  ASSERT_THAT(result, IsOk());
  EXPECT_THAT(result->selectors, UnorderedElementsAreArray(BaseSelectors()));
  ASSERT_EQ(api_.calls().size(), 1u);
  EXPECT_EQ(api_.calls()[0].action, "DescribeInstances");
}

TEST_F(AwsIidTest, AgentPathTemplateCanUseTags) {
  fakeaws::FakeAwsApi::Instance instance;
  instance.tags = {{"Name", "web-1"}};
  api_.AddInstance(instance);
  auto config = ApiConfig();
  config.agent_path_template = "/{{ .PluginName }}/{{ .Region }}/{{ .Tags.Name }}";
  auto result = Attest(config, AgentPayload(doc_.ToJson()));
  ASSERT_THAT(result, IsOk());
  EXPECT_EQ(result->agent_id.String(), "spiffe://example.org/spire/agent/aws_iid/us-east-1/web-1");
}

TEST_F(AwsIidTest, AgentPathTemplateRefusesMissingTag) {
  api_.AddInstance({});
  auto config = ApiConfig();
  config.agent_path_template = "{{ .Tags.Name }}";
  EXPECT_THAT(Attest(config, AgentPayload(doc_.ToJson())),
              StatusIs(absl::StatusCode::kPermissionDenied, HasSubstr("Tags.Name")));
}

TEST_F(AwsIidTest, AgentPathTemplateRefusesATagValueThatIsNotOnePathSegment) {
  auto config = ApiConfig();
  config.agent_path_template = "/{{ .PluginName }}/{{ .Tags.Name }}/{{ .InstanceID }}";
  // Tag values may hold any character; these would add or name other path segments.
  for (const char* bad : {"web/1", "../../spire/server", "..", ".", ""}) {
    fakeaws::FakeAwsApi::Instance instance;
    instance.tags = {{"Name", bad}};
    api_.AddInstance(instance);
    EXPECT_THAT(Attest(config, AgentPayload(doc_.ToJson())),
                StatusIs(absl::StatusCode::kPermissionDenied,
                         HasSubstr("agent_path_template field \"Tags.Name\"")))
        << bad;
  }
}

// ---- Refusals: signatures ----

TEST_F(AwsIidTest, RefusesDocumentAlteredAfterSigning) {
  const std::string doc = doc_.ToJson();
  const std::string altered = absl::StrReplaceAll(doc, {{"i-0123456789abcdef0", "i-0evil"}});
  EXPECT_THAT(Attest({}, PayloadOf(altered, "", aws_.Rsa2048(doc))),
              StatusIs(absl::StatusCode::kPermissionDenied,
                       HasSubstr("aws_iid: the rsa2048 signature does not verify")));
  EXPECT_THAT(Attest({}, PayloadOf(altered, aws_.Signature(doc), "")),
              StatusIs(absl::StatusCode::kPermissionDenied,
                       HasSubstr("aws_iid: the signature does not verify")));
}

TEST_F(AwsIidTest, RefusesAttachedPkcs7OfAnotherDocument) {
  const std::string doc = doc_.ToJson();
  fakeaws::Document other = doc_;
  other.instance_id = "i-0other";
  EXPECT_THAT(Attest({}, PayloadOf(doc, "", aws_.Rsa2048(other.ToJson(), false))),
              StatusIs(absl::StatusCode::kPermissionDenied, HasSubstr("different document")));
}

TEST_F(AwsIidTest, RefusesSignatureFromAnotherKey) {
  // The impostor's PKCS#7 carries its own certificate; only configured ones may sign, whether
  // the impostor names itself as the configured certificate's issuer or not.
  const std::string doc = doc_.ToJson();
  for (const char* name : {"Fake AWS us-east-1", "Impostor"}) {
    fakeaws::Signer impostor(name);
    EXPECT_THAT(Attest({}, PayloadOf(doc, "", impostor.Rsa2048(doc))),
                StatusIs(absl::StatusCode::kPermissionDenied, HasSubstr("does not verify")))
        << name;
    EXPECT_THAT(Attest({}, PayloadOf(doc, "", impostor.Rsa2048(doc, false))),
                StatusIs(absl::StatusCode::kPermissionDenied, HasSubstr("does not verify")))
        << name;
    EXPECT_THAT(Attest({}, PayloadOf(doc, impostor.Signature(doc), "")),
                StatusIs(absl::StatusCode::kPermissionDenied, HasSubstr("does not verify")))
        << name;
  }
}

TEST_F(AwsIidTest, RefusesUnknownRegion) {
  fakeaws::Document eu = doc_;
  eu.region = "eu-west-1";
  eu.availability_zone = "eu-west-1a";
  const std::string doc = eu.ToJson();
  auto server = Server({}, {{"us-east-1", aws_.CertPem()}});
  ASSERT_THAT(server, IsOk());
  EXPECT_THAT((*server)->Attest(PayloadOf(doc, "", aws_.Rsa2048(doc)), kNoChallenge),
              StatusIs(absl::StatusCode::kPermissionDenied,
                       HasSubstr("no AWS certificate is configured for region eu-west-1")));
  EXPECT_THAT((*server)->Attest(AgentPayload(doc_.ToJson()), kNoChallenge), IsOk());
}

TEST_F(AwsIidTest, RegionCertificateDoesNotVouchForAnotherRegion) {
  fakeaws::Signer eu_signer("Fake AWS eu-west-1");
  fakeaws::Document eu = doc_;
  eu.region = "eu-west-1";
  const std::string doc = eu.ToJson();
  auto server = Server({}, {{"us-east-1", aws_.CertPem()}, {"eu-west-1", eu_signer.CertPem()}});
  ASSERT_THAT(server, IsOk());
  EXPECT_THAT((*server)->Attest(PayloadOf(doc, "", eu_signer.Rsa2048(doc)), kNoChallenge), IsOk());
  EXPECT_THAT((*server)->Attest(PayloadOf(doc, "", aws_.Rsa2048(doc)), kNoChallenge),
              StatusIs(absl::StatusCode::kPermissionDenied, HasSubstr("region eu-west-1")));
}

// ---- Refusals: policy ----

TEST_F(AwsIidTest, RefusesAccountNotAllowed) {
  common::config::AwsIidServerAttestorConfig config;
  config.account_ids = {"999999999999"};
  const std::string payload = AgentPayload(doc_.ToJson());
  EXPECT_THAT(Attest(config, payload), StatusIs(absl::StatusCode::kPermissionDenied,
                                                HasSubstr("account 123456789012 is not allowed")));
  config.account_ids.push_back("123456789012");
  EXPECT_THAT(Attest(config, payload), IsOk());
}

TEST_F(AwsIidTest, RefusesDocumentOlderThanMaxAge) {
  common::config::AwsIidServerAttestorConfig config;
  config.max_document_age = absl::Minutes(10);
  const std::string payload = AgentPayload(doc_.ToJson());
  clock_.Advance(absl::Minutes(10));
  EXPECT_THAT(Attest(config, payload), IsOk());
  clock_.Advance(absl::Seconds(1));
  EXPECT_THAT(Attest(config, payload),
              StatusIs(absl::StatusCode::kPermissionDenied, HasSubstr("max_document_age")));
  config.max_document_age = absl::ZeroDuration();  // no limit
  EXPECT_THAT(Attest(config, payload), IsOk());
}

// ---- Refusals: malformed input ----

TEST_F(AwsIidTest, RefusesMalformedPayloads) {
  const std::string doc = doc_.ToJson();
  const std::string rsa = aws_.Rsa2048(doc);
  for (const std::string& payload :
       {std::string(), std::string("not json"), std::string("[1]"),
        std::string(R"({"signature":"AAAA"})"), std::string(R"({"document":7,"signature":"x"})"),
        PayloadOf(doc, "", ""), PayloadOf(doc, "", "%%%not-base64%%%"),
        PayloadOf(doc, "", fakeaws::Base64("not a PKCS#7 structure")), PayloadOf(doc, "@@", ""),
        std::string(70 * 1024, '{')}) {
    EXPECT_THAT(Attest({}, payload),
                StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("aws_iid: ")))
        << payload.substr(0, 80);
  }
}

TEST_F(AwsIidTest, RefusesDocumentThatIsNotJson) {
  const std::string doc = "accountId=123456789012";
  EXPECT_THAT(Attest({}, PayloadOf(doc, "", aws_.Rsa2048(doc))),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("not a JSON object")));
}

TEST_F(AwsIidTest, RefusesDocumentMissingFields) {
  for (const char* field :
       {"accountId", "region", "instanceId", "availabilityZone", "imageId", "pendingTime"}) {
    auto j = nlohmann::json::parse(doc_.ToJson());
    j.erase(field);
    const std::string doc = j.dump(2);
    EXPECT_THAT(Attest({}, PayloadOf(doc, "", aws_.Rsa2048(doc))),
                StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr(field)))
        << field;
  }
}

TEST_F(AwsIidTest, RefusesDocumentWithBadFieldValues) {
  for (auto [field, value] :
       std::vector<std::pair<std::string, std::string>>{{"accountId", "12345678901a"},
                                                        {"instanceId", "i-0/../../evil"},
                                                        {"pendingTime", "yesterday"}}) {
    auto j = nlohmann::json::parse(doc_.ToJson());
    j[field] = value;
    const std::string doc = j.dump(2);
    EXPECT_THAT(Attest({}, PayloadOf(doc, "", aws_.Rsa2048(doc))),
                StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr(field)))
        << field;
  }
}

// ---- IMDS ----

TEST_F(AwsIidTest, ImdsRefusesRequestsWithoutToken) {
  imds_.ServeSigned(doc_.ToJson(), aws_);
  httplib::Client client(imds_.endpoint());
  auto res = client.Get("/latest/dynamic/instance-identity/document");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 401);
  res = client.Get("/latest/dynamic/instance-identity/document",
                   {{"X-aws-ec2-metadata-token", "guessed"}});
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 401);
  res = client.Put("/latest/api/token", "", "text/plain");  // no TTL header
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 400);
  EXPECT_EQ(imds_.unauthorized(), 2);
  // The agent asks for a token first, so none of its requests is refused.
  AgentPayload(doc_.ToJson());
  EXPECT_EQ(imds_.unauthorized(), 2);
}

TEST_F(AwsIidTest, AgentFailsWhenImdsRefusesToken) {
  imds_.ServeSigned(doc_.ToJson(), aws_);
  imds_.RefuseTokens(true);
  common::config::AwsIidAgentAttestorConfig config;
  config.ec2_metadata_endpoint = imds_.endpoint();
  auto agent = AwsIidAgentAttestor::Create(config);
  ASSERT_THAT(agent, IsOk());
  EXPECT_THAT((*agent)->Payload(),
              StatusIs(absl::StatusCode::kUnavailable, HasSubstr("session token")));
}

TEST_F(AwsIidTest, AgentFailsWhenImdsUnreachable) {
  std::string endpoint;
  {
    fakeaws::FakeImds gone;
    endpoint = gone.endpoint();
  }
  common::config::AwsIidAgentAttestorConfig config;
  config.ec2_metadata_endpoint = endpoint;
  auto agent = AwsIidAgentAttestor::Create(config);
  ASSERT_THAT(agent, IsOk());
  EXPECT_THAT((*agent)->Payload(), StatusIs(absl::StatusCode::kUnavailable,
                                            HasSubstr("aws_iid: instance metadata service")));
}

TEST_F(AwsIidTest, AgentFailsWithoutDocument) {
  imds_.Serve("", "c2ln", "");
  common::config::AwsIidAgentAttestorConfig config;
  config.ec2_metadata_endpoint = imds_.endpoint();
  auto agent = AwsIidAgentAttestor::Create(config);
  ASSERT_THAT(agent, IsOk());
  EXPECT_THAT((*agent)->Payload(), StatusIs(absl::StatusCode::kUnavailable, HasSubstr("HTTP 404")));
}

TEST(AwsIidAgentTest, HasNoChallengeAndChecksEndpoint) {
  common::config::AwsIidAgentAttestorConfig config;
  auto agent = AwsIidAgentAttestor::Create(config);  // default 169.254.169.254; not contacted
  ASSERT_THAT(agent, IsOk());
  EXPECT_EQ((*agent)->Name(), "aws_iid");
  EXPECT_THAT((*agent)->Answer("nonce"), StatusIs(absl::StatusCode::kInvalidArgument));
  for (const char* bad : {"169.254.169.254", "ftp://169.254.169.254", "http://",
                          "http://169.254.169.254/latest", "http://h:99999"}) {
    config.ec2_metadata_endpoint = bad;
    EXPECT_THAT(AwsIidAgentAttestor::Create(config), StatusIs(absl::StatusCode::kInvalidArgument))
        << bad;
  }
}

// ---- EC2 / IAM ----

TEST_F(AwsIidTest, Ec2ErrorAnswersRefuse) {
  const std::string payload = AgentPayload(doc_.ToJson());
  // Unknown instance: EC2's own 400.
  EXPECT_THAT(Attest(ApiConfig(), payload), StatusIs(absl::StatusCode::kPermissionDenied,
                                                     HasSubstr("InvalidInstanceID.NotFound")));
  api_.AddInstance({});
  api_.FailWith(403, "UnauthorizedOperation", "You are not authorized to perform this operation.");
  EXPECT_THAT(Attest(ApiConfig(), payload),
              StatusIs(absl::StatusCode::kPermissionDenied,
                       HasSubstr("HTTP 403 (UnauthorizedOperation: You are not authorized")));
  api_.FailWith(503, "Unavailable", "The server is overloaded.");
  EXPECT_THAT(Attest(ApiConfig(), payload),
              StatusIs(absl::StatusCode::kUnavailable, HasSubstr("HTTP 503")));
  api_.FailWith(0, "", "");
  api_.AnswerRaw("<DescribeInstancesResponse><reservationSet>");
  EXPECT_THAT(Attest(ApiConfig(), payload),
              StatusIs(absl::StatusCode::kUnavailable, HasSubstr("malformed XML")));
  api_.AnswerRaw("");
  EXPECT_THAT(Attest(ApiConfig(), payload), IsOk());
}

TEST_F(AwsIidTest, Ec2RefusesWrongSecret) {
  api_.AddInstance({});
  auto config = ApiConfig();
  config.secret_access_key = "not-the-secret";
  EXPECT_THAT(Attest(config, AgentPayload(doc_.ToJson())),
              StatusIs(absl::StatusCode::kPermissionDenied, HasSubstr("SignatureDoesNotMatch")));
  EXPECT_THAT(api_.calls(), IsEmpty());
}

TEST_F(AwsIidTest, Ec2UnreachableIsUnavailable) {
  auto config = ApiConfig();
  {
    fakeaws::FakeImds gone;
    config.ec2_endpoint = gone.endpoint();
  }
  EXPECT_THAT(Attest(config, AgentPayload(doc_.ToJson())),
              StatusIs(absl::StatusCode::kUnavailable, HasSubstr("EC2 DescribeInstances")));
}

TEST_F(AwsIidTest, RefusesInstanceOfAnotherOwner) {
  fakeaws::FakeAwsApi::Instance instance;
  instance.owner_id = "210987654321";
  api_.AddInstance(instance);
  EXPECT_THAT(Attest(ApiConfig(), AgentPayload(doc_.ToJson())),
              StatusIs(absl::StatusCode::kPermissionDenied, HasSubstr("210987654321")));
}

TEST_F(AwsIidTest, RefusesSwappedRootVolumeUnlessSkipped) {
  fakeaws::FakeAwsApi::Instance instance;
  instance.root_attach_time = "2027-01-15T09:30:00.000Z";
  api_.AddInstance(instance);
  const std::string payload = AgentPayload(doc_.ToJson());
  auto config = ApiConfig();
  EXPECT_THAT(Attest(config, payload),
              StatusIs(absl::StatusCode::kPermissionDenied, HasSubstr("root volume")));
  config.skip_block_device = true;
  EXPECT_THAT(Attest(config, payload), IsOk());
}

TEST_F(AwsIidTest, InstanceStoreRootSkipsVolumeCheck) {
  fakeaws::FakeAwsApi::Instance instance;
  instance.root_device_type = "instance-store";
  instance.root_attach_time = "2027-01-15T09:30:00.000Z";
  api_.AddInstance(instance);
  EXPECT_THAT(Attest(ApiConfig(), AgentPayload(doc_.ToJson())), IsOk());
}

TEST_F(AwsIidTest, IamErrorRefuses) {
  fakeaws::FakeAwsApi::Instance instance;
  instance.instance_profile_arn = kProfileArn;
  api_.AddInstance(instance);  // no such profile in IAM
  EXPECT_THAT(Attest(ApiConfig(), AgentPayload(doc_.ToJson())),
              StatusIs(absl::StatusCode::kPermissionDenied, HasSubstr("NoSuchEntity")));
}

// ---- Configuration ----

TEST_F(AwsIidTest, RequiresCertificates) {
  auto created =
      AwsIidServerAttestor::Create(*common::TrustDomain::Parse("example.org"), {}, clock_);
  EXPECT_THAT(created, StatusIs(absl::StatusCode::kInvalidArgument,
                                HasSubstr("aws_ca_cert_paths is required")));
}

TEST_F(AwsIidTest, ReadsCertificatePathsWithOptionalRegion) {
  testutil::TempDir dir("awsiid");
  common::config::AwsIidServerAttestorConfig config;
  config.aws_ca_cert_paths = {"eu-west-1=" + dir.Write("eu.pem", aws_.CertPem())};
  auto td = *common::TrustDomain::Parse("example.org");
  auto server = AwsIidServerAttestor::Create(td, config, clock_);
  ASSERT_THAT(server, IsOk());
  EXPECT_THAT((*server)->Attest(AgentPayload(doc_.ToJson()), kNoChallenge),
              StatusIs(absl::StatusCode::kPermissionDenied, HasSubstr("us-east-1")));

  config.aws_ca_cert_paths = {dir.Write("all.pem", aws_.CertPem())};
  server = AwsIidServerAttestor::Create(td, config, clock_);
  ASSERT_THAT(server, IsOk());
  EXPECT_THAT((*server)->Attest(AgentPayload(doc_.ToJson()), kNoChallenge), IsOk());

  config.aws_ca_cert_paths = {dir.Sub("missing.pem")};
  EXPECT_THAT(AwsIidServerAttestor::Create(td, config, clock_),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("missing.pem")));
  config.aws_ca_cert_paths = {dir.Write("junk.pem", "not a certificate")};
  EXPECT_THAT(AwsIidServerAttestor::Create(td, config, clock_),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("no PEM certificate")));
}

TEST_F(AwsIidTest, RefusesBadConfiguration) {
  common::config::AwsIidServerAttestorConfig half;
  half.access_key_id = kAccessKeyId;
  EXPECT_THAT(Server(half),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("secret_access_key")));
  common::config::AwsIidServerAttestorConfig endpoint;
  endpoint.ec2_endpoint = "ec2.example";
  EXPECT_THAT(Server(endpoint),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("ec2_endpoint")));
  common::config::AwsIidServerAttestorConfig tmpl;
  tmpl.agent_path_template = "{{ .Nope }}";
  EXPECT_THAT(Server(tmpl), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("Nope")));
  tmpl.agent_path_template = "{{ .Tags.Name }}";  // tags need DescribeInstances
  EXPECT_THAT(Server(tmpl), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("tags")));
  EXPECT_THAT(Server({}, {{"not a region!", aws_.CertPem()}}),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("region name")));
  auto ec = testcerts::EcKey();
  auto ec_cert = testcerts::MakeCert("ec", ec.p, nullptr, ec.p, false);
  const std::string ec_pem = common::Certificate::FromDer(ec_cert.der)->ToPem();
  EXPECT_THAT(Server({}, {{"", ec_pem}}),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("RSA")));
}

// ---- SigV4 ----

// The worked example of AWS's "Signature Version 4 signing process" documentation: IAM
// ListUsers with the example credentials at 2015-08-30T12:36:00Z.
TEST(AwsSigV4Test, MatchesAwsPublishedExample) {
  AwsSigV4Request req;
  req.host = "iam.amazonaws.com";
  req.query = {{"Version", "2010-05-08"}, {"Action", "ListUsers"}};
  req.headers = {{"Content-Type", "application/x-www-form-urlencoded; charset=utf-8"}};
  absl::Time at;
  std::string err;
  ASSERT_TRUE(absl::ParseTime(absl::RFC3339_full, "2015-08-30T12:36:00Z", &at, &err));
  AwsSigV4Signature sig = AwsSigV4Sign(
      req, {"AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"}, "us-east-1", "iam", at);
  EXPECT_EQ(sig.amz_date, "20150830T123600Z");
  EXPECT_EQ(sig.canonical_request,
            "GET\n/\nAction=ListUsers&Version=2010-05-08\n"
            "content-type:application/x-www-form-urlencoded; charset=utf-8\n"
            "host:iam.amazonaws.com\nx-amz-date:20150830T123600Z\n\n"
            "content-type;host;x-amz-date\n"
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  EXPECT_EQ(common::HexEncode(common::Sha256(sig.canonical_request)),
            "f536975d06c0309214f805bb90ccff089219ecd68b2577efef23edd43b7e1a59");
  EXPECT_EQ(sig.signature, "5d672d79c15b13162d9279b0855cfba6789a8edb4c82c400e06b5924a6f2b5d7");
  EXPECT_EQ(sig.authorization,
            "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/iam/aws4_request, "
            "SignedHeaders=content-type;host;x-amz-date, "
            "Signature=5d672d79c15b13162d9279b0855cfba6789a8edb4c82c400e06b5924a6f2b5d7");
}

TEST(AwsSigV4Test, EncodesAndSortsQuery) {
  EXPECT_EQ(common::PercentEncode("a b/c~d_e.f-g+h=i&"), "a%20b%2Fc~d_e.f-g%2Bh%3Di%26");
  AwsSigV4Request req;
  req.host = "ec2.us-east-1.amazonaws.com";
  req.query = {{"b", "2 3"}, {"InstanceId.1", "i-1"}, {"a", ""}};
  AwsSigV4Signature sig =
      AwsSigV4Sign(req, {"AKID", "secret"}, "us-east-1", "ec2", absl::FromUnixSeconds(0));
  EXPECT_EQ(sig.canonical_query, "InstanceId.1=i-1&a=&b=2%203");
  // Any change to what is signed changes the signature.
  req.query[0].second = "2 4";
  EXPECT_NE(
      AwsSigV4Sign(req, {"AKID", "secret"}, "us-east-1", "ec2", absl::FromUnixSeconds(0)).signature,
      sig.signature);
  EXPECT_NE(
      AwsSigV4Sign(req, {"AKID", "secret"}, "us-east-2", "ec2", absl::FromUnixSeconds(0)).signature,
      AwsSigV4Sign(req, {"AKID", "secret"}, "us-east-1", "ec2", absl::FromUnixSeconds(0))
          .signature);
}

}  // namespace
}  // namespace trellis::attestors
