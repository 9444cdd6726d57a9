// What every traversal of the engine shares: stores, the elementwise kernels
// over one run, the per-channel affine, the per-thread workspace, the loops
// over chunks, blocks and strips of columns, and the backward's per-call state
// (BackwardCall). Internal to the engine; compiled once per instruction set.
#pragma once

#if defined(__SSE2__)
#include <immintrin.h>
#endif

#include <algorithm>
#include <cstdint>
#include <type_traits>
#include <vector>

#include "engine_isa.hpp"
#include "moments.hpp"
#include "thread_pool.hpp"

namespace normlab {
namespace NORMLAB_ENGINE_NAMESPACE {

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

// The elementwise steps run in the data's compute type A (float data get
// twice the vector width of double). The mean is split into A's nearest value
// and the remainder: x - mean_hi is exact for x near the mean (Sterbenz), so a
// large mean costs no accuracy; the result is within a few ulps of A of the
// one computed in double. For double, mean_lo is 0 and this is the double
// computation.
template <class A>
struct SplitMean {
  A hi, lo;
  explicit SplitMean(double mean) : hi(A(mean)), lo(A(mean - double(hi))) {}
  A centered(A x) const { return (x - hi) - lo; }
};

// y = (x - mean) * scale + shift; with `stream`, y goes past the caches.
template <class T>
void apply_run(const T* x, std::size_t n, double mean, double scale, double shift, T* y,
               bool stream) {
  using A = compute_t<T>;
  const SplitMean<A> m(mean);
  const A s = A(scale), t = A(shift);
  write_run(y, n, stream,
            [&](std::size_t i) { return store<T>(m.centered(load<A>(x[i])) * s + t); });
}

// Whether the forward's apply streams y past the caches: when the output
// leaves the last-level cache anyway, and the groups are contiguous and larger
// than L1, so that the fused forward re-reads each group's x from L2 after its
// statistics, and y's write-allocate would evict it. (BatchNorm's apply after
// its statistics pass, which reads x from memory again, measured slower with
// streamed y; so did rows that stay in L1. An apply that is the call's only
// pass over x, BatchNorm's eval, streams y once x and y leave the cache:
// Runs<T>::apply, eval_stream_y_before_after_t1.md.)
template <class T>
bool streams_forward_output(const NormDescription& d) {
  constexpr std::size_t kL1Bytes = 32 * 1024;
  return d.pooling == Pooling::per_outer_groups && d.group_size() * sizeof(T) > kL1Bytes &&
         streams_output<T>(d, 2);
}

// y = ((x - mean) * scale + shift) * gamma + beta, gamma and beta per element;
// with `stream`, y goes past the caches (write_run).
template <class T>
void apply_run_elementwise(const T* x, std::size_t n, double mean, double scale, double shift,
                           const T* gamma, const T* beta, T* y, bool stream) {
  using A = compute_t<T>;
  const SplitMean<A> m(mean);
  const A s = A(scale), t = A(shift);
  if (beta) {
    write_run(y, n, stream, [&](std::size_t i) {
      return store<T>((m.centered(load<A>(x[i])) * s + t) * load<A>(gamma[i]) + load<A>(beta[i]));
    });
  } else {
    write_run(y, n, stream, [&](std::size_t i) {
      return store<T>((m.centered(load<A>(x[i])) * s + t) * load<A>(gamma[i]));
    });
  }
}

// dx = dy * dy_scale + (x - mean) * x_scale + shift
template <class T>
void dx_run(const T* x, const T* dy, std::size_t n, double mean, double dy_scale, double x_scale,
            double shift, T* dx, bool stream) {
  using A = compute_t<T>;
  const SplitMean<A> m(mean);
  const A a = A(dy_scale), b = A(x_scale), c = A(shift);
  write_run(dx, n, stream, [&](std::size_t i) {
    return store<T>(load<A>(dy[i]) * a + (m.centered(load<A>(x[i])) * b + c));
  });
}

// sum(dy) and sum(dy * (x - mean)) of a run.
template <class T>
void grad_sums_run(const T* x, const T* dy, std::size_t n, double mean, double& sum_dy,
                   double& sum_dy_xmu) {
  using A = compute_t<T>;
  const SplitMean<A> m(mean);
  lane_sum2<A>(
      n,
      [x, dy, m](std::size_t i, A& a, A& b) {
        const A dyi = load<A>(dy[i]);
        a += dyi;
        b += dyi * m.centered(load<A>(x[i]));
      },
      sum_dy, sum_dy_xmu);
}

// ---- Traversal ----

// A group's correction xhat -> xhat * r + d; the identity when there is none.
inline double correction_r(const GroupStats& stats, std::size_t g) {
  return stats.r.empty() ? 1.0 : stats.r[g];
}
inline double correction_d(const GroupStats& stats, std::size_t g) {
  return stats.d.empty() ? 0.0 : stats.d[g];
}

inline bool is_columns(const NormDescription& d) {
  return d.pooling == Pooling::per_channel && d.view.inner == 1;
}

// Columns: the group of column c in chunk k of rows.
inline std::size_t column_group(const NormDescription& d, std::size_t k, std::size_t c) {
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
inline bool is_pointwise(const NormDescription& d) {
  return d.numerator != Numerator::input || d.epilogue != Epilogue::none;
}

inline std::size_t runs(const NormDescription& d) {
  return d.view.outer * d.view.channels;
}

// Per-call scratch of the calling thread, one field per use. It only grows,
// so repeated calls with one shape do not allocate. Results never live here:
// they go to the caller's GroupStats and GradientSums.
struct Workspace {
  // Statistics: runs' moments (or sums of squares) before their groups merge
  // them; columns' moments per block of rows, then per column.
  std::vector<Moments> run_moments, group_moments;
  std::vector<double> run_squares;
  std::vector<double> block_mean, block_m2;
  std::vector<double> column_mean, column_m2;
  // Apply on columns: per column, its group's mean, and the scale and shift.
  std::vector<double> column_center, column_scale, column_shift;
  // Backward, per run: sum(dy) and sum(dy * (x - mean)); the pointwise
  // kernels' sum(passed), sum(passed * nhat) and their tau and v terms.
  std::vector<double> run_sum_dy, run_sum_dy_xmu;
  std::vector<double> run_sum_passed, run_sum_passed_nhat, run_dtau, run_dv;
  // Backward on columns: the same sums per block of rows, then per column.
  std::vector<double> block_sum_dy, block_sum_dy_xmu;
  std::vector<double> column_sum_dy, column_sum_dy_xmu;
  std::vector<double> column_sum_passed, column_sum_passed_nhat, column_sum_dv;
  // Backward on columns: dx = dy * dy_scale + (x - center) * x_scale + dx_shift.
  std::vector<double> column_dy_scale, column_x_scale, column_dx_shift;
  // Rows (elementwise affine): parameter gradients of row chunks 1, 2, ...
  std::vector<double> chunk_dgamma, chunk_dbeta;
  // Pointwise rows: the parameter gradients' terms per chunk of rows.
  std::vector<double> chunk_pointwise_terms;
};
inline Workspace& workspace() {
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
inline std::size_t row_chunks(const NormDescription& d) {
  return std::clamp<std::size_t>(d.view.outer / kRowsPerChunk, 1, kRowChunks);
}
inline std::size_t chunk_first_row(const NormDescription& d, std::size_t k) {
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
    return d.affine == Affine::per_channel ? load<double>(params.gamma[c]) : 1.0;
  }
  double beta(std::size_t c) const {
    return d.affine == Affine::per_channel && params.beta ? load<double>(params.beta[c]) : 0.0;
  }
  double scale(std::size_t c, std::size_t g) const {
    return stats.rstd[g] * correction_r(stats, g) * gamma(c);
  }
  double shift(std::size_t c, std::size_t g) const {
    return correction_d(stats, g) * gamma(c) + beta(c);
  }
};

// ---- Backward ----

// One backward call: its inputs, outputs and the per-group terms every
// traversal's steps share. The steps, named as in docs/engine.md:
//   reduce sums:         per group S1 = sum(dxhat), S2 = sum(dxhat * xhat), with
//                        dxhat = dy * gamma * r, from each run's sum(dy) and
//                        sum(dy * (x - mean));
//   (combine:            the norm's hook, between the engine's calls;)
//   input gradient:      dx = rstd * (dxhat * numerator' - mean(dxhat) - xhat * S2 / divisor),
//                        the mean(dxhat) term only when the numerator is x - mean;
//   parameter gradients: dgamma, dbeta (and dtau, dv) from the same run sums.
template <class T>
struct BackwardCall {
  BackwardCall(const T* x_, const T* dy_, const NormDescription& d_, const GroupStats& stats_,
               const NormParameters<T>& params_, GradientSums& sums_, T* dx_)
      : x(x_),
        dy(dy_),
        d(d_),
        stats(stats_),
        params(params_),
        affine{d_, stats_, params_},
        sums(sums_),
        dx(dx_),
        stream(streams_output<T>(d_, 3)) {}

  const T* x;
  const T* dy;
  const NormDescription& d;
  const GroupStats& stats;
  const NormParameters<T>& params;
  const ChannelAffine<T> affine;
  GradientSums& sums;
  T* dx;
  const bool stream;  // dx past the caches (write_run)

  // Zeroed group sums and parameter gradients of the right sizes.
  void zero_sums() {
    zeroed(sums.sum_dxhat, d.groups());
    zeroed(sums.sum_dxhat_xhat, d.groups());
    ParameterSums& p = sums.parameters;
    const std::size_t n = d.affine == Affine::none ? 0 : d.affine_size();
    zeroed(p.gamma, n);
    zeroed(p.beta, d.has_shift ? n : 0);
    zeroed(p.tau, d.epilogue == Epilogue::tlu ? d.view.channels : 0);
    zeroed(p.v, d.numerator == Numerator::input ? 0 : d.shared_v ? 1 : d.view.channels);
  }

  // body(g) for every group, in parallel.
  template <class F>
  void for_groups(F&& body) const {
    parallel_for(d.groups(), d.view.size(), [&](std::size_t g0, std::size_t g1) {
      for (std::size_t g = g0; g < g1; ++g) body(g);
    });
  }

  // Reduce sums: a run's (or column's) contribution to its group's S1 and S2.
  void add_to_group_sums(std::size_t c, std::size_t g, double sum_dy, double sum_dy_xmu) {
    const double scale = affine.gamma(c) * correction_r(stats, g);
    sums.sum_dxhat[g] += scale * sum_dy;
    sums.sum_dxhat_xhat[g] += scale * sum_dy_xmu * stats.rstd[g];
  }

  // Parameter gradients of a run or column: dgamma += r * sum(dy * xhat) +
  // d * sum(dy), dbeta += sum(dy).
  void add_parameter_gradients(std::size_t c, std::size_t g, double sum_dy, double sum_dy_xmu) {
    ParameterSums& p = sums.parameters;
    if (!p.gamma.empty())
      p.gamma[c] +=
          correction_r(stats, g) * sum_dy_xmu * stats.rstd[g] + correction_d(stats, g) * sum_dy;
    if (!p.beta.empty()) p.beta[c] += sum_dy;
  }

  // mean(dxhat) and S2 / divisor of group g; constant statistics (given, and
  // statistics_constant) make both terms vanish, and an unscaled description
  // the S2 term. The count is the combined one.
  struct GroupTerms {
    double mean_dxhat, xhat_coef;
  };
  GroupTerms group_terms(std::size_t g) const {
    const double count = stats.count;
    const bool constant = !d.statistics_carry_gradient();
    const bool mean_term = d.centered && d.numerator == Numerator::input;
    return {
        constant || !mean_term ? 0.0 : sums.sum_dxhat[g] / count,
        constant || !d.scaled ? 0.0 : sums.sum_dxhat_xhat[g] / (d.divide_by_count ? count : 1.0)};
  }

  // Input gradient: dx = dy * dy_scale + (x - mean) * x_scale + shift.
  struct Coefficients {
    double dy_scale, x_scale, shift;
  };
  Coefficients dx_coefficients(std::size_t c, std::size_t g) const {
    const GroupTerms t = group_terms(g);
    const double rstd = stats.rstd[g];
    return {rstd * affine.gamma(c) * correction_r(stats, g), -rstd * rstd * t.xhat_coef,
            -rstd * t.mean_dxhat};
  }

  // Run r's sum(dy) and sum(dy * (x - mean)).
  void run_sums(std::size_t r, double& sum_dy, double& sum_dy_xmu) const {
    const std::size_t inner = d.view.inner;
    const std::size_t g = d.group_of(r / d.view.channels, r % d.view.channels);
    grad_sums_run(x + r * inner, dy + r * inner, inner, stats.mean[g], sum_dy, sum_dy_xmu);
  }
  // Input gradient of run r.
  void run_input_gradient(std::size_t r) const {
    const std::size_t a = r / d.view.channels, c = r % d.view.channels, g = d.group_of(a, c);
    const Coefficients k = dx_coefficients(c, g);
    const std::size_t offset = r * d.view.inner;
    dx_run(x + offset, dy + offset, d.view.inner, stats.mean[g], k.dy_scale, k.x_scale, k.shift,
           dx + offset, stream);
  }
};

}  // namespace NORMLAB_ENGINE_NAMESPACE
}  // namespace normlab
