// The engine's kernels (kernels.cpp and the traversals' files) are compiled
// once per instruction set, each copy in its own namespace; engine.cpp
// forwards the public calls to the best one the CPU supports (the environment
// variable NORMLAB_MAX_ISA=baseline|avx2|avx512 lowers the choice).
#pragma once

#include <cmath>
#include <cstddef>

#include "normlab/engine.hpp"

namespace normlab {
// rstd of a group: 1 / sqrt(var + eps).
inline double inverse_std(double var, double eps) {
  return 1.0 / std::sqrt(var + eps);
}
// rstd of a group of the description: 1 when it is not scaled (mean-only).
inline double group_rstd(const NormDescription& d, double var) {
  return d.scaled ? inverse_std(var, d.eps) : 1.0;
}

// The last-level cache this core shares, for the kernels' choice of stores
// (from Linux, else the C library, with a common size where neither knows).
// It chooses how data flows through the caches, never the results.
std::size_t last_level_cache_bytes();

// d validated (std::invalid_argument naming the broken invariant), then
// rewritten as the equivalent description of the fastest traversal. Every
// engine call runs on this form.
NormDescription canonical_form(const NormDescription& d);
}  // namespace normlab

// The engine's calls, each signature written once here as
// X(name, (parameters), (arguments)), T the data type: declared per
// instruction set below, instantiated in kernels.cpp, forwarded in engine.cpp.
// (include/normlab/engine.hpp declares and documents the same calls.)
#define NORMLAB_ENGINE_CALLS(X)                                                                \
  X(reduce_stats, (const T* x, const NormDescription& d, GroupStats& stats), (x, d, stats))    \
  X(apply_stats,                                                                               \
    (const T* x, const NormDescription& d, const GroupStats& stats,                            \
     const NormParameters<T>& params, T* y),                                                   \
    (x, d, stats, params, y))                                                                  \
  X(normalize_with_batch_stats,                                                                \
    (const T* x, const NormDescription& d, GroupStats& stats, const NormParameters<T>& params, \
     T* y),                                                                                    \
    (x, d, stats, params, y))                                                                  \
  X(reduce_gradients,                                                                          \
    (const T* x, const T* dy, const NormDescription& d, const GroupStats& stats,               \
     const NormParameters<T>& params, GradientSums& sums),                                     \
    (x, dy, d, stats, params, sums))                                                           \
  X(apply_gradients,                                                                           \
    (const T* x, const T* dy, const NormDescription& d, const GroupStats& stats,               \
     const NormParameters<T>& params, GradientSums& sums, T* dx),                              \
    (x, dy, d, stats, params, sums, dx))                                                       \
  X(normalize_backward,                                                                        \
    (const T* x, const T* dy, const NormDescription& d, const GroupStats& stats,               \
     const NormParameters<T>& params, GradientSums& sums, T* dx),                              \
    (x, dy, d, stats, params, sums, dx))

#define NORMLAB_DECLARE_CALL(name, parameters, arguments) \
  template <class T>                                      \
  void name parameters;
// With T defined as a type (kernels.cpp, engine.cpp): its instantiation.
#define NORMLAB_INSTANTIATE_CALL(name, parameters, arguments) template void name<T> parameters;

namespace normlab::engine_baseline {
NORMLAB_ENGINE_CALLS(NORMLAB_DECLARE_CALL)
}
namespace normlab::engine_avx2 {
NORMLAB_ENGINE_CALLS(NORMLAB_DECLARE_CALL)
}
namespace normlab::engine_avx512 {
NORMLAB_ENGINE_CALLS(NORMLAB_DECLARE_CALL)
}
