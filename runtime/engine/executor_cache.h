// A session's executors (and their activation arenas) by shape, most recently used first, at most kCapacity:
// shared by the CPU and CUDA backends.
#pragma once
#include <list>
#include <memory>
#include <tuple>
#include <utility>

#include "model/graph.h"

namespace diffrt::engine {

template <class Executor>
class ExecutorCache {
 public:
  static constexpr size_t kCapacity = 4;
  using Key = std::tuple<const Graph*, int, int, int, int>;  // graph, batch, h, w, context length

  // The cached executor for `key`, or a new one from make() (evicting the least recently used).
  template <class Make>
  Executor& get(const Key& key, Make&& make) {
    for (auto it = items_.begin(); it != items_.end(); ++it)
      if (it->first == key) {
        items_.splice(items_.begin(), items_, it);
        return *items_.front().second;
      }
    while (items_.size() >= kCapacity) items_.pop_back();
    std::unique_ptr<Executor> ex = make();
    items_.emplace_front(key, std::move(ex));
    return *items_.front().second;
  }
  void clear() { items_.clear(); }
  size_t size() const { return items_.size(); }
  bool empty() const { return items_.empty(); }

 private:
  std::list<std::pair<Key, std::unique_ptr<Executor>>> items_;
};

}  // namespace diffrt::engine
