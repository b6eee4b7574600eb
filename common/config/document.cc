// Reading configuration files: size limits, -expandEnv, format detection, error locations.
#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <optional>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_format.h"
#include "common/config/parser.h"
#include "common/status.h"

namespace trellis::common::config {
namespace {

bool IsShellSpecial(char c) {
  return c == '*' || c == '#' || c == '$' || c == '@' || c == '!' || c == '?' || c == '-' ||
         (c >= '0' && c <= '9');
}
bool IsAlphaNum(char c) {
  return c == '_' || (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

// The variable name after a '$' in `s`, and how many bytes the reference spans. An empty name
// with a non-zero width is bad syntax ("${", "${}") which is dropped, as Go does.
std::pair<std::string_view, size_t> ShellName(std::string_view s) {
  if (s[0] == '{') {
    if (s.size() > 2 && IsShellSpecial(s[1]) && s[2] == '}') return {s.substr(1, 1), 3};
    for (size_t k = 1; k < s.size(); ++k) {
      if (s[k] == '}') {
        if (k == 1) return {{}, 2};
        return {s.substr(1, k - 1), k + 1};
      }
    }
    return {{}, 1};
  }
  if (IsShellSpecial(s[0])) return {s.substr(0, 1), 1};
  size_t k = 0;
  while (k < s.size() && IsAlphaNum(s[k])) ++k;
  return {s.substr(0, k), k};
}

absl::Status TooLarge(const std::string& filename, const char* when) {
  return absl::InvalidArgumentError(absl::StrFormat("%s: configuration is larger than %d bytes%s",
                                                    filename, kMaxConfigSize, when));
}

}  // namespace

EnvLookup ProcessEnv() {
  return [](const std::string& name) -> std::optional<std::string> {
    const char* v = std::getenv(name.c_str());
    if (v == nullptr) return std::nullopt;
    return std::string(v);
  };
}

absl::StatusOr<std::string> ExpandEnv(std::string_view text, const EnvLookup& lookup,
                                      size_t max_size) {
  std::string out;
  size_t copied = 0;
  for (size_t j = 0; j < text.size(); ++j) {
    if (text[j] != '$' || j + 1 >= text.size()) continue;
    out.append(text.substr(copied, j - copied));
    auto [name, width] = ShellName(text.substr(j + 1));
    if (name.empty() && width == 0) {
      out.push_back('$');  // "$" before a non-name character stays as written
    } else if (!name.empty()) {
      std::optional<std::string> v = lookup(std::string(name));
      if (v.has_value()) out.append(*v);
    }
    if (out.size() > max_size) {
      return absl::InvalidArgumentError("configuration is larger than " + std::to_string(max_size) +
                                        " bytes after environment expansion");
    }
    j += width;
    copied = j + 1;
  }
  out.append(text.substr(std::min(copied, text.size())));
  if (out.size() > max_size) {
    return absl::InvalidArgumentError("configuration is larger than " + std::to_string(max_size) +
                                      " bytes after environment expansion");
  }
  return out;
}

Format DetectFormat(std::string_view filename, std::string_view text) {
  if (filename.size() >= 5 &&
      absl::AsciiStrToLower(std::string(filename.substr(filename.size() - 5))) == ".json") {
    return Format::kJson;
  }
  for (char c : text) {
    if (c == ' ' || c == '\t' || c == '\r' || c == '\n') continue;
    return c == '{' ? Format::kJson : Format::kHcl;
  }
  return Format::kHcl;
}

absl::StatusOr<Document> ParseDocument(std::string_view text, const std::string& filename,
                                       const ParseOptions& options) {
  if (text.size() > kMaxConfigSize) return TooLarge(filename, "");
  std::string expanded;
  if (options.expand_env) {
    auto result = ExpandEnv(text, options.env ? options.env : ProcessEnv(), kMaxConfigSize);
    if (!result.ok()) return Annotate(result.status(), filename);
    expanded = std::move(*result);
    text = expanded;
  }
  Document doc;
  doc.filename = filename;
  doc.format = DetectFormat(filename, text);
  TRELLIS_ASSIGN_OR_RETURN(
      doc.root, doc.format == Format::kJson ? ParseJson(text, filename) : ParseHcl(text, filename));
  return doc;
}

absl::StatusOr<Document> LoadDocument(const std::string& path, const ParseOptions& options) {
  std::unique_ptr<FILE, int (*)(FILE*)> f(std::fopen(path.c_str(), "rb"), &std::fclose);
  if (!f) {
    int err = errno;
    std::string msg = path + ": cannot open configuration file: " + std::strerror(err);
    if (err == ENOENT) return absl::NotFoundError(msg);
    if (err == EACCES || err == EPERM) return absl::PermissionDeniedError(msg);
    return absl::FailedPreconditionError(msg);
  }
  std::string text;
  char buf[64 * 1024];
  while (true) {
    size_t n = std::fread(buf, 1, sizeof(buf), f.get());
    text.append(buf, n);
    if (text.size() > kMaxConfigSize) return TooLarge(path, "");
    if (n < sizeof(buf)) break;
  }
  if (std::ferror(f.get())) {
    return absl::FailedPreconditionError(path + ": cannot read configuration file");
  }
  return ParseDocument(text, path, options);
}

std::string FormatLocation(const std::string& filename, Position pos) {
  if (!pos.known()) return filename;
  return absl::StrFormat("%s:%d:%d", filename, pos.line, pos.column);
}

std::string QuoteForError(std::string_view text) {
  constexpr size_t kMaxShown = 64;
  std::string out = "\"";
  for (size_t k = 0; k < text.size() && k < kMaxShown; ++k) {
    unsigned char c = static_cast<unsigned char>(text[k]);
    if (c == '"' || c == '\\') {
      out.push_back('\\');
      out.push_back(static_cast<char>(c));
    } else if (c >= 0x20 && c < 0x7F) {
      out.push_back(static_cast<char>(c));
    } else {
      out += absl::StrFormat("\\x%02x", c);
    }
  }
  if (text.size() > kMaxShown) out += "...";
  out += "\"";
  return out;
}

}  // namespace trellis::common::config
