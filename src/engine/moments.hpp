// The engine's one moments routine: count, mean and M2 of a span of values.
// A span is cut into blocks that stay in L1. Within a block the values are
// added in the data's own precision (float data in float: twice the vector
// width of double) into independent lanes, pairwise at the end; the blocks'
// results are carried in double (a cascade, as PyTorch's float sums). A
// block's moments take two passes over it: a center near its mean, then the
// deviations from that center and their squares, corrected for the center's
// error (the corrected two-pass algorithm); blocks are merged with Chan's
// formula. Every traversal's statistics come from here: whole runs
// (span_moments), and per-column blocks merged with merge_moments. Internal
// to the engine; compiled once per instruction set.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <type_traits>

#include "normlab/bfloat16.hpp"

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

// The type a kernel adds and multiplies in: the data's own (float data get
// twice the vector width of double). Sums longer than a block are carried in
// double.
template <class T>
struct compute_type {
  using type = T;
};
// bfloat16 data: float arithmetic (exact for every bfloat16, and float's
// vector width), sums beyond a block in double as for float.
template <>
struct compute_type<bfloat16> {
  using type = float;
};
template <class T>
using compute_t = typename compute_type<T>::type;

// ---- Storage and arithmetic ----
// The engine's data are float, double or bfloat16, a storage type whose
// conversions are explicit and to or from float only. Every kernel converts
// between its storage type T and an arithmetic type A through load and store,
// so one source serves all three; for float and double they are the plain
// conversions A(x) and T(value), and compile to the same code.

// The bfloat16 nearest to the double v, ties to even, rounded once (float(v)
// rounded to odd, then to bfloat16: bfloat16_rounding::from_double, which
// says why). Inlined: loops of it vectorize.
[[gnu::always_inline]] inline bfloat16 bfloat16_nearest(double v) {
  return bfloat16::from_bits(bfloat16_rounding::from_double(v));
}

// A value of storage type T as arithmetic type A; exact (a bfloat16 is a float).
template <class A, class T>
[[gnu::always_inline]] inline A load(const T& x) {
  if constexpr (std::is_same_v<T, bfloat16>)
    return A(float(x));
  else
    return A(x);
}

// A result of arithmetic type A rounded once to storage type T, to nearest
// even: float(value) or double(value); for bfloat16 its rounding from float
// (integer arithmetic, written to vectorize), or bfloat16_nearest from double.
template <class T, class A>
[[gnu::always_inline]] inline T store(A value) {
  if constexpr (!std::is_same_v<T, bfloat16>)
    return T(value);
  else if constexpr (std::is_same_v<A, double>)
    return bfloat16_nearest(value);
  else
    return bfloat16(float(value));
}

// Independent partial sums per reduction: four vector registers of A, enough
// to hide the latency of each add, few enough not to spill. For one
// instruction set the order of additions is fixed by the source, and the
// lanes are added pairwise at the end.
#if defined(__AVX512F__)
constexpr std::size_t kVectorBytes = 64;
#elif defined(__AVX2__)
constexpr std::size_t kVectorBytes = 32;
#else
constexpr std::size_t kVectorBytes = 16;
#endif
template <class A>
constexpr std::size_t kLanesOf = 4 * kVectorBytes / sizeof(A);
// The column kernels' strips of columns, summed in double.
constexpr std::size_t kLanes = kLanesOf<double>;

// The lanes added pairwise: lanes[j] += lanes[j + W] for W = L/2, ..., 1.
// Each width a template constant, so that every level compiles to whole
// vector adds in registers (a loop over the widths kept the lanes on the
// stack and ended in scalar adds: as long as the sums of a short span).
template <std::size_t W, class A, std::size_t L>
[[gnu::always_inline]] inline void fold_lanes(A (&lanes)[L]) {
  for (std::size_t j = 0; j < W; ++j) lanes[j] += lanes[j + W];
  if constexpr (W > 1) fold_lanes<W / 2>(lanes);
}
template <class A, std::size_t L>
[[gnu::always_inline]] inline A add_lanes(A (&lanes)[L]) {
  static_assert(L > 0 && (L & (L - 1)) == 0, "lanes come in powers of two");
  if constexpr (L > 1) fold_lanes<L / 2>(lanes);
  return lanes[0];
}

// Blocks small enough for L1: the values of a block are summed in A, and a
// second pass over a block is a cache hit.
constexpr std::size_t kBlock = 2048;

// Spans shorter than kLanesOf<A> use one vector of lanes: zeroing and adding
// up four would cost more than their sums (runs of one element, or
// EvoNorm-S0's groups of 24 channels, on [N, C]).
template <class A>
constexpr std::size_t kShortLanesOf = kVectorBytes / sizeof(A);

// W values from i into lanes 0..W-1, as a loop that GCC vectorizes into
// whole vector adds. (Unrolled first, as GCC does with loops this short, the
// adds of one vector of lanes were vectorized across rows instead, with a
// scalar path for spans below 128 values: EvoNorm-S0's groups of 24 channels
// ran 1.35x slower. Four vectors of lanes vectorize well either way, and
// faster unrolled.)
template <std::size_t W, class Step>
[[gnu::always_inline]] inline void add_chunk(std::size_t i, Step& step) {
#pragma GCC unroll 1
  for (std::size_t j = 0; j < W; ++j) step(i + j, j);
}

// The tail of a span, shorter than W * 2: a chunk of W values into the first
// lanes if there are that many left, then of W / 2, ..., 1, so that a short
// tail costs a few vector adds rather than one add per value.
template <std::size_t W, class Step>
[[gnu::always_inline]] inline void add_tail(std::size_t i, std::size_t end, Step& step) {
  if (i + W <= end) {
    add_chunk<W>(i, step);
    i += W;
  }
  if constexpr (W > 1) add_tail<W / 2>(i, end, step);
}

// Calls step(i, j) for every i in [start, end), j the lane (of L lanes of A)
// that value i adds into: rows of L values, then the tail in halving chunks.
// The order of additions is fixed by (L, start, end) alone.
template <class A, std::size_t L, class Step>
[[gnu::always_inline]] inline void for_lanes(std::size_t start, std::size_t end, Step step) {
  std::size_t i = start;
  for (; i + L <= end; i += L) {
    if constexpr (L <= kShortLanesOf<A>)
      add_chunk<L>(i, step);
    else
      for (std::size_t j = 0; j < L; ++j) step(i + j, j);
  }
  if constexpr (L > 1) add_tail<L / 2>(i, end, step);
}

// sum of term(i) over [0, n) in L lanes: term returns an A. Each block's
// lanes are summed in A, the blocks in double.
template <class A, std::size_t L, class Term>
double lane_sum_in(std::size_t n, Term term) {
  double total = 0;
  for (std::size_t start = 0; start < n; start += kBlock) {
    A lanes[L] = {};
    for_lanes<A, L>(start, std::min(n, start + kBlock),
                    [&](std::size_t i, std::size_t j) { lanes[j] += term(i); });
    total += double(add_lanes(lanes));
  }
  return total;
}
template <class A, class Term>
double lane_sum(std::size_t n, Term term) {
  if (n < kLanesOf<A>) return lane_sum_in<A, kShortLanesOf<A>>(n, term);
  return lane_sum_in<A, kLanesOf<A>>(n, term);
}

// Two sums at once: term(i, a, b) adds its terms (of type A) into a and b.
template <class A, std::size_t L, class Term>
void lane_sum2_in(std::size_t n, Term term, double& sum_a, double& sum_b) {
  sum_a = sum_b = 0;
  for (std::size_t start = 0; start < n; start += kBlock) {
    A a[L] = {}, b[L] = {};
    for_lanes<A, L>(start, std::min(n, start + kBlock),
                    [&](std::size_t i, std::size_t j) { term(i, a[j], b[j]); });
    sum_a += double(add_lanes(a));
    sum_b += double(add_lanes(b));
  }
}
template <class A, class Term>
void lane_sum2(std::size_t n, Term term, double& sum_a, double& sum_b) {
  if (n < kLanesOf<A>) return lane_sum2_in<A, kShortLanesOf<A>>(n, term, sum_a, sum_b);
  lane_sum2_in<A, kLanesOf<A>>(n, term, sum_a, sum_b);
}

// Four sums at once in double; fewer terms than lanes are added in order
// (runs of one element: a GroupNorm-like norm on [N, C]).
template <class Term>
void lane_sum4(std::size_t n, Term term, double (&sums)[4]) {
  if (n < kLanes) {
    sums[0] = sums[1] = sums[2] = sums[3] = 0;
    for (std::size_t i = 0; i < n; ++i) term(i, sums[0], sums[1], sums[2], sums[3]);
    return;
  }
  double a[kLanes] = {}, b[kLanes] = {}, c[kLanes] = {}, e[kLanes] = {};
  for_lanes<double, kLanes>(0, n,
                            [&](std::size_t i, std::size_t j) { term(i, a[j], b[j], c[j], e[j]); });
  sums[0] = add_lanes(a), sums[1] = add_lanes(b), sums[2] = add_lanes(c), sums[3] = add_lanes(e);
}

// Moments of one block (at most kBlock values), in A. First: a center c, the
// block's plain mean in A (which may be off by many of A's ulps when the mean
// is large next to the spread). Then: S1 = sum(x - c) and S2 = sum((x - c)^2),
// whose terms are small; mean = c + S1 / n and M2 = S2 - S1^2 / n are exact
// in exact arithmetic for any c, so c's error does not reach them.
template <class A, class T>
Moments block_moments_in(const T* x, std::size_t n) {
  const A center = A(lane_sum<A>(n, [x](std::size_t i) { return load<A>(x[i]); }) / double(n));
  double s1, s2;
  lane_sum2<A>(
      n,
      [x, center](std::size_t i, A& sum, A& squares) {
        const A dev = load<A>(x[i]) - center;
        sum += dev;
        squares += dev * dev;
      },
      s1, s2);
  return {double(n), double(center) + s1 / double(n), std::max(0.0, s2 - s1 * s1 / double(n))};
}

// In the data's compute type; in double for a block whose sums overflow that
// type (float values beyond about 1e19 apart, where float's squares overflow).
template <class T>
Moments block_moments(const T* x, std::size_t n) {
  const Moments m = block_moments_in<compute_t<T>>(x, n);
  if (std::is_same_v<compute_t<T>, double> || std::isfinite(m.m2 + m.mean)) return m;
  return block_moments_in<double>(x, n);
}

// Moments of a contiguous span: blocks of kBlock merged in order.
template <class T>
Moments span_moments(const T* x, std::size_t n) {
  if (n <= kBlock) return block_moments(x, n);  // what merging it into nothing gives
  Moments moments;
  for (std::size_t start = 0; start < n; start += kBlock)
    moments.merge(block_moments(x + start, std::min(kBlock, n - start)));
  return moments;
}

// The uncentered second moment's sum (RMS and L2 scaling).
template <class T>
double sum_of_squares(const T* x, std::size_t n) {
  using A = compute_t<T>;
  const double sum = lane_sum<A>(n, [x](std::size_t i) { return load<A>(x[i]) * load<A>(x[i]); });
  if (std::is_same_v<A, double> || std::isfinite(sum)) return sum;
  // float squares overflow beyond about 1e19: in double
  return lane_sum<double>(n,
                          [x](std::size_t i) { return load<double>(x[i]) * load<double>(x[i]); });
}

}  // namespace NORMLAB_ENGINE_NAMESPACE
}  // namespace normlab
