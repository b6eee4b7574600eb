// Typed reads over the configuration tree with errors that name the file, position and key.
#include "common/config/section.h"

#include <cmath>
#include <string>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/duration.h"

namespace trellis::common::config {

std::string DescribeValue(const Value& v) {
  switch (v.type) {
    case Value::Type::kNull:
      return "null";
    case Value::Type::kBool:
      return v.bool_value ? "boolean true" : "boolean false";
    case Value::Type::kInt:
      return absl::StrCat("number ", v.int_value);
    case Value::Type::kFloat:
      return absl::StrCat("number ", v.float_value);
    case Value::Type::kString:
      return "string " + QuoteForError(v.string_value);
    case Value::Type::kList:
      return "a list";
    case Value::Type::kObject:
      return "a block";
  }
  return "a value";
}

absl::StatusOr<Section> Section::Open(const Document& doc, const Value& value, std::string path) {
  if (!value.is_object()) {
    return absl::InvalidArgumentError(FormatLocation(doc.filename, value.pos) + ": " + path +
                                      ": expected a block, found " + DescribeValue(value));
  }
  return Section(doc, value, std::move(path));
}

const Value* Section::Get(std::string_view key) {
  for (size_t k = 0; k < value_->members.size(); ++k) {
    if (value_->members[k].key == key) {
      used_[k] = true;
      return &value_->members[k].value;
    }
  }
  return nullptr;
}

absl::StatusOr<std::optional<Section>> Section::Child(std::string_view key) {
  const Value* v = Get(key);
  if (v == nullptr) return std::optional<Section>();
  if (!v->is_object()) return WrongValue(key, *v, "a block");
  return std::optional<Section>(Section(*doc_, *v, KeyPath(key)));
}

absl::Status Section::ReadString(std::string_view key, std::string* out) {
  const Value* v = Get(key);
  if (v == nullptr) return absl::OkStatus();
  if (!v->is_string()) return WrongValue(key, *v, "a string");
  *out = v->string_value;
  return absl::OkStatus();
}

absl::Status Section::ReadNonEmptyString(std::string_view key, std::string* out) {
  const Value* v = Get(key);
  if (v == nullptr) return absl::OkStatus();
  if (!v->is_string() || v->string_value.empty()) return WrongValue(key, *v, "a non-empty string");
  *out = v->string_value;
  return absl::OkStatus();
}

absl::Status Section::ReadRequiredString(std::string_view key, std::string* out) {
  if (Get(key) == nullptr) return Missing(key);
  return ReadNonEmptyString(key, out);
}

absl::Status Section::ReadBool(std::string_view key, bool* out) {
  const Value* v = Get(key);
  if (v == nullptr) return absl::OkStatus();
  if (v->type != Value::Type::kBool) return WrongValue(key, *v, "true or false");
  *out = v->bool_value;
  return absl::OkStatus();
}

absl::Status Section::ReadInt(std::string_view key, int64_t min, int64_t max, int64_t* out) {
  const Value* v = Get(key);
  if (v == nullptr) return absl::OkStatus();
  std::string what = absl::StrCat("an integer from ", min, " to ", max);
  if (v->type != Value::Type::kInt || v->int_value < min || v->int_value > max) {
    return WrongValue(key, *v, what);
  }
  *out = v->int_value;
  return absl::OkStatus();
}

absl::Status Section::ReadPort(std::string_view key, uint16_t* out) {
  const Value* v = Get(key);
  if (v == nullptr) return absl::OkStatus();
  constexpr char kWhat[] = "a port number from 0 to 65535";
  int64_t port = -1;
  if (v->type == Value::Type::kInt) {
    port = v->int_value;
  } else if (v->is_string() && !v->string_value.empty() && v->string_value.size() <= 5) {
    port = 0;
    for (char c : v->string_value) {
      if (c < '0' || c > '9') return WrongValue(key, *v, kWhat);
      port = port * 10 + (c - '0');
    }
  }
  if (port < 0 || port > 65535) return WrongValue(key, *v, kWhat);
  *out = static_cast<uint16_t>(port);
  return absl::OkStatus();
}

absl::Status Section::ReadDuration(std::string_view key, absl::Duration* out) {
  const Value* v = Get(key);
  if (v == nullptr) return absl::OkStatus();
  if (!v->is_string()) return WrongValue(key, *v, "a duration string such as \"1h\" or \"90s\"");
  absl::StatusOr<absl::Duration> d = ParseDuration(v->string_value);
  if (!d.ok()) {
    return ErrorAt(v->pos, KeyPath(key) + ": " + std::string(d.status().message()));
  }
  *out = *d;
  return absl::OkStatus();
}

absl::Status Section::ReadStringList(std::string_view key, bool allow_single,
                                     std::vector<std::string>* out) {
  const Value* v = Get(key);
  if (v == nullptr) return absl::OkStatus();
  const char* what = allow_single ? "a string or a list of strings" : "a list of strings";
  if (allow_single && v->is_string()) {
    *out = {v->string_value};
    return absl::OkStatus();
  }
  if (!v->is_list()) return WrongValue(key, *v, what);
  std::vector<std::string> result;
  for (const Value& item : v->items) {
    if (!item.is_string()) {
      return ErrorAt(
          item.pos.known() ? item.pos : v->pos,
          KeyPath(key) + ": expected " + what + ", found " + DescribeValue(item) + " in the list");
    }
    result.push_back(item.string_value);
  }
  *out = std::move(result);
  return absl::OkStatus();
}

absl::Status Section::Finish() const {
  for (size_t k = 0; k < value_->members.size(); ++k) {
    if (used_[k]) continue;
    const Value::Member& m = value_->members[k];
    return ErrorAt(m.key_pos.known() ? m.key_pos : value_->pos,
                   "unknown key " + QuoteForError(m.key) +
                       (path_.empty() ? std::string(" at top level") : " in " + path_));
  }
  return absl::OkStatus();
}

absl::Status Section::AllowOnly(std::initializer_list<std::string_view> known) const {
  for (const Value::Member& m : value_->members) {
    bool ok = false;
    for (std::string_view k : known) ok = ok || m.key == k;
    if (ok) continue;
    return ErrorAt(m.key_pos.known() ? m.key_pos : value_->pos,
                   "unknown key " + QuoteForError(m.key) +
                       (path_.empty() ? std::string(" at top level") : " in " + path_));
  }
  return absl::OkStatus();
}

absl::Status Section::ErrorAt(Position pos, const std::string& message) const {
  return absl::InvalidArgumentError(FormatLocation(doc_->filename, pos) + ": " + message);
}

std::string Section::KeyPath(std::string_view key) const {
  return path_.empty() ? std::string(key) : path_ + "." + std::string(key);
}

Position Section::PositionOf(std::string_view key) const {
  const Value::Member* m = value_->Find(key);
  if (m != nullptr && m->value.pos.known()) return m->value.pos;
  if (m != nullptr && m->key_pos.known()) return m->key_pos;
  return value_->pos;
}

absl::Status Section::Missing(std::string_view key) const {
  return ErrorAt(value_->pos, KeyPath(key) + " is required");
}

absl::Status Section::WrongValue(std::string_view key, const Value& v,
                                 const std::string& what) const {
  Position pos = v.pos.known() ? v.pos : PositionOf(key);
  return ErrorAt(pos, KeyPath(key) + ": expected " + what + ", found " + DescribeValue(v));
}

std::string Section::ChoicesText(const std::vector<std::string>& names) {
  return "one of " + absl::StrJoin(names, ", ");
}

}  // namespace trellis::common::config
