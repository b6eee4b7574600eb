// The agent's log lines on stderr: time, level and message, below the configured level dropped.
#pragma once

#include <string>

#include "common/config/shared_config.h"

namespace trellis::agent {

void SetLogLevel(common::config::LogLevel level);
// `level` is one of "debug", "info", "warning", "error".
void Log(const std::string& level, const std::string& msg);

}  // namespace trellis::agent
