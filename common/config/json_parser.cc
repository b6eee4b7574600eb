// JSON configuration files, read with nlohmann-json's SAX interface straight into a Value tree.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <string>
#include <string_view>
#include <unordered_set>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "common/config/parser.h"
#include "nlohmann/json.hpp"

namespace trellis::common::config {
namespace {

using json = nlohmann::json;

// Builds the tree iteratively (SAX), so depth is bounded by our check, not by the stack.
class TreeBuilder : public nlohmann::json_sax<json> {
 public:
  bool null() override { return Add(Value()) != nullptr; }
  bool boolean(bool val) override {
    Value v;
    v.type = Value::Type::kBool;
    v.bool_value = val;
    return Add(std::move(v)) != nullptr;
  }
  bool number_integer(number_integer_t val) override {
    Value v;
    v.type = Value::Type::kInt;
    v.int_value = val;
    return Add(std::move(v)) != nullptr;
  }
  bool number_unsigned(number_unsigned_t val) override {
    if (val > static_cast<uint64_t>(INT64_MAX)) {
      error_ = "integer " + std::to_string(val) + " is out of range" + Where();
      return false;
    }
    return number_integer(static_cast<int64_t>(val));
  }
  bool number_float(number_float_t val, const string_t& s) override {
    if (!std::isfinite(val)) {
      error_ = "number " + QuoteForError(s) + " is out of range" + Where();
      return false;
    }
    Value v;
    v.type = Value::Type::kFloat;
    v.float_value = val;
    return Add(std::move(v)) != nullptr;
  }
  bool string(string_t& val) override {
    Value v;
    v.type = Value::Type::kString;
    v.string_value = std::move(val);
    return Add(std::move(v)) != nullptr;
  }
  bool binary(binary_t&) override {
    error_ = "binary values are not supported";
    return false;
  }
  bool start_object(std::size_t) override { return Open(Value::Type::kObject); }
  bool key(string_t& val) override {
    Frame& top = stack_.back();
    if (!top.keys.insert(val).second) {
      error_ = "duplicate key " + QuoteForError(val) + Where();
      return false;
    }
    pending_key_ = std::move(val);
    return true;
  }
  bool end_object() override {
    stack_.pop_back();
    return true;
  }
  bool start_array(std::size_t) override { return Open(Value::Type::kList); }
  bool end_array() override {
    stack_.pop_back();
    return true;
  }
  bool parse_error(std::size_t position, const std::string&,
                   const nlohmann::detail::exception& ex) override {
    error_offset_ = position;
    std::string what = ex.what();
    // Drop the library's "[json.exception...] parse error at line 1, column 2: " prefix; the
    // location is reported in our own file:line:col form.
    size_t col = what.find("column ");
    size_t colon = col == std::string::npos ? std::string::npos : what.find(": ", col);
    error_ = colon == std::string::npos ? what : what.substr(colon + 2);
    return false;
  }

  Value& root() { return root_; }
  const std::string& error() const { return error_; }
  size_t error_offset() const { return error_offset_; }

 private:
  struct Frame {
    Value* value;
    std::string key;                       // this container's key or "[i]" in its parent
    std::unordered_set<std::string> keys;  // objects: keys seen so far
  };

  // " in server.bind_port": the key path of the current container, for messages.
  std::string Where() const {
    std::string path;
    for (size_t k = 1; k < stack_.size(); ++k) {
      if (!path.empty() && stack_[k].key[0] != '[') path += ".";
      path += stack_[k].key;
    }
    return path.empty() ? " at top level" : " in " + path;
  }

  Value* Add(Value v) {
    if (stack_.empty()) {
      if (has_root_) return nullptr;
      has_root_ = true;
      root_ = std::move(v);
      return &root_;
    }
    Value* parent = stack_.back().value;
    if (parent->type == Value::Type::kList) {
      parent->items.push_back(std::move(v));
      return &parent->items.back();
    }
    Value::Member m;
    m.key = std::move(pending_key_);
    m.value = std::move(v);
    parent->members.push_back(std::move(m));
    return &parent->members.back().value;
  }

  bool Open(Value::Type type) {
    if (static_cast<int>(stack_.size()) >= kMaxNestingDepth) {
      error_ = absl::StrCat("nesting deeper than ", kMaxNestingDepth, " levels");
      return false;
    }
    std::string key;
    if (!stack_.empty()) {
      const Value* parent = stack_.back().value;
      key = parent->type == Value::Type::kList ? absl::StrCat("[", parent->items.size(), "]")
                                               : pending_key_;
    }
    Value v;
    v.type = type;
    Value* added = Add(std::move(v));
    if (added == nullptr) return false;
    stack_.push_back({added, std::move(key), {}});
    return true;
  }

  Value root_;
  bool has_root_ = false;
  std::vector<Frame> stack_;
  std::string pending_key_;
  std::string error_;
  size_t error_offset_ = 0;
};

// nlohmann reports a byte offset just past the offending character; turn it into line:col.
Position OffsetToPosition(std::string_view text, size_t offset) {
  if (offset > 0) --offset;
  offset = std::min(offset, text.size());
  Position pos{1, 1};
  for (size_t k = 0; k < offset; ++k) {
    if (text[k] == '\n') {
      ++pos.line;
      pos.column = 1;
    } else {
      ++pos.column;
    }
  }
  return pos;
}

}  // namespace

absl::StatusOr<Value> ParseJson(std::string_view text, const std::string& filename) {
  if (text.size() > kMaxConfigSize) {
    return absl::InvalidArgumentError(filename + ": configuration is larger than " +
                                      std::to_string(kMaxConfigSize) + " bytes");
  }
  TreeBuilder builder;
  bool ok = false;
  try {
    ok = json::sax_parse(text.begin(), text.end(), &builder);
  } catch (const std::exception& e) {
    return absl::InvalidArgumentError(filename + ": invalid JSON: " + e.what());
  }
  if (!ok) {
    if (builder.error_offset() > 0) {
      return absl::InvalidArgumentError(
          FormatLocation(filename, OffsetToPosition(text, builder.error_offset())) +
          ": invalid JSON: " + builder.error());
    }
    return absl::InvalidArgumentError(filename + ": " + builder.error());
  }
  if (builder.root().type != Value::Type::kObject) {
    return absl::InvalidArgumentError(filename + ": the top level must be a JSON object");
  }
  return std::move(builder.root());
}

}  // namespace trellis::common::config
