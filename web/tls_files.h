// A certificate chain and its key read from two PEM files, re-read whenever either file
// changes, so a rotated server SVID or a renewed Web PKI certificate is served without a
// restart.
#pragma once

#include <sys/stat.h>

#include <memory>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "common/keys.h"
#include "common/x509.h"

namespace trellis::web {

struct TlsIdentity {
  std::vector<common::Certificate> chain;  // leaf first
  common::PrivateKey key;
};

class TlsFiles {
 public:
  TlsFiles(std::string cert_path, std::string key_path)
      : cert_path_(std::move(cert_path)), key_path_(std::move(key_path)) {}

  // The files' current contents, re-read when either file changed. When they cannot be read,
  // hold no certificate, or the key does not match the leaf: the last good pair if there is
  // one (the files are tried again on the next call), else INVALID_ARGUMENT naming the file.
  absl::StatusOr<std::shared_ptr<const TlsIdentity>> Current() ABSL_LOCKS_EXCLUDED(mu_);

 private:
  struct Stamp {
    ino_t ino = 0;
    off_t size = -1;
    int64_t mtime_ns = 0;
    bool operator==(const Stamp&) const = default;
  };
  static Stamp StampOf(const struct stat& st);
  // The pair as the files hold it now (current_ when neither file changed).
  absl::StatusOr<std::shared_ptr<const TlsIdentity>> ReadLocked()
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const std::string cert_path_;
  const std::string key_path_;
  absl::Mutex mu_;
  Stamp cert_stamp_ ABSL_GUARDED_BY(mu_);
  Stamp key_stamp_ ABSL_GUARDED_BY(mu_);
  std::shared_ptr<const TlsIdentity> current_ ABSL_GUARDED_BY(mu_);
};

}  // namespace trellis::web
