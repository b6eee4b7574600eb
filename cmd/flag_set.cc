// FlagSet: declaration, the two parsing syntaxes, and the two help layouts.
#include "cmd/flag_set.h"

#include <algorithm>
#include <cctype>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"

namespace trellis::cmd {
namespace {

absl::Status Invalid(const std::string& message) { return absl::InvalidArgumentError(message); }

// A command-line word that names an option in the long-option syntax: "--x..." or "-x...".
bool IsLongOption(const std::string& arg) {
  return (arg.size() >= 3 && arg[0] == '-' && arg[1] == '-') ||
         (arg.size() >= 2 && arg[0] == '-' && arg[1] != '-');
}

bool IsHelp(const std::string& name) { return name == "h" || name == "help"; }

// Decimal digits with an optional sign, within 32 bits.
bool ParseInt32(const std::string& text, int64_t* out) {
  size_t digits = !text.empty() && (text[0] == '+' || text[0] == '-') ? 1 : 0;
  if (digits == text.size()) return false;
  for (size_t i = digits; i < text.size(); ++i) {
    if (!std::isdigit(static_cast<unsigned char>(text[i]))) return false;
  }
  int32_t v = 0;
  if (!absl::SimpleAtoi(text, &v)) return false;
  *out = v;
  return true;
}

// Writes `text` from the current column, wrapping at `line_length` and indenting continuation
// lines by `indent`: a line breaks at its last space when that space lies in the line's second
// half, else mid-word; a single space opening a continuation line is dropped.
void WrapText(std::ostream& os, const std::string& text, size_t indent, size_t line_length) {
  const size_t width = line_length - indent;
  size_t begin = 0;
  bool first = true;
  while (begin < text.size()) {
    if (!first && text[begin] == ' ' && begin + 1 < text.size() && text[begin + 1] != ' ') {
      ++begin;
    }
    first = false;
    size_t end = begin + std::min(text.size() - begin, width);
    if (text[end - 1] != ' ' && end < text.size() && text[end] != ' ') {
      size_t space = text.rfind(' ', end - 1);
      if (space != std::string::npos && space >= begin && space + 1 != begin &&
          end - (space + 1) < width / 2) {
        end = space + 1;
      }
    }
    os << text.substr(begin, end - begin);
    if (end != text.size()) os << "\n" << std::string(indent, ' ');
    begin = end;
  }
}

}  // namespace

void FlagSet::Declare(const std::string& name, Flag flag) {
  if (flags_.count(name) == 0) order_.push_back(name);
  flags_[name] = std::move(flag);
}

void FlagSet::String(const std::string& name, std::string* dst, const std::string& help) {
  Declare(name, {Kind::kString, dst, help, *dst});
}
void FlagSet::Int(const std::string& name, int64_t* dst, const std::string& help) {
  Declare(name, {Kind::kInt, dst, help, std::to_string(*dst)});
}
void FlagSet::Bool(const std::string& name, bool* dst, const std::string& help) {
  Declare(name, {Kind::kBool, dst, help, *dst ? "1" : "0"});
}
void FlagSet::Strings(const std::string& name, std::vector<std::string>* dst,
                      const std::string& help) {
  Declare(name, {Kind::kStrings, dst, help, ""});
}

absl::Status FlagSet::Parse(const std::vector<std::string>& args) {
  return syntax_ == Syntax::kGo ? ParseGo(args) : ParseLongOptions(args);
}

absl::Status FlagSet::Assign(const std::string& name, Flag& flag, const std::string& value) {
  switch (flag.kind) {
    case Kind::kString:
      *static_cast<std::string*>(flag.dst) = value;
      break;
    case Kind::kInt: {
      int64_t v = 0;
      if (!absl::SimpleAtoi(value, &v)) {
        return Invalid("invalid value \"" + value + "\" for flag -" + name + ": not an integer");
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
        return Invalid("invalid value \"" + value + "\" for flag -" + name + ": not a boolean");
      }
      break;
    case Kind::kStrings:
      static_cast<std::vector<std::string>*>(flag.dst)->push_back(value);
      break;
  }
  set_.insert(name);
  return absl::OkStatus();
}

absl::Status FlagSet::ParseGo(const std::vector<std::string>& args) {
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& arg = args[i];
    if (arg.size() < 2 || arg[0] != '-') return Invalid("unexpected argument \"" + arg + "\"");
    std::string body = arg.substr(arg[1] == '-' ? 2 : 1);
    if (body.empty() || body[0] == '-' || body[0] == '=') {
      return Invalid("bad flag syntax: " + arg);
    }
    std::string name = body, value;
    bool has_value = false;
    if (size_t eq = body.find('='); eq != std::string::npos) {
      name = body.substr(0, eq);
      value = body.substr(eq + 1);
      has_value = true;
    }
    if (IsHelp(name)) {
      help_ = true;
      continue;
    }
    auto it = flags_.find(name);
    if (it == flags_.end()) return Invalid("flag provided but not defined: -" + name);
    if (!has_value) {
      if (it->second.kind == Kind::kBool) {
        value = "true";
      } else {
        if (i + 1 >= args.size()) return Invalid("flag needs an argument: -" + name);
        value = args[++i];
      }
    }
    absl::Status st = Assign(name, it->second, value);
    if (!st.ok()) return st;
  }
  return absl::OkStatus();
}

std::string FlagSet::AmbiguityError(const std::string& option) const {
  std::vector<std::string> names = {"h", "help"};
  for (const auto& [name, flag] : flags_) names.push_back(name);
  std::sort(names.begin(), names.end());
  std::string text = "option '" + option + "' is ambiguous and matches ";
  for (size_t i = 0; i + 1 < names.size(); ++i) text += "'--" + names[i] + "', ";
  return text + "and '--" + names.back() + "'";
}

// Syntax errors stop at once; otherwise the first unknown flag or stray argument is reported,
// and only then are values checked, in command-line order.
absl::Status FlagSet::ParseLongOptions(const std::vector<std::string>& args) {
  auto defined = [&](const std::string& name) { return IsHelp(name) || flags_.count(name) > 0; };
  std::vector<Occurrence> given;
  std::optional<std::string> unrecognized;
  bool ended = false;
  bool boolean_open = false;  // the last flag is a boolean that may take the next plain word
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& arg = args[i];
    if (!ended && arg == "--") {
      ended = true;
      boolean_open = false;
      continue;
    }
    if (ended || !IsLongOption(arg)) {
      if (boolean_open) {
        given.back().value = arg;
        boolean_open = false;
      } else if (!unrecognized) {
        unrecognized = arg;
      }
      continue;
    }
    boolean_open = false;
    const bool single_dash = arg[1] != '-';
    const std::string body = arg.substr(single_dash ? 1 : 2);
    const size_t eq = body.find('=');
    const std::string name = body.substr(0, eq);
    if (single_dash && name.empty()) return Invalid(AmbiguityError(arg));
    if (eq != std::string::npos && eq + 1 == body.size()) {
      if (!single_dash) {
        return Invalid(name.empty()
                           ? "the argument for option should follow immediately after the equal "
                             "sign"
                           : "the argument for option '--" + name +
                                 "' should follow immediately after the equal sign");
      }
      if (defined(name)) {
        return Invalid("the argument for option '--" + name +
                       "=' should follow immediately after the equal sign");
      }
    }
    if (!defined(name)) {
      if (!unrecognized) unrecognized = arg;
      continue;
    }
    if (IsHelp(name)) {
      if (eq != std::string::npos) {
        return Invalid("option '--" + name + "' does not take any arguments");
      }
      given.push_back({name, std::nullopt});
      continue;
    }
    if (eq != std::string::npos) {
      given.push_back({name, body.substr(eq + 1)});
      continue;
    }
    if (flags_.at(name).kind == Kind::kBool) {
      given.push_back({name, std::nullopt});
      boolean_open = true;
      continue;
    }
    if (i + 1 >= args.size()) {
      return Invalid("the required argument for option '--" + name + "' is missing");
    }
    const std::string& next = args[i + 1];
    if (next.size() >= 2 && next[0] == '-' && next[1] == '=') {
      return Invalid(AmbiguityError("--" + name));
    }
    given.push_back({name, next});
    ++i;
  }
  if (unrecognized) {
    const bool is_flag = unrecognized->size() > 1 && (*unrecognized)[0] == '-';
    return Invalid((is_flag ? "unknown flag " : "unexpected argument ") + *unrecognized);
  }
  std::set<std::string> seen;
  for (const Occurrence& o : given) {
    absl::Status st = StoreLongOption(o, seen);
    if (!st.ok()) return st;
  }
  return absl::OkStatus();
}

absl::Status FlagSet::StoreLongOption(const Occurrence& o, std::set<std::string>& seen) {
  const bool first = seen.insert(o.name).second;
  const std::string option = "'--" + o.name + "'";
  auto twice = [&] { return Invalid("option " + option + " cannot be specified more than once"); };
  auto bad_value = [&](const std::string& value) {
    return "the argument ('" + value + "') for option " + option + " is invalid";
  };
  if (IsHelp(o.name)) {
    if (!first) return twice();
    help_ = true;
    return absl::OkStatus();
  }
  Flag& flag = flags_.at(o.name);
  switch (flag.kind) {
    case Kind::kStrings:
      static_cast<std::vector<std::string>*>(flag.dst)->push_back(*o.value);
      break;
    case Kind::kString:
      if (!first) return twice();
      *static_cast<std::string*>(flag.dst) = *o.value;
      break;
    case Kind::kInt:
      if (!first) return twice();
      if (!ParseInt32(*o.value, static_cast<int64_t*>(flag.dst))) {
        return Invalid(bad_value(*o.value));
      }
      break;
    case Kind::kBool: {
      bool* dst = static_cast<bool*>(flag.dst);
      if (!o.value) {
        *dst = true;
        break;
      }
      if (!first) return twice();
      const std::string v = absl::AsciiStrToLower(*o.value);
      if (v.empty() || v == "on" || v == "yes" || v == "1" || v == "true") {
        *dst = true;
      } else if (v == "off" || v == "no" || v == "0" || v == "false") {
        *dst = false;
      } else {
        return Invalid(bad_value(v) +
                       ". Valid choices are 'on|off', 'yes|no', '1|0' and 'true|false'");
      }
      break;
    }
  }
  set_.insert(o.name);
  return absl::OkStatus();
}

void FlagSet::PrintDefaults(std::ostream& os) const {
  for (const auto& [name, flag] : flags_) {
    os << "  -" << name;
    std::string default_text;
    switch (flag.kind) {
      case Kind::kString:
        os << " string";
        if (!flag.default_value.empty()) default_text = "\"" + flag.default_value + "\"";
        break;
      case Kind::kStrings:
        os << " string";
        break;
      case Kind::kInt:
        os << " int";
        if (flag.default_value != "0") default_text = flag.default_value;
        break;
      case Kind::kBool:
        break;
    }
    os << "\n    \t" << flag.help;
    if (!default_text.empty()) os << " (default " << default_text << ")";
    os << "\n";
  }
}

void FlagSet::PrintTable(std::ostream& os) const {
  constexpr size_t kLineLength = 80;
  constexpr size_t kMinHelpWidth = 40;
  std::vector<std::pair<std::string, std::string>> rows;
  for (const std::string& name : order_) {
    const Flag& flag = flags_.at(name);
    std::string value;
    switch (flag.kind) {
      case Kind::kString:
        value = flag.default_value.empty() ? "arg" : "arg (=" + flag.default_value + ")";
        break;
      case Kind::kInt:
        value = "arg (=" + flag.default_value + ")";
        break;
      case Kind::kBool:
        value = "[=arg(=1)] (=" + flag.default_value + ")";
        break;
      case Kind::kStrings:
        value = "arg";
        break;
    }
    rows.emplace_back("  --" + name + " " + value, flag.help);
  }
  rows.emplace_back("  --help ", "Show this help");
  rows.emplace_back("  --h ", "Show this help");
  size_t column = 23;
  for (const auto& [left, help] : rows) column = std::max(column, left.size());
  column = std::min(column, kLineLength - kMinHelpWidth - 1) + 1;
  os << "Flags:\n";
  for (const auto& [left, help] : rows) {
    os << left;
    if (!help.empty()) {
      if (left.size() >= column) {
        os << "\n" << std::string(column, ' ');
      } else {
        os << std::string(column - left.size(), ' ');
      }
      WrapText(os, help, column, kLineLength);
    }
    os << "\n";
  }
}

}  // namespace trellis::cmd
