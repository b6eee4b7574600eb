// Trust domains, SVIDs and certificate files for the federation tests, all made in the test.
#pragma once

#include <string>
#include <vector>

#include "absl/time/clock.h"
#include "common/bundle.h"
#include "common/clock.h"
#include "common/keys.h"
#include "common/spiffe_id.h"
#include "common/x509.h"
#include "gtest/gtest.h"
#include "tests/testutil/temp_dir.h"

namespace trellis::federation::testing {

template <typename T>
T Must(absl::StatusOr<T> v) {
  EXPECT_TRUE(v.ok()) << v.status();
  return *std::move(v);
}

// One trust domain's root CA, its bundle, and leaves issued from it.
struct TestDomain {
  explicit TestDomain(const std::string& name)
      : td(Must(common::TrustDomain::Parse(name))),
        ca_key(Must(common::PrivateKey::Generate())),
        ca(Must(common::CreateRootCa(ca_key, td, absl::Hours(24), common::SystemClock::Get()))),
        issuer(Must(common::X509SvidIssuer::Create(ca, ca_key, common::SystemClock::Get()))) {}

  common::Bundle Bundle(uint64_t sequence = 1) const {
    common::Bundle b(td);
    EXPECT_TRUE(b.AddX509Authority(ca).ok());
    b.set_sequence(sequence);
    return b;
  }

  // Writes an X509-SVID for `path` (with `dns` names) and its key as PEM files in `dir`
  // under `stem`; returns {cert path, key path}.
  std::pair<std::string, std::string> WriteSvid(const testutil::TempDir& dir,
                                                const std::string& stem, const std::string& path,
                                                const std::vector<std::string>& dns = {}) const {
    common::PrivateKey key = Must(common::PrivateKey::Generate());
    common::SpiffeId id = Must(common::SpiffeId::FromPath(td, path));
    common::Certificate leaf = Must(common::Certificate::FromDer(
        Must(issuer->IssueForPublicKey(key.public_key(), id, absl::Hours(1), dns))));
    std::string cert = dir.Write(stem + ".pem", common::Certificate::ChainToPem({leaf}));
    std::string key_path = dir.Write(stem + ".key", std::string(Must(key.ToPem()).view()));
    return {cert, key_path};
  }

  common::TrustDomain td;
  common::PrivateKey ca_key;
  common::Certificate ca;
  std::unique_ptr<common::X509SvidIssuer> issuer;
};

}  // namespace trellis::federation::testing
