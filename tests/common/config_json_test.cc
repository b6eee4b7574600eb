// JSON configs, format detection, -expandEnv and file loading.
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <string>

#include "common/config/parser.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testutil/temp_dir.h"

namespace trellis::common::config {
namespace {

using ::testing::HasSubstr;

EnvLookup FakeEnv(std::map<std::string, std::string> vars) {
  return [vars](const std::string& name) -> std::optional<std::string> {
    auto it = vars.find(name);
    if (it == vars.end()) return std::nullopt;
    return it->second;
  };
}

std::string Expand(const std::string& text, std::map<std::string, std::string> vars) {
  absl::StatusOr<std::string> out = ExpandEnv(text, FakeEnv(std::move(vars)));
  EXPECT_TRUE(out.ok()) << out.status();
  return out.ok() ? *out : "";
}

void ExpectJsonError(const std::string& text, const std::string& fragment) {
  absl::StatusOr<Value> v = ParseJson(text, "test.json");
  ASSERT_FALSE(v.ok()) << text;
  EXPECT_EQ(v.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(v.status().message()), HasSubstr(fragment)) << text;
}

TEST(JsonParser, ParsesAllValueTypes) {
  absl::StatusOr<Value> v = ParseJson(
      R"({"s": "x", "i": -3, "f": 1.5, "b": true, "n": null, "l": [1, 2], "o": {}})", "test.json");
  ASSERT_TRUE(v.ok()) << v.status();
  EXPECT_EQ(v->Find("s")->value.string_value, "x");
  EXPECT_EQ(v->Find("i")->value.int_value, -3);
  EXPECT_EQ(v->Find("f")->value.type, Value::Type::kFloat);
  EXPECT_TRUE(v->Find("b")->value.bool_value);
  EXPECT_EQ(v->Find("n")->value.type, Value::Type::kNull);
  EXPECT_EQ(v->Find("l")->value.items.size(), 2u);
  EXPECT_TRUE(v->Find("o")->value.is_object());
}

TEST(JsonParser, PluginObjectFormMatchesHclShape) {
  absl::StatusOr<Value> json =
      ParseJson(R"({"plugins": {"DataStore": {"sql": {"plugin_data": {"a": "b"}}}}})", "t.json");
  absl::StatusOr<Value> hcl =
      ParseHcl("plugins { DataStore \"sql\" { plugin_data { a = \"b\" } } }", "t.conf");
  ASSERT_TRUE(json.ok() && hcl.ok());
  auto dig = [](const Value& root) {
    return root.Find("plugins")
        ->value.Find("DataStore")
        ->value.Find("sql")
        ->value.Find("plugin_data")
        ->value.Find("a")
        ->value.string_value;
  };
  EXPECT_EQ(dig(*json), dig(*hcl));
}

TEST(JsonParser, RejectsDuplicateKeysWithPath) {
  ExpectJsonError(R"({"server": {"a": 1, "a": 2}})", "test.json: duplicate key \"a\" in server");
}

TEST(JsonParser, SyntaxErrorNamesLineAndColumn) {
  ExpectJsonError("{\n  \"a\": 1,\n  \"b\": x\n}", "test.json:3:8: invalid JSON");
}

TEST(JsonParser, RejectsNonObjectTopLevel) {
  ExpectJsonError("[1, 2]", "test.json: the top level must be a JSON object");
}

TEST(JsonParser, RejectsTrailingGarbage) {
  ExpectJsonError("{} {}", "test.json:1:4: invalid JSON");
}

TEST(JsonParser, RejectsIntegerBeyondInt64) {
  ExpectJsonError(R"({"n": 18446744073709551615})", "integer 18446744073709551615 is out of range");
}

TEST(JsonParser, RejectsDeepNestingWithoutCrashing) {
  ExpectJsonError("{\"a\":" + std::string(100000, '['), "nesting deeper than 64 levels");
}

TEST(JsonParser, RejectsInvalidUtf8) { ExpectJsonError("{\"a\": \"\xff\"}", "invalid JSON"); }

TEST(DetectFormat, UsesExtensionThenFirstCharacter) {
  EXPECT_EQ(DetectFormat("server.json", "server {}"), Format::kJson);
  EXPECT_EQ(DetectFormat("SERVER.JSON", ""), Format::kJson);
  EXPECT_EQ(DetectFormat("server.conf", "  \n {\"a\": 1}"), Format::kJson);
  EXPECT_EQ(DetectFormat("server.conf", "server {}"), Format::kHcl);
  EXPECT_EQ(DetectFormat("server", ""), Format::kHcl);
}

TEST(ExpandEnv, ReplacesBothForms) {
  EXPECT_EQ(Expand("a=$A b=${B}c", {{"A", "1"}, {"B", "2"}}), "a=1 b=2c");
}

TEST(ExpandEnv, UnsetVariablesBecomeEmpty) { EXPECT_EQ(Expand("x${NOPE}y$NOPE.z", {}), "xy.z"); }

TEST(ExpandEnv, FollowsGoEdgeCases) {
  EXPECT_EQ(Expand("cost: 5$", {}), "cost: 5$");     // trailing $ stays
  EXPECT_EQ(Expand("a $% b", {}), "a $% b");         // $ before a non-name stays
  EXPECT_EQ(Expand("a${}b", {}), "ab");              // bad syntax is dropped
  EXPECT_EQ(Expand("a${B", {{"B", "x"}}), "aB");     // unclosed "${" is dropped
  EXPECT_EQ(Expand("$1x", {{"1", "one"}}), "onex");  // special names are one character
  EXPECT_EQ(Expand("${A_B}${a-b}", {{"A_B", "1"}, {"a-b", "2"}}), "12");
}

TEST(ExpandEnv, RefusesResultsOverTheSizeLimit) {
  absl::StatusOr<std::string> out =
      ExpandEnv("$A$A$A", FakeEnv({{"A", std::string(40, 'x')}}), 100);
  ASSERT_FALSE(out.ok());
  EXPECT_EQ(out.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(out.status().message()), HasSubstr("after environment expansion"));
}

TEST(ParseDocument, ExpandsOnlyWhenAsked) {
  ParseOptions options;
  options.env = FakeEnv({{"TD", "example.org"}});
  absl::StatusOr<Document> plain = ParseDocument("td = \"${TD}\"", "a.conf", options);
  ASSERT_TRUE(plain.ok());
  EXPECT_EQ(plain->root.Find("td")->value.string_value, "${TD}");
  options.expand_env = true;
  absl::StatusOr<Document> expanded = ParseDocument("td = \"${TD}\"", "a.conf", options);
  ASSERT_TRUE(expanded.ok());
  EXPECT_EQ(expanded->root.Find("td")->value.string_value, "example.org");
}

TEST(ParseDocument, DetectsJsonByContent) {
  absl::StatusOr<Document> doc = ParseDocument(R"({"a": 1})", "server.conf");
  ASSERT_TRUE(doc.ok()) << doc.status();
  EXPECT_EQ(doc->format, Format::kJson);
}

TEST(LoadDocument, ReadsFile) {
  testutil::TempDir dir("trellis-config");
  std::string path = dir.Write("s.conf", "a = 1\n");
  absl::StatusOr<Document> doc = LoadDocument(path);
  ASSERT_TRUE(doc.ok()) << doc.status();
  EXPECT_EQ(doc->filename, path);
  EXPECT_EQ(doc->root.Find("a")->value.int_value, 1);
}

TEST(LoadDocument, MissingFileIsNotFound) {
  testutil::TempDir dir("trellis-config");
  absl::StatusOr<Document> doc = LoadDocument(dir.path() + "/absent.conf");
  ASSERT_FALSE(doc.ok());
  EXPECT_EQ(doc.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(std::string(doc.status().message()), HasSubstr("absent.conf"));
}

TEST(LoadDocument, DirectoryIsFailedPrecondition) {
  testutil::TempDir dir("trellis-config");
  absl::StatusOr<Document> doc = LoadDocument(dir.path());
  ASSERT_FALSE(doc.ok());
  EXPECT_EQ(doc.status().code(), absl::StatusCode::kFailedPrecondition);
}

TEST(LoadDocument, OversizedFileIsRefused) {
  testutil::TempDir dir("trellis-config");
  std::string path = dir.Write("big.conf", std::string(kMaxConfigSize + 10, '#'));
  absl::StatusOr<Document> doc = LoadDocument(path);
  ASSERT_FALSE(doc.ok());
  EXPECT_EQ(doc.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(doc.status().message()), HasSubstr("configuration is larger than"));
}

TEST(LoadDocument, ErrorsCarryThePathAsGiven) {
  testutil::TempDir dir("trellis-config");
  std::string path = dir.Write("bad.conf", "a = 1\nb = \n");
  absl::StatusOr<Document> doc = LoadDocument(path);
  ASSERT_FALSE(doc.ok());
  EXPECT_THAT(std::string(doc.status().message()), HasSubstr(path + ":3:1: expected a value"));
}

}  // namespace
}  // namespace trellis::common::config
