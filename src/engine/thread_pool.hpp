// The engine's threads: a fixed pool that runs one loop at a time, split into
// contiguous ranges. No allocation per call, so it is usable in hot paths.
#pragma once

#include <cstddef>
#include <utility>

namespace normlab {

// A callable taking (begin, end), passed by reference without allocating.
class RangeTask {
 public:
  template <class F>
  explicit RangeTask(F& f)
      : object_(&f),
        call_([](void* o, std::size_t b, std::size_t e) { (*static_cast<F*>(o))(b, e); }) {}
  void operator()(std::size_t begin, std::size_t end) const { call_(object_, begin, end); }

 private:
  void* object_;
  void (*call_)(void*, std::size_t, std::size_t);
};

// Runs task over [0, n) split into at most num_threads() contiguous ranges, the
// caller taking the first. Serial when n is small or `work` (the tensor's elements)
// is below what pays for waking threads.
void run_parallel(std::size_t n, std::size_t work, const RangeTask& task);

template <class F>
void parallel_for(std::size_t n, std::size_t work, F&& body) {
  RangeTask task(body);
  run_parallel(n, work, task);
}

}  // namespace normlab
