// Go-style command-line flags: `-name value`, `-name=value`, `--name` too, repeatable lists,
// booleans that take no separate value. Errors are one line, naming the flag.
#pragma once

#include <cstdint>
#include <map>
#include <ostream>
#include <set>
#include <string>
#include <vector>

#include "absl/status/status.h"

namespace trellis::cmd {

class FlagSet {
 public:
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
  void PrintDefaults(std::ostream& os) const;

 private:
  enum class Kind { kString, kInt, kBool, kStrings };
  struct Flag {
    Kind kind;
    void* dst;
    std::string help;
    std::string default_text;
  };
  absl::Status Assign(const std::string& name, Flag& flag, const std::string& value);

  std::map<std::string, Flag> flags_;
  std::set<std::string> set_;
  bool help_ = false;
};

}  // namespace trellis::cmd
