// Admin API over an in-process gRPC server on a Unix socket, backed by SQLite in a temp dir.
#include "server/admin_service.h"

#include <grpcpp/grpcpp.h>
#include <stdlib.h>

#include <atomic>
#include <filesystem>
#include <memory>
#include <string>

#include "common/keys.h"
#include "common/x509.h"
#include "datastore/factory.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testutil/temp_dir.h"

namespace trellis::server {
namespace {

using ::testing::HasSubstr;
using ::testing::MatchesRegex;
using v1::Admin;

common::TrustDomain Td(const std::string& name) { return *common::TrustDomain::Parse(name); }

class AdminServiceTest : public ::testing::Test {
 protected:
  void SetUp() override {
    tmp_ = std::make_unique<testutil::TempDir>("trellis-admin");
    dir_ = tmp_->path();
    auto ds = datastore::CreateDataStore("sqlite3", dir_ + "/ds.sqlite3");
    ASSERT_TRUE(ds.ok()) << ds.status();
    ds_ = std::move(*ds);
    AdminService::Options options(Td("example.org"));
    options.clock = &clock_;
    options.after_write = [this] { ++writes_; };
    service_ = std::make_unique<AdminService>(ds_.get(), std::move(options));
    grpc::ServerBuilder builder;
    std::string address = "unix:" + dir_ + "/api.sock";
    builder.AddListeningPort(address, grpc::InsecureServerCredentials());
    builder.RegisterService(service_.get());
    server_ = builder.BuildAndStart();
    ASSERT_NE(server_, nullptr);
    stub_ = Admin::NewStub(grpc::CreateChannel(address, grpc::InsecureChannelCredentials()));
  }
  void TearDown() override {
    if (server_) server_->Shutdown();
    tmp_.reset();
  }

  static v1::Entry MakeEntry(const std::string& spiffe_id, const std::string& parent_id,
                             const std::string& selector_value = "uid:1000") {
    v1::Entry e;
    e.set_spiffe_id(spiffe_id);
    e.set_parent_id(parent_id);
    v1::Selector* s = e.add_selectors();
    s->set_type("unix");
    s->set_value(selector_value);
    return e;
  }

  v1::BatchCreateEntryResponse Create(const std::vector<v1::Entry>& entries) {
    v1::BatchCreateEntryRequest req;
    for (const auto& e : entries) *req.add_entries() = e;
    v1::BatchCreateEntryResponse resp;
    grpc::ClientContext ctx;
    grpc::Status st = stub_->BatchCreateEntry(&ctx, req, &resp);
    EXPECT_TRUE(st.ok()) << st.error_message();
    return resp;
  }

  std::string CreateOne(const v1::Entry& e) {
    v1::BatchCreateEntryResponse resp = Create({e});
    EXPECT_EQ(resp.results_size(), 1);
    EXPECT_EQ(resp.results(0).status().code(), 0) << resp.results(0).status().message();
    return resp.results(0).entry().id();
  }

  void AddNode(const std::string& id, bool banned = false) {
    datastore::AttestedNode n;
    n.spiffe_id = id;
    n.attestation_data_type = "join_token";
    n.cert_serial_number = "01";
    n.cert_not_after = absl::FromUnixSeconds(2000000000);
    n.banned = banned;
    ASSERT_TRUE(ds_->CreateNode(n).ok());
  }

  common::FakeClock clock_{absl::FromUnixSeconds(1800000000)};
  std::unique_ptr<testutil::TempDir> tmp_;
  std::string dir_;
  std::unique_ptr<datastore::DataStore> ds_;
  std::unique_ptr<AdminService> service_;
  std::unique_ptr<grpc::Server> server_;
  std::unique_ptr<Admin::Stub> stub_;
  std::atomic<int> writes_{0};
};

const char kParent[] = "spiffe://example.org/spire/agent/join_token/abc";
const char kAgent[] = "spiffe://example.org/spire/agent/join_token/abc";

TEST_F(AdminServiceTest, CreateEntryReturnsStoredEntryWithId) {
  v1::BatchCreateEntryResponse resp = Create({MakeEntry("spiffe://example.org/app", kParent)});
  ASSERT_EQ(resp.results_size(), 1);
  EXPECT_EQ(resp.results(0).status().code(), 0);
  EXPECT_FALSE(resp.results(0).entry().id().empty());
  EXPECT_EQ(resp.results(0).entry().spiffe_id(), "spiffe://example.org/app");
  EXPECT_EQ(resp.results(0).entry().revision_number(), 0);
}

TEST_F(AdminServiceTest, CreateEntryTellsTheIndexAfterTheWrite) {
  CreateOne(MakeEntry("spiffe://example.org/app", kParent));
  EXPECT_EQ(writes_.load(), 1);
}

TEST_F(AdminServiceTest, CreateEntryOutsideTrustDomainIsInvalidNamingTheField) {
  v1::BatchCreateEntryResponse resp = Create({MakeEntry("spiffe://other.org/app", kParent)});
  ASSERT_EQ(resp.results_size(), 1);
  EXPECT_EQ(resp.results(0).status().code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(resp.results(0).status().message(), HasSubstr("spiffe_id"));
  EXPECT_EQ(writes_.load(), 0);
}

TEST_F(AdminServiceTest, CreateEntryWithParentOutsideTrustDomainIsInvalid) {
  v1::BatchCreateEntryResponse resp =
      Create({MakeEntry("spiffe://example.org/app", "spiffe://other.org/agent")});
  EXPECT_EQ(resp.results(0).status().code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(resp.results(0).status().message(), HasSubstr("parent_id"));
}

TEST_F(AdminServiceTest, CreateEntryWithoutSelectorsIsInvalid) {
  v1::Entry e = MakeEntry("spiffe://example.org/app", kParent);
  e.clear_selectors();
  v1::BatchCreateEntryResponse resp = Create({e});
  EXPECT_EQ(resp.results(0).status().code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(resp.results(0).status().message(), HasSubstr("selectors"));
}

TEST_F(AdminServiceTest, CreateEntryWithEmptySelectorValueIsInvalid) {
  v1::BatchCreateEntryResponse resp = Create({MakeEntry("spiffe://example.org/app", kParent, "")});
  EXPECT_EQ(resp.results(0).status().code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(resp.results(0).status().message(), HasSubstr("selectors"));
}

TEST_F(AdminServiceTest, CreateEntryWithPathTraversalIdIsInvalid) {
  v1::BatchCreateEntryResponse resp =
      Create({MakeEntry("spiffe://example.org/a/../admin", kParent)});
  EXPECT_EQ(resp.results(0).status().code(), grpc::StatusCode::INVALID_ARGUMENT);
}

TEST_F(AdminServiceTest, CreateEntryWithNegativeTtlIsInvalid) {
  v1::Entry e = MakeEntry("spiffe://example.org/app", kParent);
  e.set_x509_svid_ttl(-1);
  v1::BatchCreateEntryResponse resp = Create({e});
  EXPECT_EQ(resp.results(0).status().code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(resp.results(0).status().message(), HasSubstr("x509_svid_ttl"));
}

TEST_F(AdminServiceTest, CreateEntryFederatingWithOwnTrustDomainIsInvalid) {
  v1::Entry e = MakeEntry("spiffe://example.org/app", kParent);
  e.add_federates_with("example.org");
  v1::BatchCreateEntryResponse resp = Create({e});
  EXPECT_EQ(resp.results(0).status().code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(resp.results(0).status().message(), HasSubstr("federates_with"));
}

TEST_F(AdminServiceTest, BatchCreateReportsEachItemOnItsOwn) {
  v1::BatchCreateEntryResponse resp =
      Create({MakeEntry("spiffe://example.org/a", kParent), MakeEntry("bad", kParent),
              MakeEntry("spiffe://example.org/b", kParent)});
  ASSERT_EQ(resp.results_size(), 3);
  EXPECT_EQ(resp.results(0).status().code(), 0);
  EXPECT_EQ(resp.results(1).status().code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(resp.results(2).status().code(), 0);
  EXPECT_EQ(*ds_->CountEntries(), 2);
}

TEST_F(AdminServiceTest, BatchCreateWithOneConflictStillStoresTheOthers) {
  std::string id = CreateOne(MakeEntry("spiffe://example.org/app", kParent));
  v1::BatchCreateEntryResponse resp =
      Create({MakeEntry("spiffe://example.org/x", kParent),
              MakeEntry("spiffe://example.org/app", kParent),
              MakeEntry("spiffe://example.org/y", kParent)});
  ASSERT_EQ(resp.results_size(), 3);
  EXPECT_EQ(resp.results(0).status().code(), 0);
  EXPECT_EQ(resp.results(1).status().code(), grpc::StatusCode::ALREADY_EXISTS);
  EXPECT_EQ(resp.results(1).entry().id(), id);
  EXPECT_EQ(resp.results(2).status().code(), 0);
  EXPECT_EQ(*ds_->CountEntries(), 3);
}

TEST_F(AdminServiceTest, BatchCreateStoresAConflictFreeBatchInOneTransaction) {
  std::vector<v1::Entry> batch;
  for (int i = 0; i < 50; ++i) {
    batch.push_back(MakeEntry("spiffe://example.org/bulk-" + std::to_string(i), kParent));
  }
  const int64_t before = ds_->Transactions();
  v1::BatchCreateEntryResponse resp = Create(batch);
  ASSERT_EQ(resp.results_size(), 50);
  for (const auto& r : resp.results()) EXPECT_EQ(r.status().code(), 0);
  EXPECT_EQ(resp.results(49).entry().spiffe_id(), "spiffe://example.org/bulk-49");
  EXPECT_EQ(*ds_->CountEntries(), 50);
  // One for the batch; the rest is the index catching up after the write.
  EXPECT_LT(ds_->Transactions() - before, 10);
}

TEST_F(AdminServiceTest, CreateDuplicateEntryIsAlreadyExistsWithTheExistingEntry) {
  std::string id = CreateOne(MakeEntry("spiffe://example.org/app", kParent));
  v1::BatchCreateEntryResponse resp = Create({MakeEntry("spiffe://example.org/app", kParent)});
  EXPECT_EQ(resp.results(0).status().code(), grpc::StatusCode::ALREADY_EXISTS);
  EXPECT_EQ(resp.results(0).entry().id(), id);
}

TEST_F(AdminServiceTest, UpdateEntryBumpsRevision) {
  std::string id = CreateOne(MakeEntry("spiffe://example.org/app", kParent));
  v1::Entry e = MakeEntry("spiffe://example.org/app", kParent, "uid:2000");
  e.set_id(id);
  v1::BatchUpdateEntryRequest req;
  *req.add_entries() = e;
  v1::BatchUpdateEntryResponse resp;
  grpc::ClientContext ctx;
  ASSERT_TRUE(stub_->BatchUpdateEntry(&ctx, req, &resp).ok());
  ASSERT_EQ(resp.results(0).status().code(), 0) << resp.results(0).status().message();
  EXPECT_EQ(resp.results(0).entry().revision_number(), 1);
  EXPECT_EQ(resp.results(0).entry().selectors(0).value(), "uid:2000");
}

TEST_F(AdminServiceTest, UpdateUnknownEntryIsNotFound) {
  v1::Entry e = MakeEntry("spiffe://example.org/app", kParent);
  e.set_id("00000000-0000-0000-0000-000000000000");
  v1::BatchUpdateEntryRequest req;
  *req.add_entries() = e;
  v1::BatchUpdateEntryResponse resp;
  grpc::ClientContext ctx;
  ASSERT_TRUE(stub_->BatchUpdateEntry(&ctx, req, &resp).ok());
  EXPECT_EQ(resp.results(0).status().code(), grpc::StatusCode::NOT_FOUND);
}

TEST_F(AdminServiceTest, UpdateWithoutIdIsInvalid) {
  v1::BatchUpdateEntryRequest req;
  *req.add_entries() = MakeEntry("spiffe://example.org/app", kParent);
  v1::BatchUpdateEntryResponse resp;
  grpc::ClientContext ctx;
  ASSERT_TRUE(stub_->BatchUpdateEntry(&ctx, req, &resp).ok());
  EXPECT_EQ(resp.results(0).status().code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(resp.results(0).status().message(), HasSubstr("id"));
}

TEST_F(AdminServiceTest, DeleteReportsUnknownIdsPerItem) {
  std::string id = CreateOne(MakeEntry("spiffe://example.org/app", kParent));
  v1::BatchDeleteEntryRequest req;
  req.add_ids(id);
  req.add_ids("00000000-0000-0000-0000-000000000000");
  v1::BatchDeleteEntryResponse resp;
  grpc::ClientContext ctx;
  ASSERT_TRUE(stub_->BatchDeleteEntry(&ctx, req, &resp).ok());
  ASSERT_EQ(resp.results_size(), 2);
  EXPECT_EQ(resp.results(0).status().code(), 0);
  EXPECT_EQ(resp.results(0).id(), id);
  EXPECT_EQ(resp.results(1).status().code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_EQ(*ds_->CountEntries(), 0);
}

TEST_F(AdminServiceTest, GetUnknownEntryIsNotFound) {
  v1::GetEntryRequest req;
  req.set_id("00000000-0000-0000-0000-000000000000");
  v1::Entry resp;
  grpc::ClientContext ctx;
  EXPECT_EQ(stub_->GetEntry(&ctx, req, &resp).error_code(), grpc::StatusCode::NOT_FOUND);
}

TEST_F(AdminServiceTest, GetEntryReturnsIt) {
  std::string id = CreateOne(MakeEntry("spiffe://example.org/app", kParent));
  v1::GetEntryRequest req;
  req.set_id(id);
  v1::Entry resp;
  grpc::ClientContext ctx;
  ASSERT_TRUE(stub_->GetEntry(&ctx, req, &resp).ok());
  EXPECT_EQ(resp.spiffe_id(), "spiffe://example.org/app");
}

TEST_F(AdminServiceTest, ListEntriesFiltersByParent) {
  CreateOne(MakeEntry("spiffe://example.org/a", kParent));
  CreateOne(MakeEntry("spiffe://example.org/b", "spiffe://example.org/other"));
  v1::ListEntriesRequest req;
  req.set_by_parent_id("spiffe://example.org/other");
  v1::ListEntriesResponse resp;
  grpc::ClientContext ctx;
  ASSERT_TRUE(stub_->ListEntries(&ctx, req, &resp).ok());
  ASSERT_EQ(resp.entries_size(), 1);
  EXPECT_EQ(resp.entries(0).spiffe_id(), "spiffe://example.org/b");
}

TEST_F(AdminServiceTest, ListEntriesFiltersBySelectorSuperset) {
  CreateOne(MakeEntry("spiffe://example.org/a", kParent, "uid:1"));
  CreateOne(MakeEntry("spiffe://example.org/b", kParent, "uid:2"));
  v1::ListEntriesRequest req;
  v1::Selector* s = req.add_by_selectors();
  s->set_type("unix");
  s->set_value("uid:2");
  req.set_selector_match(v1::MATCH_SUPERSET);
  v1::ListEntriesResponse resp;
  grpc::ClientContext ctx;
  ASSERT_TRUE(stub_->ListEntries(&ctx, req, &resp).ok());
  ASSERT_EQ(resp.entries_size(), 1);
  EXPECT_EQ(resp.entries(0).spiffe_id(), "spiffe://example.org/b");
}

TEST_F(AdminServiceTest, ListEntriesPagesThroughEverything) {
  for (int i = 0; i < 5; ++i)
    CreateOne(MakeEntry("spiffe://example.org/w" + std::to_string(i), kParent));
  std::vector<std::string> seen;
  std::string token;
  int pages = 0;
  do {
    v1::ListEntriesRequest req;
    req.set_page_size(2);
    req.set_page_token(token);
    v1::ListEntriesResponse resp;
    grpc::ClientContext ctx;
    ASSERT_TRUE(stub_->ListEntries(&ctx, req, &resp).ok());
    EXPECT_LE(resp.entries_size(), 2);
    for (const auto& e : resp.entries()) seen.push_back(e.spiffe_id());
    token = resp.next_page_token();
    ASSERT_LT(++pages, 10);
  } while (!token.empty());
  EXPECT_EQ(seen.size(), 5u);
}

TEST_F(AdminServiceTest, ListEntriesWithBadSpiffeIdFilterIsInvalid) {
  v1::ListEntriesRequest req;
  req.set_by_spiffe_id("spiffe://Example.org/x");
  v1::ListEntriesResponse resp;
  grpc::ClientContext ctx;
  grpc::Status st = stub_->ListEntries(&ctx, req, &resp);
  EXPECT_EQ(st.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(st.error_message(), HasSubstr("by_spiffe_id"));
}

TEST_F(AdminServiceTest, CountEntriesCountsThem) {
  CreateOne(MakeEntry("spiffe://example.org/a", kParent));
  CreateOne(MakeEntry("spiffe://example.org/b", kParent));
  v1::CountEntriesResponse resp;
  grpc::ClientContext ctx;
  ASSERT_TRUE(stub_->CountEntries(&ctx, {}, &resp).ok());
  EXPECT_EQ(resp.count(), 2);
}

TEST_F(AdminServiceTest, JoinTokenIsRandomHexWithDefaultTtl) {
  v1::CreateJoinTokenResponse a, b;
  grpc::ClientContext ctx1, ctx2;
  ASSERT_TRUE(stub_->CreateJoinToken(&ctx1, {}, &a).ok());
  ASSERT_TRUE(stub_->CreateJoinToken(&ctx2, {}, &b).ok());
  EXPECT_THAT(a.token(), MatchesRegex("[0-9a-f]{32}"));
  EXPECT_NE(a.token(), b.token());
  EXPECT_EQ(a.expires_at(), 1800000000 + 600);
}

TEST_F(AdminServiceTest, JoinTokenIsConsumableOnce) {
  v1::CreateJoinTokenResponse resp;
  grpc::ClientContext ctx;
  ASSERT_TRUE(stub_->CreateJoinToken(&ctx, {}, &resp).ok());
  EXPECT_TRUE(ds_->ConsumeJoinToken(resp.token(), clock_.Now()).ok());
  EXPECT_EQ(ds_->ConsumeJoinToken(resp.token(), clock_.Now()).status().code(),
            absl::StatusCode::kNotFound);
}

TEST_F(AdminServiceTest, JoinTokenHonoursTtl) {
  v1::CreateJoinTokenRequest req;
  req.set_ttl(30);
  v1::CreateJoinTokenResponse resp;
  grpc::ClientContext ctx;
  ASSERT_TRUE(stub_->CreateJoinToken(&ctx, req, &resp).ok());
  EXPECT_EQ(resp.expires_at(), 1800000000 + 30);
}

TEST_F(AdminServiceTest, JoinTokenWithNegativeTtlIsInvalid) {
  v1::CreateJoinTokenRequest req;
  req.set_ttl(-5);
  v1::CreateJoinTokenResponse resp;
  grpc::ClientContext ctx;
  grpc::Status st = stub_->CreateJoinToken(&ctx, req, &resp);
  EXPECT_EQ(st.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(st.error_message(), HasSubstr("ttl"));
}

TEST_F(AdminServiceTest, JoinTokenWithSpiffeIdRegistersEntryUnderTheAgentId) {
  v1::CreateJoinTokenRequest req;
  req.set_spiffe_id("spiffe://example.org/host");
  v1::CreateJoinTokenResponse resp;
  grpc::ClientContext ctx;
  ASSERT_TRUE(stub_->CreateJoinToken(&ctx, req, &resp).ok());
  datastore::ListEntriesRequest q;
  q.by_spiffe_id = "spiffe://example.org/host";
  auto found = ds_->ListEntries(q);
  ASSERT_TRUE(found.ok());
  ASSERT_EQ(found->entries.size(), 1u);
  EXPECT_EQ(found->entries[0].parent_id,
            "spiffe://example.org/spire/agent/join_token/" + resp.token());
  EXPECT_EQ(writes_.load(), 1);
}

TEST_F(AdminServiceTest, JoinTokenWithForeignSpiffeIdIsInvalid) {
  v1::CreateJoinTokenRequest req;
  req.set_spiffe_id("spiffe://other.org/host");
  v1::CreateJoinTokenResponse resp;
  grpc::ClientContext ctx;
  grpc::Status st = stub_->CreateJoinToken(&ctx, req, &resp);
  EXPECT_EQ(st.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(st.error_message(), HasSubstr("spiffe_id"));
}

TEST_F(AdminServiceTest, BanAgentMarksTheNodeBanned) {
  AddNode(kAgent);
  v1::AgentIdRequest req;
  req.set_spiffe_id(kAgent);
  v1::Empty resp;
  grpc::ClientContext ctx;
  ASSERT_TRUE(stub_->BanAgent(&ctx, req, &resp).ok());
  EXPECT_TRUE(ds_->GetNode(kAgent, false)->banned);
  EXPECT_EQ(writes_.load(), 1);
}

TEST_F(AdminServiceTest, BanUnknownAgentIsNotFound) {
  v1::AgentIdRequest req;
  req.set_spiffe_id(kAgent);
  v1::Empty resp;
  grpc::ClientContext ctx;
  EXPECT_EQ(stub_->BanAgent(&ctx, req, &resp).error_code(), grpc::StatusCode::NOT_FOUND);
}

TEST_F(AdminServiceTest, BanNonAgentIdIsInvalid) {
  v1::AgentIdRequest req;
  req.set_spiffe_id("spiffe://example.org/workload");
  v1::Empty resp;
  grpc::ClientContext ctx;
  grpc::Status st = stub_->BanAgent(&ctx, req, &resp);
  EXPECT_EQ(st.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(st.error_message(), HasSubstr("spiffe_id"));
}

TEST_F(AdminServiceTest, EvictAgentDeletesTheNode) {
  AddNode(kAgent);
  v1::AgentIdRequest req;
  req.set_spiffe_id(kAgent);
  v1::Empty resp;
  grpc::ClientContext ctx;
  ASSERT_TRUE(stub_->EvictAgent(&ctx, req, &resp).ok());
  EXPECT_EQ(ds_->GetNode(kAgent, false).status().code(), absl::StatusCode::kNotFound);
}

TEST_F(AdminServiceTest, ListAgentsFiltersBanned) {
  AddNode("spiffe://example.org/spire/agent/join_token/a");
  AddNode("spiffe://example.org/spire/agent/join_token/b", /*banned=*/true);
  v1::ListAgentsRequest req;
  req.set_by_banned(1);
  v1::ListAgentsResponse resp;
  grpc::ClientContext ctx;
  ASSERT_TRUE(stub_->ListAgents(&ctx, req, &resp).ok());
  ASSERT_EQ(resp.agents_size(), 1);
  EXPECT_EQ(resp.agents(0).spiffe_id(), "spiffe://example.org/spire/agent/join_token/b");
  EXPECT_TRUE(resp.agents(0).banned());
}

TEST_F(AdminServiceTest, CountAgentsCountsNodes) {
  AddNode("spiffe://example.org/spire/agent/join_token/a");
  AddNode("spiffe://example.org/spire/agent/join_token/b");
  v1::CountAgentsResponse resp;
  grpc::ClientContext ctx;
  ASSERT_TRUE(stub_->CountAgents(&ctx, {}, &resp).ok());
  EXPECT_EQ(resp.count(), 2);
}

TEST_F(AdminServiceTest, GetAgentReturnsSelectors) {
  AddNode(kAgent);
  ASSERT_TRUE(ds_->SetNodeSelectors(kAgent, {{"x509pop", "subject:cn:node"}}).ok());
  v1::AgentIdRequest req;
  req.set_spiffe_id(kAgent);
  v1::AttestedNode resp;
  grpc::ClientContext ctx;
  ASSERT_TRUE(stub_->GetAgent(&ctx, req, &resp).ok());
  ASSERT_EQ(resp.selectors_size(), 1);
  EXPECT_EQ(resp.selectors(0).value(), "subject:cn:node");
}

class AdminBundleTest : public AdminServiceTest {
 protected:
  std::string MakeCaDer(const std::string& td) {
    auto key = common::PrivateKey::Generate();
    auto ca = common::CreateRootCa(*key, Td(td), absl::Hours(24), clock_);
    EXPECT_TRUE(ca.ok()) << ca.status();
    return ca->der();
  }
  grpc::Status Set(const std::string& td, const std::string& der, v1::Bundle* out) {
    v1::SetFederatedBundleRequest req;
    req.mutable_bundle()->set_trust_domain(td);
    req.mutable_bundle()->add_x509_authorities()->set_asn1(der);
    grpc::ClientContext ctx;
    return stub_->SetFederatedBundle(&ctx, req, out);
  }
};

TEST_F(AdminBundleTest, GetBundleWithoutOneIsNotFound) {
  v1::Bundle resp;
  grpc::ClientContext ctx;
  EXPECT_EQ(stub_->GetBundle(&ctx, {}, &resp).error_code(), grpc::StatusCode::NOT_FOUND);
}

TEST_F(AdminBundleTest, GetBundleReturnsTheOwnBundle) {
  datastore::Bundle b;
  b.trust_domain = "example.org";
  b.x509_authorities.push_back({MakeCaDer("example.org"), absl::FromUnixSeconds(1900000000)});
  ASSERT_TRUE(ds_->SetBundle(b).ok());
  v1::Bundle resp;
  grpc::ClientContext ctx;
  ASSERT_TRUE(stub_->GetBundle(&ctx, {}, &resp).ok());
  EXPECT_EQ(resp.trust_domain(), "example.org");
  EXPECT_EQ(resp.x509_authorities_size(), 1);
}

TEST_F(AdminBundleTest, SetFederatedBundleStoresIt) {
  v1::Bundle resp;
  ASSERT_TRUE(Set("other.org", MakeCaDer("other.org"), &resp).ok());
  EXPECT_EQ(resp.trust_domain(), "other.org");
  EXPECT_TRUE(ds_->GetBundle("other.org").ok());
}

TEST_F(AdminBundleTest, SetOwnTrustDomainAsFederatedIsInvalid) {
  v1::Bundle resp;
  grpc::Status st = Set("example.org", MakeCaDer("example.org"), &resp);
  EXPECT_EQ(st.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(st.error_message(), HasSubstr("trust_domain"));
}

TEST_F(AdminBundleTest, SetBundleWithGarbageCertificateIsInvalid) {
  v1::Bundle resp;
  grpc::Status st = Set("other.org", "not a certificate", &resp);
  EXPECT_EQ(st.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(st.error_message(), HasSubstr("x509_authorities[0]"));
  EXPECT_EQ(ds_->GetBundle("other.org").status().code(), absl::StatusCode::kNotFound);
}

TEST_F(AdminBundleTest, ListFederatedBundlesLeavesOutTheOwnBundle) {
  datastore::Bundle own;
  own.trust_domain = "example.org";
  own.x509_authorities.push_back({MakeCaDer("example.org"), absl::FromUnixSeconds(1900000000)});
  ASSERT_TRUE(ds_->SetBundle(own).ok());
  v1::Bundle set;
  ASSERT_TRUE(Set("other.org", MakeCaDer("other.org"), &set).ok());
  v1::ListFederatedBundlesResponse resp;
  grpc::ClientContext ctx;
  ASSERT_TRUE(stub_->ListFederatedBundles(&ctx, {}, &resp).ok());
  ASSERT_EQ(resp.bundles_size(), 1);
  EXPECT_EQ(resp.bundles(0).trust_domain(), "other.org");
}

class AdminFederationTest : public AdminBundleTest {
 protected:
  static v1::FederationRelationship Web(const std::string& td) {
    v1::FederationRelationship r;
    r.set_trust_domain(td);
    r.set_bundle_endpoint_url("https://127.0.0.1:1/" + td);
    r.set_bundle_endpoint_profile(v1::HTTPS_WEB);
    return r;
  }
  grpc::Status Create(const v1::FederationRelationship& r, v1::FederationRelationship* out) {
    grpc::ClientContext ctx;
    return stub_->CreateFederationRelationship(&ctx, r, out);
  }
};

TEST_F(AdminFederationTest, CreateWithABundleStoresBoth) {
  v1::FederationRelationship r = Web("other.org");
  r.set_bundle_endpoint_profile(v1::HTTPS_SPIFFE);
  r.set_endpoint_spiffe_id("spiffe://other.org/spire/server");
  r.mutable_trust_domain_bundle()->set_trust_domain("other.org");
  r.mutable_trust_domain_bundle()->add_x509_authorities()->set_asn1(MakeCaDer("other.org"));
  v1::FederationRelationship resp;
  ASSERT_TRUE(Create(r, &resp).ok());
  EXPECT_EQ(resp.endpoint_spiffe_id(), "spiffe://other.org/spire/server");
  EXPECT_FALSE(resp.has_trust_domain_bundle());
  EXPECT_TRUE(ds_->GetFederationRelationship("other.org").ok());
  EXPECT_TRUE(ds_->GetBundle("other.org").ok());
}

TEST_F(AdminFederationTest, ABundleOfAnotherTrustDomainWritesNothing) {
  v1::FederationRelationship r = Web("other.org");
  r.mutable_trust_domain_bundle()->set_trust_domain("third.org");
  r.mutable_trust_domain_bundle()->add_x509_authorities()->set_asn1(MakeCaDer("third.org"));
  v1::FederationRelationship resp;
  grpc::Status st = Create(r, &resp);
  EXPECT_EQ(st.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(st.error_message(), HasSubstr("is the bundle of third.org, not of other.org"));
  EXPECT_EQ(ds_->GetFederationRelationship("other.org").status().code(),
            absl::StatusCode::kNotFound);
  EXPECT_EQ(ds_->GetBundle("third.org").status().code(), absl::StatusCode::kNotFound);
}

TEST_F(AdminFederationTest, OwnTrustDomainAndBadIdsAreRefused) {
  v1::FederationRelationship resp;
  grpc::Status own = Create(Web("example.org"), &resp);
  EXPECT_EQ(own.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(own.error_message(), HasSubstr("cannot federate with its own trust domain"));
  grpc::Status bad_td = Create(Web("Not A Domain"), &resp);
  EXPECT_EQ(bad_td.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(bad_td.error_message(), HasSubstr("trust_domain"));
  v1::FederationRelationship no_id = Web("other.org");
  no_id.set_bundle_endpoint_profile(v1::HTTPS_SPIFFE);
  grpc::Status missing = Create(no_id, &resp);
  EXPECT_EQ(missing.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(missing.error_message(), HasSubstr("endpoint SPIFFE ID"));
}

TEST_F(AdminFederationTest, UpdateOfAnUnknownRelationshipIsNotFound) {
  v1::FederationRelationship resp;
  grpc::ClientContext ctx;
  EXPECT_EQ(stub_->UpdateFederationRelationship(&ctx, Web("other.org"), &resp).error_code(),
            grpc::StatusCode::NOT_FOUND);
}

TEST_F(AdminFederationTest, RefreshWithoutARefresherIsUnavailable) {
  v1::FederationRelationship resp;
  ASSERT_TRUE(Create(Web("other.org"), &resp).ok());
  v1::FederationRelationshipRequest req;
  req.set_trust_domain("other.org");
  v1::Empty empty;
  grpc::ClientContext ctx;
  EXPECT_EQ(stub_->RefreshFederationRelationship(&ctx, req, &empty).error_code(),
            grpc::StatusCode::UNAVAILABLE);
}

TEST_F(AdminBundleTest, DeleteFederatedBundleRemovesIt) {
  v1::Bundle set;
  ASSERT_TRUE(Set("other.org", MakeCaDer("other.org"), &set).ok());
  v1::DeleteFederatedBundleRequest req;
  req.set_trust_domain("other.org");
  v1::Empty resp;
  grpc::ClientContext ctx;
  ASSERT_TRUE(stub_->DeleteFederatedBundle(&ctx, req, &resp).ok());
  EXPECT_EQ(ds_->GetBundle("other.org").status().code(), absl::StatusCode::kNotFound);
}

TEST_F(AdminBundleTest, DeleteOwnBundleIsInvalid) {
  v1::DeleteFederatedBundleRequest req;
  req.set_trust_domain("example.org");
  v1::Empty resp;
  grpc::ClientContext ctx;
  EXPECT_EQ(stub_->DeleteFederatedBundle(&ctx, req, &resp).error_code(),
            grpc::StatusCode::INVALID_ARGUMENT);
}

TEST_F(AdminServiceTest, HealthIsHealthyWithAReachableDatastore) {
  v1::HealthResponse resp;
  grpc::ClientContext ctx;
  ASSERT_TRUE(stub_->Health(&ctx, {}, &resp).ok());
  EXPECT_TRUE(resp.healthy());
  EXPECT_EQ(resp.details().at("datastore"), "ok");
}

}  // namespace
}  // namespace trellis::server
