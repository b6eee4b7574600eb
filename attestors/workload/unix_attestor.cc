// Unix workload attestation: credentials from the socket (or /proc), group and user names,
// executable path and hash from /proc.
#include "attestors/workload/unix_attestor.h"

#include <fcntl.h>
#include <grp.h>
#include <openssl/evp.h>
#include <pwd.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <ctime>
#include <memory>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "common/openssl_util.h"

namespace trellis::attestors {
namespace {

struct StatusFields {
  uint32_t uid = 0;
  uint32_t gid = 0;
  std::vector<uint32_t> groups;
};

// Reads "Uid:", "Gid:" (effective = second column) and "Groups:" from /proc/<pid>/status.
absl::StatusOr<StatusFields> ReadStatus(const std::string& path, pid_t pid) {
  auto text = ReadProcFile(path);
  if (!text.ok()) {
    return absl::UnauthenticatedError(absl::StrCat("process ", pid, " no longer exists"));
  }
  StatusFields out;
  bool have_uid = false, have_gid = false;
  for (absl::string_view line : absl::StrSplit(*text, '\n')) {
    auto parse_ids = [&](absl::string_view rest,
                         bool second) -> absl::StatusOr<std::vector<uint32_t>> {
      std::vector<uint32_t> ids;
      for (absl::string_view f : absl::StrSplit(rest, absl::ByAnyChar(" \t"), absl::SkipEmpty())) {
        uint32_t v = 0;
        if (!absl::SimpleAtoi(f, &v)) {
          return absl::UnavailableError(absl::StrCat("cannot parse ", path, ": ", line));
        }
        ids.push_back(v);
      }
      if (second && ids.size() < 2) {
        return absl::UnavailableError(absl::StrCat("cannot parse ", path, ": ", line));
      }
      return ids;
    };
    absl::string_view view(line);
    if (absl::ConsumePrefix(&view, "Uid:")) {
      auto ids = parse_ids(view, true);
      if (!ids.ok()) return ids.status();
      out.uid = (*ids)[1];
      have_uid = true;
    } else if (absl::ConsumePrefix(&view, "Gid:")) {
      auto ids = parse_ids(view, true);
      if (!ids.ok()) return ids.status();
      out.gid = (*ids)[1];
      have_gid = true;
    } else if (absl::ConsumePrefix(&view, "Groups:")) {
      auto ids = parse_ids(view, false);
      if (!ids.ok()) return ids.status();
      out.groups = *ids;
    }
  }
  if (!have_uid || !have_gid) {
    return absl::UnauthenticatedError(absl::StrCat("process ", pid, " no longer exists"));
  }
  return out;
}

std::optional<std::string> LookUpUser(uint32_t uid) {
  struct passwd pw, *result = nullptr;
  std::vector<char> buf(16384);
  if (getpwuid_r(uid, &pw, buf.data(), buf.size(), &result) != 0 || result == nullptr) {
    return std::nullopt;
  }
  return std::string(result->pw_name);
}

std::optional<std::string> LookUpGroup(uint32_t gid) {
  struct group gr, *result = nullptr;
  std::vector<char> buf(65536);
  if (getgrgid_r(gid, &gr, buf.data(), buf.size(), &result) != 0 || result == nullptr) {
    return std::nullopt;
  }
  return std::string(result->gr_name);
}

constexpr int64_t kNameTtlNs = 30'000'000'000;
constexpr int64_t kStampCheckNs = 1'000'000'000;
constexpr size_t kMaxCachedNames = 4096;

int64_t SteadyNs() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<int64_t>(ts.tv_sec) * 1000000000 + ts.tv_nsec;
}

struct FdCloser {
  int fd;
  ~FdCloser() {
    if (fd >= 0) close(fd);
  }
};

}  // namespace

UnixWorkloadAttestor::FileStamp UnixWorkloadAttestor::StampOf(const struct stat& st) {
  return {static_cast<uint64_t>(st.st_dev), static_cast<uint64_t>(st.st_ino),
          static_cast<int64_t>(st.st_size),
          static_cast<int64_t>(st.st_mtim.tv_sec) * 1000000000 + st.st_mtim.tv_nsec};
}

absl::StatusOr<std::string> UnixWorkloadAttestor::BinarySha256(const std::string& exe_link) {
  int fd = open(exe_link.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    return absl::UnavailableError(absl::StrCat("cannot open ", exe_link, ": ", strerror(errno)));
  }
  FdCloser closer{fd};
  struct stat st;
  if (fstat(fd, &st) != 0) return absl::UnavailableError("cannot stat the workload binary");
  const FileStamp key = StampOf(st);
  {
    absl::MutexLock lock(&hash_mu_);
    auto it = hash_cache_.find(key);
    if (it != hash_cache_.end()) return it->second;
  }
  std::unique_ptr<EVP_MD_CTX, decltype(&EVP_MD_CTX_free)> ctx(EVP_MD_CTX_new(), EVP_MD_CTX_free);
  if (!ctx || EVP_DigestInit_ex(ctx.get(), EVP_sha256(), nullptr) != 1) {
    return absl::InternalError("cannot initialise SHA-256");
  }
  std::vector<char> buf(1 << 16);
  while (true) {
    ssize_t n = read(fd, buf.data(), buf.size());
    if (n < 0) {
      if (errno == EINTR) continue;
      return absl::UnavailableError("cannot read the workload binary");
    }
    if (n == 0) break;
    EVP_DigestUpdate(ctx.get(), buf.data(), static_cast<size_t>(n));
  }
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  EVP_DigestFinal_ex(ctx.get(), md, &len);
  std::string hex = common::HexEncode(std::string_view(reinterpret_cast<const char*>(md), len));
  absl::MutexLock lock(&hash_mu_);
  if (hash_cache_.size() > 1024) hash_cache_.clear();
  hash_cache_[key] = hex;
  return hex;
}

std::optional<std::string> UnixWorkloadAttestor::CachedLookup(
    NameCache* cache, const char* database, uint32_t id,
    std::optional<std::string> (*lookup)(uint32_t)) {
  int64_t now = SteadyNs();
  // The database file is looked at no more than once a second; a change empties the cache.
  if (now - cache->stamp_checked_ns >= kStampCheckNs || cache->stamp_checked_ns == 0) {
    FileStamp stamp;
    struct stat st;
    if (stat(database, &st) == 0) stamp = StampOf(st);
    if (stamp != cache->stamp) cache->names.clear();
    cache->stamp = stamp;
    cache->stamp_checked_ns = now;
  }
  auto it = cache->names.find(id);
  if (it != cache->names.end() && now - it->second.looked_up_ns < kNameTtlNs) {
    return it->second.name;
  }
  if (cache->names.size() >= kMaxCachedNames) cache->names.clear();
  CachedName& entry = cache->names[id];
  entry = {lookup(id), now};
  return entry.name;
}

std::optional<std::string> UnixWorkloadAttestor::UserName(uint32_t uid) {
  absl::MutexLock lock(&names_mu_);
  return CachedLookup(&users_, "/etc/passwd", uid, &LookUpUser);
}

std::optional<std::string> UnixWorkloadAttestor::GroupName(uint32_t gid) {
  absl::MutexLock lock(&names_mu_);
  return CachedLookup(&groups_, "/etc/group", gid, &LookUpGroup);
}

absl::StatusOr<std::vector<SelectorString>> UnixWorkloadAttestor::Attest(
    const CallerCredentials& caller) {
  auto pin = ProcessPin::Pin(caller.pid);
  if (!pin.ok()) return pin.status();
  auto selectors = ReadSelectors(caller, *pin);
  // Anything read from /proc may belong to a newer holder of the pid otherwise.
  if (ReadsProcess(caller)) {
    if (absl::Status s = pin->Check(); !s.ok()) return s;
  }
  return selectors;
}

absl::StatusOr<std::vector<SelectorString>> UnixWorkloadAttestor::AttestPinned(
    const CallerCredentials& caller, const ProcessPin& pin) {
  return ReadSelectors(caller, pin);
}

absl::StatusOr<std::vector<SelectorString>> UnixWorkloadAttestor::ReadSelectors(
    const CallerCredentials& caller, const ProcessPin& pin) {
  const std::string dir = absl::StrCat("/proc/", pin.pid());
  absl::StatusOr<StatusFields> fields;
  if (caller.groups.has_value()) {
    fields = StatusFields{caller.uid, caller.gid, *caller.groups};
  } else {
    fields = ReadStatus(dir + "/status", pin.pid());
    if (!fields.ok()) return fields.status();
  }

  std::vector<SelectorString> out;
  out.push_back(absl::StrCat("unix:uid:", fields->uid));
  if (auto name = UserName(fields->uid)) out.push_back("unix:user:" + *name);
  out.push_back(absl::StrCat("unix:gid:", fields->gid));
  if (auto name = GroupName(fields->gid)) out.push_back("unix:group:" + *name);
  for (uint32_t g : fields->groups) {
    out.push_back(absl::StrCat("unix:supplementary_gid:", g));
    if (auto name = GroupName(g)) out.push_back("unix:supplementary_group:" + *name);
  }
  if (options_.discover_workload_path) {
    const std::string exe_link = dir + "/exe";
    std::vector<char> buf(4096);
    ssize_t n = readlink(exe_link.c_str(), buf.data(), buf.size() - 1);
    if (n < 0) {
      if (pin.Check().ok()) {
        return absl::UnavailableError(
            absl::StrCat("cannot read the path of process ", pin.pid(), ": ", strerror(errno)));
      }
      return pin.Check();
    }
    out.push_back("unix:path:" + std::string(buf.data(), static_cast<size_t>(n)));
    auto hash = BinarySha256(exe_link);
    if (!hash.ok()) {
      if (absl::Status s = pin.Check(); !s.ok()) return s;
      return hash.status();
    }
    out.push_back("unix:sha256:" + *hash);
  }
  return out;
}

}  // namespace trellis::attestors
