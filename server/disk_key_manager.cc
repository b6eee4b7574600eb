// DiskKeyManager: atomic 0600 PEM files in a 0700 directory, loose files refused.
#include "server/disk_key_manager.h"

#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>

#include "absl/strings/str_cat.h"
#include "common/file_util.h"
#include "common/status.h"

namespace trellis::server {
namespace {

constexpr char kKeySuffix[] = ".pem";

}  // namespace

absl::StatusOr<std::unique_ptr<DiskKeyManager>> DiskKeyManager::Create(
    const std::string& keys_path) {
  if (keys_path.empty()) return absl::InvalidArgumentError("keys_path is empty");
  TRELLIS_RETURN_IF_ERROR(Annotate(common::EnsurePrivateDir(keys_path), "keys_path"));
  return std::unique_ptr<DiskKeyManager>(new DiskKeyManager(keys_path));
}

absl::StatusOr<std::string> DiskKeyManager::PathFor(const std::string& id) const {
  TRELLIS_RETURN_IF_ERROR(ValidateKeyId(id));
  return absl::StrCat(keys_path_, "/", id, kKeySuffix);
}

absl::StatusOr<common::PrivateKey> DiskKeyManager::GenerateKey(const std::string& id,
                                                               common::KeyType type) {
  TRELLIS_ASSIGN_OR_RETURN(std::string path, PathFor(id));
  TRELLIS_ASSIGN_OR_RETURN(common::PrivateKey key, common::PrivateKey::Generate(type));
  absl::MutexLock lock(&files_mu_);
  // WritePrivateKeyFile re-tightens the directory and replaces the file atomically (0600).
  TRELLIS_RETURN_IF_ERROR(common::WritePrivateKeyFile(path, key));
  return key;
}

absl::StatusOr<common::PrivateKey> DiskKeyManager::GetKey(const std::string& id) {
  TRELLIS_ASSIGN_OR_RETURN(std::string path, PathFor(id));
  absl::MutexLock lock(&files_mu_);
  struct stat st;
  if (::lstat(path.c_str(), &st) != 0) {
    if (errno == ENOENT) return absl::NotFoundError("no key \"" + id + "\" in " + keys_path_);
    return absl::InternalError(path + ": " + std::strerror(errno));
  }
  if (!S_ISREG(st.st_mode)) {
    return absl::FailedPreconditionError("key file " + path + " is not a regular file");
  }
  if ((st.st_mode & 077) != 0) {
    return absl::FailedPreconditionError(absl::StrCat(
        "key file ", path, " is accessible by group or others (mode ", absl::Hex(st.st_mode & 0777),
        "); refusing to use it: chmod 600 it or delete it"));
  }
  if (st.st_uid != ::geteuid()) {
    return absl::FailedPreconditionError("key file " + path + " is owned by another user");
  }
  return common::ReadPrivateKeyFile(path);
}

absl::Status DiskKeyManager::DeleteKey(const std::string& id) {
  TRELLIS_ASSIGN_OR_RETURN(std::string path, PathFor(id));
  absl::MutexLock lock(&files_mu_);
  if (::unlink(path.c_str()) != 0 && errno != ENOENT) {
    return absl::InternalError(path + ": " + std::strerror(errno));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::vector<std::string>> DiskKeyManager::ListKeyIds() {
  absl::MutexLock lock(&files_mu_);
  std::vector<std::string> ids;
  std::error_code ec;
  for (const auto& e : std::filesystem::directory_iterator(keys_path_, ec)) {
    std::string name = e.path().filename().string();
    const size_t n = sizeof(kKeySuffix) - 1;
    if (name.size() <= n || name.compare(name.size() - n, n, kKeySuffix) != 0) continue;
    std::string id = name.substr(0, name.size() - n);
    if (ValidateKeyId(id).ok()) ids.push_back(std::move(id));
  }
  if (ec) return absl::InternalError(keys_path_ + ": " + ec.message());
  std::sort(ids.begin(), ids.end());
  return ids;
}

}  // namespace trellis::server
