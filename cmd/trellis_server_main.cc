// trellis-server: the Trellis server binary; all logic lives in cmd/ libraries and components.
#include <iostream>
#include <string>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "cmd/cli.h"
#include "cmd/server_cli.h"

int main(int argc, char** argv) {
  // Abseil's lock-order cycle detection (on where Abseil is built without NDEBUG, as Debian's
  // is) keeps a graph of every mutex ever held with another; with a mutex per watch stream it
  // cost a tenth of a busy server's CPU. The tests keep it on; the binaries turn it off.
  absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);
  return trellis::cmd::ServerMain(std::vector<std::string>(argv + 1, argv + argc), std::cout,
                                  std::cerr, trellis::cmd::ServerCommands());
}
