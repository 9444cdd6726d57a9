// The engine's traversals, each in its own file with all of its phases:
//
//   Runs     (runs.cpp)     contiguous runs view[a, c, :], merged per group in
//                           row order: BatchNorm on images, WeightNorm; also
//                           the apply and the phased backward of every norm
//                           whose groups are made of whole runs.
//   Groups   (groups.cpp)   groups contiguous in memory (per_outer_groups: LN,
//                           IN, GN): statistics, and the fused calls that
//                           normalize a group while it is in cache; with an
//                           elementwise affine (LayerNorm's normalized_shape)
//                           the rows' blocked backward; the pointwise backward
//                           (FRN's TLU, EvoNorm-S0's swish, DyT's tanh).
//   Columns  (columns.cpp)  runs of one element under per_channel pooling
//                           (BatchNorm on (N, C), channels-last inputs): sums
//                           down the columns, vectorized across channels.
//   PointwiseRows (pointwise_rows.cpp)
//                           runs of one element under per_outer_groups pooling
//                           with a pointwise numerator or epilogue (EvoNorm-S0,
//                           DyT, FRN on (N, C)): every phase row by row,
//                           vectorized across channels.
//
// kernels.cpp chooses one of them, in one place, for each call. Every step
// of backward takes a BackwardCall (kernel_common.hpp). Each struct is
// instantiated for float, double and bfloat16 at the end of its file.
// Internal to the engine; compiled once per instruction set.
#pragma once

#include "kernel_common.hpp"

namespace normlab {
namespace NORMLAB_ENGINE_NAMESPACE {

template <class T>
struct Runs {
  // per_channel pooling with runs longer than 1: moments of every run in
  // parallel, then merged per group in row order.
  static void stats(const T* x, const NormDescription& d, GroupStats& stats);
  // y of every run (any pooling but columns). `apply_only`: this is the
  // call's only pass over x (eval with running statistics, phased calls), not
  // the second after the statistics.
  static void apply(const T* x, const NormDescription& d, const GroupStats& stats,
                    const NormParameters<T>& params, T* y, bool apply_only);
  // Reduce sums and parameter gradients, from every run's sum(dy) and
  // sum(dy * (x - mean)) (a per-channel or no affine, input numerator).
  static void reduce_sums(BackwardCall<T>& call);
  // Input gradient of every run.
  static void input_gradient(const BackwardCall<T>& call);
};

template <class T>
struct Groups {
  // Moments of every contiguous group.
  static void stats(const T* x, const NormDescription& d, GroupStats& stats);
  static void group_stats(const T* x, const NormDescription& d, std::size_t g, GroupStats& stats);
  // Statistics and y group by group.
  static void normalize(const T* x, const NormDescription& d, GroupStats& stats,
                        const NormParameters<T>& params, T* y);
  // Reduce sums, input gradient and parameter gradients group by group.
  static void backward(BackwardCall<T>& call);

  // An elementwise affine: the rows' reduce sums; the input gradient and
  // parameter gradients, after the reduce sums when `reduce_first`.
  static void rows_reduce_sums(BackwardCall<T>& call);
  static void rows_gradients(BackwardCall<T>& call, bool reduce_first);

  // The pointwise kernels on contiguous groups: reduce sums, input gradient,
  // or both, then the parameter gradients.
  static void pointwise_backward(BackwardCall<T>& call, bool reduce, bool apply);
};

template <class T>
struct Columns {
  static void stats(const T* x, const NormDescription& d, GroupStats& stats);
  static void apply(const T* x, const NormDescription& d, const GroupStats& stats,
                    const NormParameters<T>& params, T* y);
  // Reduce sums and parameter gradients (every column's sums, in column order).
  static void reduce_sums(BackwardCall<T>& call);
  static void input_gradient(BackwardCall<T>& call);
};

template <class T>
struct PointwiseRows {
  // Statistics and y row by row.
  static void normalize(const T* x, const NormDescription& d, GroupStats& stats,
                        const NormParameters<T>& params, T* y);
  static void apply(const T* x, const NormDescription& d, const GroupStats& stats,
                    const NormParameters<T>& params, T* y);
  // Reduce sums, input gradient or both, then the parameter gradients.
  static void backward(BackwardCall<T>& call, bool reduce, bool apply);
};

}  // namespace NORMLAB_ENGINE_NAMESPACE
}  // namespace normlab
