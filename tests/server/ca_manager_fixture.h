// The CaManager test fixture: a store and disk key manager in a temp dir, on a fake clock.
#pragma once

#include <algorithm>
#include <memory>
#include <string>
#include <vector>

#include "common/clock.h"
#include "common/csr.h"
#include "gtest/gtest.h"
#include "server/ca_manager.h"
#include "server/disk_key_manager.h"
#include "tests/server/server_test_util.h"
#include "tests/testutil/temp_dir.h"

namespace trellis::server::testing {

inline common::TrustDomain Td() { return *common::TrustDomain::Parse("example.org"); }

inline CaManager::Options DefaultOptions() {
  CaManager::Options o(Td());
  o.ca_ttl = absl::Hours(24);
  o.default_x509_svid_ttl = absl::Hours(1);
  o.default_jwt_svid_ttl = absl::Minutes(5);
  return o;
}

class CaManagerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ds_ = OpenTestStore(dir_, clock_);
    ASSERT_NE(ds_, nullptr);
    auto km = DiskKeyManager::Create(dir_.path() + "/keys");
    ASSERT_TRUE(km.ok());
    km_ = std::move(*km);
  }

  std::unique_ptr<CaManager> StartManager(CaManager::Options options = DefaultOptions()) {
    auto ca = CaManager::Create(std::move(options), ds_.get(), km_.get(), clock_);
    EXPECT_TRUE(ca.ok()) << ca.status();
    if (!ca.ok()) return nullptr;
    auto s = (*ca)->Start();
    EXPECT_TRUE(s.ok()) << s;
    return std::move(*ca);
  }

  // Advances in steps of at most 10 minutes, ticking as the server runtime would.
  void AdvanceAndTick(CaManager& ca, absl::Duration d) {
    const absl::Duration step = absl::Minutes(10);
    while (d > absl::ZeroDuration()) {
      const absl::Duration s = std::min(d, step);
      clock_.Advance(s);
      d -= s;
      auto st = ca.Tick();
      ASSERT_TRUE(st.ok()) << st;
    }
  }

  static bool BundleHas(const common::Bundle& b, const common::Certificate& c) {
    for (const auto& a : b.x509_authorities()) {
      if (a == c) return true;
    }
    return false;
  }

  std::vector<common::Certificate> Chain(const std::vector<std::string>& ders) {
    std::vector<common::Certificate> out;
    for (const auto& d : ders) out.push_back(*common::Certificate::FromDer(d));
    return out;
  }

  std::string Csr() {
    auto key = common::PrivateKey::Generate();
    return *common::BuildCsr(*key);
  }

  testutil::TempDir dir_;
  common::FakeClock clock_{kTestStart};
  std::unique_ptr<datastore::DataStore> ds_;
  std::unique_ptr<DiskKeyManager> km_;
};

}  // namespace trellis::server::testing
