// The signals a Trellis process takes (SIGTERM and SIGINT stop it, SIGHUP reopens the log
// file), shared by both runtimes.
#pragma once

#include <signal.h>

namespace trellis::runtime {

// SIGTERM, SIGINT and SIGHUP. Block them before any thread starts and take them with
// WaitForStopSignal, so only the waiting thread sees them.
sigset_t ProcessSignals();

// Waits for SIGTERM or SIGINT and returns it. A SIGHUP meanwhile reopens the log file (so
// logrotate's rename-then-HUP starts a new file) and the wait goes on.
int WaitForStopSignal();

}  // namespace trellis::runtime
