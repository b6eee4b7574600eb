// An immutable-value map for snapshots: shared pointers to values sorted by a key each value
// holds (an entry's id), in one array. Copying a snapshot copies that array, one allocation,
// where a std::map copied a node and a key string per element: with thousands of entries,
// every snapshot edit churned the heap and left it fragmented.
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
  // The key is a view into the value the same element keeps alive.
  using value_type = std::pair<std::string_view, Value>;
  using const_iterator = typename std::vector<value_type>::const_iterator;
  using iterator = const_iterator;

  const_iterator begin() const { return items_.begin(); }
  const_iterator end() const { return items_.end(); }
  size_t size() const { return items_.size(); }
  bool empty() const { return items_.empty(); }

  const_iterator find(std::string_view key) const {
    auto it = lower_bound(key);
    return it != items_.end() && it->first == key ? it : items_.end();
  }
  size_t count(std::string_view key) const { return find(key) == end() ? 0 : 1; }
  // The first element whose key is greater than `key`.
  const_iterator upper_bound(std::string_view key) const {
    return std::upper_bound(items_.begin(), items_.end(), key,
                            [](std::string_view k, const value_type& v) { return k < v.first; });
  }
  const Value& at(std::string_view key) const {
    auto it = find(key);
    if (it == end()) throw std::out_of_range("no such key");
    return it->second;
  }

  // Inserts `value` under its own key, or replaces the value held under it. Appending in key
  // order (as a sync delivers entries) costs no moves.
  void Put(Value value) {
    std::string_view key = KeyOf(*value);
    auto it = lower_bound(key);
    if (it != items_.end() && it->first == key) {
      auto pos = items_.begin() + (it - items_.cbegin());
      pos->second = std::move(value);
      pos->first = KeyOf(*pos->second);
      return;
    }
    items_.insert(it, value_type(key, std::move(value)));
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
                                [&](const value_type& v) { return !keep(*v.second); }),
                 items_.end());
  }

 private:
  const_iterator lower_bound(std::string_view key) const {
    return std::lower_bound(items_.begin(), items_.end(), key,
                            [](const value_type& v, std::string_view k) { return v.first < k; });
  }

  std::vector<value_type> items_;
};

}  // namespace trellis::workload_api
