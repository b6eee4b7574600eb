// Atomic file writes: temp file, fsync, rename, fsync directory.
#include "common/file_util.h"

#include <errno.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

namespace trellis::common {
namespace {

absl::Status ErrnoError(const std::string& what, int err) {
  auto code = (err == ENOENT || err == ENOTDIR) ? absl::StatusCode::kNotFound
              : (err == EACCES || err == EPERM) ? absl::StatusCode::kPermissionDenied
                                                : absl::StatusCode::kInternal;
  return absl::Status(code, what + ": " + std::strerror(err));
}

std::string ParentDir(const std::string& path) {
  std::filesystem::path p(path);
  auto parent = p.parent_path();
  return parent.empty() ? "." : parent.string();
}

}  // namespace

absl::Status EnsurePrivateDir(const std::string& dir) {
  std::error_code ec;
  std::filesystem::path p(dir);
  if (!std::filesystem::exists(p, ec)) {
    auto parent = p.parent_path();
    if (!parent.empty() && !std::filesystem::exists(parent, ec)) {
      std::filesystem::create_directories(parent, ec);
      if (ec) return absl::InternalError("creating " + parent.string() + ": " + ec.message());
    }
    if (mkdir(dir.c_str(), 0700) != 0 && errno != EEXIST) {
      return ErrnoError("creating directory " + dir, errno);
    }
  }
  struct stat st;
  if (stat(dir.c_str(), &st) != 0) return ErrnoError("stat " + dir, errno);
  if (!S_ISDIR(st.st_mode)) return absl::FailedPreconditionError(dir + " is not a directory");
  if ((st.st_mode & 0777) != 0700 && chmod(dir.c_str(), 0700) != 0) {
    return ErrnoError("chmod 0700 " + dir, errno);
  }
  return absl::OkStatus();
}

absl::Status WriteFileAtomic(const std::string& path, std::string_view data, mode_t mode) {
  std::string dir = ParentDir(path);
  std::random_device rd;
  std::string tmp = absl::StrCat(path, ".tmp.", getpid(), ".", rd());
  int fd = open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode);
  if (fd < 0) return ErrnoError("creating " + tmp, errno);
  auto fail = [&](const std::string& what, int err) {
    close(fd);
    unlink(tmp.c_str());
    return ErrnoError(what, err);
  };
  // open() honours the umask; set the exact mode explicitly.
  if (fchmod(fd, mode) != 0) return fail("chmod " + tmp, errno);
  size_t off = 0;
  while (off < data.size()) {
    ssize_t n = write(fd, data.data() + off, data.size() - off);
    if (n < 0) {
      if (errno == EINTR) continue;
      return fail("writing " + tmp, errno);
    }
    off += static_cast<size_t>(n);
  }
  if (fsync(fd) != 0) return fail("fsync " + tmp, errno);
  if (close(fd) != 0) {
    int err = errno;
    unlink(tmp.c_str());
    return ErrnoError("closing " + tmp, err);
  }
  if (rename(tmp.c_str(), path.c_str()) != 0) {
    int err = errno;
    unlink(tmp.c_str());
    return ErrnoError("renaming to " + path, err);
  }
  int dfd = open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd >= 0) {
    fsync(dfd);
    close(dfd);
  }
  return absl::OkStatus();
}

absl::Status WritePrivateFile(const std::string& path, std::string_view data) {
  absl::Status s = EnsurePrivateDir(ParentDir(path));
  if (!s.ok()) return s;
  return WriteFileAtomic(path, data, 0600);
}

absl::StatusOr<std::string> ReadFile(const std::string& path) {
  int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return ErrnoError("opening " + path, errno);
  std::string out;
  char buf[8192];
  while (true) {
    ssize_t n = read(fd, buf, sizeof(buf));
    if (n < 0) {
      if (errno == EINTR) continue;
      int err = errno;
      close(fd);
      return ErrnoError("reading " + path, err);
    }
    if (n == 0) break;
    out.append(buf, static_cast<size_t>(n));
  }
  close(fd);
  return out;
}

}  // namespace trellis::common
