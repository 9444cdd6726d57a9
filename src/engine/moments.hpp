// The engine's one moments routine: count, mean and M2 of a span of values,
// summed in double into independent lanes, block by block (two passes over a
// block that stays in L1: its exact mean, then its squared deviations), the
// blocks merged with Chan's formula. Every traversal's statistics come from
// here: whole runs (span_moments), and per-column blocks merged with
// merge_moments. Internal to the engine; compiled once per instruction set.
#pragma once

#include <algorithm>
#include <cstddef>

#ifndef NORMLAB_ENGINE_NAMESPACE
#error \
    "CMake builds the engine's kernels once per instruction set, with NORMLAB_ENGINE_NAMESPACE set"
#endif

namespace normlab {
namespace NORMLAB_ENGINE_NAMESPACE {

// Chan, Golub & LeVeque: (count, mean, m2) += (other_count, other_mean,
// other_m2), exactly, so sets can be merged in any grouping. Written once:
// Moments::merge and the column kernels' per-column arrays both call it.
inline void merge_moments(double& count, double& mean, double& m2, double other_count,
                          double other_mean, double other_m2) {
  if (other_count == 0) return;
  const double total = count + other_count;
  const double delta = other_mean - mean;
  const double weight = other_count / total;
  mean += delta * weight;
  m2 += other_m2 + delta * delta * count * weight;
  count = total;
}

// Count, mean and sum of squared deviations of a set of values.
struct Moments {
  double count = 0;
  double mean = 0;
  double m2 = 0;

  void merge(const Moments& other) {
    merge_moments(count, mean, m2, other.count, other.mean, other.m2);
  }
};

// Independent partial sums per reduction: enough to fill the vector units and
// hide the latency of each add (four vector registers), few enough not to
// spill. For one instruction set the order of additions is fixed by the
// source, and the lanes are added pairwise at the end.
#if defined(__AVX512F__)
constexpr std::size_t kLanes = 32;
#elif defined(__AVX2__)
constexpr std::size_t kLanes = 16;
#else
constexpr std::size_t kLanes = 8;
#endif

inline double add_lanes(double (&lanes)[kLanes]) {
  for (std::size_t width = kLanes / 2; width > 0; width /= 2)
    for (std::size_t j = 0; j < width; ++j) lanes[j] += lanes[j + width];
  return lanes[0];
}

// sum of term(i) over [0, n).
template <class Term>
double lane_sum(std::size_t n, Term term) {
  double lanes[kLanes] = {};
  std::size_t i = 0;
  for (; i + kLanes <= n; i += kLanes)
    for (std::size_t j = 0; j < kLanes; ++j) lanes[j] += term(i + j);
  for (std::size_t j = 0; i < n; ++i, ++j) lanes[j] += term(i);
  return add_lanes(lanes);
}

// Two sums at once: term(i, a, b) adds its terms into a and b.
template <class Term>
void lane_sum2(std::size_t n, Term term, double& sum_a, double& sum_b) {
  double a[kLanes] = {}, b[kLanes] = {};
  std::size_t i = 0;
  for (; i + kLanes <= n; i += kLanes)
    for (std::size_t j = 0; j < kLanes; ++j) term(i + j, a[j], b[j]);
  for (std::size_t j = 0; i < n; ++i, ++j) term(i, a[j], b[j]);
  sum_a = add_lanes(a);
  sum_b = add_lanes(b);
}

// Four sums at once, likewise; fewer terms than lanes are added in order
// (runs of one element: a GroupNorm-like norm on [N, C]).
template <class Term>
void lane_sum4(std::size_t n, Term term, double (&sums)[4]) {
  if (n < kLanes) {
    sums[0] = sums[1] = sums[2] = sums[3] = 0;
    for (std::size_t i = 0; i < n; ++i) term(i, sums[0], sums[1], sums[2], sums[3]);
    return;
  }
  double a[kLanes] = {}, b[kLanes] = {}, c[kLanes] = {}, e[kLanes] = {};
  std::size_t i = 0;
  for (; i + kLanes <= n; i += kLanes)
    for (std::size_t j = 0; j < kLanes; ++j) term(i + j, a[j], b[j], c[j], e[j]);
  for (std::size_t j = 0; i < n; ++i, ++j) term(i, a[j], b[j], c[j], e[j]);
  sums[0] = add_lanes(a), sums[1] = add_lanes(b), sums[2] = add_lanes(c), sums[3] = add_lanes(e);
}

// Blocks small enough for L1: the second pass over a block is a cache hit.
constexpr std::size_t kBlock = 2048;

// Two-pass moments of one block: exact mean first, then squared deviations.
template <class T>
Moments block_moments(const T* x, std::size_t n) {
  const double mean = lane_sum(n, [x](std::size_t i) { return double(x[i]); }) / double(n);
  const double m2 = lane_sum(n, [x, mean](std::size_t i) {
    const double dev = double(x[i]) - mean;
    return dev * dev;
  });
  return {double(n), mean, m2};
}

// Moments of a contiguous span: blocks of kBlock merged in order.
template <class T>
Moments span_moments(const T* x, std::size_t n) {
  Moments moments;
  for (std::size_t start = 0; start < n; start += kBlock)
    moments.merge(block_moments(x + start, std::min(kBlock, n - start)));
  return moments;
}

// The uncentered second moment's sum (RMS and L2 scaling).
template <class T>
double sum_of_squares(const T* x, std::size_t n) {
  return lane_sum(n, [x](std::size_t i) { return double(x[i]) * double(x[i]); });
}

}  // namespace NORMLAB_ENGINE_NAMESPACE
}  // namespace normlab
