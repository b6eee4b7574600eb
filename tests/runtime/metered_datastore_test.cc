// MeteredDataStore: every call forwarded and timed by operation; store failures counted, the
// contract's answers (NOT_FOUND, ALREADY_EXISTS, ...) not.
#include "runtime/metered_datastore.h"

#include <sqlite3.h>

#include <memory>
#include <string>

#include "datastore/factory.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/telemetry/scrape_util.h"
#include "tests/testutil/temp_dir.h"

namespace trellis::runtime {
namespace {

using telemetry::testing::SampleValue;
using telemetry::testing::Scrape;
using ::testing::Optional;

class MeteredDataStoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    common::config::TelemetryConfig config;
    config.prometheus = common::config::PrometheusConfig{"127.0.0.1", 0};
    auto metrics = telemetry::Metrics::Create(config, "trellis_server");
    ASSERT_TRUE(metrics.ok()) << metrics.status();
    metrics_ = std::move(*metrics);
    datastore::DataStoreOptions options;
    options.busy_timeout = absl::Milliseconds(50);
    auto store = datastore::CreateDataStore("sqlite3", path_, options);
    ASSERT_TRUE(store.ok()) << store.status();
    ds_ = std::make_unique<MeteredDataStore>(std::move(*store), *metrics_);
  }

  std::optional<double> Sample(const std::string& name, const std::string& operation) {
    return SampleValue(Scrape(metrics_->port()), name, {{"operation", operation}});
  }

  testutil::TempDir dir_;
  const std::string path_ = dir_.path() + "/ds.sqlite3";
  std::unique_ptr<telemetry::Metrics> metrics_;  // outlives the store that records into it
  std::unique_ptr<MeteredDataStore> ds_;
};

TEST_F(MeteredDataStoreTest, ForwardsCallsAndTimesEachByOperation) {
  absl::StatusOr<int64_t> count = ds_->CountEntries();
  ASSERT_TRUE(count.ok()) << count.status();
  EXPECT_EQ(*count, 0);
  ASSERT_TRUE(ds_->CountEntries().ok());
  EXPECT_THAT(Sample("trellis_server_datastore_call_duration_seconds_count", "CountEntries"),
              Optional(2.0));
  // Every operation's series exists from the start, so rates never miss their first call.
  EXPECT_THAT(Sample("trellis_server_datastore_call_duration_seconds_count", "CountNodes"),
              Optional(0.0));
}

TEST_F(MeteredDataStoreTest, AnswersAreNotCountedAsErrors) {
  EXPECT_EQ(ds_->GetBundle("nowhere.example").status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(Sample("trellis_server_datastore_call_duration_seconds_count", "GetBundle"),
              Optional(1.0));
  EXPECT_THAT(Sample("trellis_server_datastore_errors_total", "GetBundle"), Optional(0.0));
}

TEST_F(MeteredDataStoreTest, CountsStoreFailuresByOperation) {
  sqlite3* other = nullptr;
  ASSERT_EQ(sqlite3_open(path_.c_str(), &other), SQLITE_OK);
  ASSERT_EQ(sqlite3_exec(other, "BEGIN EXCLUSIVE", nullptr, nullptr, nullptr), SQLITE_OK);
  datastore::JoinToken token;
  token.token = "t1";
  token.expires_at = absl::Now() + absl::Hours(1);
  absl::Status busy = ds_->CreateJoinToken(token);
  sqlite3_exec(other, "ROLLBACK", nullptr, nullptr, nullptr);
  sqlite3_close(other);
  ASSERT_EQ(busy.code(), absl::StatusCode::kUnavailable) << busy;
  EXPECT_THAT(Sample("trellis_server_datastore_errors_total", "CreateJoinToken"), Optional(1.0));
  EXPECT_THAT(Sample("trellis_server_datastore_call_duration_seconds_count", "CreateJoinToken"),
              Optional(1.0));
  ASSERT_TRUE(ds_->CreateJoinToken(token).ok());
  EXPECT_THAT(Sample("trellis_server_datastore_errors_total", "CreateJoinToken"), Optional(1.0));
}

TEST_F(MeteredDataStoreTest, EveryOperationHasAnErrorSeriesFromTheStart) {
  const std::string text = Scrape(metrics_->port());
  ASSERT_EQ(MeteredDataStore::Operations().size(), 44u);
  for (const std::string& op : MeteredDataStore::Operations()) {
    EXPECT_THAT(SampleValue(text, "trellis_server_datastore_errors_total", {{"operation", op}}),
                Optional(0.0))
        << op;
  }
}

TEST_F(MeteredDataStoreTest, PassesTransactionsAndChangeNoticesThrough) {
  const int64_t before = ds_->Transactions();
  ASSERT_TRUE(ds_->CountNodes().ok());
  EXPECT_GT(ds_->Transactions(), before);
  // SQLite has no notice channel: the wrapped store's answer comes back as is.
  EXPECT_EQ(ds_->SubscribeChanges([] {}), nullptr);
}

}  // namespace
}  // namespace trellis::runtime
