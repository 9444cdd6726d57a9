// How many threads the norm kernels (and the lab's layers) use, and the
// loop that splits work across them.
#pragma once

#include <cstddef>

namespace normlab {

// Threads for every engine call made after this (default 1). Results do not
// depend on it: work is split into pieces fixed by the shape and their partial
// sums are merged in a fixed order. n = 0 means one per hardware thread.
void set_num_threads(unsigned n);
unsigned num_threads();

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

// Runs task over [0, n) split into at most num_threads() contiguous ranges,
// the caller taking the first, on the engine's fixed pool (one loop at a
// time; no allocation per call, so usable in hot paths). Serial when n is
// small or `work` (the tensor's elements) is below what pays for waking
// threads; loops started from other threads meanwhile run serially.
void run_parallel(std::size_t n, std::size_t work, const RangeTask& task);

template <class F>
void parallel_for(std::size_t n, std::size_t work, F&& body) {
  RangeTask task(body);
  run_parallel(n, work, task);
}

}  // namespace normlab
