// engine_kernels.cpp is compiled once per instruction set, each copy in its
// own namespace; engine.cpp forwards the public calls to the best one the CPU
// supports (the environment variable NORMLAB_MAX_ISA=baseline|avx2|avx512
// lowers the choice).
#pragma once

#include <cmath>

#include "normlab/engine.hpp"

namespace normlab {
// rstd of a group: 1 / sqrt(var + eps).
inline double inverse_std(double var, double eps) {
  return 1.0 / std::sqrt(var + eps);
}
}  // namespace normlab

#define NORMLAB_DECLARE_ENGINE(ns)                                                              \
  namespace normlab::ns {                                                                       \
  template <class T>                                                                            \
  void compute_stats(const T* x, const NormDescription& d, GroupStats& stats);                  \
  template <class T>                                                                            \
  void normalize_forward(const T* x, const NormDescription& d, const GroupStats& stats,         \
                         const T* gamma, const T* beta, T* y);                                  \
  template <class T>                                                                            \
  void normalize_with_batch_stats(const T* x, const NormDescription& d, GroupStats& stats,      \
                                  const T* gamma, const T* beta, T* y);                         \
  template <class T>                                                                            \
  void normalize_backward(const T* x, const T* dy, const NormDescription& d,                    \
                          const GroupStats& stats, const T* gamma, T* dx, T* dgamma, T* dbeta); \
  }

NORMLAB_DECLARE_ENGINE(engine_baseline)
NORMLAB_DECLARE_ENGINE(engine_avx2)
NORMLAB_DECLARE_ENGINE(engine_avx512)

// Explicit instantiations of the engine functions for one data type, in the
// namespace where this is expanded.
#define NORMLAB_INSTANTIATE_ENGINE(T)                                                        \
  template void compute_stats<T>(const T*, const NormDescription&, GroupStats&);             \
  template void normalize_forward<T>(const T*, const NormDescription&, const GroupStats&,    \
                                     const T*, const T*, T*);                                \
  template void normalize_with_batch_stats<T>(const T*, const NormDescription&, GroupStats&, \
                                              const T*, const T*, T*);                       \
  template void normalize_backward<T>(const T*, const T*, const NormDescription&,            \
                                      const GroupStats&, const T*, T*, T*, T*);
