// The process signal set and the wait that serves SIGHUP until a stop signal comes.
#include "runtime/stop_signals.h"

#include "common/log.h"

namespace trellis::runtime {

sigset_t ProcessSignals() {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGHUP);
  return set;
}

int WaitForStopSignal() {
  const sigset_t set = ProcessSignals();
  while (true) {
    int sig = 0;
    if (sigwait(&set, &sig) != 0) continue;
    if (sig != SIGHUP) return sig;
    // Either outcome is logged (a failure to the old file, which stays in use).
    (void)common::ReopenLogFile();
  }
}

}  // namespace trellis::runtime
