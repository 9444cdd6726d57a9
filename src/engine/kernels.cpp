// The engine's entry points for one instruction set. Each takes the
// description to its canonical form (engine.cpp: validated, and rewritten to
// the fastest equivalent traversal), then runs the traversal that form names;
// the choice is made here, once, by traversal().
#include "traversals.hpp"

namespace normlab {
namespace NORMLAB_ENGINE_NAMESPACE {

namespace {

enum class Traversal {
  columns,           // per_channel, runs of one element (columns.cpp)
  runs,              // per_channel, longer runs (runs.cpp)
  groups,            // per_outer_groups (groups.cpp)
  rows,              // per_outer_groups with an elementwise affine (groups.cpp)
  pointwise_groups,  // per_outer_groups with a pointwise numerator or epilogue
                     // (groups.cpp)
  pointwise_rows,    // the same with runs of one element (pointwise_rows.cpp)
};

Traversal traversal(const NormDescription& d) {
  if (d.pooling == Pooling::per_channel)
    return d.view.inner == 1 ? Traversal::columns : Traversal::runs;
  if (d.affine == Affine::elementwise) return Traversal::rows;
  if (!is_pointwise(d)) return Traversal::groups;
  return d.view.inner == 1 ? Traversal::pointwise_rows : Traversal::pointwise_groups;
}

}  // namespace

template <class T>
void reduce_stats(const T* x, const NormDescription& description, GroupStats& stats) {
  const NormDescription d = canonical_form(description);
  stats.resize(d.groups());
  stats.count = double(d.group_size());
  if (!d.has_statistics()) return;  // a map without statistics: mean 0, rstd 1
  switch (traversal(d)) {
    case Traversal::columns:
      return Columns<T>::stats(x, d, stats);
    case Traversal::runs:
      return Runs<T>::stats(x, d, stats);
    case Traversal::groups:
    case Traversal::rows:
    case Traversal::pointwise_groups:
    case Traversal::pointwise_rows:
      return Groups<T>::stats(x, d, stats);
  }
}

namespace {

// y from finished statistics, for a description in canonical form.
// `apply_only`: this is the call's only pass over x (Runs::apply).
template <class T>
void apply_canonical(const T* x, const NormDescription& d, const GroupStats& stats,
                     const NormParameters<T>& params, T* y, bool apply_only) {
  switch (traversal(d)) {
    case Traversal::columns:
      return Columns<T>::apply(x, d, stats, params, y);
    case Traversal::pointwise_rows:
      return PointwiseRows<T>::apply(x, d, stats, params, y);
    default:
      return Runs<T>::apply(x, d, stats, params, y, apply_only);
  }
}

}  // namespace

template <class T>
void apply_stats(const T* x, const NormDescription& description, const GroupStats& stats,
                 const NormParameters<T>& params, T* y) {
  apply_canonical(x, canonical_form(description), stats, params, y, /*apply_only=*/true);
}

template <class T>
void normalize_with_batch_stats(const T* x, const NormDescription& description, GroupStats& stats,
                                const NormParameters<T>& params, T* y) {
  const NormDescription d = canonical_form(description);
  if (d.pooling == Pooling::per_channel) {  // groups spanning rows: all statistics first
    NORMLAB_ENGINE_NAMESPACE::reduce_stats(x, d, stats);
    finish_stats(d, stats);
    return apply_canonical(x, d, stats, params, y, /*apply_only=*/false);
  }
  stats.resize(d.groups());
  stats.count = double(d.group_size());
  if (traversal(d) == Traversal::pointwise_rows)
    return PointwiseRows<T>::normalize(x, d, stats, params, y);
  Groups<T>::normalize(x, d, stats, params, y);
}

template <class T>
void reduce_gradients(const T* x, const T* dy, const NormDescription& description,
                      const GroupStats& stats, const NormParameters<T>& params,
                      GradientSums& sums) {
  const NormDescription d = canonical_form(description);
  BackwardCall<T> call(x, dy, d, stats, params, sums, nullptr);
  call.zero_sums();
  switch (traversal(d)) {
    case Traversal::columns:
      return Columns<T>::reduce_sums(call);
    case Traversal::rows:
      return Groups<T>::rows_reduce_sums(call);
    case Traversal::pointwise_groups:
      return Groups<T>::pointwise_backward(call, /*reduce=*/true,
                                           /*apply=*/false);
    case Traversal::pointwise_rows:
      return PointwiseRows<T>::backward(call, /*reduce=*/true, /*apply=*/false);
    case Traversal::runs:
    case Traversal::groups:
      return Runs<T>::reduce_sums(call);
  }
}

template <class T>
void apply_gradients(const T* x, const T* dy, const NormDescription& description,
                     const GroupStats& stats, const NormParameters<T>& params, GradientSums& sums,
                     T* dx) {
  const NormDescription d = canonical_form(description);
  BackwardCall<T> call(x, dy, d, stats, params, sums, dx);
  switch (traversal(d)) {
    case Traversal::columns:
      return Columns<T>::input_gradient(call);
    case Traversal::rows:
      return Groups<T>::rows_gradients(call, /*reduce_first=*/false);
    case Traversal::pointwise_groups:
      return Groups<T>::pointwise_backward(call, /*reduce=*/false,
                                           /*apply=*/true);
    case Traversal::pointwise_rows:
      return PointwiseRows<T>::backward(call, /*reduce=*/false, /*apply=*/true);
    case Traversal::runs:
    case Traversal::groups:
      return Runs<T>::input_gradient(call);
  }
}

template <class T>
void normalize_backward(const T* x, const T* dy, const NormDescription& description,
                        const GroupStats& stats, const NormParameters<T>& params,
                        GradientSums& sums, T* dx) {
  const NormDescription d = canonical_form(description);
  BackwardCall<T> call(x, dy, d, stats, params, sums, dx);
  switch (traversal(d)) {
    case Traversal::columns:
    case Traversal::runs:  // groups spanning rows: all their sums are needed
                           // before any dx
      NORMLAB_ENGINE_NAMESPACE::reduce_gradients(x, dy, d, stats, params, sums);
      NORMLAB_ENGINE_NAMESPACE::apply_gradients(x, dy, d, stats, params, sums, dx);
      return;
    case Traversal::rows:
      call.zero_sums();
      return Groups<T>::rows_gradients(call, /*reduce_first=*/true);
    case Traversal::pointwise_groups:
      call.zero_sums();
      return Groups<T>::pointwise_backward(call, /*reduce=*/true, /*apply=*/true);
    case Traversal::pointwise_rows:
      call.zero_sums();
      return PointwiseRows<T>::backward(call, /*reduce=*/true, /*apply=*/true);
    case Traversal::groups:
      call.zero_sums();
      return Groups<T>::backward(call);
  }
}

#define T float
NORMLAB_ENGINE_CALLS(NORMLAB_INSTANTIATE_CALL)
#undef T
#define T double
NORMLAB_ENGINE_CALLS(NORMLAB_INSTANTIATE_CALL)
#undef T
#define T bfloat16
NORMLAB_ENGINE_CALLS(NORMLAB_INSTANTIATE_CALL)
#undef T

}  // namespace NORMLAB_ENGINE_NAMESPACE
}  // namespace normlab
