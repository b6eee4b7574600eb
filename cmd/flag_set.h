// Command-line flags for both binaries: `-name value`, `-name=value`, `--name` too, repeatable
// lists, booleans that need no value. Two syntaxes share the flags: trellis-server's admin
// commands follow Go's flag package, validate and trellis-agent's commands their stricter
// long-option rules. Errors are one line, naming the flag.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <ostream>
#include <set>
#include <string>
#include <vector>

#include "absl/status/status.h"

namespace trellis::cmd {

class FlagSet {
 public:
  enum class Syntax {
    // Go's flag package: the argument after a non-boolean flag is always its value, a flag
    // given twice keeps the last value, booleans read true|false|1|0 and only after `=`,
    // -h/-help ask for help. Errors: "flag provided but not defined: -x", "flag needs an
    // argument: -x", ...
    kGo,
    // Long options: each flag at most once (lists excepted), a boolean without `=` takes the
    // next plain argument as its value and reads on|off|yes|no|1|0|true|false in any case, an
    // empty `=` value is refused, integers are 32-bit, `--` ends the flags, and -h/-help are
    // flags of their own. Errors: "unknown flag -x", "unexpected argument x", "the required
    // argument for option '--x' is missing", "option '--x' cannot be specified more than
    // once", ...
    kLongOptions,
  };

  explicit FlagSet(Syntax syntax = Syntax::kGo) : syntax_(syntax) {}

  // The value `*dst` holds when the flag is declared is its default.
  void String(const std::string& name, std::string* dst, const std::string& help);
  void Int(const std::string& name, int64_t* dst, const std::string& help);
  void Bool(const std::string& name, bool* dst, const std::string& help);
  // Repeatable: every occurrence appends.
  void Strings(const std::string& name, std::vector<std::string>* dst, const std::string& help);

  // INVALID_ARGUMENT for an unknown flag, a missing or malformed value, or a positional
  // argument. `-h`/`-help` set help_requested() instead.
  absl::Status Parse(const std::vector<std::string>& args);
  bool help_requested() const { return help_; }
  bool IsSet(const std::string& name) const { return set_.count(name) > 0; }

  // Go's listing, flags sorted by name: "  -name string\n    \thelp (default "x")".
  void PrintDefaults(std::ostream& os) const;
  // A "Flags:" table in declaration order, then --help and --h: "  --name arg (=default)"
  // beside the help text, which wraps at 80 columns.
  void PrintTable(std::ostream& os) const;

 private:
  enum class Kind { kString, kInt, kBool, kStrings };
  struct Flag {
    Kind kind;
    void* dst;
    std::string help;
    std::string default_value;  // as declared, unquoted
  };
  // One flag as written on the command line, before its value is checked.
  struct Occurrence {
    std::string name;
    std::optional<std::string> value;
  };

  void Declare(const std::string& name, Flag flag);
  absl::Status ParseGo(const std::vector<std::string>& args);
  absl::Status ParseLongOptions(const std::vector<std::string>& args);
  absl::Status StoreLongOption(const Occurrence& o, std::set<std::string>& seen);
  absl::Status Assign(const std::string& name, Flag& flag, const std::string& value);
  std::string AmbiguityError(const std::string& option) const;

  Syntax syntax_;
  std::map<std::string, Flag> flags_;
  std::vector<std::string> order_;
  std::set<std::string> set_;
  bool help_ = false;
};

}  // namespace trellis::cmd
