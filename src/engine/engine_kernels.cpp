// The shared reduction engine. Every loop in here walks the activation as
// contiguous runs view[a, c, 0:inner]; a run belongs to one statistics group
// and (per-channel affine) one gamma/beta entry. Sums and dx are computed in
// double; the forward's elementwise step runs in the data type.
//
// This file is compiled once per instruction set (engine_isa.hpp) and engine.cpp
// picks the fastest one the CPU has at run time. Its loops are written so the
// compiler vectorizes them: sums go into kLanes independent partial sums, and
// elementwise loops have no dependence between iterations.
//
// Threads (thread_pool.hpp) split the work into pieces fixed by the shape --
// runs, groups or chunks of rows -- and partial sums are merged in a fixed
// order afterwards, so results do not depend on the number of threads.
#if defined(__SSE2__)
#include <immintrin.h>
#endif

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <type_traits>

#include "engine_isa.hpp"
#include "thread_pool.hpp"

#ifndef NORMLAB_ENGINE_NAMESPACE
#error "CMake builds engine_kernels.cpp once per instruction set, with NORMLAB_ENGINE_NAMESPACE set"
#endif

namespace normlab {
namespace NORMLAB_ENGINE_NAMESPACE {
namespace {

// Count, mean and sum of squared deviations of a set of values; two sets
// merge exactly (Chan, Golub & LeVeque), so blocks can be combined in any order.
struct Moments {
  double count = 0;
  double mean = 0;
  double m2 = 0;

  void merge(const Moments& other) {
    if (other.count == 0) return;
    const double total = count + other.count;
    const double delta = other.mean - mean;
    mean += delta * (other.count / total);
    m2 += other.m2 + delta * delta * (count * other.count / total);
    count = total;
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

double add_lanes(double (&lanes)[kLanes]) {
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

template <class T>
Moments span_moments(const T* x, std::size_t n) {
  Moments moments;
  for (std::size_t start = 0; start < n; start += kBlock)
    moments.merge(block_moments(x + start, std::min(kBlock, n - start)));
  return moments;
}

template <class T>
double sum_of_squares(const T* x, std::size_t n) {
  return lane_sum(n, [x](std::size_t i) { return double(x[i]) * double(x[i]); });
}

// ---- Stores ----

// Outputs larger than the last-level cache leave it before anyone reads them.
// Non-temporal stores write them to memory without first reading each line
// for ownership. The values are the same whichever way they are stored.
// Measured on BatchNorm (docs/performance.md), this pays in backward, whose dx
// costs more arithmetic per element, and not in forward, whose stores then
// outrun the memory system: dx streams, y does not.
constexpr std::size_t kLineBytes = 64;

template <class T>
void stream_line(T* to, const T* from) {
#if defined(__AVX512F__)
  _mm512_stream_si512(reinterpret_cast<__m512i*>(to),
                      _mm512_load_si512(reinterpret_cast<const __m512i*>(from)));
#elif defined(__AVX__)
  for (std::size_t half = 0; half < 2; ++half)
    _mm256_stream_si256(reinterpret_cast<__m256i*>(to) + half,
                        _mm256_load_si256(reinterpret_cast<const __m256i*>(from) + half));
#elif defined(__SSE2__)
  for (std::size_t quarter = 0; quarter < 4; ++quarter)
    _mm_stream_si128(reinterpret_cast<__m128i*>(to) + quarter,
                     _mm_load_si128(reinterpret_cast<const __m128i*>(from) + quarter));
#else
  std::copy(from, from + kLineBytes / sizeof(T), to);
#endif
}

// out[i] = value(i) for i in [0, n); with `stream`, the aligned middle goes
// through a small buffer in L1 and on to memory with non-temporal stores.
// Those are weakly ordered: the thread pool fences each range it runs.
template <class T, class Value>
void write_run(T* out, std::size_t n, bool stream, Value&& value) {
  std::size_t i = 0;
  if (stream) {
    constexpr std::size_t line = kLineBytes / sizeof(T), block = 4 * line;
    for (; i < n && reinterpret_cast<std::uintptr_t>(out + i) % kLineBytes != 0; ++i)
      out[i] = value(i);
    for (; i + block <= n; i += block) {
      alignas(kLineBytes) T buffer[block];
      for (std::size_t j = 0; j < block; ++j) buffer[j] = value(i + j);
      for (std::size_t j = 0; j < block; j += line) stream_line(out + i + j, buffer + j);
    }
  }
  for (; i < n; ++i) out[i] = value(i);
}

// Whether a call touching `arrays` tensors the size of the view (its inputs
// and output) streams its output past the caches.
template <class T>
bool streams_output(const NormDescription& d, std::size_t arrays) {
  return arrays * d.view.size() * sizeof(T) > last_level_cache_bytes();
}

// ---- Elementwise kernels over one run ----

// The forward's elementwise step runs in T, so float data get twice the
// vector width; reductions and dx (whose terms can cancel) stay in double.
// The mean is split into T's nearest value and the remainder: x - mean_hi is
// exact for x near the mean (Sterbenz), so a large mean costs no accuracy; y
// is within a few float ulps of the one computed in double. For double,
// mean_lo is 0 and this is the double computation.
template <class T>
struct SplitMean {
  T hi, lo;
  explicit SplitMean(double mean) : hi(T(mean)), lo(T(mean - double(hi))) {}
  T centered(T x) const { return (x - hi) - lo; }
};

// y = (x - mean) * scale + shift
template <class T>
void apply_run(const T* x, std::size_t n, double mean, double scale, double shift, T* y) {
  const SplitMean<T> m(mean);
  const T s = T(scale), t = T(shift);
  for (std::size_t i = 0; i < n; ++i) y[i] = m.centered(x[i]) * s + t;
}

// y = ((x - mean) * scale + shift) * gamma + beta, gamma and beta per element.
template <class T>
void apply_run_elementwise(const T* x, std::size_t n, double mean, double scale, double shift,
                           const T* gamma, const T* beta, T* y) {
  const SplitMean<T> m(mean);
  const T s = T(scale), t = T(shift);
  if (beta) {
    for (std::size_t i = 0; i < n; ++i) y[i] = (m.centered(x[i]) * s + t) * gamma[i] + beta[i];
  } else {
    for (std::size_t i = 0; i < n; ++i) y[i] = (m.centered(x[i]) * s + t) * gamma[i];
  }
}

// dx = dy * dy_scale + (x - mean) * x_scale + shift
template <class T>
void dx_run(const T* x, const T* dy, std::size_t n, double mean, double dy_scale, double x_scale,
            double shift, T* dx, bool stream) {
  write_run(dx, n, stream, [&](std::size_t i) {
    return T(double(dy[i]) * dy_scale + (double(x[i]) - mean) * x_scale + shift);
  });
}

// sum(dy) and sum(dy * (x - mean)) of a run.
template <class T>
void grad_sums_run(const T* x, const T* dy, std::size_t n, double mean, double& sum_dy,
                   double& sum_dy_xmu) {
  lane_sum2(
      n,
      [x, dy, mean](std::size_t i, double& a, double& b) {
        const double dyi = double(dy[i]);
        a += dyi;
        b += dyi * (double(x[i]) - mean);
      },
      sum_dy, sum_dy_xmu);
}

// ---- Traversal ----

// A group's correction xhat -> xhat * r + d; the identity when there is none.
double correction_r(const GroupStats& stats, std::size_t g) {
  return stats.r.empty() ? 1.0 : stats.r[g];
}
double correction_d(const GroupStats& stats, std::size_t g) {
  return stats.d.empty() ? 0.0 : stats.d[g];
}

bool is_columns(const NormDescription& d) {
  return d.pooling == Pooling::per_channel && d.view.inner == 1;
}

// Columns: the group of column c in chunk k of rows.
std::size_t column_group(const NormDescription& d, std::size_t k, std::size_t c) {
  return k * (d.view.channels / d.channels_per_group) + c / d.channels_per_group;
}

// Columns: body(k, i0, i1) over every chunk k of rows and the range [0, n)
// within it. Several chunks (channels-last per-sample groups) go to the
// threads whole, in one dispatch; one chunk (BatchNorm) splits [0, n). A body
// sets up its chunk's per-column coefficients itself, in the workspace of the
// thread that runs it.
template <class Body>
void for_chunks(const NormDescription& d, std::size_t n, Body&& body) {
  if (d.chunks() > 1)
    parallel_for(d.chunks(), d.view.size(), [&](std::size_t k0, std::size_t k1) {
      for (std::size_t k = k0; k < k1; ++k) body(k, std::size_t(0), n);
    });
  else
    parallel_for(n, d.view.size(),
                 [&](std::size_t i0, std::size_t i1) { body(std::size_t(0), i0, i1); });
}
// body(k, r0, r1): rows [r0, r1) of chunk k (indices within the chunk).
template <class Body>
void for_chunk_rows(const NormDescription& d, Body&& body) {
  for_chunks(d, d.chunk_length(), body);
}
// body(k, c0, c1): columns [c0, c1) of chunk k, over all its rows (sums per
// chunk and column).
template <class Body>
void for_chunk_columns(const NormDescription& d, Body&& body) {
  for_chunks(d, d.view.channels, body);
}

// A swish numerator or a TLU epilogue: elementwise functions of x beyond the
// affine, handled by the pointwise kernels.
bool is_pointwise(const NormDescription& d) {
  return d.numerator != Numerator::input || d.epilogue != Epilogue::none;
}

std::size_t runs(const NormDescription& d) {
  return d.view.outer * d.view.channels;
}

// Per-call scratch of the calling thread. It only grows, so repeated calls
// with one shape do not allocate. Results never live here: they go to the
// caller's GroupStats and GradientSums.
struct Workspace {
  std::vector<Moments> run_moments, group_moments;
  std::vector<double> run_a, run_b;             // per-run sums
  std::vector<double> run_tau, run_v;           // per-run parameter sums (pointwise kernels)
  std::vector<double> param_a, param_b;         // parameter gradients per chunk of rows
  std::vector<double> column_a, column_b;       // per-column sums
  std::vector<double> column_mean, column_var;  // per-column moments before groups merge them
  std::vector<double> column_center;            // per-column mean of the column's group
  std::vector<double> column_block_a, column_block_b;  // per block of rows: column moments or sums
  std::vector<double> column_dy_scale, column_x_scale, column_shift;  // per-column dx coefficients
};
Workspace& workspace() {
  static thread_local Workspace w;
  return w;
}
template <class V>
V& zeroed(V& v, std::size_t n) {
  v.assign(n, typename V::value_type{});
  return v;
}

// Cache budgets of the blocked loops: a block of rows that stays in L2 between
// two passes, and a tile of parameter sums that stays in L1.
constexpr std::size_t kL2Bytes = 512 * 1024;
constexpr std::size_t kTile = 1024;

// Rows of outer split into a fixed number of chunks, each with its own
// partial parameter gradients (LayerNorm's elementwise gamma).
// At least kRowsPerChunk rows each, so the partial sums stay small next to the data.
constexpr std::size_t kRowChunks = 16, kRowsPerChunk = 16;
std::size_t row_chunks(const NormDescription& d) {
  return std::clamp<std::size_t>(d.view.outer / kRowsPerChunk, 1, kRowChunks);
}
std::size_t chunk_first_row(const NormDescription& d, std::size_t k) {
  return d.view.outer * k / row_chunks(d);
}

// The column kernels' blocks of rows: fixed by the shape (not by the threads,
// so neither are the sums), each small enough that two passes over its rows
// of x (and dy) stay in L2. Every chunk of rows is cut the same way.
struct ColumnBlocks {
  const NormDescription& d;
  std::size_t rows, per_chunk;
  ColumnBlocks(const NormDescription& description, std::size_t value_bytes)
      : d(description),
        rows(std::max<std::size_t>(1, kL2Bytes / (2 * value_bytes * d.view.channels))),
        per_chunk((d.chunk_length() + rows - 1) / rows) {}
  std::size_t total() const { return d.chunks() * per_chunk; }
  // body(i, a0, a1) for every block i = chunk * per_chunk + block, rows [a0, a1), in parallel.
  template <class Body>
  void for_each(Body&& body) const {
    parallel_for(total(), d.view.size(), [&](std::size_t i0, std::size_t i1) {
      for (std::size_t i = i0; i < i1; ++i) {
        const std::size_t k = i / per_chunk, first = k * d.chunk_length();
        const std::size_t a0 = first + (i % per_chunk) * rows;
        body(i, a0, std::min(a0 + rows, first + d.chunk_length()));
      }
    });
  }
};

// The column loops go across a row in strips of kLanes columns (four vector
// registers of doubles), the strip's sums in local arrays that the compiler
// keeps in registers from row to row. body(c0, width) gets the full width as
// a compile-time constant, so the strip's loop unrolls. Each column still
// adds its rows in row order.
template <class Body>
void for_column_strips(std::size_t columns, Body&& body) {
  std::size_t c0 = 0;
  for (; c0 + kLanes <= columns; c0 += kLanes)
    body(c0, std::integral_constant<std::size_t, kLanes>());
  if (c0 < columns) body(c0, columns - c0);
}

// Per-channel affine and the correction fold into one scale and shift per
// (group, channel); (x - mean) first keeps large means exact.
template <class T>
struct ChannelAffine {
  const NormDescription& d;
  const GroupStats& stats;
  const NormParameters<T>& params;
  double gamma(std::size_t c) const {
    return d.affine == Affine::per_channel ? double(params.gamma[c]) : 1.0;
  }
  double beta(std::size_t c) const {
    return d.affine == Affine::per_channel && params.beta ? double(params.beta[c]) : 0.0;
  }
  double scale(std::size_t c, std::size_t g) const {
    return stats.rstd[g] * correction_r(stats, g) * gamma(c);
  }
  double shift(std::size_t c, std::size_t g) const {
    return correction_d(stats, g) * gamma(c) + beta(c);
  }
};

// e^x within 2 ulp for x in [-708, 708] (clamped there: sigmoid needs no more),
// written only with operations the compiler vectorizes, so that the swish
// loops do not call libm's scalar exp for every element (which took 90% of
// EvoNorm-S0's time). x = k ln2 + r, |r| <= ln2 / 2, with ln2 in two parts
// (Cody and Waite) so that r is exact; e^r by its Taylor series to r^13
// (truncation below 1e-17); 2^k by writing k + 1023 into the exponent bits.
[[gnu::always_inline]] inline double exp_vectorizable(double x) {
  constexpr double kLog2e = 1.4426950408889634, kLn2Hi = 0.693147180369123816490,
                   kLn2Lo = 1.90821492927058770002e-10, kRound = 6755399441055744.0;  // 1.5 * 2^52
  x = std::min(std::max(x, -708.0), 708.0);
  const double shifted = x * kLog2e + kRound;  // k in the low bits, rounded to nearest
  const double k = shifted - kRound;
  const double r = (x - k * kLn2Hi) - k * kLn2Lo;
  // Horner from 1/13! down to 1/0!.
  double p = 1.0 / 6227020800.0;
  p = p * r + 1.0 / 479001600.0;
  p = p * r + 1.0 / 39916800.0;
  p = p * r + 1.0 / 3628800.0;
  p = p * r + 1.0 / 362880.0;
  p = p * r + 1.0 / 40320.0;
  p = p * r + 1.0 / 5040.0;
  p = p * r + 1.0 / 720.0;
  p = p * r + 1.0 / 120.0;
  p = p * r + 1.0 / 24.0;
  p = p * r + 1.0 / 6.0;
  p = p * r + 0.5;
  p = p * r + 1.0;
  p = p * r + 1.0;
  std::uint64_t bits;
  std::memcpy(&bits, &shifted, sizeof bits);
  bits = (bits + 1023) << 52;  // the low 12 bits hold k + 1023 in [1, 2046]
  double scale;
  std::memcpy(&scale, &bits, sizeof scale);
  return p * scale;
}

[[gnu::always_inline]] inline double sigmoid(double z) {
  return 1 / (1 + exp_vectorizable(-z));
}

// The elementwise function of one channel's run in the pointwise kernels:
//   nhat = numerator(x) * rstd,  y_pre = nhat * scale + shift,  y = max(y_pre, tau)
// with numerator x - mean, or x * sigmoid(v x) (Swish). The variants are
// compile-time, so the loops without exp (FRN's TLU) vectorize.
template <class T, bool Swish, bool Tlu>
struct Pointwise {
  static constexpr bool swish = Swish, tlu = Tlu;
  double mean, rstd, scale, shift, v, tau;

  Pointwise(const GroupStats& stats, const NormParameters<T>& params,
            const ChannelAffine<T>& affine, std::size_t c, std::size_t g)
      : mean(stats.mean[g]),
        rstd(stats.rstd[g]),
        scale(correction_r(stats, g) * affine.gamma(c)),
        shift(affine.shift(c, g)),
        v(Swish ? double(params.v[c]) : 0.0),
        tau(Tlu ? double(params.tau[c]) : 0.0) {}
  // Column c of a set of per-column coefficients (the column kernels keep them
  // as arrays, so that their loops over columns vectorize).
  template <class Columns>
  Pointwise(const Columns& k, std::size_t c)
      : mean(k.mean[c]),
        rstd(k.rstd[c]),
        scale(k.scale[c]),
        shift(k.shift[c]),
        v(k.v[c]),
        tau(k.tau[c]) {}

  // sigmoid(v x), computed once per element and passed to the terms below.
  double gate(double x) const { return Swish ? sigmoid(v * x) : 0.0; }
  double numerator(double x, double s) const { return Swish ? x * s : x - mean; }
  double pre(double x, double s) const { return numerator(x, s) * rstd * scale + shift; }
  // The share of dy that reaches y_pre: all of it, none where the TLU clips,
  // half on a tie (as torch.maximum's backward).
  double passed(double y_pre, double dy) const {
    if (!Tlu) return dy;
    // 1, 1/2 or 0 without a branch: tau clips about half the outputs, so a
    // branch would be mispredicted half the time, and this vectorizes.
    return 0.5 * (double(y_pre >= tau) + double(y_pre > tau)) * dy;
  }
  // d numerator / dx (1 for x - mean, the mean's share is a group term).
  double numerator_slope(double x, double s) const { return Swish ? s + v * x * s * (1 - s) : 1.0; }
  // d numerator / dv.
  double numerator_dv(double x, double s) const { return x * x * s * (1 - s); }
};

// Calls body(Pointwise<T, Swish, Tlu>-typed tag) for the description's variant.
template <class T, class Body>
void with_pointwise(const NormDescription& d, Body&& body) {
  const bool swish = d.numerator == Numerator::swish, tlu = d.epilogue == Epilogue::tlu;
  if (swish && tlu)
    body(static_cast<Pointwise<T, true, true>*>(nullptr));
  else if (swish)
    body(static_cast<Pointwise<T, true, false>*>(nullptr));
  else
    body(static_cast<Pointwise<T, false, true>*>(nullptr));
}

// y for a pointwise run: TLU alone is the plain apply in T, then the max.
template <class T, bool Swish, bool Tlu>
void pointwise_forward_run(const Pointwise<T, Swish, Tlu>& f, const T* x, std::size_t n, T* y) {
  if (!Swish) {
    apply_run(x, n, f.mean, f.rstd * f.scale, f.shift, y);
    const T tau = T(f.tau);
    for (std::size_t i = 0; i < n; ++i) y[i] = y[i] < tau ? tau : y[i];
    return;
  }
  for (std::size_t i = 0; i < n; ++i) {
    const double xi = double(x[i]);
    const double pre = f.pre(xi, f.gate(xi));
    y[i] = T(Tlu && pre < f.tau ? f.tau : pre);
  }
}

// y for the runs of row a's channels [first, first + count) in group g, of a
// pointwise variant chosen once for them all; kept out of forward_run so that
// the common path stays small enough to inline.
template <class T>
[[gnu::noinline]] void pointwise_forward_runs(const T* x, const NormDescription& d,
                                              const GroupStats& stats,
                                              const ChannelAffine<T>& affine, std::size_t a,
                                              std::size_t first, std::size_t count, std::size_t g,
                                              T* y) {
  with_pointwise<T>(d, [&](auto* variant) {
    using F = std::remove_pointer_t<decltype(variant)>;
    for (std::size_t c = first; c < first + count; ++c) {
      const std::size_t offset = (a * d.view.channels + c) * d.view.inner;
      pointwise_forward_run(F(stats, affine.params, affine, c, g), x + offset, d.view.inner,
                            y + offset);
    }
  });
}

// y for the run view[a, c, :] of group g.
template <class T>
void forward_run(const T* x, const NormDescription& d, const GroupStats& stats,
                 const ChannelAffine<T>& affine, std::size_t a, std::size_t c, std::size_t g,
                 T* y) {
  const std::size_t inner = d.view.inner;
  const std::size_t offset = (a * d.view.channels + c) * inner;
  if (is_pointwise(d)) {
    pointwise_forward_runs(x, d, stats, affine, a, c, 1, g, y);
  } else if (d.affine == Affine::elementwise) {
    apply_run_elementwise(x + offset, inner, stats.mean[g], stats.rstd[g] * correction_r(stats, g),
                          correction_d(stats, g), affine.params.gamma + c * inner,
                          affine.params.beta ? affine.params.beta + c * inner : nullptr,
                          y + offset);
  } else {
    apply_run(x + offset, inner, stats.mean[g], affine.scale(c, g), affine.shift(c, g), y + offset);
  }
}

// The coefficients of Pointwise for every column of chunk k, as arrays.
struct PointwiseColumns {
  std::vector<double> mean, rstd, scale, shift, v, tau;
};
template <class F, class T>
PointwiseColumns& column_coefficients(const NormDescription& d, const GroupStats& stats,
                                      const ChannelAffine<T>& affine, std::size_t k) {
  static thread_local PointwiseColumns columns;  // reused: no allocation per call
  const std::size_t n = d.view.channels;
  for (auto* array :
       {&columns.mean, &columns.rstd, &columns.scale, &columns.shift, &columns.v, &columns.tau})
    array->resize(n);
  for (std::size_t c = 0; c < n; ++c) {
    const F f(stats, affine.params, affine, c, column_group(d, k, c));
    columns.mean[c] = f.mean, columns.rstd[c] = f.rstd, columns.scale[c] = f.scale;
    columns.shift[c] = f.shift, columns.v[c] = f.v, columns.tau[c] = f.tau;
  }
  return columns;
}

// y of a pointwise norm on columns (channels-last FRN, EvoNorm-S0): each
// column's function, row by row.
template <class T>
void pointwise_column_apply(const T* x, const NormDescription& d, const GroupStats& stats,
                            const ChannelAffine<T>& affine, T* y) {
  const std::size_t channels = d.view.channels, rows = d.chunk_length();
  with_pointwise<T>(d, [&](auto* variant) {
    using F = std::remove_pointer_t<decltype(variant)>;
    for_chunk_rows(d, [&](std::size_t k, std::size_t r0, std::size_t r1) {
      const PointwiseColumns& columns = column_coefficients<F>(d, stats, affine, k);
      for (std::size_t a = k * rows + r0; a < k * rows + r1; ++a) {
        const T* xr = x + a * channels;
        T* yr = y + a * channels;
        for (std::size_t c = 0; c < channels; ++c) {
          const F f(columns, c);
          const double xi = double(xr[c]);
          const double pre = f.pre(xi, f.gate(xi));
          yr[c] = T(F::tlu && pre < f.tau ? f.tau : pre);
        }
      }
    });
  });
}

// The apply of a column norm over rows [first, last), from per-column mean,
// scale and shift. Chunks of up to kColumnRowsInDouble rows (a linear layer's
// batch) are computed in double and rounded once: they cost little either
// way, and these are the numbers of the committed mlp2 studies. Taller ones
// (channels-last images) run in T like the runs' apply_run, twice the vector
// width without the conversions, within a few ulps of the double result.
constexpr std::size_t kColumnRowsInDouble = 256;

template <class T>
void apply_columns_in_double(const T* x, std::size_t channels, std::size_t first, std::size_t last,
                             const double* mean, const double* scale, const double* shift, T* y) {
  for (std::size_t a = first; a < last; ++a) {
    const T* xr = x + a * channels;
    T* yr = y + a * channels;
    for_column_strips(channels, [&](std::size_t c0, auto width) {
      for (std::size_t j = c0; j < c0 + width; ++j)
        yr[j] = T((double(xr[j]) - mean[j]) * scale[j] + shift[j]);
    });
  }
}

template <class T>
void apply_columns_in_t(const T* x, std::size_t channels, std::size_t first, std::size_t last,
                        const double* mean, const double* scale, const double* shift, T* y) {
  static thread_local std::vector<T> hi, lo, scale_t, shift_t;  // reused: no allocation per call
  for (auto* array : {&hi, &lo, &scale_t, &shift_t}) array->resize(channels);
  for (std::size_t c = 0; c < channels; ++c) {
    const SplitMean<T> m(mean[c]);
    hi[c] = m.hi, lo[c] = m.lo, scale_t[c] = T(scale[c]), shift_t[c] = T(shift[c]);
  }
  // Copies the compiler can see are not y (the same type), so the strips vectorize.
  const T* __restrict h = hi.data();
  const T* __restrict l = lo.data();
  const T* __restrict s = scale_t.data();
  const T* __restrict t = shift_t.data();
  for (std::size_t a = first; a < last; ++a) {
    const T* xr = x + a * channels;
    T* __restrict yr = y + a * channels;
    for_column_strips(channels, [&](std::size_t c0, auto width) {
      for (std::size_t j = c0; j < c0 + width; ++j) yr[j] = ((xr[j] - h[j]) - l[j]) * s[j] + t[j];
    });
  }
}

// ---- Statistics ----

// Mean and var of a group whose elements are contiguous (per_outer_groups).
template <class T>
void contiguous_group_moments(const T* x, const NormDescription& d, std::size_t g,
                              GroupStats& stats) {
  const std::size_t n = d.group_size();
  const T* span = x + g * n;
  if (d.centered) {
    const Moments m = span_moments(span, n);
    stats.mean[g] = m.mean;
    stats.var[g] = m.m2 / double(n);  // biased, as the normalization uses
  } else {
    stats.var[g] = sum_of_squares(span, n) / (d.divide_by_count ? double(n) : 1.0);
  }
}

// One group per column (and chunk of rows) of an [outer, channels] matrix
// (BatchNorm after a linear layer, or on channels-last images): runs have
// length 1, so sum down the columns instead, vectorized across channels.
// First, in parallel, every block of rows that fits in L2 gets its column
// means, then its M2 while still cached (x is read from memory once); then
// the blocks merge into their columns' moments in row order (Chan's formula).
// Groups of several columns (channels-last GroupNorm) merge their columns'
// moments afterwards.
template <class T>
void column_stats(const T* x, const NormDescription& d, GroupStats& stats) {
  const std::size_t columns = d.view.channels;
  const bool one_column = d.channels_per_group == 1;
  Workspace& w = workspace();
  double* column_mean =
      one_column ? stats.mean.data() : zeroed(w.column_mean, d.chunks() * columns).data();
  double* column_var =
      one_column ? stats.var.data() : zeroed(w.column_var, d.chunks() * columns).data();
  const ColumnBlocks blocks(d, sizeof(T));
  double* block_mean = zeroed(w.column_block_a, blocks.total() * columns).data();
  double* block_m2 = zeroed(w.column_block_b, blocks.total() * columns).data();  // or squares
  blocks.for_each([&](std::size_t i, std::size_t a0, std::size_t a1) {
    for_column_strips(columns, [&](std::size_t c0, auto width) {
      const T* strip = x + c0;
      double mean[kLanes] = {}, m2[kLanes] = {};  // m2: or the sum of squares
      if (d.centered) {
        for (std::size_t a = a0; a < a1; ++a)
          for (std::size_t j = 0; j < width; ++j) mean[j] += double(strip[a * columns + j]);
        for (std::size_t j = 0; j < width; ++j) mean[j] /= double(a1 - a0);
      }
      for (std::size_t a = a0; a < a1; ++a)
        for (std::size_t j = 0; j < width; ++j) {
          const double dev = double(strip[a * columns + j]) - mean[j];
          m2[j] += dev * dev;
        }
      std::copy(mean, mean + width, block_mean + i * columns + c0);
      std::copy(m2, m2 + width, block_m2 + i * columns + c0);
    });
  });
  const double rows = double(d.chunk_length());
  for (std::size_t k = 0; k < d.chunks(); ++k) {
    double* mean = column_mean + k * columns;
    double* var = column_var + k * columns;  // M2 (or the sum of squares) until the end
    for (std::size_t b = 0; b < blocks.per_chunk; ++b) {
      const std::size_t i = k * blocks.per_chunk + b;
      const double* bm = block_mean + i * columns;
      const double* bm2 = block_m2 + i * columns;
      if (!d.centered) {
        for (std::size_t c = 0; c < columns; ++c) var[c] += bm2[c];
        continue;
      }
      const double n_before = double(b * blocks.rows);
      const double n_block = std::min(rows - n_before, double(blocks.rows));
      const double weight = n_block / (n_before + n_block);
      for (std::size_t c = 0; c < columns; ++c) {
        const double delta = bm[c] - mean[c];
        mean[c] += delta * weight;
        var[c] += bm2[c] + delta * delta * n_before * weight;
      }
    }
    if (d.centered || d.divide_by_count)
      for (std::size_t c = 0; c < columns; ++c) var[c] /= rows;
  }
  if (one_column) return;
  // Equal counts per column: the group mean is the mean of the column means,
  // and M2 adds each column's M2 and its mean's deviation (Chan's formula).
  const std::size_t cpg = d.channels_per_group;
  for (std::size_t k = 0; k < d.chunks(); ++k)
    for (std::size_t c = 0; c < columns; c += cpg) {
      const std::size_t g = column_group(d, k, c), first = k * columns + c;
      double mean = 0, var = 0;
      if (d.centered) {
        for (std::size_t j = 0; j < cpg; ++j) mean += column_mean[first + j];
        mean /= double(cpg);
        for (std::size_t j = 0; j < cpg; ++j) {
          const double dev = column_mean[first + j] - mean;
          var += column_var[first + j] + dev * dev;
        }
        var /= double(cpg);
      } else {
        for (std::size_t j = 0; j < cpg; ++j) var += column_var[first + j];
        if (d.divide_by_count) var /= double(cpg);
      }
      stats.mean[g] = mean;
      stats.var[g] = var;
    }
}

// per_channel pooling with runs of length > 1 (BatchNorm on images, WeightNorm):
// moments of every run in parallel, then merged per group in row order.
template <class T>
void run_stats(const T* x, const NormDescription& d, GroupStats& stats) {
  const std::size_t inner = d.view.inner, channels = d.view.channels;
  const double count = double(d.group_size());
  Workspace& w = workspace();
  if (d.centered) {
    std::vector<Moments>& moments = zeroed(w.run_moments, runs(d));
    parallel_for(runs(d), d.view.size(), [&](std::size_t r0, std::size_t r1) {
      for (std::size_t r = r0; r < r1; ++r) moments[r] = span_moments(x + r * inner, inner);
    });
    std::vector<Moments>& group = zeroed(w.group_moments, d.groups());
    for (std::size_t a = 0; a < d.view.outer; ++a)
      for (std::size_t c = 0; c < channels; ++c)
        group[d.group_of(a, c)].merge(moments[a * channels + c]);
    for (std::size_t g = 0; g < group.size(); ++g) {
      stats.mean[g] = group[g].mean;
      stats.var[g] = group[g].m2 / count;
    }
  } else {
    std::vector<double>& squares = zeroed(w.run_a, runs(d));
    parallel_for(runs(d), d.view.size(), [&](std::size_t r0, std::size_t r1) {
      for (std::size_t r = r0; r < r1; ++r) squares[r] = sum_of_squares(x + r * inner, inner);
    });
    for (std::size_t a = 0; a < d.view.outer; ++a)
      for (std::size_t c = 0; c < channels; ++c)
        stats.var[d.group_of(a, c)] += squares[a * channels + c];
    if (d.divide_by_count)
      for (double& v : stats.var) v /= count;
  }
}

}  // namespace

template <class T>
void reduce_stats(const T* x, const NormDescription& d, GroupStats& stats) {
  stats.resize(d.groups());
  stats.count = double(d.group_size());
  if (d.pooling == Pooling::per_outer_groups) {
    parallel_for(d.groups(), d.view.size(), [&](std::size_t g0, std::size_t g1) {
      for (std::size_t g = g0; g < g1; ++g) contiguous_group_moments(x, d, g, stats);
    });
  } else if (is_columns(d)) {
    column_stats(x, d, stats);
  } else {
    run_stats(x, d, stats);
  }
}

template <class T>
void apply_stats(const T* x, const NormDescription& d, const GroupStats& stats,
                 const NormParameters<T>& params, T* y) {
  const ChannelAffine<T> affine{d, stats, params};
  const std::size_t channels = d.view.channels;
  if (is_columns(d) && is_pointwise(d)) {
    pointwise_column_apply(x, d, stats, affine, y);
    return;
  }
  if (is_columns(d)) {
    const std::size_t rows = d.chunk_length();
    for_chunk_rows(d, [&](std::size_t k, std::size_t r0, std::size_t r1) {
      Workspace& w = workspace();  // of the thread running this chunk
      double* scale = zeroed(w.column_a, channels).data();
      double* shift = zeroed(w.column_b, channels).data();
      double* mean = zeroed(w.column_center, channels).data();
      for (std::size_t c = 0; c < channels; ++c) {
        const std::size_t g = column_group(d, k, c);
        scale[c] = affine.scale(c, g), shift[c] = affine.shift(c, g), mean[c] = stats.mean[g];
      }
      const std::size_t first = k * rows + r0, last = k * rows + r1;
      if (rows > kColumnRowsInDouble)
        apply_columns_in_t(x, channels, first, last, mean, scale, shift, y);
      else
        apply_columns_in_double(x, channels, first, last, mean, scale, shift, y);
    });
    return;
  }
  parallel_for(runs(d), d.view.size(), [&](std::size_t r0, std::size_t r1) {
    for (std::size_t r = r0; r < r1; ++r) {
      const std::size_t a = r / channels, c = r % channels;
      forward_run(x, d, stats, affine, a, c, d.group_of(a, c), y);
    }
  });
}

template <class T>
void normalize_with_batch_stats(const T* x, const NormDescription& d, GroupStats& stats,
                                const NormParameters<T>& params, T* y) {
  if (d.pooling != Pooling::per_outer_groups) {
    NORMLAB_ENGINE_NAMESPACE::reduce_stats(x, d, stats);
    finish_stats(d, stats);
    NORMLAB_ENGINE_NAMESPACE::apply_stats(x, d, stats, params, y);
    return;
  }
  // A group's elements are contiguous: normalize them right after their
  // statistics, while they are still in cache.
  stats.resize(d.groups());
  stats.count = double(d.group_size());
  const ChannelAffine<T> affine{d, stats, params};
  const std::size_t per_outer = d.view.channels / d.channels_per_group;
  parallel_for(d.groups(), d.view.size(), [&](std::size_t g0, std::size_t g1) {
    for (std::size_t g = g0; g < g1; ++g) {
      contiguous_group_moments(x, d, g, stats);
      stats.rstd[g] = inverse_std(stats.var[g], d.eps);
      const std::size_t a = g / per_outer, first = (g % per_outer) * d.channels_per_group;
      if (is_pointwise(d))
        pointwise_forward_runs(x, d, stats, affine, a, first, d.channels_per_group, g, y);
      else
        for (std::size_t c = first; c < first + d.channels_per_group; ++c)
          forward_run(x, d, stats, affine, a, c, g, y);
    }
  });
}

namespace {

// The backward pass, on each traversal in two phases:
//   reduce: the two reductions per group, S1 = sum(dxhat) and S2 = sum(dxhat * xhat),
//           with dxhat = dy * gamma * r, from each run's sum(dy) and
//           sum(dy * (x - mean)); the parameter gradients from the same run sums;
//   apply:  dx = rstd * (dxhat * numerator' - mean(dxhat) - xhat * S2 / divisor),
//           the mean(dxhat) term only when the numerator is x - mean.
// fused() does both group by group where a group's data is contiguous.
template <class T>
class Backward {
 public:
  Backward(const T* x, const T* dy, const NormDescription& d, const GroupStats& stats,
           const NormParameters<T>& params, GradientSums& sums, T* dx)
      : x_(x),
        dy_(dy),
        d_(d),
        stats_(stats),
        params_(params),
        affine_{d, stats, params},
        sums_(sums),
        dx_(dx),
        stream_(streams_output<T>(d, 3)) {}

  void reduce() {
    start();
    if (is_columns(d_) && is_pointwise(d_)) {
      pointwise_columns(/*reduce=*/true, /*apply=*/false);
    } else if (is_columns(d_)) {
      column_reduce();
    } else if (d_.affine == Affine::elementwise) {
      for_groups([&](std::size_t g) { elementwise_group_sums(g); });
    } else if (is_pointwise(d_)) {
      pointwise_scratch();
      for_groups([&](std::size_t g) { pointwise_group(g, /*reduce=*/true, /*apply=*/false); });
      pointwise_parameter_sums();
    } else {
      run_reduce();
    }
  }

  void apply() {
    if (is_columns(d_) && is_pointwise(d_)) {
      pointwise_columns(/*reduce=*/false, /*apply=*/true);
    } else if (is_columns(d_)) {
      column_apply();
    } else if (d_.affine == Affine::elementwise) {
      elementwise_rows(/*reduce=*/false);
    } else if (is_pointwise(d_)) {
      for_groups([&](std::size_t g) { pointwise_group(g, /*reduce=*/false, /*apply=*/true); });
    } else {
      parallel_for(runs(d_), d_.view.size(), [&](std::size_t r0, std::size_t r1) {
        for (std::size_t r = r0; r < r1; ++r) dx_of_run(r);
      });
    }
  }

  void fused() {
    if (is_columns(d_)) {  // groups spanning rows: all their sums are needed before any dx
      reduce();
      apply();
    } else if (d_.affine == Affine::elementwise) {
      start();
      elementwise_rows(/*reduce=*/true);
    } else if (is_pointwise(d_)) {
      start();
      pointwise_scratch();
      for_groups([&](std::size_t g) { pointwise_group(g, /*reduce=*/true, /*apply=*/true); });
      pointwise_parameter_sums();
    } else if (d_.pooling == Pooling::per_outer_groups) {
      start();
      contiguous_groups();
    } else {  // groups spanning rows: all their sums are needed before any dx
      reduce();
      apply();
    }
  }

 private:
  // Zeroed group sums and parameter sums of the right sizes.
  void start() {
    zeroed(sums_.sum_dxhat, d_.groups());
    zeroed(sums_.sum_dxhat_xhat, d_.groups());
    ParameterSums& p = sums_.parameters;
    const std::size_t params = d_.affine == Affine::none ? 0 : d_.affine_size();
    zeroed(p.gamma, params);
    zeroed(p.beta, d_.has_shift ? params : 0);
    zeroed(p.tau, d_.epilogue == Epilogue::tlu ? d_.view.channels : 0);
    zeroed(p.v, d_.numerator == Numerator::swish ? d_.view.channels : 0);
  }

  template <class F>
  void for_groups(F&& body) const {
    parallel_for(d_.groups(), d_.view.size(), [&](std::size_t g0, std::size_t g1) {
      for (std::size_t g = g0; g < g1; ++g) body(g);
    });
  }

  // A run's contribution to its group's two reductions.
  void add_to_group(std::size_t c, std::size_t g, double sum_dy, double sum_dy_xmu) {
    const double scale = affine_.gamma(c) * correction_r(stats_, g);
    sums_.sum_dxhat[g] += scale * sum_dy;
    sums_.sum_dxhat_xhat[g] += scale * sum_dy_xmu * stats_.rstd[g];
  }

  // mean(dxhat) and S2 / divisor of group g; given statistics are constants,
  // so both correction terms vanish. The count is the combined one.
  struct GroupTerms {
    double mean_dxhat, xhat_coef;
  };
  GroupTerms group_terms(std::size_t g) const {
    const double count = stats_.count;
    const bool constant = d_.statistics_given;
    const bool mean_term = d_.centered && d_.numerator == Numerator::input;
    return {constant || !mean_term ? 0.0 : sums_.sum_dxhat[g] / count,
            constant ? 0.0 : sums_.sum_dxhat_xhat[g] / (d_.divide_by_count ? count : 1.0)};
  }

  // dx = dy * dy_scale + (x - mean) * x_scale + shift.
  struct Coefficients {
    double dy_scale, x_scale, shift;
  };
  Coefficients coefficients(std::size_t c, std::size_t g) const {
    const GroupTerms t = group_terms(g);
    const double rstd = stats_.rstd[g];
    return {rstd * affine_.gamma(c) * correction_r(stats_, g), -rstd * rstd * t.xhat_coef,
            -rstd * t.mean_dxhat};
  }
  void dx_of_run(std::size_t r) const {
    const std::size_t a = r / d_.view.channels, c = r % d_.view.channels, g = d_.group_of(a, c);
    const Coefficients k = coefficients(c, g);
    const std::size_t offset = r * d_.view.inner;
    dx_run(x_ + offset, dy_ + offset, d_.view.inner, stats_.mean[g], k.dy_scale, k.x_scale, k.shift,
           dx_ + offset, stream_);
  }
  void run_sums(std::size_t r, double& sum_dy, double& sum_dy_xmu) const {
    const std::size_t inner = d_.view.inner;
    const std::size_t g = d_.group_of(r / d_.view.channels, r % d_.view.channels);
    grad_sums_run(x_ + r * inner, dy_ + r * inner, inner, stats_.mean[g], sum_dy, sum_dy_xmu);
  }

  // Per-channel affine (BN, GN, IN, LN with channel_affine): each run's sums
  // in parallel, then added to their groups and to the parameter sums in row order.
  void run_reduce() {
    Workspace& w = workspace();
    std::vector<double>& sum_dy = zeroed(w.run_a, runs(d_));
    std::vector<double>& sum_dy_xmu = zeroed(w.run_b, runs(d_));
    parallel_for(runs(d_), d_.view.size(), [&](std::size_t r0, std::size_t r1) {
      for (std::size_t r = r0; r < r1; ++r) run_sums(r, sum_dy[r], sum_dy_xmu[r]);
    });
    const std::size_t channels = d_.view.channels;
    for (std::size_t r = 0; r < runs(d_); ++r) {
      const std::size_t c = r % channels, g = d_.group_of(r / channels, c);
      add_to_group(c, g, sum_dy[r], sum_dy_xmu[r]);
      add_parameter_terms(c, g, sum_dy[r], sum_dy_xmu[r]);
    }
  }

  // LayerNorm, InstanceNorm, GroupNorm without hooks: per group, the
  // reductions and then dx while the group is in cache; run sums are kept for
  // the parameter sums.
  void contiguous_groups() {
    Workspace& w = workspace();
    std::vector<double>& sum_dy = zeroed(w.run_a, runs(d_));
    std::vector<double>& sum_dy_xmu = zeroed(w.run_b, runs(d_));
    const std::size_t cpg = d_.channels_per_group;
    const std::size_t per_outer = d_.view.channels / cpg;
    for_groups([&](std::size_t g) {
      const std::size_t a = g / per_outer, first = (g % per_outer) * cpg;
      for (std::size_t c = first; c < first + cpg; ++c) {
        const std::size_t r = a * d_.view.channels + c;
        run_sums(r, sum_dy[r], sum_dy_xmu[r]);
        add_to_group(c, g, sum_dy[r], sum_dy_xmu[r]);
      }
      for (std::size_t c = first; c < first + cpg; ++c) dx_of_run(a * d_.view.channels + c);
    });
    const std::size_t channels = d_.view.channels;
    for (std::size_t r = 0; r < runs(d_); ++r) {
      const std::size_t c = r % channels;
      add_parameter_terms(c, d_.group_of(r / channels, c), sum_dy[r], sum_dy_xmu[r]);
    }
  }

  // Each column's mean: its group's (per chunk k of rows).
  const double* column_centers(std::size_t k) const {
    std::vector<double>& center = workspace().column_center;
    center.resize(d_.view.channels);
    for (std::size_t c = 0; c < d_.view.channels; ++c)
      center[c] = stats_.mean[column_group(d_, k, c)];
    return center.data();
  }

  // [outer, channels] with one group per column, or per run of columns, and
  // chunk of rows: sums down the columns, vectorized across channels. Blocks
  // of rows in parallel, then each column's block sums in row order.
  void column_reduce() {
    Workspace& w = workspace();
    const std::size_t channels = d_.view.channels;
    const ColumnBlocks blocks(d_, 2 * sizeof(T));  // x and dy
    std::vector<double>& sum_dy = zeroed(w.column_a, d_.chunks() * channels);
    std::vector<double>& sum_dy_xmu = zeroed(w.column_b, d_.chunks() * channels);
    double* block_dy = zeroed(w.column_block_a, blocks.total() * channels).data();
    double* block_dy_xmu = zeroed(w.column_block_b, blocks.total() * channels).data();
    blocks.for_each([&](std::size_t i, std::size_t a0, std::size_t a1) {
      const double* center = column_centers(i / blocks.per_chunk);
      for_column_strips(channels, [&](std::size_t c0, auto width) {
        const T* x_strip = x_ + c0;
        const T* dy_strip = dy_ + c0;
        double mean[kLanes], s1[kLanes] = {}, s2[kLanes] = {};
        std::copy(center + c0, center + c0 + width, mean);
        for (std::size_t a = a0; a < a1; ++a)
          for (std::size_t j = 0; j < width; ++j) {
            const double dyj = double(dy_strip[a * channels + j]);
            s1[j] += dyj;
            s2[j] += dyj * (double(x_strip[a * channels + j]) - mean[j]);
          }
        std::copy(s1, s1 + width, block_dy + i * channels + c0);
        std::copy(s2, s2 + width, block_dy_xmu + i * channels + c0);
      });
    });
    for (std::size_t i = 0; i < blocks.total(); ++i) {
      const std::size_t at = (i / blocks.per_chunk) * channels;
      for (std::size_t c = 0; c < channels; ++c) {
        sum_dy[at + c] += block_dy[i * channels + c];
        sum_dy_xmu[at + c] += block_dy_xmu[i * channels + c];
      }
    }
    // Column sums into their groups, in column order.
    for (std::size_t k = 0; k < d_.chunks(); ++k)
      for (std::size_t c = 0; c < channels; ++c) {
        const std::size_t g = column_group(d_, k, c), i = k * channels + c;
        add_to_group(c, g, sum_dy[i], sum_dy_xmu[i]);
        add_parameter_terms(c, g, sum_dy[i], sum_dy_xmu[i]);
      }
  }
  // dx down the columns from the per-column coefficients.
  void column_apply() {
    const std::size_t channels = d_.view.channels, rows = d_.chunk_length();
    for_chunk_rows(d_, [&](std::size_t k, std::size_t r0, std::size_t r1) {
      Workspace& w = workspace();  // of the thread running this chunk
      double* dy_scale = zeroed(w.column_dy_scale, channels).data();
      double* x_scale = zeroed(w.column_x_scale, channels).data();
      double* shift = zeroed(w.column_shift, channels).data();
      for (std::size_t c = 0; c < channels; ++c) {
        const Coefficients co = coefficients(c, column_group(d_, k, c));
        dy_scale[c] = co.dy_scale, x_scale[c] = co.x_scale, shift[c] = co.shift;
      }
      const double* mean = column_centers(k);
      for (std::size_t a = k * rows + r0; a < k * rows + r1; ++a) {
        const T* xr = x_ + a * channels;
        const T* dyr = dy_ + a * channels;
        T* dxr = dx_ + a * channels;
        for (std::size_t c = 0; c < channels; ++c)
          dxr[c] =
              T(double(dyr[c]) * dy_scale[c] + (double(xr[c]) - mean[c]) * x_scale[c] + shift[c]);
      }
    });
  }

  // FRN's TLU and EvoNorm's swish on columns (channels last): per column and
  // chunk of rows the four sums of pointwise_group, then the groups' sums and
  // the parameter sums in column order; or dx.
  void pointwise_columns(bool reduce, bool apply) {
    with_pointwise<T>(d_, [&](auto* variant) {
      using F = std::remove_pointer_t<decltype(variant)>;
      pointwise_columns<F>(reduce, apply);
    });
  }
  template <class F>
  void pointwise_columns(bool reduce, bool apply) {
    if (reduce) pointwise_column_sums<F>();
    if (apply) pointwise_column_dx<F>();
  }
  // Per chunk and column: sum(dy), sum(passed), sum(passed * nhat),
  // sum(passed * d numerator / dv); then the groups' sums and the parameter
  // sums, in chunk and column order.
  template <class F>
  void pointwise_column_sums() {
    const std::size_t channels = d_.view.channels, rows = d_.chunk_length();
    const std::size_t n = d_.chunks() * channels;
    Workspace& w = workspace();
    double* sum_dy = zeroed(w.column_a, n).data();
    double* sum_passed = zeroed(w.column_b, n).data();
    double* sum_passed_nhat = zeroed(w.column_mean, n).data();
    double* sum_dv = zeroed(w.column_var, n).data();
    for_chunk_columns(d_, [&](std::size_t k, std::size_t c0, std::size_t c1) {
      const PointwiseColumns& columns = column_coefficients<F>(d_, stats_, affine_, k);
      // Blocks of 16 columns (a cache line of floats) summed into local
      // arrays, which the compiler keeps in vector registers.
      constexpr std::size_t kBlock = 16;
      for (std::size_t b0 = c0; b0 < c1; b0 += kBlock) {
        const std::size_t width = std::min(kBlock, c1 - b0);
        double s_dy[kBlock] = {}, s_passed[kBlock] = {}, s_nhat[kBlock] = {}, s_dv[kBlock] = {};
        for (std::size_t a = k * rows; a < (k + 1) * rows; ++a) {
          const T* xr = x_ + a * channels + b0;
          const T* dyr = dy_ + a * channels + b0;
          for (std::size_t j = 0; j < width; ++j) {
            const F f(columns, b0 + j);
            const double xi = double(xr[j]), dyi = double(dyr[j]);
            const double gate = f.gate(xi), nhat = f.numerator(xi, gate) * f.rstd;
            const double passed = f.passed(nhat * f.scale + f.shift, dyi);
            s_dy[j] += dyi;
            s_passed[j] += passed;
            s_nhat[j] += passed * nhat;
            if (F::swish) s_dv[j] += passed * f.numerator_dv(xi, gate);
          }
        }
        const std::size_t at = k * channels + b0;
        for (std::size_t j = 0; j < width; ++j) {
          sum_dy[at + j] = s_dy[j], sum_passed[at + j] = s_passed[j];
          sum_passed_nhat[at + j] = s_nhat[j], sum_dv[at + j] = s_dv[j];
        }
      }
    });
    ParameterSums& p = sums_.parameters;
    for (std::size_t k = 0; k < d_.chunks(); ++k) {
      const PointwiseColumns& columns = column_coefficients<F>(d_, stats_, affine_, k);
      for (std::size_t c = 0; c < channels; ++c) {
        const F f(columns, c);
        const std::size_t g = column_group(d_, k, c), i = k * channels + c;
        sums_.sum_dxhat[g] += f.scale * sum_passed[i];
        sums_.sum_dxhat_xhat[g] += f.scale * sum_passed_nhat[i];
        if (!p.gamma.empty())
          p.gamma[c] += correction_r(stats_, g) * sum_passed_nhat[i] +
                        correction_d(stats_, g) * sum_passed[i];
        if (!p.beta.empty()) p.beta[c] += sum_passed[i];
        if (!p.tau.empty()) p.tau[c] += sum_dy[i] - sum_passed[i];
        if (!p.v.empty()) p.v[c] += sum_dv[i] * f.scale * f.rstd;
      }
    }
  }
  // dx = dxhat * rstd * numerator' + (x - mean) * x_scale + shift, per column.
  template <class F>
  void pointwise_column_dx() {
    const std::size_t channels = d_.view.channels, rows = d_.chunk_length();
    for_chunk_rows(d_, [&](std::size_t k, std::size_t r0, std::size_t r1) {
      const PointwiseColumns& columns = column_coefficients<F>(d_, stats_, affine_, k);
      Workspace& w = workspace();  // of the thread running this chunk
      double* x_scale = zeroed(w.column_x_scale, channels).data();
      double* shift = zeroed(w.column_shift, channels).data();
      for (std::size_t c = 0; c < channels; ++c) {
        const std::size_t g = column_group(d_, k, c);
        const GroupTerms t = group_terms(g);
        const double rstd = stats_.rstd[g];
        x_scale[c] = -rstd * rstd * t.xhat_coef, shift[c] = -rstd * t.mean_dxhat;
      }
      for (std::size_t a = k * rows + r0; a < k * rows + r1; ++a) {
        const T* xr = x_ + a * channels;
        const T* dyr = dy_ + a * channels;
        T* dxr = dx_ + a * channels;
        for (std::size_t c = 0; c < channels; ++c) {
          const F f(columns, c);
          const double xi = double(xr[c]), gate = f.gate(xi);
          const double dxhat = f.passed(f.pre(xi, gate), double(dyr[c])) * f.scale;
          dxr[c] = T(dxhat * f.rstd * f.numerator_slope(xi, gate) +
                     ((xi - f.mean) * x_scale[c] + shift[c]));
        }
      }
    });
  }

  // LayerNorm over trailing dims: gamma and beta per element, so their
  // gradients are sums over rows. A row is a contiguous span whose position is
  // the parameter index, cut into groups. Threads take fixed chunks of rows,
  // each with its own partial parameter sums, added in chunk order. Within a
  // chunk, blocks of rows that fit in L2 are done in two steps:
  //   first: each group's two reductions (a pass over the block; skipped when
  //          reduce() already made them);
  //   then:  dx and the parameter sums tile by tile, each tile of parameter
  //          sums staying in L1 across the block's rows.
  void elementwise_rows(bool reduce_first) {
    Workspace& w = workspace();
    ParameterSums& p = sums_.parameters;
    const std::size_t row = d_.affine_size(), group = d_.group_size();
    const std::size_t chunks = row_chunks(d_);
    // Chunk 0 sums straight into the result (zeroed by start()); the others
    // into scratch, added in chunk order afterwards.
    std::vector<double>& more_gamma = zeroed(w.param_a, (chunks - 1) * row);
    std::vector<double>& more_beta = zeroed(w.param_b, p.beta.empty() ? 0 : (chunks - 1) * row);
    auto dgamma_of = [&](std::size_t k) {
      return k == 0 ? p.gamma.data() : more_gamma.data() + (k - 1) * row;
    };
    auto dbeta_of = [&](std::size_t k) -> double* {
      if (p.beta.empty()) return nullptr;
      return k == 0 ? p.beta.data() : more_beta.data() + (k - 1) * row;
    };
    // Rows too large for L2 are re-read from memory instead, a whole chunk per
    // block, in wide tiles (long contiguous reads) whose parameter sums stay in L2.
    const std::size_t rows_in_l2 = kL2Bytes / (2 * sizeof(T) * row);
    const std::size_t block_rows = rows_in_l2 > 0 ? rows_in_l2 : d_.view.outer;
    const std::size_t tile = rows_in_l2 > 0 ? kTile : kL2Bytes / (4 * sizeof(double));
    parallel_for(chunks, d_.view.size(), [&](std::size_t k0, std::size_t k1) {
      for (std::size_t k = k0; k < k1; ++k) {
        const std::size_t last = chunk_first_row(d_, k + 1);
        for (std::size_t a0 = chunk_first_row(d_, k); a0 < last; a0 += block_rows) {
          const std::size_t a1 = std::min(a0 + block_rows, last);
          if (reduce_first)
            for (std::size_t g = a0 * (row / group); g < a1 * (row / group); ++g)
              elementwise_group_sums(g);
          for (std::size_t p0 = 0; p0 < row; p0 += tile)
            for (std::size_t a = a0; a < a1; ++a)
              elementwise_tile(a, p0, std::min(p0 + tile, row), dgamma_of(k), dbeta_of(k));
        }
      }
    });
    for (std::size_t k = 1; k < chunks; ++k) {
      const double* more = dgamma_of(k);
      for (std::size_t pos = 0; pos < row; ++pos) p.gamma[pos] += more[pos];
      if (const double* more_b = dbeta_of(k))
        for (std::size_t pos = 0; pos < row; ++pos) p.beta[pos] += more_b[pos];
    }
  }
  // S1 and S2 of one group (elementwise gamma).
  void elementwise_group_sums(std::size_t g) {
    const std::size_t n = d_.group_size();
    const std::size_t row_position = (g % (d_.affine_size() / n)) * n;
    const T* xr = x_ + g * n;
    const T* dyr = dy_ + g * n;
    const T* gr = params_.gamma + row_position;
    const double mean = stats_.mean[g], rstd = stats_.rstd[g], r = correction_r(stats_, g);
    double sum_dxhat, sum_dxhat_xhat;
    lane_sum2(
        n,
        [=](std::size_t i, double& a1, double& a2) {
          const double dxhat = double(dyr[i]) * double(gr[i]);
          a1 += dxhat;
          a2 += dxhat * (double(xr[i]) - mean);
        },
        sum_dxhat, sum_dxhat_xhat);
    sums_.sum_dxhat[g] = r * sum_dxhat;
    sums_.sum_dxhat_xhat[g] = r * (sum_dxhat_xhat * rstd);
  }
  // Row a, positions [p0, p1): dx, and the parameter sums into dgamma and
  // (when not null) dbeta.
  void elementwise_tile(std::size_t a, std::size_t p0, std::size_t p1, double* dgamma,
                        double* dbeta) const {
    const std::size_t row = d_.affine_size(), group = d_.group_size();
    while (p0 < p1) {  // the tile's pieces within one group
      const std::size_t g = (a * row + p0) / group;
      const std::size_t end = std::min(p1, (g + 1) * group - a * row);
      const double mean = stats_.mean[g], rstd = stats_.rstd[g];
      const double r = correction_r(stats_, g), shift = correction_d(stats_, g);
      const GroupTerms t = group_terms(g);
      const T* xr = x_ + a * row;
      const T* dyr = dy_ + a * row;
      const T* gamma = params_.gamma;
      T* dxr = dx_ + a * row;
      // dx = dy * gamma * (rstd r) + (x - mean) * (-rstd^2 coef) - rstd m, and for
      // dgamma xhat * r + shift = x * (rstd r) + offset (the cancellation costs
      // about 1e-16 * |mean| / std). All in double, rounded once.
      const double scale = rstd * r, x_scale = -rstd * rstd * t.xhat_coef,
                   dx_shift = -rstd * t.mean_dxhat;
      const double offset = shift - mean * scale;
      auto dx_and_dgamma = [&](std::size_t p) {
        const T xp = xr[p], dyp = dyr[p];
        dxr[p] =
            T(double(dyp) * double(gamma[p]) * scale + ((double(xp) - mean) * x_scale + dx_shift));
        dgamma[p] += double(dyp) * (double(xp) * scale + offset);
      };
      if (dbeta) {
        for (std::size_t p = p0; p < end; ++p) {
          dx_and_dgamma(p);
          dbeta[p] += double(dyr[p]);
        }
      } else {  // no shift (RMSNorm)
        for (std::size_t p = p0; p < end; ++p) dx_and_dgamma(p);
      }
      p0 = end;
    }
  }

  // FRN's TLU and EvoNorm's swish, per_outer_groups with a per-channel (or no)
  // affine: one group's reductions and per-run parameter sums, its dx, or both.
  void pointwise_group(std::size_t g, bool reduce, bool apply) {
    with_pointwise<T>(d_, [&](auto* variant) {
      using F = std::remove_pointer_t<decltype(variant)>;
      pointwise_group<F>(g, reduce, apply);
    });
  }
  template <class F>
  void pointwise_group(std::size_t g, bool reduce, bool apply) {
    const std::size_t cpg = d_.channels_per_group, inner = d_.view.inner;
    const std::size_t per_outer = d_.view.channels / cpg;
    const std::size_t a = g / per_outer, first = (g % per_outer) * cpg;
    if (reduce) {
      double s1 = 0, s2 = 0;
      for (std::size_t c = first; c < first + cpg; ++c) {
        const std::size_t r = a * d_.view.channels + c, offset = r * inner;
        const F f(stats_, params_, affine_, c, g);
        const T* xr = x_ + offset;
        const T* dyr = dy_ + offset;
        // sum(dy), sum(passed), sum(passed * nhat), sum(passed * d numerator / dv)
        double sums[4];
        lane_sum4(
            inner,
            [&](std::size_t i, double& sum_dy, double& sum_pass, double& sum_pass_nhat,
                double& sum_dv) {
              const double xi = double(xr[i]), dyi = double(dyr[i]), gate = f.gate(xi);
              const double nhat = f.numerator(xi, gate) * f.rstd;
              const double passed = f.passed(nhat * f.scale + f.shift, dyi);
              sum_dy += dyi;
              sum_pass += passed;
              sum_pass_nhat += passed * nhat;
              if (F::swish) sum_dv += passed * f.numerator_dv(xi, gate);
            },
            sums);
        s1 += f.scale * sums[1];
        s2 += f.scale * sums[2];
        // Per-run parameter sums, added per channel in row order afterwards.
        w_run_a_[r] = sums[1];
        w_run_b_[r] = sums[2];
        w_run_tau_[r] = sums[0] - sums[1];
        w_run_v_[r] = sums[3] * f.scale * f.rstd;
      }
      sums_.sum_dxhat[g] = s1;
      sums_.sum_dxhat_xhat[g] = s2;
    }
    if (apply) {
      const GroupTerms t = group_terms(g);
      const double rstd = stats_.rstd[g], mean = stats_.mean[g];
      const double x_scale = -rstd * rstd * t.xhat_coef, shift = -rstd * t.mean_dxhat;
      for (std::size_t c = first; c < first + cpg; ++c) {
        const std::size_t offset = (a * d_.view.channels + c) * inner;
        const F f(stats_, params_, affine_, c, g);
        const T* xr = x_ + offset;
        const T* dyr = dy_ + offset;
        T* dxr = dx_ + offset;
        for (std::size_t i = 0; i < inner; ++i) {
          const double xi = double(xr[i]), gate = f.gate(xi);
          const double dxhat = f.passed(f.pre(xi, gate), double(dyr[i])) * f.scale;
          dxr[i] = T(dxhat * rstd * f.numerator_slope(xi, gate) + ((xi - mean) * x_scale + shift));
        }
      }
    }
  }
  // Sizes the per-run scratch of pointwise_group (before the parallel loop).
  void pointwise_scratch() {
    Workspace& w = workspace();
    w_run_a_ = zeroed(w.run_a, runs(d_)).data();
    w_run_b_ = zeroed(w.run_b, runs(d_)).data();
    w_run_tau_ = zeroed(w.run_tau, runs(d_)).data();
    w_run_v_ = zeroed(w.run_v, runs(d_)).data();
  }
  void pointwise_parameter_sums() {
    ParameterSums& p = sums_.parameters;
    const std::size_t channels = d_.view.channels;
    for (std::size_t r = 0; r < runs(d_); ++r) {
      const std::size_t c = r % channels, g = d_.group_of(r / channels, c);
      if (!p.gamma.empty())
        p.gamma[c] += correction_r(stats_, g) * w_run_b_[r] + correction_d(stats_, g) * w_run_a_[r];
      if (!p.beta.empty()) p.beta[c] += w_run_a_[r];
      if (!p.tau.empty()) p.tau[c] += w_run_tau_[r];
      if (!p.v.empty()) p.v[c] += w_run_v_[r];
    }
  }

  // dgamma += r * sum(dy * xhat) + d * sum(dy), dbeta += sum(dy) for a run or column.
  void add_parameter_terms(std::size_t c, std::size_t g, double sum_dy, double sum_dy_xmu) {
    ParameterSums& p = sums_.parameters;
    if (!p.gamma.empty())
      p.gamma[c] +=
          correction_r(stats_, g) * sum_dy_xmu * stats_.rstd[g] + correction_d(stats_, g) * sum_dy;
    if (!p.beta.empty()) p.beta[c] += sum_dy;
  }

  const T* x_;
  const T* dy_;
  const NormDescription& d_;
  const GroupStats& stats_;
  const NormParameters<T>& params_;
  const ChannelAffine<T> affine_;
  GradientSums& sums_;
  T* dx_;
  const bool stream_;  // dx past the caches (write_run)
  double *w_run_a_ = nullptr, *w_run_b_ = nullptr, *w_run_tau_ = nullptr, *w_run_v_ = nullptr;
};

}  // namespace

template <class T>
void reduce_gradients(const T* x, const T* dy, const NormDescription& d, const GroupStats& stats,
                      const NormParameters<T>& params, GradientSums& sums) {
  Backward<T>(x, dy, d, stats, params, sums, nullptr).reduce();
}

template <class T>
void apply_gradients(const T* x, const T* dy, const NormDescription& d, const GroupStats& stats,
                     const NormParameters<T>& params, GradientSums& sums, T* dx) {
  Backward<T>(x, dy, d, stats, params, sums, dx).apply();
}

template <class T>
void normalize_backward(const T* x, const T* dy, const NormDescription& d, const GroupStats& stats,
                        const NormParameters<T>& params, GradientSums& sums, T* dx) {
  Backward<T>(x, dy, d, stats, params, sums, dx).fused();
}

NORMLAB_INSTANTIATE_ENGINE(float)
NORMLAB_INSTANTIATE_ENGINE(double)

}  // namespace NORMLAB_ENGINE_NAMESPACE
}  // namespace normlab
