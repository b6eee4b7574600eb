// Configuration pieces the server and the agent share: logging, health checks, telemetry,
// and the walk over `plugins { Type "name" { plugin_data { } } }`.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "common/config/section.h"

namespace trellis::common::config {

enum class LogLevel { kDebug, kInfo, kWarn, kError };
enum class LogFormat { kText, kJson };

std::string LogLevelName(LogLevel level);

// `health_checks { }`: HTTP liveness/readiness endpoints, off unless listener_enabled.
struct HealthChecksConfig {
  bool listener_enabled = false;
  std::string bind_address = "localhost";
  uint16_t bind_port = 80;
  std::string live_path = "/live";
  std::string ready_path = "/ready";
};

// `telemetry { Prometheus { host, port } }`.
struct PrometheusConfig {
  std::string host = "localhost";
  uint16_t port = 0;
};
struct TelemetryConfig {
  std::optional<PrometheusConfig> prometheus;
};

// Reads log_level (DEBUG|INFO|WARN|ERROR, any case), log_format (text|json) and log_file (a
// path whose directory must exist; empty: stderr).
absl::Status ReadLogSettings(Section& section, LogLevel* level, LogFormat* format,
                             std::string* file);
absl::StatusOr<HealthChecksConfig> ReadHealthChecks(Section& section);
absl::StatusOr<TelemetryConfig> ReadTelemetry(Section& section);
// Reads the optional top-level `health_checks` and `telemetry` blocks both binaries share,
// then refuses any top-level key nobody read.
absl::Status ReadSharedBlocksAndFinish(Section& top, HealthChecksConfig* health,
                                       TelemetryConfig* telemetry);

// One `key "label" { ... }` block. In the tree a key maps to an object keyed by label, or (as
// JSON files may write it) to a list of such objects.
struct LabelledBlock {
  std::string label;
  Position pos;
  std::string path;   // "<parent>.<key>.<label>"
  const Value* body;  // an object
};

// The blocks under `key` of `parent` (marking the key known), in file order. Fails when the
// value has another shape, a body is not a block, or a label repeats.
absl::StatusOr<std::vector<LabelledBlock>> ReadLabelledBlocks(Section& parent,
                                                              std::string_view key);

// One configured plugin: `Type "name" { plugin_data { ... } }`.
struct PluginEntry {
  std::string type;
  std::string name;
  Position pos;
  std::string path;          // "plugins.Type.name", for messages
  const Value* body;         // the plugin's block
  const Value* plugin_data;  // nullptr when absent
};

// Every plugin under `plugins`, in file order. Each type maps to an object keyed by plugin
// name, or (JSON style) to a list of such objects. A plugin body may hold only plugin_data,
// which must be a block. Repeating a name within a type is an error, and so is a type not in
// `known_types` (even one with no plugins under it).
absl::StatusOr<std::vector<PluginEntry>> ReadPluginEntries(
    Section& plugins, const std::vector<std::string>& known_types);

// Opens an entry's plugin_data as a Section (an empty block when absent).
absl::StatusOr<Section> OpenPluginData(const Document& doc, const PluginEntry& entry);

}  // namespace trellis::common::config
