// The pointwise kernels' elementwise function: a swish or tanh numerator and
// FRN's TLU epilogue, with e^x written so the compiler vectorizes it. The
// traversals' files run it over runs (runs.cpp), contiguous groups
// (groups.cpp) and columns (columns.cpp). Internal to the engine.
#pragma once

#include <cmath>
#include <cstring>

#include "kernel_common.hpp"

namespace normlab {
namespace NORMLAB_ENGINE_NAMESPACE {
// e^x - 1 and 2^k of x = k ln2 + r, |r| <= ln2 / 2, for x in [-708, 708]
// (clamped there: sigmoid and tanh need no more), written only with
// operations the compiler vectorizes, so that the swish and tanh loops do not
// call libm's scalar exp or tanh for every element (libm's exp took 90% of
// EvoNorm-S0's time). ln2 is in two parts (Cody and Waite) so that r is
// exact; e^r - 1 is its Taylor series to r^13 (truncation below 1e-17)
// without the leading 1, so that it keeps its relative accuracy near 0; 2^k is
// k + 1023 written into the exponent bits.
struct ExpParts {
  double expm1_r, scale;
};
[[gnu::always_inline]] inline ExpParts exp_parts(double x) {
  constexpr double kLog2e = 1.4426950408889634, kLn2Hi = 0.693147180369123816490,
                   kLn2Lo = 1.90821492927058770002e-10, kRound = 6755399441055744.0;  // 1.5 * 2^52
  x = std::min(std::max(x, -708.0), 708.0);
  const double shifted = x * kLog2e + kRound;  // k in the low bits, rounded to nearest
  const double k = shifted - kRound;
  const double r = (x - k * kLn2Hi) - k * kLn2Lo;
  // Horner from 1/13! down to 1/1!.
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
  std::uint64_t bits;
  std::memcpy(&bits, &shifted, sizeof bits);
  bits = (bits + 1023) << 52;  // the low 12 bits hold k + 1023 in [1, 2046]
  double scale;
  std::memcpy(&scale, &bits, sizeof scale);
  return {p * r, scale};
}

// e^x within 2 ulp.
[[gnu::always_inline]] inline double exp_vectorizable(double x) {
  const ExpParts e = exp_parts(x);
  return e.scale * e.expm1_r + e.scale;
}

// tanh(z) = m / (m + 2) with m = e^(2|z|) - 1, the sign put back (tanh is
// odd): within a few ulp also near 0, where 1 - 2 / (e^(2z) + 1) would cancel.
// Beyond |z| = 20, tanh is 1 in double (1 - 2e^-40 rounds to 1).
[[gnu::always_inline]] inline double tanh_vectorizable(double z) {
  const ExpParts e = exp_parts(2 * std::min(std::fabs(z), 20.0));
  const double m = e.scale * e.expm1_r + (e.scale - 1);
  return std::copysign(m / (m + 2), z);
}

[[gnu::always_inline]] inline double sigmoid(double z) {
  return 1 / (1 + exp_vectorizable(-z));
}

// The elementwise function of one channel's run in the pointwise kernels:
//   nhat = numerator(x) * rstd,  y_pre = nhat * scale + shift,  y = max(y_pre, tau)
// with numerator x - mean, x * sigmoid(v x) (Swish) or tanh(v x) (DyT). The
// variants are compile-time, so the loops without exp (FRN's TLU) vectorize.
template <class T, Numerator Num, bool Tlu>
struct Pointwise {
  static constexpr bool swish = Num == Numerator::swish, tanh = Num == Numerator::tanh;
  static constexpr bool has_v = swish || tanh, tlu = Tlu;
  double mean, rstd, scale, shift, v, tau;

  Pointwise(const GroupStats& stats, const NormParameters<T>& params,
            const ChannelAffine<T>& affine, std::size_t c, std::size_t g)
      : mean(stats.mean[g]),
        rstd(stats.rstd[g]),
        scale(correction_r(stats, g) * affine.gamma(c)),
        shift(affine.shift(c, g)),
        v(has_v ? load<double>(params.v[affine.d.shared_v ? 0 : c]) : 0.0),
        tau(Tlu ? load<double>(params.tau[c]) : 0.0) {}
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

  // sigmoid(v x) or tanh(v x), computed once per element and passed to the terms below.
  double gate(double x) const {
    if (swish) return sigmoid(v * x);
    return tanh ? tanh_vectorizable(v * x) : 0.0;
  }
  double numerator(double x, double s) const {
    if (swish) return x * s;
    return tanh ? s : x - mean;
  }
  double pre(double x, double s) const { return numerator(x, s) * rstd * scale + shift; }
  // y of one element.
  double y(double x) const {
    const double p = pre(x, gate(x));
    return Tlu && p < tau ? tau : p;
  }
  // The share of dy that reaches y_pre: all of it, none where the TLU clips,
  // half on a tie (as torch.maximum's backward).
  double passed(double y_pre, double dy) const {
    if (!Tlu) return dy;
    // 1, 1/2 or 0 without a branch: tau clips about half the outputs, so a
    // branch would be mispredicted half the time, and this vectorizes.
    return 0.5 * (double(y_pre >= tau) + double(y_pre > tau)) * dy;
  }
  // d numerator / dx (1 for x - mean, the mean's share is a group term).
  double numerator_slope(double x, double s) const {
    if (swish) return s + v * x * s * (1 - s);
    return tanh ? v * (1 - s * s) : 1.0;
  }
  // dx of one element: its share through the numerator plus the statistics'
  // terms x_scale (of x - mean) and dx_shift.
  double dx(double x, double dy, double x_scale, double dx_shift) const {
    const double s = gate(x);
    const double dxhat = passed(pre(x, s), dy) * scale;
    return dxhat * rstd * numerator_slope(x, s) + ((x - mean) * x_scale + dx_shift);
  }
  // d numerator / dv.
  double numerator_dv(double x, double s) const {
    return swish ? x * x * s * (1 - s) : x * (1 - s * s);
  }
};

// Calls body(Pointwise<T, Num, Tlu>-typed tag) for the description's variant.
template <class T, class Body>
void with_pointwise(const NormDescription& d, Body&& body) {
  const bool tlu = d.epilogue == Epilogue::tlu;
  switch (d.numerator) {
    case Numerator::swish:
      if (tlu) return body(static_cast<Pointwise<T, Numerator::swish, true>*>(nullptr));
      return body(static_cast<Pointwise<T, Numerator::swish, false>*>(nullptr));
    case Numerator::tanh:
      if (tlu) return body(static_cast<Pointwise<T, Numerator::tanh, true>*>(nullptr));
      return body(static_cast<Pointwise<T, Numerator::tanh, false>*>(nullptr));
    case Numerator::input:
      break;
  }
  body(static_cast<Pointwise<T, Numerator::input, true>*>(nullptr));
}

// y for a pointwise run: TLU alone is the plain apply in the compute type,
// then the max with tau (a parameter of type T, so exact in the compute type:
// the max is one of two values of type T, stored back unchanged).
template <class T, Numerator Num, bool Tlu>
[[gnu::always_inline]] inline void pointwise_forward_run(const Pointwise<T, Num, Tlu>& f,
                                                         const T* x, std::size_t n, T* y) {
  if (Num == Numerator::input) {
    using A = compute_t<T>;
    apply_run(x, n, f.mean, f.rstd * f.scale, f.shift, y, /*stream=*/false);
    const A tau = load<A>(store<T>(f.tau));
    for (std::size_t i = 0; i < n; ++i) {
      const A yi = load<A>(y[i]);
      y[i] = store<T>(yi < tau ? tau : yi);
    }
    return;
  }
  for (std::size_t i = 0; i < n; ++i) y[i] = store<T>(f.y(load<double>(x[i])));
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

// y for the runs of row a's channels [first, first + count) in group g, of a
// pointwise variant chosen once for them all; kept out of apply_one_run so that
// the common path stays small enough to inline.
template <class T>
[[gnu::noinline]] void apply_pointwise_runs(const T* x, const NormDescription& d,
                                            const GroupStats& stats, const ChannelAffine<T>& affine,
                                            std::size_t a, std::size_t first, std::size_t count,
                                            std::size_t g, T* y) {
  with_pointwise<T>(d, [&](auto* variant) {
    using F = std::remove_pointer_t<decltype(variant)>;
    for (std::size_t c = first; c < first + count; ++c) {
      const std::size_t offset = (a * d.view.channels + c) * d.view.inner;
      pointwise_forward_run(F(stats, affine.params, affine, c, g), x + offset, d.view.inner,
                            y + offset);
    }
  });
}

// y for the run view[a, c, :] of group g; `stream_y` is the call's
// streams_forward_output, decided once for all its runs.
template <class T>
void apply_one_run(const T* x, const NormDescription& d, const GroupStats& stats,
                   const ChannelAffine<T>& affine, std::size_t a, std::size_t c, std::size_t g,
                   T* y, bool stream_y) {
  const std::size_t inner = d.view.inner;
  const std::size_t offset = (a * d.view.channels + c) * inner;
  if (is_pointwise(d)) {
    apply_pointwise_runs(x, d, stats, affine, a, c, 1, g, y);
  } else if (d.affine == Affine::elementwise) {
    apply_run_elementwise(x + offset, inner, stats.mean[g], stats.rstd[g] * correction_r(stats, g),
                          correction_d(stats, g), affine.params.gamma + c * inner,
                          affine.params.beta ? affine.params.beta + c * inner : nullptr, y + offset,
                          stream_y);
  } else {
    apply_run(x + offset, inner, stats.mean[g], affine.scale(c, g), affine.shift(c, g), y + offset,
              stream_y);
  }
}

}  // namespace NORMLAB_ENGINE_NAMESPACE
}  // namespace normlab
