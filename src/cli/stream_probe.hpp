// The machine's memory bandwidth, measured in the same run as the benchmark:
// STREAM's copy and triad kernels on arrays far larger than the last-level cache.
#pragma once

#include <cstddef>
#include <functional>

namespace normlab::cli {

// Runs body(begin, end) on `threads` contiguous chunks of [0, n), one per
// std::thread (the caller runs the first chunk). Chunk starts are multiples of 8.
void parallel_for(unsigned threads, std::size_t n,
                  const std::function<void(std::size_t, std::size_t)>& body);

struct Bandwidth {
  double copy_gbs = 0;   // c = a: 2 x 8 bytes per element
  double triad_gbs = 0;  // a = b + s * c: 3 x 8 bytes per element
  std::size_t array_bytes = 0;
  unsigned threads = 1;
  int passes = 0;
  // What `normlab bench` divides by: the better of the two kernels.
  double best_gbs() const { return copy_gbs > triad_gbs ? copy_gbs : triad_gbs; }
};

// Best time of `passes` timed passes of each kernel (after one untimed pass)
// on three arrays of double of array_bytes each, first touched by the threads
// that use them. Bytes are counted as STREAM does (no write-allocate traffic).
Bandwidth measure_bandwidth(unsigned threads, std::size_t array_bytes, int passes);

}  // namespace normlab::cli
