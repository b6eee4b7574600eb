// TempDir: a fresh private directory for one test, removed with everything in it afterwards.
#pragma once

#include <string>
#include <string_view>

namespace trellis::testutil {

// Creates "<tmp>/<prefix>-XXXXXX" (mode 0700) under $TEST_TMPDIR, else $TMPDIR, else /tmp.
// Keep the prefix short: tests put Unix sockets in here, and socket paths are limited to
// 107 bytes. Aborts the test binary when the directory cannot be made, since no test can
// run without it.
class TempDir {
 public:
  explicit TempDir(std::string_view prefix = "trellis-test");
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;

  const std::string& path() const { return path_; }
  // "<path>/<name>", for files and subdirectories inside the directory.
  std::string Sub(std::string_view name) const;
  // Writes `content` to "<path>/<name>" and returns that path; a failed write fails the test.
  std::string Write(std::string_view name, std::string_view content) const;

 private:
  std::string path_;
};

}  // namespace trellis::testutil
