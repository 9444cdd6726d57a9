// engine_kernels.cpp is compiled once per instruction set, each copy in its
// own namespace; engine.cpp forwards the public calls to the best one the CPU
// supports (the environment variable NORMLAB_MAX_ISA=baseline|avx2|avx512
// lowers the choice).
#pragma once

#include <cmath>
#include <cstddef>

#include "normlab/engine.hpp"

namespace normlab {
// rstd of a group: 1 / sqrt(var + eps).
inline double inverse_std(double var, double eps) {
  return 1.0 / std::sqrt(var + eps);
}

// The last-level cache this core shares, for the kernels' choice of stores
// (from Linux, else the C library, with a common size where neither knows).
// It chooses how data flows through the caches, never the results.
std::size_t last_level_cache_bytes();
}  // namespace normlab

#define NORMLAB_DECLARE_ENGINE(ns)                                                                 \
  namespace normlab::ns {                                                                          \
  template <class T>                                                                               \
  void reduce_stats(const T* x, const NormDescription& d, GroupStats& stats);                      \
  template <class T>                                                                               \
  void apply_stats(const T* x, const NormDescription& d, const GroupStats& stats,                  \
                   const NormParameters<T>& params, T* y);                                         \
  template <class T>                                                                               \
  void normalize_with_batch_stats(const T* x, const NormDescription& d, GroupStats& stats,         \
                                  const NormParameters<T>& params, T* y);                          \
  template <class T>                                                                               \
  void reduce_gradients(const T* x, const T* dy, const NormDescription& d,                         \
                        const GroupStats& stats, const NormParameters<T>& params,                  \
                        GradientSums& sums);                                                       \
  template <class T>                                                                               \
  void apply_gradients(const T* x, const T* dy, const NormDescription& d, const GroupStats& stats, \
                       const NormParameters<T>& params, GradientSums& sums, T* dx);                \
  template <class T>                                                                               \
  void normalize_backward(const T* x, const T* dy, const NormDescription& d,                       \
                          const GroupStats& stats, const NormParameters<T>& params,                \
                          GradientSums& sums, T* dx);                                              \
  }

NORMLAB_DECLARE_ENGINE(engine_baseline)
NORMLAB_DECLARE_ENGINE(engine_avx2)
NORMLAB_DECLARE_ENGINE(engine_avx512)

// Explicit instantiations of the engine functions for one data type, in the
// namespace where this is expanded.
#define NORMLAB_INSTANTIATE_ENGINE(T)                                                              \
  template void reduce_stats<T>(const T*, const NormDescription&, GroupStats&);                    \
  template void apply_stats<T>(const T*, const NormDescription&, const GroupStats&,                \
                               const NormParameters<T>&, T*);                                      \
  template void normalize_with_batch_stats<T>(const T*, const NormDescription&, GroupStats&,       \
                                              const NormParameters<T>&, T*);                       \
  template void reduce_gradients<T>(const T*, const T*, const NormDescription&, const GroupStats&, \
                                    const NormParameters<T>&, GradientSums&);                      \
  template void apply_gradients<T>(const T*, const T*, const NormDescription&, const GroupStats&,  \
                                   const NormParameters<T>&, GradientSums&, T*);                   \
  template void normalize_backward<T>(const T*, const T*, const NormDescription&,                  \
                                      const GroupStats&, const NormParameters<T>&, GradientSums&,  \
                                      T*);
