// KeyManager implementations: PKCS#8 PEM files on disk, or process memory.
#include "server/key_manager.h"

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

absl::Status ValidateKeyId(const std::string& id) {
  if (id.empty() || id.size() > 128) {
    return absl::InvalidArgumentError("key id must be 1..128 characters, got \"" + id + "\"");
  }
  for (char c : id) {
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '-' || c == '_' || c == '.';
    if (!ok) {
      return absl::InvalidArgumentError("key id \"" + id +
                                        "\" has a character outside [A-Za-z0-9._-]");
    }
  }
  if (id == "." || id == "..")
    return absl::InvalidArgumentError("key id \"" + id + "\" is reserved");
  return absl::OkStatus();
}

// ---- DiskKeyManager ----

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
  std::lock_guard<std::mutex> lock(mu_);
  // WritePrivateKeyFile re-tightens the directory and replaces the file atomically (0600).
  TRELLIS_RETURN_IF_ERROR(common::WritePrivateKeyFile(path, key));
  return key;
}

absl::StatusOr<common::PrivateKey> DiskKeyManager::GetKey(const std::string& id) {
  TRELLIS_ASSIGN_OR_RETURN(std::string path, PathFor(id));
  std::lock_guard<std::mutex> lock(mu_);
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
  std::lock_guard<std::mutex> lock(mu_);
  if (::unlink(path.c_str()) != 0 && errno != ENOENT) {
    return absl::InternalError(path + ": " + std::strerror(errno));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::vector<std::string>> DiskKeyManager::ListKeyIds() {
  std::lock_guard<std::mutex> lock(mu_);
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

// ---- MemoryKeyManager ----

absl::StatusOr<common::PrivateKey> MemoryKeyManager::GenerateKey(const std::string& id,
                                                                 common::KeyType type) {
  TRELLIS_RETURN_IF_ERROR(ValidateKeyId(id));
  TRELLIS_ASSIGN_OR_RETURN(common::PrivateKey key, common::PrivateKey::Generate(type));
  std::lock_guard<std::mutex> lock(mu_);
  keys_.insert_or_assign(id, key);
  return key;
}

absl::StatusOr<common::PrivateKey> MemoryKeyManager::GetKey(const std::string& id) {
  TRELLIS_RETURN_IF_ERROR(ValidateKeyId(id));
  std::lock_guard<std::mutex> lock(mu_);
  auto it = keys_.find(id);
  if (it == keys_.end()) return absl::NotFoundError("no key \"" + id + "\"");
  return it->second;
}

absl::Status MemoryKeyManager::DeleteKey(const std::string& id) {
  TRELLIS_RETURN_IF_ERROR(ValidateKeyId(id));
  std::lock_guard<std::mutex> lock(mu_);
  keys_.erase(id);
  return absl::OkStatus();
}

absl::StatusOr<std::vector<std::string>> MemoryKeyManager::ListKeyIds() {
  std::lock_guard<std::mutex> lock(mu_);
  std::vector<std::string> ids;
  for (const auto& [id, key] : keys_) ids.push_back(id);
  return ids;
}

absl::StatusOr<std::unique_ptr<KeyManager>> CreateKeyManager(
    const common::config::ServerKeyManagerConfig& config, const std::string& data_dir) {
  if (const auto* disk = std::get_if<common::config::DiskKeyManagerConfig>(&config)) {
    std::string path = disk->keys_path.empty() ? data_dir + "/keys" : disk->keys_path;
    TRELLIS_ASSIGN_OR_RETURN(auto km, DiskKeyManager::Create(path));
    return std::unique_ptr<KeyManager>(std::move(km));
  }
  return std::unique_ptr<KeyManager>(std::make_unique<MemoryKeyManager>());
}

}  // namespace trellis::server
