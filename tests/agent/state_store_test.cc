// Persistence of the agent SVID, key and bundle in data_dir.
#include "agent/state_store.h"

#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>

#include "absl/strings/str_cat.h"
#include "common/file_util.h"
#include "gtest/gtest.h"

namespace trellis::agent {
namespace {

class StateStoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    root_ = std::filesystem::temp_directory_path() /
            absl::StrCat("trellis-agent-state-", getpid(), "-",
                         ::testing::UnitTest::GetInstance()->current_test_info()->name());
    std::filesystem::remove_all(root_);
    dir_ = (root_ / "data").string();
  }
  void TearDown() override { std::filesystem::remove_all(root_); }

  AgentState MakeState() {
    auto ca_key = *common::PrivateKey::Generate();
    auto ca = *common::CreateRootCa(ca_key, td_, absl::Hours(24), common::SystemClock::Get());
    auto issuer = *common::X509SvidIssuer::Create(ca, ca_key, common::SystemClock::Get());
    auto key = *common::PrivateKey::Generate();
    auto id = *common::SpiffeId::Parse("spiffe://example.org/spire/agent/join_token/abc");
    auto leaf = *common::Certificate::FromDer(
        *issuer->IssueForPublicKey(key.public_key(), id, absl::Hours(1)));
    common::Bundle bundle(td_);
    EXPECT_TRUE(bundle.AddX509Authority(ca).ok());
    EXPECT_TRUE(bundle.AddJwtAuthority("k1", common::PrivateKey::Generate()->public_key()).ok());
    bundle.set_sequence(7);
    return AgentState{{leaf}, key, bundle, true};
  }

  common::TrustDomain td_ = *common::TrustDomain::Parse("example.org");
  std::filesystem::path root_;
  std::string dir_;
};

TEST_F(StateStoreTest, NothingPersistedIsNullopt) {
  auto got = LoadAgentState(dir_, td_);
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_FALSE(got->has_value());
}

TEST_F(StateStoreTest, RoundTripKeepsSvidKeyBundleAndFlags) {
  AgentState state = MakeState();
  ASSERT_TRUE(SaveAgentState(dir_, state).ok());
  auto got = LoadAgentState(dir_, td_);
  ASSERT_TRUE(got.ok()) << got.status();
  ASSERT_TRUE(got->has_value());
  EXPECT_EQ((*got)->chain, state.chain);
  EXPECT_EQ((*got)->key.spki_der(), state.key.spki_der());
  EXPECT_TRUE((*got)->bundle.SameAuthorities(state.bundle));
  EXPECT_EQ((*got)->bundle.sequence(), 7u);
  EXPECT_TRUE((*got)->reattestable);
}

TEST_F(StateStoreTest, KeyIs0600InA0700Dir) {
  ASSERT_TRUE(SaveAgentState(dir_, MakeState()).ok());
  struct stat st;
  ASSERT_EQ(stat(dir_.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0700u);
  ASSERT_EQ(stat((dir_ + "/agent_svid.key").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
}

TEST_F(StateStoreTest, KeyNotMatchingTheCertificateIsRefused) {
  AgentState state = MakeState();
  ASSERT_TRUE(SaveAgentState(dir_, state).ok());
  AgentState other = MakeState();
  ASSERT_TRUE(
      common::WritePrivateFile(dir_ + "/agent_svid.key", std::string(other.key.ToPem()->view()))
          .ok());
  EXPECT_EQ(LoadAgentState(dir_, td_).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST_F(StateStoreTest, SavingAMismatchedPairIsRefusedAndWritesNothing) {
  AgentState state = MakeState();
  state.key = *common::PrivateKey::Generate();
  EXPECT_EQ(SaveAgentState(dir_, state).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_FALSE(std::filesystem::exists(dir_ + "/agent_svid.pem"));
}

TEST_F(StateStoreTest, SaveBundleReplacesOnlyTheBundle) {
  AgentState state = MakeState();
  ASSERT_TRUE(SaveAgentState(dir_, state).ok());
  common::Bundle newer = state.bundle;
  newer.set_sequence(9);
  ASSERT_TRUE(SaveBundle(dir_, newer).ok());
  auto got = LoadAgentState(dir_, td_);
  ASSERT_TRUE(got.ok() && got->has_value());
  EXPECT_EQ((*got)->bundle.sequence(), 9u);
  EXPECT_EQ((*got)->chain, state.chain);
}

}  // namespace
}  // namespace trellis::agent
