// Certificate and key files, re-read on change.
#include "web/tls_files.h"

#include <openssl/crypto.h>

#include <cerrno>
#include <cstring>

#include "common/file_util.h"
#include "common/status.h"

namespace trellis::web {

TlsFiles::Stamp TlsFiles::StampOf(const struct stat& st) {
  return {st.st_ino, st.st_size,
          static_cast<int64_t>(st.st_mtim.tv_sec) * 1000000000 + st.st_mtim.tv_nsec};
}

absl::StatusOr<std::shared_ptr<const TlsIdentity>> TlsFiles::Current() {
  absl::MutexLock lock(&mu_);
  absl::StatusOr<std::shared_ptr<const TlsIdentity>> fresh = ReadLocked();
  // Mid-rotation the two files may briefly disagree (the key renamed, the chain not yet):
  // the last good pair is served meanwhile and the files are read again next time.
  if (!fresh.ok() && current_) return current_;
  return fresh;
}

absl::StatusOr<std::shared_ptr<const TlsIdentity>> TlsFiles::ReadLocked() {
  struct stat cert_st {};
  struct stat key_st {};
  if (::stat(cert_path_.c_str(), &cert_st) != 0) {
    return absl::InvalidArgumentError("cannot read certificate file " + cert_path_ + ": " +
                                      std::strerror(errno));
  }
  if (::stat(key_path_.c_str(), &key_st) != 0) {
    return absl::InvalidArgumentError("cannot read key file " + key_path_ + ": " +
                                      std::strerror(errno));
  }
  if (current_ && StampOf(cert_st) == cert_stamp_ && StampOf(key_st) == key_stamp_) {
    return current_;
  }
  TRELLIS_ASSIGN_OR_RETURN(std::string cert_pem, common::ReadFile(cert_path_));
  absl::StatusOr<std::vector<common::Certificate>> chain =
      common::Certificate::ChainFromPem(cert_pem);
  if (!chain.ok()) {
    return absl::InvalidArgumentError("certificate file " + cert_path_ + ": " +
                                      std::string(chain.status().message()));
  }
  TRELLIS_ASSIGN_OR_RETURN(std::string key_pem, common::ReadFile(key_path_));
  absl::StatusOr<common::PrivateKey> key = common::PrivateKey::FromPem(key_pem);
  OPENSSL_cleanse(key_pem.data(), key_pem.size());
  if (!key.ok()) {
    return absl::InvalidArgumentError("key file " + key_path_ + ": " +
                                      std::string(key.status().message()));
  }
  if (absl::Status match = common::CheckKeyMatchesCertificate(*key, chain->front()); !match.ok()) {
    return absl::InvalidArgumentError("key file " + key_path_ + " does not match the leaf of " +
                                      cert_path_);
  }
  current_ = std::make_shared<const TlsIdentity>(TlsIdentity{*std::move(chain), *std::move(key)});
  cert_stamp_ = StampOf(cert_st);
  key_stamp_ = StampOf(key_st);
  return current_;
}

}  // namespace trellis::web
