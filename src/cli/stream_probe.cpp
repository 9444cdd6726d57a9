#include "stream_probe.hpp"

#include <algorithm>
#include <chrono>
#include <memory>
#include <thread>
#include <vector>

namespace normlab::cli {

void parallel_for(unsigned threads, std::size_t n,
                  const std::function<void(std::size_t, std::size_t)>& body) {
  threads = std::max(1u, threads);
  // Chunks of whole cache lines, so that no line is written by two threads.
  const std::size_t chunk = ((n + threads - 1) / threads + 7) / 8 * 8;
  std::vector<std::thread> team;
  for (unsigned t = 1; t < threads; ++t) {
    const std::size_t begin = std::min(n, t * chunk), end = std::min(n, begin + chunk);
    team.emplace_back(body, begin, end);
  }
  body(0, std::min(n, chunk));
  for (std::thread& t : team) t.join();
}

namespace {

double seconds_of(const std::function<void()>& f) {
  const auto start = std::chrono::steady_clock::now();
  f();
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

}  // namespace

Bandwidth measure_bandwidth(unsigned threads, std::size_t array_bytes, int passes) {
  const std::size_t n = array_bytes / sizeof(double);
  // Left uninitialized here: the first touch below places each page with its thread.
  std::unique_ptr<double[]> a(new double[n]), b(new double[n]), c(new double[n]);
  double* pa = a.get();
  double* pb = b.get();
  double* pc = c.get();
  parallel_for(threads, n, [&](std::size_t begin, std::size_t end) {
    for (std::size_t i = begin; i < end; ++i) pa[i] = 1.0, pb[i] = 2.0, pc[i] = 0.0;
  });
  // s comes from a volatile so the compiler cannot see the copy's multiply by
  // 1.0 and turn the loop into memcpy, whose non-temporal stores the norm
  // kernels do not get.
  volatile double one = 1.0, three = 3.0;
  const double unit = one, s = three;
  auto copy = [&] {
    parallel_for(threads, n, [&](std::size_t begin, std::size_t end) {
      for (std::size_t i = begin; i < end; ++i) pc[i] = unit * pa[i];
    });
  };
  auto triad = [&] {
    parallel_for(threads, n, [&](std::size_t begin, std::size_t end) {
      for (std::size_t i = begin; i < end; ++i) pa[i] = pb[i] + s * pc[i];
    });
  };
  auto best_seconds = [&](const std::function<void()>& kernel) {
    kernel();  // untimed: pages settled, caches in steady state
    double best = 1e300;
    for (int p = 0; p < passes; ++p) best = std::min(best, seconds_of(kernel));
    return best;
  };
  Bandwidth result;
  result.array_bytes = n * sizeof(double);
  result.threads = std::max(1u, threads);
  result.passes = passes;
  result.copy_gbs = 2.0 * double(result.array_bytes) / best_seconds(copy) / 1e9;
  result.triad_gbs = 3.0 * double(result.array_bytes) / best_seconds(triad) / 1e9;
  return result;
}

}  // namespace normlab::cli
