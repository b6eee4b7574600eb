// The signals that stop a Trellis process (SIGTERM, SIGINT), shared by both runtimes.
#pragma once

#include <signal.h>

namespace trellis::runtime {

// SIGTERM and SIGINT. Block them before any thread starts and take them with sigwait, so only
// the waiting thread sees them.
sigset_t StopSignals();

}  // namespace trellis::runtime
