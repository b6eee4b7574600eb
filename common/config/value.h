// The generic configuration tree that HCL and JSON files parse into, with source positions.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace trellis::common::config {

// 1-based line and column; line 0 means unknown (JSON values carry no positions).
struct Position {
  int line = 0;
  int column = 0;
  bool known() const { return line > 0; }
};

// One node of the tree. A plain struct: the parsers build it, the typed layer reads it.
struct Value {
  enum class Type { kNull, kBool, kInt, kFloat, kString, kList, kObject };
  struct Member;

  Type type = Type::kNull;
  Position pos;
  bool bool_value = false;
  int64_t int_value = 0;
  double float_value = 0;
  std::string string_value;
  std::vector<Value> items;     // kList
  std::vector<Member> members;  // kObject, in source order, keys unique
  bool is_object() const { return type == Type::kObject; }
  bool is_list() const { return type == Type::kList; }
  bool is_string() const { return type == Type::kString; }

  // The member named `key`, or nullptr.
  const Member* Find(std::string_view key) const;
  Member* Find(std::string_view key);
};

struct Value::Member {
  std::string key;
  Position key_pos;
  Value value;
};

// Human-readable name of a type for error messages ("a string", "a list", ...).
std::string TypeName(Value::Type type);

}  // namespace trellis::common::config
