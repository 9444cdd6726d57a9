// The shared reduction engine: per-group statistics, normalize + affine, and
// the backward reductions. Every norm is a NormDescription handed to it.
#pragma once

#include <cstddef>
#include <vector>

namespace normlab {

// An activation seen as a row-major [outer, channels, inner] block. For an
// (N, C, H, W) input that is [N, C, H*W]; a (N, C) input has inner == 1.
struct View3 {
  std::size_t outer = 1;
  std::size_t channels = 1;
  std::size_t inner = 1;
  std::size_t size() const { return outer * channels * inner; }
};

// Which elements share one set of statistics.
enum class Pooling {
  per_channel,       // one group per (chunk of outer, channel), over that chunk and inner
                     // (BatchNorm, WeightNorm: one chunk; Ghost BN: virtual batches)
  per_outer_groups,  // per outer index and run of `channels_per_group` channels (LN, IN, GN)
};

// How gamma/beta are indexed.
enum class Affine {
  none,
  per_channel,  // gamma[channel]
  elementwise,  // gamma[channel * inner + inner_index] (LayerNorm's normalized_shape;
                // per_outer_groups pooling only)
};

struct NormDescription {
  View3 view;
  Pooling pooling = Pooling::per_outer_groups;
  std::size_t channels_per_group = 1;  // per_outer_groups only
  std::size_t outer_chunk = 0;         // per_channel only: outer indices per chunk; 0 = all
  bool centered = true;                // subtract the mean (false: RMS or L2 scaling)
  bool divide_by_count = true;         // mean of squares; false: sum of squares (L2 norm)
  double eps = 1e-5;
  Affine affine = Affine::none;
  bool has_shift = false;         // beta present (only with an affine)
  bool statistics_given = false;  // eval with running stats: constants in backward
  bool tracks_running_stats = false;

  std::size_t groups() const;
  std::size_t group_size() const;
  // per_channel: the chunks of outer (outer_chunk must divide outer) and their length.
  std::size_t chunks() const { return outer_chunk ? view.outer / outer_chunk : 1; }
  std::size_t chunk_length() const { return outer_chunk ? outer_chunk : view.outer; }
  // Group of the contiguous run view[a, c, :]; per_channel groups are numbered
  // chunk * channels + c.
  std::size_t group_of(std::size_t a, std::size_t c) const {
    if (pooling == Pooling::per_channel)
      return outer_chunk ? (a / outer_chunk) * view.channels + c : c;
    return a * (view.channels / channels_per_group) + c / channels_per_group;
  }
  std::size_t affine_size() const;
};

// Per-group statistics, kept in double whatever the data type.
struct GroupStats {
  std::vector<double> mean;  // all zero when not centered
  std::vector<double> var;   // biased variance, mean square, or sum of squares (see description)
  std::vector<double> rstd;  // 1 / sqrt(var + eps)
  // Optional per-group correction of the normalized value, xhat -> xhat * r + d,
  // constant in backward (Batch Renormalization). Empty: none. resize() clears it.
  std::vector<double> r, d;
  void resize(std::size_t groups);
};

// First reduce: mean and var of every group (stable: blockwise two-pass sums in
// double, blocks merged with Chan's formula), then rstd.
template <class T>
void compute_stats(const T* x, const NormDescription& d, GroupStats& stats);

// Fills rstd from var and eps.
void finish_rstd(const NormDescription& d, GroupStats& stats);

// y = ((x - mean) * rstd * r + d) * gamma + beta, r = 1 and d = 0 without a
// correction. gamma and beta may be null when absent.
template <class T>
void normalize_forward(const T* x, const NormDescription& d, const GroupStats& stats,
                       const T* gamma, const T* beta, T* y);

// compute_stats then normalize_forward in one call. Groups whose elements are
// contiguous (per_outer_groups: LN, IN, GN) are normalized right after their
// statistics, while still in cache: x is read from memory once.
template <class T>
void normalize_with_batch_stats(const T* x, const NormDescription& d, GroupStats& stats,
                                const T* gamma, const T* beta, T* y);

// dx for y = normalize_forward(x); adds dL/dgamma and dL/dbeta into dgamma and
// dbeta (either may be null). With statistics_given the statistics are
// constants; otherwise the two backward reductions per group, sum(dxhat) and
// sum(dxhat * xhat), carry the gradient through mean and variance. A correction
// (r, d) is constant: dxhat = dy * gamma * r, dgamma = r * sum(dy * xhat) + d * sum(dy).
template <class T>
void normalize_backward(const T* x, const T* dy, const NormDescription& d, const GroupStats& stats,
                        const T* gamma, T* dx, T* dgamma, T* dbeta);

// The instruction set of the kernels in use: "avx512", "avx2" or "baseline"
// (the best this CPU and build have; NORMLAB_MAX_ISA=avx2|baseline lowers it).
// Work is split across set_num_threads() threads (normlab/threads.hpp).
const char* engine_isa();

}  // namespace normlab
