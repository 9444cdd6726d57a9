// The shared reduction engine: per-group statistics, normalize + affine, and
// the backward reductions. Every norm is a NormDescription handed to it.
//
// Forward runs in four phases:
//   reduce   per-group count, mean and M2 (as a biased variance), summed in
//            the data's precision within blocks of 2048 and in double across
//   combine  a norm's hook may merge or replace the statistics (a cross-process
//            reduction; Batch Renorm's correction r, d)
//   finish   rstd = 1 / sqrt(var + eps)
//   apply    normalize, affine, optional elementwise epilogue
// Backward runs in three:
//   reduce   per-group sums of dxhat and dxhat * xhat (and parameter sums)
//   combine  a norm's hook may merge the sums (a cross-process all-reduce)
//   apply    dx (and, on some paths, parameter sums)
// A norm without hooks takes the fused calls (normalize_with_batch_stats,
// normalize_backward), which do the same phases group by group while the
// group's data is in cache.
//
// Data types: every template below (the six calls and NormParameters) is
// instantiated for T = float, double and bfloat16 (normlab/bfloat16.hpp); x,
// dy, y, dx and the parameters are all of type T. float and double data are
// computed in their own type (and in double where a kernel says so); bfloat16
// data are widened exactly to float and computed as float data are, and each
// output element is rounded once to bfloat16, to nearest even. Statistics and
// gradient sums are double for every T: blocks of 2048 are summed in float for
// float and bfloat16 data, in double for double data, and carried in double.
#pragma once

#include <cstddef>
#include <vector>

#include "normlab/bfloat16.hpp"

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
  per_channel,       // one group per (chunk of outer, run of `channels_per_group` channels),
                     // over that chunk and inner (BatchNorm, WeightNorm: one chunk and one
                     // channel per group; Ghost BN: virtual batches; channels-last inputs
                     // [N*H*W, C, 1] of the per-sample norms: one chunk per sample)
  per_outer_groups,  // per outer index and run of `channels_per_group` channels (LN, IN, GN)
};

// How gamma/beta are indexed.
enum class Affine {
  none,
  per_channel,  // gamma[channel]
  elementwise,  // gamma[channel * inner + inner_index] (LayerNorm's normalized_shape;
                // per_outer_groups pooling only)
};

// What is multiplied by rstd: x - mean (mean is 0 when not centered),
// x * sigmoid(v[channel] * x) (EvoNorm-S0, whose statistics stay centered), or
// tanh(v[channel] * x), a map without statistics (Dynamic Tanh; needs
// centered and scaled false).
enum class Numerator { input, swish, tanh };

// Applied to the affine output: nothing, or max(y, tau[channel]) (FRN's TLU).
enum class Epilogue { none, tlu };

struct NormDescription {
  View3 view;
  Pooling pooling = Pooling::per_outer_groups;
  std::size_t channels_per_group = 1;  // divides channels
  std::size_t outer_chunk = 0;         // per_channel only: outer indices per chunk (divides
                                       // outer); 0 = all
  bool centered = true;                // subtract the mean (false: RMS or L2 scaling)
  bool scaled = true;                  // multiply by rstd (false: rstd = 1, mean-only; with
                                       // centered false too, no statistics at all)
  bool divide_by_count = true;         // mean of squares; false: sum of squares (L2 norm)
  double eps = 1e-5;
  Affine affine = Affine::none;
  bool has_shift = false;  // beta present (only with an affine)
  Numerator numerator = Numerator::input;
  Epilogue epilogue = Epilogue::none;
  // The norm supplies the statistics (Norm::given_stats) instead of reducing
  // them from x, in eval (running statistics) or in train (frozen BN).
  bool statistics_given = false;
  // With statistics_given: true, they are constants in backward (dx = dxhat *
  // rstd); false, backward treats them as batch statistics would be treated
  // (the reduce sums, which a combine_gradients hook may replace, carry the
  // gradient through the mean and rstd).
  bool statistics_constant = true;
  bool shared_v = false;  // v is one value for all channels (DyT's alpha); its sum has size 1
  bool tracks_running_stats = false;

  // Throws std::invalid_argument naming the broken invariant: an empty view,
  // channels_per_group not dividing channels, outer_chunk not dividing outer,
  // eps negative or not finite, an elementwise affine with per_channel pooling,
  // a shift without an affine, a swish numerator or TLU epilogue with an
  // elementwise affine or with per_channel pooling over runs longer than 1.
  // Every engine call checks it; norms call it when they build a description.
  void validate() const;

  std::size_t groups() const;
  std::size_t group_size() const;
  // per_channel: the chunks of outer and their length.
  std::size_t chunks() const { return outer_chunk ? view.outer / outer_chunk : 1; }
  std::size_t chunk_length() const { return outer_chunk ? outer_chunk : view.outer; }
  // Group of the contiguous run view[a, c, :]; per_channel groups are numbered
  // chunk * (channels / channels_per_group) + c / channels_per_group.
  std::size_t group_of(std::size_t a, std::size_t c) const {
    const std::size_t per_row = view.channels / channels_per_group;
    if (pooling == Pooling::per_channel)
      return (outer_chunk ? (a / outer_chunk) * per_row : 0) + c / channels_per_group;
    return a * per_row + c / channels_per_group;
  }
  std::size_t affine_size() const;
  // Whether the engine reduces anything from x: false for a map without
  // statistics (neither centered nor scaled: mean 0, rstd 1).
  bool has_statistics() const { return centered || scaled; }
  // Whether backward carries the gradient through the statistics.
  bool statistics_carry_gradient() const { return !(statistics_given && statistics_constant); }
};

// Per-group statistics, kept in double whatever the data type.
struct GroupStats {
  double count = 0;          // elements per group (after combine: over every process)
  std::vector<double> mean;  // all zero when not centered
  std::vector<double> var;   // biased variance (M2 / count), mean square, or sum of squares
  std::vector<double> rstd;  // 1 / sqrt(var + eps), from finish_stats
  // Optional per-group correction of the normalized value, xhat -> xhat * r + d,
  // constant in backward (Batch Renormalization). Empty: none. resize() clears it.
  std::vector<double> r, d;
  void resize(std::size_t groups);
};

// The learned tensors the engine reads, of the data's type T (float, double
// or bfloat16); null when absent. gamma and beta are indexed as the
// description's affine says; tau (TLU) and v (swish, tanh) per channel (v: one
// value with shared_v).
template <class T>
struct NormParameters {
  const T* gamma = nullptr;
  const T* beta = nullptr;
  const T* tau = nullptr;
  const T* v = nullptr;
};

// Gradients of the parameters, in double, summed over the whole input; each
// vector is empty when its parameter is absent.
struct ParameterSums {
  std::vector<double> gamma, beta, tau, v;
};

// What backward reduces: per group, sum(dxhat) and sum(dxhat * xhat) with
// dxhat = dL/d(normalized value) (the combine hook may add other processes'
// sums to these), and the parameter gradients.
struct GradientSums {
  std::vector<double> sum_dxhat, sum_dxhat_xhat;
  ParameterSums parameters;
};

// The description of the same norm on the channels-last form of the same
// tensor: d describes an (N, C, S...) input as [N, C, prod(S)]; the result
// describes (N, S..., C) as [N * prod(S), C, 1], with the per-sample groups
// as per_channel pooling over chunks of prod(S) rows. An elementwise affine
// (LayerNorm's normalized_shape) has no such form: std::invalid_argument.
NormDescription channels_last(const NormDescription& d);

// ---- Forward phases ----
// (Each call is defined for T = float, double and bfloat16; see the top.)

// Reduce: count, mean and var of every group (stable: blockwise corrected
// two-pass sums in the data's precision, the blocks carried in double and
// merged with Chan's formula). Leaves rstd for finish_stats.
template <class T>
void reduce_stats(const T* x, const NormDescription& d, GroupStats& stats);

// Finish: rstd from var and eps (1 when the description is not scaled).
void finish_stats(const NormDescription& d, GroupStats& stats);

// Apply: y = epilogue((numerator(x) * rstd * r + d) * gamma + beta), r = 1 and
// d = 0 without a correction.
template <class T>
void apply_stats(const T* x, const NormDescription& d, const GroupStats& stats,
                 const NormParameters<T>& params, T* y);

// reduce_stats, finish_stats and apply_stats in one call, for norms without a
// combine hook. Groups whose elements are contiguous (per_outer_groups: LN,
// IN, GN) are normalized right after their statistics, while still in cache:
// x is read from memory once.
template <class T>
void normalize_with_batch_stats(const T* x, const NormDescription& d, GroupStats& stats,
                                const NormParameters<T>& params, T* y);

// ---- Backward phases ----
// With statistics_given the statistics are constants and dx = dxhat * rstd;
// otherwise the two reductions carry the gradient through mean and variance.
// A correction (r, d) is constant: dxhat = dy * gamma * r,
// dgamma = r * sum(dy * xhat) + d * sum(dy).

// Reduce: sums.sum_dxhat and sums.sum_dxhat_xhat per group; parameter sums
// where this path has them (the rest come from apply_gradients).
template <class T>
void reduce_gradients(const T* x, const T* dy, const NormDescription& d, const GroupStats& stats,
                      const NormParameters<T>& params, GradientSums& sums);

// Apply: dx from the (combined) sums; completes sums.parameters.
template <class T>
void apply_gradients(const T* x, const T* dy, const NormDescription& d, const GroupStats& stats,
                     const NormParameters<T>& params, GradientSums& sums, T* dx);

// reduce_gradients then apply_gradients, fused where groups are contiguous.
template <class T>
void normalize_backward(const T* x, const T* dy, const NormDescription& d, const GroupStats& stats,
                        const NormParameters<T>& params, GradientSums& sums, T* dx);

// The instruction set of the kernels in use: "avx512", "avx2" or "baseline"
// (the best this CPU and build have; NORMLAB_MAX_ISA=avx2|baseline lowers it).
// Work is split across set_num_threads() threads (normlab/threads.hpp).
const char* engine_isa();

}  // namespace normlab
