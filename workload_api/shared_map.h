// An immutable-value map for snapshots: shared pointers to values sorted by a key each value
// holds (an entry's id), in one array of 16-byte slots. Copying a snapshot copies that array,
// one allocation, where a std::map copied a node and a key string per element: with thousands
// of entries, every snapshot edit churned the heap and left it fragmented. The key is read
// from the value itself, so a slot holds nothing but the pointer.
#pragma once

#include <algorithm>
#include <memory>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace trellis::workload_api {

// `KeyOf` gives a value's key, a view into the value itself; it must not change while a map
// holds the value.
template <typename V, std::string_view (*KeyOf)(const V&)>
class SharedMap {
 public:
  using Value = std::shared_ptr<const V>;
  using value_type = Value;
  using const_iterator = typename std::vector<Value>::const_iterator;
  using iterator = const_iterator;

  // The key of the value an iterator points at.
  static std::string_view Key(const Value& value) { return KeyOf(*value); }

  const_iterator begin() const { return items_.begin(); }
  const_iterator end() const { return items_.end(); }
  size_t size() const { return items_.size(); }
  bool empty() const { return items_.empty(); }

  const_iterator find(std::string_view key) const {
    auto it = lower_bound(key);
    return it != items_.end() && Key(*it) == key ? it : items_.end();
  }
  size_t count(std::string_view key) const { return find(key) == end() ? 0 : 1; }
  // The first element whose key is greater than `key`.
  const_iterator upper_bound(std::string_view key) const {
    return std::upper_bound(items_.begin(), items_.end(), key,
                            [](std::string_view k, const Value& v) { return k < Key(v); });
  }
  const Value& at(std::string_view key) const {
    auto it = find(key);
    if (it == end()) throw std::out_of_range("no such key");
    return *it;
  }

  // Inserts `value` under its own key, or replaces the value held under it. Appending in key
  // order (as a sync delivers entries) costs no moves.
  void Put(Value value) {
    auto it = lower_bound(Key(value));
    auto pos = items_.begin() + (it - items_.cbegin());
    if (pos != items_.end() && Key(*pos) == Key(value)) {
      *pos = std::move(value);
      return;
    }
    items_.insert(pos, std::move(value));
  }
  // True when there was a value under `key`.
  bool erase(std::string_view key) {
    auto it = find(key);
    if (it == end()) return false;
    items_.erase(it);
    return true;
  }
  // Keeps the values for which `keep` is true.
  template <typename Pred>
  void Filter(Pred keep) {
    items_.erase(std::remove_if(items_.begin(), items_.end(),
                                [&](const Value& v) { return !keep(*v); }),
                 items_.end());
  }
  // Gives back the room that edits left beyond the elements: a snapshot lives on unedited,
  // and a table grown by inserts holds up to twice the slots it uses.
  void ShrinkToFit() { items_.shrink_to_fit(); }

 private:
  const_iterator lower_bound(std::string_view key) const {
    return std::lower_bound(items_.begin(), items_.end(), key,
                            [](const Value& v, std::string_view k) { return Key(v) < k; });
  }

  std::vector<Value> items_;
};

}  // namespace trellis::workload_api
