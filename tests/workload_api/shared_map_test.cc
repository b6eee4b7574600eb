// The snapshot tables: sorted by the key each value holds, copies share the values, and the
// keys stay valid for as long as a copy holds their values.
#include "workload_api/shared_map.h"

#include <string>
#include <vector>

#include "gtest/gtest.h"

namespace trellis::workload_api {
namespace {

struct Item {
  std::string key;
  int value = 0;
};
std::string_view KeyOf(const Item& item) { return item.key; }
using Map = SharedMap<Item, &KeyOf>;

std::shared_ptr<const Item> MakeItem(std::string key, int value) {
  return std::make_shared<const Item>(Item{std::move(key), value});
}

std::vector<std::string> Keys(const Map& m) {
  std::vector<std::string> out;
  for (const auto& item : m) out.emplace_back(Map::Key(item));
  return out;
}

TEST(SharedMap, KeepsKeysSortedWhateverTheOrderOfPuts) {
  Map m;
  for (const char* k : {"c", "a", "d", "b"}) m.Put(MakeItem(k, 1));
  EXPECT_EQ(Keys(m), (std::vector<std::string>{"a", "b", "c", "d"}));
  EXPECT_EQ(m.size(), 4u);
}

TEST(SharedMap, PutUnderAnExistingKeyReplacesTheValue) {
  Map m;
  m.Put(MakeItem("a", 1));
  m.Put(MakeItem("a", 2));
  ASSERT_EQ(m.size(), 1u);
  EXPECT_EQ(m.at("a")->value, 2);
  EXPECT_EQ(Map::Key(*m.find("a")), "a");
}

TEST(SharedMap, FindCountAtAndUpperBound) {
  Map m;
  for (const char* k : {"a", "c", "e"}) m.Put(MakeItem(k, 1));
  EXPECT_EQ(m.count("c"), 1u);
  EXPECT_EQ(m.count("b"), 0u);
  EXPECT_EQ(m.find("b"), m.end());
  EXPECT_THROW(m.at("b"), std::out_of_range);
  EXPECT_EQ(Map::Key(*m.upper_bound("")), "a");
  EXPECT_EQ(Map::Key(*m.upper_bound("c")), "e");
  EXPECT_EQ(m.upper_bound("e"), m.end());
}

TEST(SharedMap, EraseAndFilter) {
  Map m;
  for (int i = 0; i < 6; ++i) m.Put(MakeItem(std::string(1, static_cast<char>('a' + i)), i));
  EXPECT_TRUE(m.erase("b"));
  EXPECT_FALSE(m.erase("b"));
  m.Filter([](const Item& item) { return item.value % 2 == 0; });
  EXPECT_EQ(Keys(m), (std::vector<std::string>{"a", "c", "e"}));
}

TEST(SharedMap, ACopySharesValuesAndOutlivesTheOriginal) {
  auto original = std::make_unique<Map>();
  original->Put(MakeItem("shared-key-longer-than-the-small-string-buffer", 7));
  Map copy = *original;
  EXPECT_EQ(copy.at("shared-key-longer-than-the-small-string-buffer").get(),
            original->at("shared-key-longer-than-the-small-string-buffer").get());
  original.reset();
  // The key is a view into the value, which the copy keeps alive.
  ASSERT_EQ(copy.size(), 1u);
  EXPECT_EQ(Map::Key(*copy.begin()), "shared-key-longer-than-the-small-string-buffer");
  EXPECT_EQ((*copy.begin())->value, 7);
}

TEST(SharedMap, EditingACopyLeavesTheOriginalAlone) {
  Map original;
  original.Put(MakeItem("a", 1));
  Map copy = original;
  copy.Put(MakeItem("a", 2));
  copy.Put(MakeItem("b", 3));
  EXPECT_EQ(original.at("a")->value, 1);
  EXPECT_EQ(original.size(), 1u);
  EXPECT_EQ(copy.at("a")->value, 2);
}

}  // namespace
}  // namespace trellis::workload_api
