// Keeps the server's own X509-SVID (spiffe://<td>/spire/server) fresh on disk for its TLS.
#pragma once

#include <memory>
#include <optional>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/clock.h"
#include "common/csr.h"
#include "common/keys.h"
#include "common/x509.h"
#include "server/ca_manager.h"

namespace trellis::server {

// Issues the server SVID from the CaManager for a locally generated key, writes the chain
// (leaf then intermediates, PEM) and key (PKCS#8 PEM) to two 0600 files in data_dir, and
// renews them at half-life on Tick() or when the CA activates a new authority. Thread-safe.
class ServerSvidRotator {
 public:
  struct Options {
    std::string data_dir;
    common::KeyType key_type = common::KeyType::kEcP256;
    // Zero: the CaManager's default_x509_svid_ttl.
    absl::Duration ttl = absl::ZeroDuration();
  };

  static absl::StatusOr<std::unique_ptr<ServerSvidRotator>> Create(Options options, CaManager* ca,
                                                                   const common::Clock& clock);

  // Issues the first SVID and writes the files.
  absl::Status Start();
  // Renews when half the SVID's life has passed or the active CA changed.
  absl::Status Tick();

  std::string CertChainPath() const;  // <data_dir>/server_svid.pem
  std::string KeyPath() const;        // <data_dir>/server_svid.key
  // The current leaf certificate (empty optional before Start()).
  std::optional<common::Certificate> Current() const;

 private:
  ServerSvidRotator(Options options, CaManager* ca, const common::Clock& clock)
      : options_(std::move(options)), ca_(ca), clock_(clock) {}
  absl::Status Rotate() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  Options options_;
  CaManager* ca_;
  const common::Clock& clock_;
  mutable absl::Mutex mu_;
  std::optional<common::Certificate> current_ ABSL_GUARDED_BY(mu_);
  uint64_t issued_generation_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace trellis::server
