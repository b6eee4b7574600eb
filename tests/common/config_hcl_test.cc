// HCL grammar: every construct the parser accepts and every syntax error it reports.
#include <string>

#include "common/config/parser.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace trellis::common::config {
namespace {

using ::testing::HasSubstr;

Value MustParse(const std::string& text) {
  absl::StatusOr<Value> v = ParseHcl(text, "test.conf");
  EXPECT_TRUE(v.ok()) << v.status();
  return v.ok() ? *std::move(v) : Value();
}

const Value& At(const Value& obj, const std::string& key) {
  const Value::Member* m = obj.Find(key);
  EXPECT_NE(m, nullptr) << "missing key " << key;
  static const Value kNull;
  return m ? m->value : kNull;
}

// Expects INVALID_ARGUMENT whose message contains `fragment`.
void ExpectError(const std::string& text, const std::string& fragment) {
  absl::StatusOr<Value> v = ParseHcl(text, "test.conf");
  ASSERT_FALSE(v.ok()) << "parsed: " << text;
  EXPECT_EQ(v.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(v.status().message()), HasSubstr(fragment)) << text;
}

TEST(HclParser, ParsesStringAssignment) {
  Value root = MustParse("name = \"value\"\n");
  EXPECT_EQ(At(root, "name").type, Value::Type::kString);
  EXPECT_EQ(At(root, "name").string_value, "value");
}

TEST(HclParser, DecodesStringEscapes) {
  Value root = MustParse(R"(s = "a\"b\\c\nd\te\u00e9\U0001F600/\/")");
  EXPECT_EQ(At(root, "s").string_value, "a\"b\\c\nd\te\xC3\xA9\xF0\x9F\x98\x80//");
}

TEST(HclParser, DecodesSurrogatePairEscape) {
  Value root = MustParse(R"(s = "\ud83d\ude00")");
  EXPECT_EQ(At(root, "s").string_value, "\xF0\x9F\x98\x80");
}

TEST(HclParser, ParsesIntegersIncludingNegativeAndHex) {
  Value root = MustParse("a = 8081\nb = -5\nc = 0x1F\nd = 0");
  EXPECT_EQ(At(root, "a").type, Value::Type::kInt);
  EXPECT_EQ(At(root, "a").int_value, 8081);
  EXPECT_EQ(At(root, "b").int_value, -5);
  EXPECT_EQ(At(root, "c").int_value, 31);
  EXPECT_EQ(At(root, "d").int_value, 0);
}

TEST(HclParser, ParsesFloats) {
  Value root = MustParse("a = 1.5\nb = -0.25\nc = 1e3\nd = 2.5E-1");
  EXPECT_EQ(At(root, "a").type, Value::Type::kFloat);
  EXPECT_DOUBLE_EQ(At(root, "a").float_value, 1.5);
  EXPECT_DOUBLE_EQ(At(root, "b").float_value, -0.25);
  EXPECT_DOUBLE_EQ(At(root, "c").float_value, 1000);
  EXPECT_DOUBLE_EQ(At(root, "d").float_value, 0.25);
}

TEST(HclParser, ParsesBooleans) {
  Value root = MustParse("t = true\nf = false");
  EXPECT_EQ(At(root, "t").type, Value::Type::kBool);
  EXPECT_TRUE(At(root, "t").bool_value);
  EXPECT_FALSE(At(root, "f").bool_value);
}

TEST(HclParser, ParsesListsWithTrailingCommaAndNewlines) {
  Value root = MustParse("l = [\n  \"a\",\n  \"b\",\n]\ne = []\nm = [1, \"x\", true]");
  const Value& l = At(root, "l");
  ASSERT_EQ(l.type, Value::Type::kList);
  ASSERT_EQ(l.items.size(), 2u);
  EXPECT_EQ(l.items[1].string_value, "b");
  EXPECT_TRUE(At(root, "e").items.empty());
  EXPECT_EQ(At(root, "m").items.size(), 3u);
}

TEST(HclParser, ParsesObjectValueWithCommas) {
  Value root = MustParse("o = { a = 1, b = \"two\", c = { d = true } }");
  const Value& o = At(root, "o");
  ASSERT_TRUE(o.is_object());
  EXPECT_EQ(At(o, "a").int_value, 1);
  EXPECT_EQ(At(o, "b").string_value, "two");
  EXPECT_TRUE(At(At(o, "c"), "d").bool_value);
}

TEST(HclParser, BlockAndAssignedObjectHaveTheSameShape) {
  Value a = MustParse("server {\n  port = 1\n}");
  Value b = MustParse("server = {\n  port = 1\n}");
  EXPECT_EQ(At(At(a, "server"), "port").int_value, 1);
  EXPECT_EQ(At(At(b, "server"), "port").int_value, 1);
}

TEST(HclParser, KeepsKeysInSourceOrder) {
  Value root = MustParse("z = 1\na = 2\nm = 3");
  ASSERT_EQ(root.members.size(), 3u);
  EXPECT_EQ(root.members[0].key, "z");
  EXPECT_EQ(root.members[1].key, "a");
  EXPECT_EQ(root.members[2].key, "m");
}

TEST(HclParser, AcceptsBareAndQuotedKeys) {
  Value root = MustParse("my-key.v2_x = 1\n\"quoted key\" = 2");
  EXPECT_EQ(At(root, "my-key.v2_x").int_value, 1);
  EXPECT_EQ(At(root, "quoted key").int_value, 2);
}

TEST(HclParser, SkipsAllCommentStyles) {
  Value root =
      MustParse("# hash\n// slashes\n/* block\n comment */ a = 1 # trailing\nb = /* inline */ 2\n");
  EXPECT_EQ(At(root, "a").int_value, 1);
  EXPECT_EQ(At(root, "b").int_value, 2);
}

TEST(HclParser, OneLabelBlockKeysByLabel) {
  Value root = MustParse("DataStore \"sql\" {\n  plugin_data { database_type = \"sqlite3\" }\n}");
  const Value& ds = At(root, "DataStore");
  ASSERT_TRUE(ds.is_object());
  EXPECT_EQ(At(At(At(ds, "sql"), "plugin_data"), "database_type").string_value, "sqlite3");
}

TEST(HclParser, RepeatedBlockTypesAreAllKept) {
  Value root = MustParse(
      "plugins {\n"
      "  NodeAttestor \"join_token\" { plugin_data {} }\n"
      "  KeyManager \"memory\" {}\n"
      "  NodeAttestor \"x509pop\" { plugin_data { ca_bundle_path = \"ca.pem\" } }\n"
      "}");
  const Value& na = At(At(root, "plugins"), "NodeAttestor");
  ASSERT_EQ(na.members.size(), 2u);
  EXPECT_EQ(na.members[0].key, "join_token");
  EXPECT_EQ(na.members[1].key, "x509pop");
}

TEST(HclParser, TwoLabelBlocksNest) {
  Value root = MustParse("a \"b\" \"c\" { x = 1 }\na \"b\" \"d\" { x = 2 }");
  const Value& b = At(At(root, "a"), "b");
  EXPECT_EQ(At(At(b, "c"), "x").int_value, 1);
  EXPECT_EQ(At(At(b, "d"), "x").int_value, 2);
}

TEST(HclParser, ReadsHeredoc) {
  Value root = MustParse("s = <<EOF\nline one\n  line two\nEOF\nn = 1");
  EXPECT_EQ(At(root, "s").string_value, "line one\n  line two\n");
  EXPECT_EQ(At(root, "n").int_value, 1);
}

TEST(HclParser, IndentedHeredocStripsCommonIndent) {
  Value root = MustParse("s = <<-EOT\n    a\n      b\n    EOT\n");
  EXPECT_EQ(At(root, "s").string_value, "a\n  b\n");
}

TEST(HclParser, RecordsLineAndColumn) {
  Value root = MustParse("server {\n  bind_port = 8081\n}");
  const Value::Member* server = root.Find("server");
  ASSERT_NE(server, nullptr);
  EXPECT_EQ(server->key_pos.line, 1);
  EXPECT_EQ(server->key_pos.column, 1);
  const Value::Member* port = server->value.Find("bind_port");
  ASSERT_NE(port, nullptr);
  EXPECT_EQ(port->key_pos.line, 2);
  EXPECT_EQ(port->key_pos.column, 3);
  EXPECT_EQ(port->value.pos.line, 2);
  EXPECT_EQ(port->value.pos.column, 15);
}

TEST(HclParser, EmptyInputIsEmptyObject) {
  Value root = MustParse("  \n# nothing\n");
  EXPECT_TRUE(root.is_object());
  EXPECT_TRUE(root.members.empty());
}

// ---- Errors: each names file:line:col ----

TEST(HclParserErrors, DuplicateKeyNamesBothPositions) {
  ExpectError("a = 1\na = 2", "test.conf:2:1: duplicate key \"a\" (first defined at 1:1)");
}

TEST(HclParserErrors, DuplicateLabelledBlock) {
  ExpectError("NodeAttestor \"x\" {}\nNodeAttestor \"x\" {}",
              "test.conf:2:14: duplicate block \"NodeAttestor\" \"x\"");
}

TEST(HclParserErrors, DuplicateUnlabelledBlock) {
  ExpectError("server {}\nserver {}", "test.conf:2:1: duplicate key \"server\"");
}

TEST(HclParserErrors, LabelledAndPlainBlockOfSameKeyConflict) {
  ExpectError("A \"x\" {}\nA = 1", "test.conf:2:1: duplicate key \"A\"");
}

TEST(HclParserErrors, UnterminatedString) {
  ExpectError("a = \"abc", "test.conf:1:5: unterminated string");
}

TEST(HclParserErrors, NewlineInString) {
  ExpectError("a = \"ab\nc\"", "test.conf:1:5: unterminated string");
}

TEST(HclParserErrors, UnknownEscape) {
  ExpectError(R"(a = "x\qy")", "test.conf:1:7: unknown escape sequence \"\\\\q\"");
}

TEST(HclParserErrors, BadUnicodeEscape) {
  ExpectError(R"(a = "\u12G4")", "test.conf:1:6: invalid unicode escape");
}

TEST(HclParserErrors, LoneSurrogate) {
  ExpectError(R"(a = "\ud800")", "test.conf:1:6: invalid unicode escape: unpaired surrogate");
}

TEST(HclParserErrors, UnterminatedBlockComment) {
  ExpectError("a = 1\n/* never closed", "test.conf:2:1: unterminated /* comment");
}

TEST(HclParserErrors, MissingClosingBrace) {
  ExpectError("server {\n  a = 1\n", "test.conf:3:1: unexpected end of file, expected '}'");
}

TEST(HclParserErrors, StrayClosingBrace) {
  ExpectError("a = 1\n}", "test.conf:2:1: expected a key, found '}'");
}

TEST(HclParserErrors, MissingEquals) {
  ExpectError("a 1", "test.conf:1:3: expected '=' or '{' after key \"a\", found number 1");
}

TEST(HclParserErrors, MissingValue) {
  ExpectError("a =\n", "test.conf:2:1: expected a value, found end of file");
}

TEST(HclParserErrors, UnquotedIdentifierValue) {
  ExpectError("a = yes", "test.conf:1:5: unexpected identifier \"yes\" where a value belongs");
}

TEST(HclParserErrors, UnquotedDuration) {
  ExpectError("ttl = 10s", "test.conf:1:7: invalid number \"10s\"");
}

TEST(HclParserErrors, ListWithoutCommas) {
  ExpectError("l = [1 2]", "test.conf:1:8: expected ',' or ']' in list, found number 2");
}

TEST(HclParserErrors, UnterminatedList) {
  ExpectError("l = [1,", "test.conf:1:8: expected a value, found end of file");
}

TEST(HclParserErrors, TooManyLabels) {
  ExpectError("a \"b\" \"c\" \"d\" {}", "test.conf:1:11: block \"a\" has more than 2 labels");
}

TEST(HclParserErrors, LabelsWithoutBlock) {
  ExpectError("a \"b\" = 1", "test.conf:1:7: expected '{' after the labels of block \"a\"");
}

TEST(HclParserErrors, IntegerOutOfRange) {
  ExpectError("n = 99999999999999999999",
              "test.conf:1:5: number \"99999999999999999999\" is out of range");
}

TEST(HclParserErrors, FloatOutOfRange) {
  ExpectError("n = 1e999", "test.conf:1:5: number \"1e999\" is out of range");
}

TEST(HclParserErrors, HexPrefixWithoutDigits) {
  ExpectError("n = 0x", "test.conf:1:5: number \"0x\" is not a valid number");
}

TEST(HclParserErrors, UnexpectedCharacter) {
  ExpectError("a = 1\n@", "test.conf:2:1: unexpected character \"@\"");
}

TEST(HclParserErrors, NonPrintableCharacterIsEscaped) {
  ExpectError(std::string("a = 1\n\x01", 7), "test.conf:2:1: unexpected character \"\\x01\"");
}

TEST(HclParserErrors, UnterminatedHeredoc) {
  ExpectError("s = <<EOF\nabc\n", "test.conf:1:5: unterminated heredoc, expected EOF");
}

TEST(HclParserErrors, HeredocWithoutMarker) {
  ExpectError("s = <<\nabc\n", "test.conf:1:5: heredoc needs a marker");
}

TEST(HclParserErrors, DeepNestingIsRefusedWithoutCrashing) {
  std::string deep(100000, '[');
  ExpectError("a = " + deep, "nesting deeper than 64 levels");
}

TEST(HclParserErrors, DeepBlocksAreRefused) {
  std::string text;
  for (int i = 0; i < 100; ++i) text += "a {\n";
  ExpectError(text, "nesting deeper than 64 levels");
}

TEST(HclParserErrors, NestingAtTheLimitIsAccepted) {
  std::string text =
      "a = " + std::string(kMaxNestingDepth - 1, '[') + std::string(kMaxNestingDepth - 1, ']');
  EXPECT_TRUE(ParseHcl(text, "test.conf").ok());
}

TEST(HclParser, ManyDistinctKeysNearTheSizeLimit) {
  std::string text;
  int count = 0;
  for (; text.size() < kMaxConfigSize - 64; ++count) {
    text += "k" + std::to_string(count) + " = 1\n";
  }
  absl::StatusOr<Value> v = ParseHcl(text, "test.conf");
  ASSERT_TRUE(v.ok()) << v.status();
  EXPECT_EQ(v->members.size(), static_cast<size_t>(count));
}

TEST(HclParser, ManyLabelsOfOneBlockType) {
  std::string text;
  int count = 0;
  for (; text.size() < kMaxConfigSize - 64; ++count) {
    text += "P \"n" + std::to_string(count) + "\" {}\n";
  }
  absl::StatusOr<Value> v = ParseHcl(text, "test.conf");
  ASSERT_TRUE(v.ok()) << v.status();
  EXPECT_EQ(v->Find("P")->value.members.size(), static_cast<size_t>(count));
}

TEST(HclParserErrors, OversizedInputIsRefused) {
  std::string text(kMaxConfigSize + 1, ' ');
  absl::StatusOr<Value> v = ParseHcl(text, "big.conf");
  ASSERT_FALSE(v.ok());
  EXPECT_EQ(v.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(v.status().message()), HasSubstr("big.conf: configuration is larger"));
}

}  // namespace
}  // namespace trellis::common::config
