// FlagSet parsing.
#include "cmd/flag_set.h"

#include "absl/strings/numbers.h"

namespace trellis::cmd {

void FlagSet::String(const std::string& name, std::string* dst, const std::string& help) {
  flags_[name] = {Kind::kString, dst, help, dst->empty() ? "" : "\"" + *dst + "\""};
}
void FlagSet::Int(const std::string& name, int64_t* dst, const std::string& help) {
  flags_[name] = {Kind::kInt, dst, help, *dst == 0 ? "" : std::to_string(*dst)};
}
void FlagSet::Bool(const std::string& name, bool* dst, const std::string& help) {
  flags_[name] = {Kind::kBool, dst, help, ""};
}
void FlagSet::Strings(const std::string& name, std::vector<std::string>* dst,
                      const std::string& help) {
  flags_[name] = {Kind::kStrings, dst, help, ""};
}

absl::Status FlagSet::Assign(const std::string& name, Flag& flag, const std::string& value) {
  switch (flag.kind) {
    case Kind::kString:
      *static_cast<std::string*>(flag.dst) = value;
      break;
    case Kind::kInt: {
      int64_t v = 0;
      if (!absl::SimpleAtoi(value, &v)) {
        return absl::InvalidArgumentError("invalid value \"" + value + "\" for flag -" + name +
                                          ": not an integer");
      }
      *static_cast<int64_t*>(flag.dst) = v;
      break;
    }
    case Kind::kBool:
      if (value == "true" || value == "1") {
        *static_cast<bool*>(flag.dst) = true;
      } else if (value == "false" || value == "0") {
        *static_cast<bool*>(flag.dst) = false;
      } else {
        return absl::InvalidArgumentError("invalid value \"" + value + "\" for flag -" + name +
                                          ": not a boolean");
      }
      break;
    case Kind::kStrings:
      static_cast<std::vector<std::string>*>(flag.dst)->push_back(value);
      break;
  }
  set_.insert(name);
  return absl::OkStatus();
}

absl::Status FlagSet::Parse(const std::vector<std::string>& args) {
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& arg = args[i];
    if (arg.size() < 2 || arg[0] != '-') {
      return absl::InvalidArgumentError("unexpected argument \"" + arg + "\"");
    }
    std::string body = arg.substr(arg[1] == '-' ? 2 : 1);
    if (body.empty() || body[0] == '-' || body[0] == '=') {
      return absl::InvalidArgumentError("bad flag syntax: " + arg);
    }
    std::string name = body, value;
    bool has_value = false;
    if (size_t eq = body.find('='); eq != std::string::npos) {
      name = body.substr(0, eq);
      value = body.substr(eq + 1);
      has_value = true;
    }
    if (name == "h" || name == "help") {
      help_ = true;
      continue;
    }
    auto it = flags_.find(name);
    if (it == flags_.end()) {
      return absl::InvalidArgumentError("flag provided but not defined: -" + name);
    }
    if (!has_value) {
      if (it->second.kind == Kind::kBool) {
        value = "true";
      } else {
        if (i + 1 >= args.size()) {
          return absl::InvalidArgumentError("flag needs an argument: -" + name);
        }
        value = args[++i];
      }
    }
    absl::Status st = Assign(name, it->second, value);
    if (!st.ok()) return st;
  }
  return absl::OkStatus();
}

void FlagSet::PrintDefaults(std::ostream& os) const {
  for (const auto& [name, flag] : flags_) {
    os << "  -" << name;
    switch (flag.kind) {
      case Kind::kString:
      case Kind::kStrings:
        os << " string";
        break;
      case Kind::kInt:
        os << " int";
        break;
      case Kind::kBool:
        break;
    }
    os << "\n    \t" << flag.help;
    if (!flag.default_text.empty()) os << " (default " << flag.default_text << ")";
    os << "\n";
  }
}

}  // namespace trellis::cmd
