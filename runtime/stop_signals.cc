// The stop signal set.
#include "runtime/stop_signals.h"

namespace trellis::runtime {

sigset_t StopSignals() {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGINT);
  return set;
}

}  // namespace trellis::runtime
