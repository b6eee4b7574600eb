// Reads HCL (v1 subset) and JSON configuration text into one generic Value tree.
#pragma once

#include <cstddef>
#include <functional>
#include <optional>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "common/config/value.h"

namespace trellis::common::config {

// Configuration files are small; the caps keep hostile input from costing memory or stack.
inline constexpr size_t kMaxConfigSize = 1 << 20;  // bytes, before and after -expandEnv
inline constexpr int kMaxNestingDepth = 64;        // nested objects and lists

enum class Format { kHcl, kJson };

// A parsed file: the tree plus the name every error message is prefixed with.
struct Document {
  std::string filename;
  Format format = Format::kHcl;
  Value root;  // always an object
};

// Returns the value of an environment variable, or nullopt when unset.
using EnvLookup = std::function<std::optional<std::string>(const std::string&)>;

// The process environment (getenv).
EnvLookup ProcessEnv();

// Replaces $VAR and ${VAR} as Go's os.ExpandEnv does: unset variables become empty, "$" not
// followed by a name stays. Fails when the result would exceed `max_size` bytes.
absl::StatusOr<std::string> ExpandEnv(std::string_view text, const EnvLookup& lookup,
                                      size_t max_size = kMaxConfigSize);

// JSON when the file name ends in ".json" or the first non-space character is '{'.
Format DetectFormat(std::string_view filename, std::string_view text);

// Grammar-level parsers. Errors are INVALID_ARGUMENT, prefixed "file:line:col: ".
absl::StatusOr<Value> ParseHcl(std::string_view text, const std::string& filename);
absl::StatusOr<Value> ParseJson(std::string_view text, const std::string& filename);

struct ParseOptions {
  bool expand_env = false;
  EnvLookup env;  // defaults to ProcessEnv() when empty
};

// Size check, optional env expansion, format detection, parse.
absl::StatusOr<Document> ParseDocument(std::string_view text, const std::string& filename,
                                       const ParseOptions& options = {});

// Reads `path` (at most kMaxConfigSize bytes) and parses it. A missing file is NOT_FOUND.
absl::StatusOr<Document> LoadDocument(const std::string& path, const ParseOptions& options = {});

// "file:line:col" when the position is known, otherwise "file".
std::string FormatLocation(const std::string& filename, Position pos);

// A short, printable, quoted rendering of user text for error messages.
std::string QuoteForError(std::string_view text);

}  // namespace trellis::common::config
