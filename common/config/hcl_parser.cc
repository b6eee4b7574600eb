// Lexer and recursive-descent parser for the HCL v1 subset SPIRE configurations use.
#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdint>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "common/config/parser.h"
#include "common/status.h"

namespace trellis::common::config {
namespace {

constexpr size_t kMaxLabels = 2;

bool IsIdentStart(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_'; }
bool IsIdentChar(char c) {
  return IsIdentStart(c) || (c >= '0' && c <= '9') || c == '-' || c == '.';
}
bool IsDigit(char c) { return c >= '0' && c <= '9'; }
int HexValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

void AppendUtf8(uint32_t cp, std::string* out) {
  if (cp < 0x80) {
    out->push_back(static_cast<char>(cp));
  } else if (cp < 0x800) {
    out->push_back(static_cast<char>(0xC0 | (cp >> 6)));
    out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else if (cp < 0x10000) {
    out->push_back(static_cast<char>(0xE0 | (cp >> 12)));
    out->push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else {
    out->push_back(static_cast<char>(0xF0 | (cp >> 18)));
    out->push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  }
}

enum class Tok {
  kEof,
  kIdent,
  kString,
  kNumber,
  kLBrace,
  kRBrace,
  kLBracket,
  kRBracket,
  kEquals,
  kComma,
};

struct Token {
  Tok kind = Tok::kEof;
  Position pos;
  std::string text;  // identifier, decoded string, or number literal
};

std::string Describe(const Token& t) {
  switch (t.kind) {
    case Tok::kEof:
      return "end of file";
    case Tok::kIdent:
      return "identifier " + QuoteForError(t.text);
    case Tok::kString:
      return "string " + QuoteForError(t.text);
    case Tok::kNumber:
      return "number " + t.text;
    case Tok::kLBrace:
      return "'{'";
    case Tok::kRBrace:
      return "'}'";
    case Tok::kLBracket:
      return "'['";
    case Tok::kRBracket:
      return "']'";
    case Tok::kEquals:
      return "'='";
    case Tok::kComma:
      return "','";
  }
  return "token";
}

// One `key [labels...] = value` or `key [labels...] { }` before duplicate checks and merging.
struct Item {
  std::vector<std::pair<std::string, Position>> path;  // key then labels
  Value value;
};

class HclParser {
 public:
  HclParser(std::string_view text, const std::string& filename)
      : text_(text), filename_(filename) {}

  absl::StatusOr<Value> Parse() {
    TRELLIS_RETURN_IF_ERROR(Advance());
    Value root;
    root.type = Value::Type::kObject;
    root.pos = {1, 1};
    TRELLIS_RETURN_IF_ERROR(ParseBody(&root, Tok::kEof, 0));
    return root;
  }

 private:
  absl::Status ErrorAt(Position pos, const std::string& message) const {
    return absl::InvalidArgumentError(FormatLocation(filename_, pos) + ": " + message);
  }

  // ---- Lexer ----

  Position Here() const { return {line_, column_}; }
  bool AtEnd() const { return i_ >= text_.size(); }
  char PeekChar(size_t ahead = 0) const {
    return i_ + ahead < text_.size() ? text_[i_ + ahead] : '\0';
  }
  void Bump() {
    if (text_[i_] == '\n') {
      ++line_;
      column_ = 1;
    } else {
      ++column_;
    }
    ++i_;
  }

  absl::Status SkipSpaceAndComments() {
    while (!AtEnd()) {
      char c = PeekChar();
      if (c == ' ' || c == '\t' || c == '\r' || c == '\n') {
        Bump();
      } else if (c == '#' || (c == '/' && PeekChar(1) == '/')) {
        while (!AtEnd() && PeekChar() != '\n') Bump();
      } else if (c == '/' && PeekChar(1) == '*') {
        Position start = Here();
        Bump();
        Bump();
        while (!AtEnd() && !(PeekChar() == '*' && PeekChar(1) == '/')) Bump();
        if (AtEnd()) return ErrorAt(start, "unterminated /* comment");
        Bump();
        Bump();
      } else {
        break;
      }
    }
    return absl::OkStatus();
  }

  absl::Status Advance() {
    TRELLIS_RETURN_IF_ERROR(SkipSpaceAndComments());
    tok_ = Token();
    tok_.pos = Here();
    if (AtEnd()) return absl::OkStatus();
    char c = PeekChar();
    switch (c) {
      case '{':
        tok_.kind = Tok::kLBrace;
        Bump();
        return absl::OkStatus();
      case '}':
        tok_.kind = Tok::kRBrace;
        Bump();
        return absl::OkStatus();
      case '[':
        tok_.kind = Tok::kLBracket;
        Bump();
        return absl::OkStatus();
      case ']':
        tok_.kind = Tok::kRBracket;
        Bump();
        return absl::OkStatus();
      case '=':
        tok_.kind = Tok::kEquals;
        Bump();
        return absl::OkStatus();
      case ',':
        tok_.kind = Tok::kComma;
        Bump();
        return absl::OkStatus();
      case '"':
        return LexString();
      default:
        break;
    }
    if (c == '<' && PeekChar(1) == '<') return LexHeredoc();
    if (IsDigit(c) || (c == '-' && IsDigit(PeekChar(1)))) return LexNumber();
    if (IsIdentStart(c)) {
      tok_.kind = Tok::kIdent;
      while (!AtEnd() && IsIdentChar(PeekChar())) {
        tok_.text.push_back(PeekChar());
        Bump();
      }
      return absl::OkStatus();
    }
    return ErrorAt(tok_.pos, "unexpected character " + QuoteForError(std::string(1, c)));
  }

  absl::Status LexNumber() {
    tok_.kind = Tok::kNumber;
    size_t start = i_;
    if (PeekChar() == '-') Bump();
    if (PeekChar() == '0' && (PeekChar(1) == 'x' || PeekChar(1) == 'X')) {
      Bump();
      Bump();
      while (!AtEnd() && HexValue(PeekChar()) >= 0) Bump();
    } else {
      while (!AtEnd() && IsDigit(PeekChar())) Bump();
      if (PeekChar() == '.' && IsDigit(PeekChar(1))) {
        Bump();
        while (!AtEnd() && IsDigit(PeekChar())) Bump();
      }
      if ((PeekChar() == 'e' || PeekChar() == 'E') &&
          (IsDigit(PeekChar(1)) ||
           ((PeekChar(1) == '+' || PeekChar(1) == '-') && IsDigit(PeekChar(2))))) {
        Bump();
        if (PeekChar() == '+' || PeekChar() == '-') Bump();
        while (!AtEnd() && IsDigit(PeekChar())) Bump();
      }
    }
    // "10s" or "1.2.3" is text someone forgot to quote; say so rather than "unexpected".
    if (!AtEnd() && (IsIdentChar(PeekChar()))) {
      size_t end = i_;
      while (end < text_.size() && IsIdentChar(text_[end])) ++end;
      return ErrorAt(tok_.pos, "invalid number " + QuoteForError(text_.substr(start, end - start)) +
                                   " (quote strings and durations, as \"10s\")");
    }
    tok_.text = std::string(text_.substr(start, i_ - start));
    return absl::OkStatus();
  }

  // Reads `count` hex digits of a \u or \U escape.
  absl::Status ReadHex(int count, Position esc_pos, uint32_t* out) {
    uint32_t v = 0;
    for (int k = 0; k < count; ++k) {
      int h = AtEnd() ? -1 : HexValue(PeekChar());
      if (h < 0) return ErrorAt(esc_pos, "invalid unicode escape: expected hex digits");
      v = v * 16 + static_cast<uint32_t>(h);
      Bump();
    }
    *out = v;
    return absl::OkStatus();
  }

  absl::Status LexString() {
    tok_.kind = Tok::kString;
    Position start = Here();
    Bump();  // opening quote
    std::string& out = tok_.text;
    while (true) {
      if (AtEnd()) return ErrorAt(start, "unterminated string");
      char c = PeekChar();
      if (c == '\n') return ErrorAt(start, "unterminated string (newline inside quotes)");
      if (c == '"') {
        Bump();
        return absl::OkStatus();
      }
      if (c != '\\') {
        out.push_back(c);
        Bump();
        continue;
      }
      Position esc_pos = Here();
      Bump();
      if (AtEnd()) return ErrorAt(start, "unterminated string");
      char e = PeekChar();
      Bump();
      switch (e) {
        case 'n':
          out.push_back('\n');
          break;
        case 't':
          out.push_back('\t');
          break;
        case 'r':
          out.push_back('\r');
          break;
        case 'a':
          out.push_back('\a');
          break;
        case 'b':
          out.push_back('\b');
          break;
        case 'f':
          out.push_back('\f');
          break;
        case 'v':
          out.push_back('\v');
          break;
        case '\\':
        case '"':
        case '/':
          out.push_back(e);
          break;
        case 'u':
        case 'U': {
          uint32_t cp = 0;
          TRELLIS_RETURN_IF_ERROR(ReadHex(e == 'u' ? 4 : 8, esc_pos, &cp));
          if (cp >= 0xD800 && cp <= 0xDBFF && PeekChar() == '\\' && PeekChar(1) == 'u') {
            // A UTF-16 surrogate pair, as JSON writes characters beyond the BMP.
            Bump();
            Bump();
            uint32_t low = 0;
            TRELLIS_RETURN_IF_ERROR(ReadHex(4, esc_pos, &low));
            if (low < 0xDC00 || low > 0xDFFF) {
              return ErrorAt(esc_pos, "invalid unicode escape: unpaired surrogate");
            }
            cp = 0x10000 + ((cp - 0xD800) << 10) + (low - 0xDC00);
          } else if (cp >= 0xD800 && cp <= 0xDFFF) {
            return ErrorAt(esc_pos, "invalid unicode escape: unpaired surrogate");
          }
          if (cp > 0x10FFFF) return ErrorAt(esc_pos, "invalid unicode escape: out of range");
          AppendUtf8(cp, &out);
          break;
        }
        default:
          return ErrorAt(esc_pos, "unknown escape sequence " +
                                      QuoteForError(std::string("\\") + e) +
                                      " (use \\\" \\\\ \\n \\t \\uXXXX)");
      }
    }
  }

  absl::Status LexHeredoc() {
    tok_.kind = Tok::kString;
    Position start = Here();
    Bump();
    Bump();
    bool indented = false;
    if (PeekChar() == '-') {
      indented = true;
      Bump();
    }
    std::string marker;
    while (!AtEnd() && (IsIdentStart(PeekChar()) || IsDigit(PeekChar()))) {
      marker.push_back(PeekChar());
      Bump();
    }
    if (marker.empty()) return ErrorAt(start, "heredoc needs a marker, as <<EOF");
    if (PeekChar() == '\r') Bump();
    if (PeekChar() != '\n') return ErrorAt(start, "heredoc marker must end the line");
    Bump();
    std::vector<std::string_view> lines;
    while (true) {
      if (AtEnd()) return ErrorAt(start, "unterminated heredoc, expected " + marker);
      size_t line_start = i_;
      while (!AtEnd() && PeekChar() != '\n') Bump();
      std::string_view line = text_.substr(line_start, i_ - line_start);
      bool at_newline = !AtEnd();
      std::string_view trimmed = line;
      while (!trimmed.empty() && (trimmed.front() == ' ' || trimmed.front() == '\t')) {
        trimmed.remove_prefix(1);
      }
      while (!trimmed.empty() &&
             (trimmed.back() == ' ' || trimmed.back() == '\t' || trimmed.back() == '\r')) {
        trimmed.remove_suffix(1);
      }
      if (trimmed == marker) break;
      if (!at_newline) return ErrorAt(start, "unterminated heredoc, expected " + marker);
      Bump();  // the newline
      lines.push_back(line);
    }
    size_t indent = 0;
    if (indented) {
      // <<- strips the indentation every non-blank line shares.
      indent = SIZE_MAX;
      for (std::string_view line : lines) {
        size_t k = 0;
        while (k < line.size() && (line[k] == ' ' || line[k] == '\t')) ++k;
        if (k < line.size()) indent = std::min(indent, k);
      }
      if (indent == SIZE_MAX) indent = 0;
    }
    for (std::string_view line : lines) {
      tok_.text.append(line.substr(std::min(indent, line.size())));
      tok_.text.push_back('\n');
    }
    return absl::OkStatus();
  }

  // ---- Parser ----

  absl::Status CheckDepth(int depth, Position pos) const {
    if (depth > kMaxNestingDepth) {
      return ErrorAt(pos, absl::StrCat("nesting deeper than ", kMaxNestingDepth, " levels"));
    }
    return absl::OkStatus();
  }

  // Items until `end` (not consumed), then merged into `obj`.
  absl::Status ParseBody(Value* obj, Tok end, int depth) {
    std::vector<Item> items;
    while (tok_.kind != end) {
      if (tok_.kind == Tok::kComma) {
        TRELLIS_RETURN_IF_ERROR(Advance());
        continue;
      }
      if (tok_.kind == Tok::kEof) return ErrorAt(tok_.pos, "unexpected end of file, expected '}'");
      if (tok_.kind != Tok::kIdent && tok_.kind != Tok::kString) {
        return ErrorAt(tok_.pos, "expected a key, found " + Describe(tok_));
      }
      Item item;
      item.path.emplace_back(tok_.text, tok_.pos);
      TRELLIS_RETURN_IF_ERROR(Advance());
      while (tok_.kind == Tok::kString) {
        if (item.path.size() > kMaxLabels) {
          return ErrorAt(tok_.pos,
                         "block " + QuoteForError(item.path[0].first) + " has more than 2 labels");
        }
        item.path.emplace_back(tok_.text, tok_.pos);
        TRELLIS_RETURN_IF_ERROR(Advance());
      }
      if (tok_.kind == Tok::kEquals && item.path.size() == 1) {
        TRELLIS_RETURN_IF_ERROR(Advance());
        TRELLIS_RETURN_IF_ERROR(ParseValue(&item.value, depth + 1));
      } else if (tok_.kind == Tok::kLBrace) {
        TRELLIS_RETURN_IF_ERROR(ParseObject(&item.value, depth + 1));
      } else if (item.path.size() > 1) {
        return ErrorAt(tok_.pos, "expected '{' after the labels of block " +
                                     QuoteForError(item.path[0].first) + ", found " +
                                     Describe(tok_));
      } else {
        return ErrorAt(tok_.pos, "expected '=' or '{' after key " +
                                     QuoteForError(item.path[0].first) + ", found " +
                                     Describe(tok_));
      }
      items.push_back(std::move(item));
    }
    return Merge(std::move(items), 0, obj);
  }

  // Builds `obj` from items whose path from `level` on names where each value goes. Blocks
  // sharing a type merge under it, keyed by label; any repeated key or label is an error.
  absl::Status Merge(std::vector<Item> items, size_t level, Value* obj) {
    struct Group {
      size_t member;
      bool labelled;
      std::vector<Item> items;
    };
    std::unordered_map<std::string, size_t> index;  // key -> group
    std::vector<Group> groups;
    for (Item& item : items) {
      const auto& [key, key_pos] = item.path[level];
      bool labelled = item.path.size() > level + 1;
      auto [it, inserted] = index.emplace(key, groups.size());
      if (inserted) {
        Value::Member member;
        member.key = key;
        member.key_pos = key_pos;
        obj->members.push_back(std::move(member));
        groups.push_back({obj->members.size() - 1, labelled, {}});
      } else {
        Group& g = groups[it->second];
        if (!labelled || !g.labelled) {
          Position first = obj->members[g.member].key_pos;
          std::string what = "key " + QuoteForError(key);
          if (level > 0) {
            what = "block " + QuoteForError(item.path[0].first);
            for (size_t k = 1; k <= level; ++k) what += " " + QuoteForError(item.path[k].first);
          }
          return ErrorAt(key_pos, "duplicate " + what + " (first defined at " +
                                      std::to_string(first.line) + ":" +
                                      std::to_string(first.column) + ")");
        }
      }
      Group& g = groups[it->second];
      if (labelled) {
        g.items.push_back(std::move(item));
      } else {
        obj->members[g.member].value = std::move(item.value);
      }
    }
    for (Group& g : groups) {
      if (!g.labelled) continue;
      Value& container = obj->members[g.member].value;
      container.type = Value::Type::kObject;
      container.pos = obj->members[g.member].key_pos;
      TRELLIS_RETURN_IF_ERROR(Merge(std::move(g.items), level + 1, &container));
    }
    return absl::OkStatus();
  }

  // `{ ... }` starting at the current '{'.
  absl::Status ParseObject(Value* out, int depth) {
    TRELLIS_RETURN_IF_ERROR(CheckDepth(depth, tok_.pos));
    out->type = Value::Type::kObject;
    out->pos = tok_.pos;
    TRELLIS_RETURN_IF_ERROR(Advance());
    TRELLIS_RETURN_IF_ERROR(ParseBody(out, Tok::kRBrace, depth));
    return Advance();
  }

  absl::Status ParseList(Value* out, int depth) {
    TRELLIS_RETURN_IF_ERROR(CheckDepth(depth, tok_.pos));
    out->type = Value::Type::kList;
    out->pos = tok_.pos;
    TRELLIS_RETURN_IF_ERROR(Advance());
    while (tok_.kind != Tok::kRBracket) {
      Value item;
      TRELLIS_RETURN_IF_ERROR(ParseValue(&item, depth + 1));
      out->items.push_back(std::move(item));
      if (tok_.kind == Tok::kComma) {
        TRELLIS_RETURN_IF_ERROR(Advance());
      } else if (tok_.kind != Tok::kRBracket) {
        return ErrorAt(tok_.pos, "expected ',' or ']' in list, found " + Describe(tok_));
      }
    }
    return Advance();
  }

  // A literal the lexer accepted but that is too big, or not whole ("0x" without digits).
  absl::Status NumberError(const std::string& s, bool out_of_range) const {
    return ErrorAt(tok_.pos, "number " + QuoteForError(s) +
                                 (out_of_range ? " is out of range" : " is not a valid number"));
  }

  absl::Status ParseNumber(Value* out) {
    const std::string& s = tok_.text;
    bool negative = !s.empty() && s[0] == '-';
    std::string_view digits(s);
    if (negative) digits.remove_prefix(1);
    if (digits.size() > 2 && (digits[1] == 'x' || digits[1] == 'X')) {
      uint64_t v = 0;
      auto [p, ec] = std::from_chars(digits.data() + 2, digits.data() + digits.size(), v, 16);
      if (ec != std::errc() || v > static_cast<uint64_t>(INT64_MAX)) return NumberError(s, true);
      if (p != digits.data() + digits.size()) return NumberError(s, false);
      out->type = Value::Type::kInt;
      out->int_value = negative ? -static_cast<int64_t>(v) : static_cast<int64_t>(v);
      return absl::OkStatus();
    }
    if (s.find_first_of(".eE") == std::string::npos) {
      int64_t v = 0;
      auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
      if (ec == std::errc::result_out_of_range) return NumberError(s, true);
      if (ec != std::errc() || p != s.data() + s.size()) return NumberError(s, false);
      out->type = Value::Type::kInt;
      out->int_value = v;
      return absl::OkStatus();
    }
    double d = 0;
    auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), d);
    if (ec == std::errc::result_out_of_range || (ec == std::errc() && !std::isfinite(d))) {
      return NumberError(s, true);
    }
    if (ec != std::errc() || p != s.data() + s.size()) return NumberError(s, false);
    out->type = Value::Type::kFloat;
    out->float_value = d;
    return absl::OkStatus();
  }

  absl::Status ParseValue(Value* out, int depth) {
    out->pos = tok_.pos;
    switch (tok_.kind) {
      case Tok::kString:
        out->type = Value::Type::kString;
        out->string_value = std::move(tok_.text);
        return Advance();
      case Tok::kNumber:
        TRELLIS_RETURN_IF_ERROR(ParseNumber(out));
        return Advance();
      case Tok::kIdent:
        if (tok_.text == "true" || tok_.text == "false") {
          out->type = Value::Type::kBool;
          out->bool_value = tok_.text == "true";
          return Advance();
        }
        return ErrorAt(tok_.pos,
                       "unexpected " + Describe(tok_) + " where a value belongs (quote strings)");
      case Tok::kLBracket:
        return ParseList(out, depth);
      case Tok::kLBrace:
        return ParseObject(out, depth);
      default:
        return ErrorAt(tok_.pos, "expected a value, found " + Describe(tok_));
    }
  }

  std::string_view text_;
  const std::string& filename_;
  size_t i_ = 0;
  int line_ = 1;
  int column_ = 1;
  Token tok_;
};

}  // namespace

absl::StatusOr<Value> ParseHcl(std::string_view text, const std::string& filename) {
  if (text.size() > kMaxConfigSize) {
    return absl::InvalidArgumentError(filename + ": configuration is larger than " +
                                      std::to_string(kMaxConfigSize) + " bytes");
  }
  return HclParser(text, filename).Parse();
}

}  // namespace trellis::common::config
