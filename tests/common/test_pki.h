// Shared test fixtures: a generated root -> intermediate CA hierarchy on a fake clock.
#pragma once

#include <memory>
#include <string>

#include "common/clock.h"
#include "common/keys.h"
#include "common/spiffe_id.h"
#include "common/x509.h"
#include "gtest/gtest.h"

namespace trellis::common::testing {

inline const absl::Time kTestEpoch = absl::FromUnixSeconds(1'800'000'000);

template <typename T>
T Unwrap(absl::StatusOr<T> v) {
  EXPECT_TRUE(v.ok()) << v.status();
  if (!v.ok()) std::abort();
  return *std::move(v);
}

struct TestPki {
  explicit TestPki(KeyType key_type = KeyType::kEcP256)
      : clock(kTestEpoch),
        td(Unwrap(TrustDomain::Parse("example.org"))),
        root_key(Unwrap(PrivateKey::Generate(key_type))),
        root(Unwrap(CreateRootCa(root_key, td, absl::Hours(24 * 30), clock))),
        inter_key(Unwrap(PrivateKey::Generate(key_type))),
        inter(Unwrap(CreateIntermediateCa(root, root_key, inter_key.public_key(), td,
                                          absl::Hours(24), clock))),
        issuer(Unwrap(X509SvidIssuer::Create(inter, inter_key, clock))),
        id(Unwrap(SpiffeId::Parse("spiffe://example.org/ns/prod/sa/web"))) {}

  FakeClock clock;
  TrustDomain td;
  PrivateKey root_key;
  Certificate root;
  PrivateKey inter_key;
  Certificate inter;
  std::unique_ptr<X509SvidIssuer> issuer;
  SpiffeId id;
};

}  // namespace trellis::common::testing
