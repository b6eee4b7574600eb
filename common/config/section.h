// Strict, typed reads of one block of the configuration tree, for the typed config loaders.
#pragma once

#include <cstdint>
#include <initializer_list>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/match.h"
#include "absl/time/time.h"
#include "common/config/parser.h"
#include "common/config/value.h"
#include "common/status.h"

namespace trellis::common::config {

// A view of one object in a Document. Every read marks its key as known; Finish() then reports
// the first key nobody read, so a typo is an error instead of a silently ignored setting.
// Every error names the file (with line:col when known) and the key path.
class Section {
 public:
  // Fails unless `value` is an object. `path` is "" for the top level, else e.g. "server".
  static absl::StatusOr<Section> Open(const Document& doc, const Value& value, std::string path);

  const std::string& path() const { return path_; }
  const Value& value() const { return *value_; }
  const Document& doc() const { return *doc_; }

  // The value under `key`, marking it known; nullptr when absent.
  const Value* Get(std::string_view key);
  // The nested block under `key`, or nullopt when absent.
  absl::StatusOr<std::optional<Section>> Child(std::string_view key);

  // Each Read* leaves `out` untouched when the key is absent (so defaults survive) and fails
  // with INVALID_ARGUMENT naming the key when the value has the wrong type or range.
  absl::Status ReadString(std::string_view key, std::string* out);
  // A string that must not be empty when present; the Required form also fails when absent.
  absl::Status ReadNonEmptyString(std::string_view key, std::string* out);
  absl::Status ReadRequiredString(std::string_view key, std::string* out);
  absl::Status ReadBool(std::string_view key, bool* out);
  absl::Status ReadInt(std::string_view key, int64_t min, int64_t max, int64_t* out);
  // A TCP port, written as a number or a string of digits (SPIRE accepts both).
  absl::Status ReadPort(std::string_view key, uint16_t* out);
  // A Go-style duration string ("24h", "90s").
  absl::Status ReadDuration(std::string_view key, absl::Duration* out);
  // A list of strings; a single string is accepted as a one-element list when
  // `allow_single` is set.
  absl::Status ReadStringList(std::string_view key, bool allow_single,
                              std::vector<std::string>* out);
  // One of `choices` (matched case-insensitively when asked), stored as its mapped value.
  template <typename E>
  absl::Status ReadEnum(std::string_view key, const std::map<std::string, E>& choices,
                        bool case_insensitive, E* out);

  // Marks every key known, for callers that walk value().members themselves.
  void MarkAllKnown() { used_.assign(used_.size(), true); }
  // Fails with the first key no read asked for.
  absl::Status Finish() const;
  // Fails with the first key not in `known`, before any other check, so a misspelt key is
  // reported as such rather than as the required key it was meant to be.
  absl::Status AllowOnly(std::initializer_list<std::string_view> known) const;

  // "file:line:col: message" (or "file: message" when the position is unknown).
  absl::Status ErrorAt(Position pos, const std::string& message) const;
  // "<path>.<key>", or just the key at the top level.
  std::string KeyPath(std::string_view key) const;
  // Position of `key` in this section, or of the section itself when the key is absent.
  Position PositionOf(std::string_view key) const;
  // "<path>.<key> is required" at this block's position.
  absl::Status Missing(std::string_view key) const;
  // "<path>.<key>: expected <what>, found <actual>" at the value's position.
  absl::Status WrongValue(std::string_view key, const Value& v, const std::string& what) const;

 private:
  Section(const Document& doc, const Value& value, std::string path)
      : doc_(&doc), value_(&value), path_(std::move(path)), used_(value.members.size(), false) {}
  static std::string ChoicesText(const std::vector<std::string>& names);

  const Document* doc_;
  const Value* value_;
  std::string path_;
  std::vector<bool> used_;
};

// "a string "abc"", "an integer 5", ... for error messages.
std::string DescribeValue(const Value& v);

template <typename E>
absl::Status Section::ReadEnum(std::string_view key, const std::map<std::string, E>& choices,
                               bool case_insensitive, E* out) {
  const Value* v = Get(key);
  if (v == nullptr) return absl::OkStatus();
  std::vector<std::string> names;
  for (const auto& [name, unused] : choices) names.push_back(name);
  if (!v->is_string()) return WrongValue(key, *v, ChoicesText(names));
  for (const auto& [name, e] : choices) {
    bool match =
        case_insensitive ? absl::EqualsIgnoreCase(name, v->string_value) : name == v->string_value;
    if (match) {
      *out = e;
      return absl::OkStatus();
    }
  }
  return WrongValue(key, *v, ChoicesText(names));
}

}  // namespace trellis::common::config
