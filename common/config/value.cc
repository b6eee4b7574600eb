// Lookup and naming helpers for the configuration tree.
#include "common/config/value.h"

namespace trellis::common::config {

const Value::Member* Value::Find(std::string_view key) const {
  for (const Member& m : members) {
    if (m.key == key) return &m;
  }
  return nullptr;
}

Value::Member* Value::Find(std::string_view key) {
  for (Member& m : members) {
    if (m.key == key) return &m;
  }
  return nullptr;
}

std::string TypeName(Value::Type type) {
  switch (type) {
    case Value::Type::kNull:
      return "null";
    case Value::Type::kBool:
      return "a boolean";
    case Value::Type::kInt:
      return "an integer";
    case Value::Type::kFloat:
      return "a number";
    case Value::Type::kString:
      return "a string";
    case Value::Type::kList:
      return "a list";
    case Value::Type::kObject:
      return "a block";
  }
  return "a value";
}

}  // namespace trellis::common::config
