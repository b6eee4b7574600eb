// The agent process around its pipeline, against an in-process fake of the server's Agent
// API: the Workload API on its socket (X.509 and cached JWT-SVIDs), /metrics, the health
// listener, and start-up failing before attestation when telemetry cannot be served.
#include "runtime/agent_runtime.h"

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/agent/fake_agent_server.h"
#include "tests/telemetry/scrape_util.h"

namespace trellis::runtime {
namespace {

using agent::testing::kToken;

class AgentRuntimeTest : public agent::testing::FakeAgentServerTest<Agent> {
 protected:
  Agent* StartAgent(const std::string& token, absl::Status* status = nullptr) {
    Agent::Options options;
    options.pipeline.join_token = token;
    auto agent = Agent::Create(Config(), options, common::SystemClock::Get());
    EXPECT_TRUE(agent.ok()) << agent.status();
    absl::Status s = (*agent)->Start();
    if (status) *status = s;
    agents_.push_back(std::move(*agent));
    return agents_.back().get();
  }
};

TEST_F(AgentRuntimeTest, JwtSvidIsCachedPerAudienceSet) {
  absl::Status st;
  Agent* agent = StartAgent(kToken, &st);
  ASSERT_TRUE(st.ok()) << st;
  ASSERT_TRUE(WaitForSvid(agent->pipeline().cache(), 1));
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

TEST_F(AgentRuntimeTest, WorkloadGetsItsSvidOverTheSocket) {
  absl::Status st;
  Agent* agent = StartAgent(kToken, &st);
  ASSERT_TRUE(st.ok()) << st;
  ASSERT_TRUE(WaitForSvid(agent->pipeline().cache(), 1));
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

TEST_F(AgentRuntimeTest, TelemetryCountsSyncsWorkloadCallsAndCachedSvids) {
  telemetry_.prometheus = common::config::PrometheusConfig{"127.0.0.1", 0};
  absl::Status st;
  Agent* agent = StartAgent(kToken, &st);
  ASSERT_TRUE(st.ok()) << st;
  ASSERT_TRUE(WaitForSvid(agent->pipeline().cache(), 1));
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
  EXPECT_THAT(
      SampleValue(text, "trellis_agent_rpc_requests_total",
                  {{"service", "SpiffeWorkloadAPI"}, {"method", "FetchJWTSVID"}, {"code", "OK"}}),
      ::testing::Optional(1.0));
  EXPECT_THAT(SampleValue(text, "trellis_agent_rpc_requests_total",
                          {{"method", "FetchJWTSVID"}, {"code", "INVALID_ARGUMENT"}}),
              ::testing::Optional(1.0));
  // The pipeline's own state: one entry, one minted SVID, the JWT-SVID fetched above, the
  // agent SVID's remaining life and the sync that published them.
  EXPECT_THAT(SampleValue(text, "trellis_agent_cached_entries", {}), ::testing::Optional(1.0));
  EXPECT_THAT(SampleValue(text, "trellis_agent_cached_jwt_svids", {}), ::testing::Optional(1.0));
  EXPECT_THAT(SampleValue(text, "trellis_agent_svids_minted_total", {}), ::testing::Optional(1.0));
  EXPECT_THAT(SampleValue(text, "trellis_agent_svid_remaining_lifetime_seconds", {}),
              ::testing::Optional(::testing::Gt(0.0)));
  EXPECT_THAT(SampleValue(text, "trellis_agent_sync_duration_seconds_count", {}),
              ::testing::Optional(::testing::Ge(1.0)));
  EXPECT_THAT(SampleValue(text, "trellis_agent_last_sync_age_seconds", {}),
              ::testing::Optional(::testing::Ge(0.0)));
  // Unary Workload API calls are no open streams.
  EXPECT_EQ(SampleValue(text, "trellis_agent_rpc_open_streams", {{"method", "FetchJWTSVID"}}),
            std::nullopt);
}

TEST_F(AgentRuntimeTest, UnusableTelemetryAddressFailsStart) {
  telemetry_.prometheus = common::config::PrometheusConfig{"no-such-host.invalid", 0};
  absl::Status st;
  StartAgent(kToken, &st);
  EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(fake_.attestations.load(), 0);
}

TEST_F(AgentRuntimeTest, HealthListenerReportsReadyOnceSynced) {
  common::config::AgentConfig config = Config();
  config.health_checks.listener_enabled = true;
  config.health_checks.bind_address = "127.0.0.1";
  config.health_checks.bind_port = 0;
  Agent::Options options;
  options.pipeline.join_token = kToken;
  auto agent = Agent::Create(config, options, common::SystemClock::Get());
  ASSERT_TRUE(agent.ok()) << agent.status();
  ASSERT_TRUE((*agent)->Start().ok());
  agents_.push_back(std::move(*agent));
  Agent* started = agents_.back().get();
  ASSERT_GT(started->health_port(), 0);
  ASSERT_TRUE(WaitForSvid(started->pipeline().cache(), 1));
  std::string ready = telemetry::testing::HttpGet(started->health_port(), "/ready");
  EXPECT_THAT(ready, ::testing::StartsWith("HTTP/1.0 200"));
  EXPECT_THAT(ready, ::testing::HasSubstr("\"workload_api\""));
  EXPECT_THAT(ready, ::testing::HasSubstr("\"agent_svid\""));
  std::string live = telemetry::testing::HttpGet(started->health_port(), "/live");
  EXPECT_THAT(live, ::testing::StartsWith("HTTP/1.0 200"));
  EXPECT_THAT(telemetry::testing::HttpGet(started->health_port(), "/nowhere"),
              ::testing::StartsWith("HTTP/1.0 404"));
}

TEST_F(AgentRuntimeTest, WithoutHealthChecksNothingListens) {
  absl::Status st;
  StartAgent(kToken, &st);
  ASSERT_TRUE(st.ok()) << st;
  EXPECT_EQ(agents_.back()->health_port(), 0);
  EXPECT_EQ(agents_.back()->metrics_port(), 0);
}

}  // namespace
}  // namespace trellis::runtime
