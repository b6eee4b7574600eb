// Logging, health-check, telemetry and plugin-list parts shared by server and agent configs.
#include "common/config/shared_config.h"

#include <algorithm>
#include <filesystem>
#include <map>
#include <set>
#include <string>

#include "absl/strings/str_join.h"

namespace trellis::common::config {
std::string LogLevelName(LogLevel level) {
  switch (level) {
    case LogLevel::kDebug:
      return "DEBUG";
    case LogLevel::kInfo:
      return "INFO";
    case LogLevel::kWarn:
      return "WARN";
    case LogLevel::kError:
      return "ERROR";
  }
  return "INFO";
}

absl::Status ReadLogSettings(Section& section, LogLevel* level, LogFormat* format,
                             std::string* file) {
  static const std::map<std::string, LogLevel> kLevels = {{"DEBUG", LogLevel::kDebug},
                                                          {"INFO", LogLevel::kInfo},
                                                          {"WARN", LogLevel::kWarn},
                                                          {"ERROR", LogLevel::kError}};
  static const std::map<std::string, LogFormat> kFormats = {{"text", LogFormat::kText},
                                                            {"json", LogFormat::kJson}};
  TRELLIS_RETURN_IF_ERROR(section.ReadEnum("log_level", kLevels, true, level));
  TRELLIS_RETURN_IF_ERROR(section.ReadEnum("log_format", kFormats, true, format));
  TRELLIS_RETURN_IF_ERROR(section.ReadNonEmptyString("log_file", file));
  if (file->empty()) return absl::OkStatus();
  // The file itself is created at start-up; a missing directory is a mistake in the file.
  std::filesystem::path dir = std::filesystem::path(*file).parent_path();
  if (dir.empty()) dir = ".";
  std::error_code ec;
  if (!std::filesystem::is_directory(dir, ec)) {
    return section.ErrorAt(section.PositionOf("log_file"),
                           section.KeyPath("log_file") + ": directory " +
                               QuoteForError(dir.string()) + " does not exist");
  }
  if (std::filesystem::is_directory(*file, ec)) {
    return section.ErrorAt(
        section.PositionOf("log_file"),
        section.KeyPath("log_file") + ": " + QuoteForError(*file) + " is a directory");
  }
  return absl::OkStatus();
}

absl::StatusOr<HealthChecksConfig> ReadHealthChecks(Section& s) {
  HealthChecksConfig hc;
  TRELLIS_RETURN_IF_ERROR(s.ReadBool("listener_enabled", &hc.listener_enabled));
  TRELLIS_RETURN_IF_ERROR(s.ReadString("bind_address", &hc.bind_address));
  TRELLIS_RETURN_IF_ERROR(s.ReadPort("bind_port", &hc.bind_port));
  TRELLIS_RETURN_IF_ERROR(s.ReadString("live_path", &hc.live_path));
  TRELLIS_RETURN_IF_ERROR(s.ReadString("ready_path", &hc.ready_path));
  for (const char* key : {"live_path", "ready_path"}) {
    const std::string& p = std::string(key) == "live_path" ? hc.live_path : hc.ready_path;
    if (p.empty() || p[0] != '/') {
      return s.ErrorAt(s.PositionOf(key), s.KeyPath(key) +
                                              ": expected a path starting with "
                                              "'/', found " +
                                              QuoteForError(p));
    }
  }
  if (hc.live_path == hc.ready_path) {
    return s.ErrorAt(s.PositionOf("ready_path"),
                     s.KeyPath("ready_path") + ": must differ from live_path");
  }
  TRELLIS_RETURN_IF_ERROR(s.Finish());
  return hc;
}

absl::StatusOr<TelemetryConfig> ReadTelemetry(Section& s) {
  TelemetryConfig t;
  TRELLIS_ASSIGN_OR_RETURN(std::optional<Section> prom, s.Child("Prometheus"));
  if (prom.has_value()) {
    PrometheusConfig p;
    TRELLIS_RETURN_IF_ERROR(prom->ReadString("host", &p.host));
    if (prom->Get("port") == nullptr) return prom->Missing("port");
    TRELLIS_RETURN_IF_ERROR(prom->ReadPort("port", &p.port));
    TRELLIS_RETURN_IF_ERROR(prom->Finish());
    t.prometheus = p;
  }
  TRELLIS_RETURN_IF_ERROR(s.Finish());
  return t;
}

namespace {

// The labelled blocks of `value`, the value of key `key` in `parent`.
absl::StatusOr<std::vector<LabelledBlock>> LabelledBlocksOf(const Section& parent,
                                                            const std::string& key,
                                                            const Value& value, Position key_pos) {
  std::vector<LabelledBlock> blocks;
  std::string key_path = parent.KeyPath(key);
  std::vector<const Value*> groups;
  if (value.is_object()) {
    groups.push_back(&value);
  } else if (value.is_list()) {
    for (const Value& item : value.items) {
      if (!item.is_object()) {
        return parent.ErrorAt(item.pos.known() ? item.pos : key_pos,
                              key_path +
                                  ": expected a list of {\"label\": {...}} objects, "
                                  "found " +
                                  DescribeValue(item) + " in the list");
      }
      groups.push_back(&item);
    }
  } else {
    return parent.WrongValue(key, value, "blocks written " + key + " \"label\" { ... }");
  }
  std::set<std::string> seen;
  for (const Value* group : groups) {
    for (const Value::Member& m : group->members) {
      Position pos = m.key_pos.known() ? m.key_pos : key_pos;
      if (!seen.insert(m.key).second) {
        return parent.ErrorAt(pos, "duplicate block " + key_path + " " + QuoteForError(m.key));
      }
      std::string path = key_path + "." + m.key;
      if (!m.value.is_object()) {
        return parent.ErrorAt(m.value.pos.known() ? m.value.pos : pos,
                              path + ": expected a block, found " + DescribeValue(m.value));
      }
      blocks.push_back({m.key, pos, std::move(path), &m.value});
    }
  }
  return blocks;
}

}  // namespace

absl::StatusOr<std::vector<LabelledBlock>> ReadLabelledBlocks(Section& parent,
                                                              std::string_view key) {
  const Value* value = parent.Get(key);
  if (value == nullptr) return std::vector<LabelledBlock>();
  return LabelledBlocksOf(parent, std::string(key), *value, parent.PositionOf(key));
}

absl::StatusOr<std::vector<PluginEntry>> ReadPluginEntries(
    Section& plugins, const std::vector<std::string>& known_types) {
  std::vector<PluginEntry> entries;
  const Document& doc = plugins.doc();
  // Every type is accepted here and checked by the caller, which reports unknown ones.
  plugins.MarkAllKnown();
  for (const Value::Member& type : plugins.value().members) {
    if (std::find(known_types.begin(), known_types.end(), type.key) == known_types.end()) {
      return plugins.ErrorAt(type.key_pos.known() ? type.key_pos : plugins.value().pos,
                             "unknown plugin type " + QuoteForError(type.key) +
                                 " in plugins (supported: " + absl::StrJoin(known_types, ", ") +
                                 ")");
    }
    Position pos = type.value.pos.known() ? type.value.pos : type.key_pos;
    if (!pos.known()) pos = plugins.value().pos;
    TRELLIS_ASSIGN_OR_RETURN(std::vector<LabelledBlock> blocks,
                             LabelledBlocksOf(plugins, type.key, type.value, pos));
    for (const LabelledBlock& block : blocks) {
      TRELLIS_ASSIGN_OR_RETURN(Section body, Section::Open(doc, *block.body, block.path));
      PluginEntry entry{type.key, block.label, block.pos, block.path, block.body, nullptr};
      entry.plugin_data = body.Get("plugin_data");
      if (entry.plugin_data != nullptr && !entry.plugin_data->is_object()) {
        return body.WrongValue("plugin_data", *entry.plugin_data, "a block");
      }
      TRELLIS_RETURN_IF_ERROR(body.Finish());
      entries.push_back(std::move(entry));
    }
  }
  return entries;
}

absl::StatusOr<Section> OpenPluginData(const Document& doc, const PluginEntry& entry) {
  if (entry.plugin_data == nullptr) {
    // The body holds nothing else (ReadPluginEntries checked), so it reads as an empty block
    // that still carries the plugin's position for "is required" errors.
    return Section::Open(doc, *entry.body, entry.path + ".plugin_data");
  }
  return Section::Open(doc, *entry.plugin_data, entry.path + ".plugin_data");
}

absl::Status ReadSharedBlocksAndFinish(Section& top, HealthChecksConfig* health,
                                       TelemetryConfig* telemetry) {
  TRELLIS_ASSIGN_OR_RETURN(std::optional<Section> health_section, top.Child("health_checks"));
  if (health_section.has_value()) {
    TRELLIS_ASSIGN_OR_RETURN(*health, ReadHealthChecks(*health_section));
  }
  TRELLIS_ASSIGN_OR_RETURN(std::optional<Section> telemetry_section, top.Child("telemetry"));
  if (telemetry_section.has_value()) {
    TRELLIS_ASSIGN_OR_RETURN(*telemetry, ReadTelemetry(*telemetry_section));
  }
  return top.Finish();
}

}  // namespace trellis::common::config
