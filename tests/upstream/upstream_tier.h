// An upstream tier in one process, for the tests of nesting clients: a root CaManager serving
// the Upstream API over SPIFFE mTLS on 127.0.0.1, and the Workload API of its co-located agent
// on a real Unix socket, handing out X509-SVIDs the root signs.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "attestors/workload/workload_attestor.h"
#include "common/clock.h"
#include "common/spiffe_id.h"
#include "common/x509.h"
#include "datastore/datastore.h"
#include "server/ca_manager.h"
#include "server/key_manager.h"
#include "server/server_svid.h"
#include "gtest/gtest.h"
#include "tests/testutil/temp_dir.h"
#include "upstream/upstream_service.h"
#include "workload_api/identity_source.h"
#include "workload_api/server.h"

namespace grpc {
class Server;
}

namespace trellis::upstream::testing {

// The SPIFFE ID a downstream server of the tier is given by default.
inline constexpr char kDownstreamId[] = "spiffe://example.org/region-a/server";

// Snapshots published by the test, as an agent's SVID cache would publish them.
class PublishedIdentities final : public workload_api::IdentitySource {
 public:
  PublishedIdentities();
  std::shared_ptr<const workload_api::IdentitySnapshot> Snapshot() const override;
  uint64_t Subscribe(Listener listener) override;
  void Unsubscribe(uint64_t id) override;
  // Publishes `next` (its version is set here) to the snapshot and every subscriber.
  void Publish(workload_api::IdentitySnapshot next);

 private:
  // Held across a publication so subscribers see snapshots in order.
  absl::Mutex publish_mu_;
  mutable absl::Mutex mu_;
  std::shared_ptr<const workload_api::IdentitySnapshot> current_ ABSL_GUARDED_BY(mu_);
  std::map<uint64_t, Listener> listeners_ ABSL_GUARDED_BY(mu_);
  uint64_t next_listener_ ABSL_GUARDED_BY(mu_) = 1;
};

class UpstreamTier {
 public:
  struct Options {
    absl::Duration ca_ttl = absl::Hours(48);
    absl::Duration workload_svid_ttl = absl::Hours(1);
  };
  // Starts the root CA, the Upstream API and the Workload API. Nothing is served on the
  // Workload API until PublishSvid; kDownstreamId is registered as a downstream server.
  static absl::StatusOr<std::unique_ptr<UpstreamTier>> Start(Options options);
  ~UpstreamTier();

  const common::TrustDomain& trust_domain() const { return td_; }
  int upstream_port() const { return port_; }
  const std::string& workload_api_socket() const { return socket_; }
  server::CaManager& ca() { return *ca_; }
  upstream::UpstreamService& service() { return *service_; }
  // The root's active CA: it signs every minted CA, so it bounds their NotAfter.
  common::Certificate ActiveCa() const;

  // Whether the Upstream API treats `id` as a downstream server (a registration entry with
  // downstream = true). kDownstreamId is registered at start.
  void SetDownstream(const std::string& id, bool downstream);
  // Serial (hex) of the client certificate of the latest authenticated Upstream API call.
  std::string LastCallerSerial() const;

  // Issues an X509-SVID for `spiffe_id` from the root and serves it, with the root's bundle,
  // on the Workload API to this test process (selector unix:uid:<uid>). Returns the leaf.
  absl::StatusOr<common::Certificate> PublishSvid(const std::string& spiffe_id);
  // Stops and restarts the Workload API server on the same socket (open streams end).
  absl::Status RestartWorkloadApi();
  void StopWorkloadApi();

 private:
  UpstreamTier() = default;
  absl::Status StartWorkloadApi();

  testutil::TempDir dir_{"trellis-up"};
  common::TrustDomain td_ = *common::TrustDomain::Parse("example.org");
  std::string socket_;
  int port_ = 0;
  std::unique_ptr<datastore::DataStore> ds_;
  std::unique_ptr<server::KeyManager> km_;
  std::unique_ptr<server::CaManager> ca_;
  std::unique_ptr<server::ServerSvidRotator> svid_;
  std::unique_ptr<upstream::UpstreamService> service_;
  std::unique_ptr<grpc::Server> server_;
  PublishedIdentities identities_;
  std::unique_ptr<attestors::WorkloadAttestor> attestor_;
  std::unique_ptr<workload_api::WorkloadApiServer> workload_api_;
  Options options_;
  mutable absl::Mutex mu_;
  std::set<std::string> downstream_ids_ ABSL_GUARDED_BY(mu_);
  std::string last_caller_serial_ ABSL_GUARDED_BY(mu_);
  uint64_t published_ ABSL_GUARDED_BY(mu_) = 0;
};

// A test fixture holding a started tier in `tier_`.
class UpstreamTierTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto tier = UpstreamTier::Start({});
    ASSERT_TRUE(tier.ok()) << tier.status();
    tier_ = std::move(*tier);
  }
  std::unique_ptr<UpstreamTier> tier_;
};

}  // namespace trellis::upstream::testing
