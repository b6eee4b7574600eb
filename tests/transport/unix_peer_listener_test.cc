// The admin socket's listener: the socket file's mode, refusing once stopped, and removing
// only the socket file it bound.
#include "transport/unix_peer_listener.h"

#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <string>

#include "gtest/gtest.h"
#include "tests/testutil/temp_dir.h"

namespace trellis::transport {
namespace {

// connect(2) to `path`; 0 or the errno it failed with.
int ConnectErrno(const std::string& path) {
  int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::strncpy(addr.sun_path, path.c_str(), sizeof(addr.sun_path) - 1);
  int rc = ::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr));
  int err = rc == 0 ? 0 : errno;
  ::close(fd);
  return err;
}

TEST(UnixPeerListener, SocketFileHasTheRequestedModeWhateverTheUmask) {
  testutil::TempDir dir("peer-listener");
  for (mode_t umask_value : {mode_t{0}, mode_t{022}, mode_t{077}}) {
    mode_t old = ::umask(umask_value);
    const std::string path = dir.Sub("admin-" + std::to_string(umask_value) + ".sock");
    auto l = UnixPeerListener::Bind(path, 0770);
    ::umask(old);
    ASSERT_TRUE(l.ok()) << l.status();
    struct stat st;
    ASSERT_EQ(::stat(path.c_str(), &st), 0);
    EXPECT_EQ(st.st_mode & 0777, 0770u) << "umask " << umask_value;
  }
}

TEST(UnixPeerListener, StoppedListenerRefusesConnectionsAtOnce) {
  testutil::TempDir dir("peer-listener");
  const std::string path = dir.Sub("admin.sock");
  auto l = UnixPeerListener::Bind(path, 0770);
  ASSERT_TRUE(l.ok()) << l.status();
  EXPECT_EQ(ConnectErrno(path), 0);  // listening: queued until accepted
  (*l)->StopAccepting();
  EXPECT_EQ(ConnectErrno(path), ECONNREFUSED);
}

TEST(UnixPeerListener, CloseRemovesItsOwnSocketFile) {
  testutil::TempDir dir("peer-listener");
  const std::string path = dir.Sub("admin.sock");
  auto l = UnixPeerListener::Bind(path, 0770);
  ASSERT_TRUE(l.ok()) << l.status();
  (*l)->Close();
  struct stat st;
  EXPECT_NE(::lstat(path.c_str(), &st), 0);
}

TEST(UnixPeerListener, CloseLeavesASocketAnotherProcessBoundSince) {
  testutil::TempDir dir("peer-listener");
  const std::string path = dir.Sub("admin.sock");
  auto old_listener = UnixPeerListener::Bind(path, 0770);
  ASSERT_TRUE(old_listener.ok()) << old_listener.status();
  // A new server removed the stale file and bound its own at the same path.
  ASSERT_EQ(::unlink(path.c_str()), 0);
  auto new_listener = UnixPeerListener::Bind(path, 0770);
  ASSERT_TRUE(new_listener.ok()) << new_listener.status();
  old_listener->reset();
  EXPECT_EQ(ConnectErrno(path), 0) << "the new server's socket was removed";
}

TEST(UnixPeerListener, LookupOfAnUnknownPeerIsEmpty) {
  testutil::TempDir dir("peer-listener");
  auto l = UnixPeerListener::Bind(dir.Sub("admin.sock"), 0770);
  ASSERT_TRUE(l.ok()) << l.status();
  EXPECT_FALSE((*l)->Lookup("fd:12345").has_value());
  EXPECT_FALSE((*l)->Lookup("ipv4:127.0.0.1:1").has_value());
}

}  // namespace
}  // namespace trellis::transport
