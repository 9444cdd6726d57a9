// The pointwise kernels on rows of channels: per_outer_groups pooling with
// runs of one element and a swish or tanh numerator or a TLU epilogue
// (EvoNorm-S0, DyT and FRN on (N, C)). A row's groups are adjacent channels,
// so each kernel goes across a whole row with every channel's coefficients in
// arrays and its loop vectorizes, e^x included; the runs' and groups' kernels
// would call the elementwise function once per run of one element.
// Parameter gradients are sums down the channels: per fixed chunk of rows
// (row_chunks), then chunk by chunk, so they do not depend on the threads.
#include "pointwise.hpp"
#include "traversals.hpp"

namespace normlab {
namespace NORMLAB_ENGINE_NAMESPACE {

namespace {

// Each channel's gamma, beta, v and tau (1, 0, 0 and 0 where the description
// has none), read once per call by the calling thread; and the correction's
// r = 1, d = 0 of statistics without one.
struct ChannelParameters {
  std::vector<double> gamma, beta, v, tau, one, zero;
};

template <class T>
const ChannelParameters& channel_parameters(const ChannelAffine<T>& affine) {
  static thread_local ChannelParameters p;
  const NormDescription& d = affine.d;
  const std::size_t channels = d.view.channels;
  p.gamma.resize(channels), p.beta.resize(channels);
  p.v.assign(channels, 0.0), p.tau.assign(channels, 0.0);
  p.one.assign(channels, 1.0), p.zero.assign(channels, 0.0);
  for (std::size_t c = 0; c < channels; ++c) {
    p.gamma[c] = affine.gamma(c);
    p.beta[c] = affine.beta(c);
    if (d.numerator != Numerator::input) p.v[c] = load<double>(affine.params.v[d.shared_v ? 0 : c]);
    if (d.epilogue == Epilogue::tlu) p.tau[c] = load<double>(affine.params.tau[c]);
  }
  return p;
}

// One row's coefficients per channel, in the thread's scratch: its group's
// mean and rstd, and (statistics with a correction) r, d and the scale and
// shift they fold into; the backward's per-channel terms.
struct RowScratch {
  std::vector<double> mean, rstd, scale, shift, r, d;
  std::vector<double> scaled_passed, scaled_passed_nhat, x_scale, dx_shift;
};

RowScratch& row_scratch(std::size_t channels) {
  static thread_local RowScratch k;
  for (auto* array : {&k.mean, &k.rstd, &k.scale, &k.shift, &k.r, &k.d, &k.scaled_passed,
                      &k.scaled_passed_nhat, &k.x_scale, &k.dx_shift})
    array->resize(channels);
  return k;
}

// Row a's Pointwise coefficients per channel, as plain pointers: what
// Pointwise(stats, ...) computes for channel c of its group, with the group's
// r and d for the gamma gradient. (Pointers in a local, not the vectors: a
// loop storing doubles would otherwise reload their data pointers and not
// vectorize.)
struct RowView {
  const double *mean, *rstd, *scale, *shift, *v, *tau, *r, *d;
};

RowView fill_row(const NormDescription& d, const GroupStats& stats, const ChannelParameters& p,
                 std::size_t a, RowScratch& k) {
  const std::size_t channels = d.view.channels, cpg = d.channels_per_group;
  const bool corrected = !stats.r.empty() || !stats.d.empty();
  // A map without statistics (DyT): mean 0 and rstd 1 in every group.
  if (!d.has_statistics() && !corrected)
    return {p.zero.data(), p.one.data(), p.gamma.data(), p.beta.data(),
            p.v.data(),    p.tau.data(), p.one.data(),   p.zero.data()};
  double *mean = k.mean.data(), *rstd = k.rstd.data(), *scale = k.scale.data();
  double *shift = k.shift.data(), *r = k.r.data(), *dd = k.d.data();
  for (std::size_t first = 0; first < channels; first += cpg) {
    const std::size_t g = d.group_of(a, first);
    const double group_mean = stats.mean[g], group_rstd = stats.rstd[g];
    for (std::size_t c = first; c < first + cpg; ++c) mean[c] = group_mean, rstd[c] = group_rstd;
    if (!corrected) continue;
    const double group_r = correction_r(stats, g), group_d = correction_d(stats, g);
    for (std::size_t c = first; c < first + cpg; ++c) {
      r[c] = group_r, dd[c] = group_d;
      scale[c] = group_r * p.gamma[c];
      shift[c] = group_d * p.gamma[c] + p.beta[c];
    }
  }
  // Without a correction, r * gamma is gamma and d * gamma + beta is beta.
  if (!corrected)
    return {mean,       rstd,         p.gamma.data(), p.beta.data(),
            p.v.data(), p.tau.data(), p.one.data(),   p.zero.data()};
  return {mean, rstd, scale, shift, p.v.data(), p.tau.data(), r, dd};
}

// y of row a.
template <class F, class T>
void row_y(const NormDescription& d, const RowView& view, const T* x, std::size_t a, T* y) {
  const std::size_t channels = d.view.channels;
  const T* xr = x + a * channels;
  T* yr = y + a * channels;
  for (std::size_t c = 0; c < channels; ++c) yr[c] = store<T>(F(view, c).y(load<double>(xr[c])));
}

// body(a, k) for every row a, in parallel; k is the running thread's row
// scratch, sized once per range of rows.
template <class Body>
void for_rows(const NormDescription& d, Body&& body) {
  parallel_for(d.view.outer, d.view.size(), [&](std::size_t a0, std::size_t a1) {
    RowScratch& k = row_scratch(d.view.channels);
    for (std::size_t a = a0; a < a1; ++a) body(a, k);
  });
}

// Per chunk of rows and channel: the parameter gradients' terms of its rows.
struct ChunkSums {
  double *gamma, *beta, *tau, *v;
};

// Row a's reduce sums: its groups' S1 and S2 into call.sums, and its
// parameter terms added into the chunk's sums.
template <class F, class T>
void row_reduce(BackwardCall<T>& call, const RowView& view, RowScratch& k, std::size_t a,
                const ChunkSums& chunk) {
  const NormDescription& d = call.d;
  const std::size_t channels = d.view.channels, cpg = d.channels_per_group;
  const T* xr = call.x + a * channels;
  const T* dyr = call.dy + a * channels;
  double *scaled_passed = k.scaled_passed.data(), *scaled_passed_nhat = k.scaled_passed_nhat.data();
  // Six arrays stored to: more than GCC checks for aliasing at run time, so
  // without ivdep the loop stays scalar. They never alias: all are scratch.
#pragma GCC ivdep
  for (std::size_t c = 0; c < channels; ++c) {
    const F f(view, c);
    const double xi = load<double>(xr[c]), dyi = load<double>(dyr[c]), gate = f.gate(xi);
    const double nhat = f.numerator(xi, gate) * f.rstd;
    const double passed = f.passed(nhat * f.scale + f.shift, dyi);
    scaled_passed[c] = f.scale * passed;
    scaled_passed_nhat[c] = f.scale * (passed * nhat);
    chunk.gamma[c] += view.r[c] * (passed * nhat) + view.d[c] * passed;
    chunk.beta[c] += passed;
    chunk.tau[c] += dyi - passed;
    if (F::has_v) chunk.v[c] += passed * f.numerator_dv(xi, gate) * f.scale * f.rstd;
  }
  // S1 and S2 per group, its channels in order.
  for (std::size_t first = 0; first < channels; first += cpg) {
    double s1 = 0, s2 = 0;
    for (std::size_t c = first; c < first + cpg; ++c)
      s1 += k.scaled_passed[c], s2 += k.scaled_passed_nhat[c];
    const std::size_t g = d.group_of(a, first);
    call.sums.sum_dxhat[g] = s1;
    call.sums.sum_dxhat_xhat[g] = s2;
  }
}

// dx of row a, from its groups' S1 and S2.
template <class F, class T>
void row_dx(const BackwardCall<T>& call, const ChannelParameters& p, const RowView& view,
            RowScratch& k, std::size_t a) {
  const NormDescription& d = call.d;
  const std::size_t channels = d.view.channels, cpg = d.channels_per_group;
  for (std::size_t first = 0; first < channels && d.has_statistics(); first += cpg) {
    const std::size_t g = d.group_of(a, first);
    const auto t = call.group_terms(g);
    const double rstd = call.stats.rstd[g];
    const double x_scale = -rstd * rstd * t.xhat_coef, shift = -rstd * t.mean_dxhat;
    for (std::size_t c = first; c < first + cpg; ++c) k.x_scale[c] = x_scale, k.dx_shift[c] = shift;
  }
  const T* xr = call.x + a * channels;
  const T* dyr = call.dy + a * channels;
  T* dxr = call.dx + a * channels;
  // Without statistics, x does not reach dx through them: both terms are 0.
  const double* x_scale = d.has_statistics() ? k.x_scale.data() : p.zero.data();
  const double* dx_shift = d.has_statistics() ? k.dx_shift.data() : p.zero.data();
  for (std::size_t c = 0; c < channels; ++c)
    dxr[c] =
        store<T>(F(view, c).dx(load<double>(xr[c]), load<double>(dyr[c]), x_scale[c], dx_shift[c]));
}

}  // namespace

template <class T>
void PointwiseRows<T>::normalize(const T* x, const NormDescription& d, GroupStats& stats,
                                 const NormParameters<T>& params, T* y) {
  const ChannelParameters& p = channel_parameters(ChannelAffine<T>{d, stats, params});
  const std::size_t per_row = d.view.channels / d.channels_per_group;
  with_pointwise<T>(d, [&](auto* variant) {
    using F = std::remove_pointer_t<decltype(variant)>;
    for_rows(d, [&](std::size_t a, RowScratch& k) {
      for (std::size_t g = a * per_row; g < (a + 1) * per_row; ++g) {
        Groups<T>::group_stats(x, d, g, stats);
        stats.rstd[g] = group_rstd(d, stats.var[g]);
      }
      row_y<F>(d, fill_row(d, stats, p, a, k), x, a, y);
    });
  });
}

template <class T>
void PointwiseRows<T>::apply(const T* x, const NormDescription& d, const GroupStats& stats,
                             const NormParameters<T>& params, T* y) {
  const ChannelParameters& p = channel_parameters(ChannelAffine<T>{d, stats, params});
  with_pointwise<T>(d, [&](auto* variant) {
    using F = std::remove_pointer_t<decltype(variant)>;
    for_rows(d, [&](std::size_t a, RowScratch& k) {
      row_y<F>(d, fill_row(d, stats, p, a, k), x, a, y);
    });
  });
}

template <class T>
void PointwiseRows<T>::backward(BackwardCall<T>& call, bool reduce, bool apply) {
  const NormDescription& d = call.d;
  const std::size_t channels = d.view.channels, chunks = row_chunks(d);
  const ChannelParameters& p = channel_parameters(call.affine);
  // The chunks' parameter terms, in the calling thread's workspace.
  std::vector<double>& terms =
      zeroed(workspace().chunk_pointwise_terms, reduce ? 4 * chunks * channels : 0);
  auto chunk_sums = [&](std::size_t i) -> ChunkSums {
    double* at = terms.data() + 4 * i * channels;
    return {at, at + channels, at + 2 * channels, at + 3 * channels};
  };
  with_pointwise<T>(d, [&](auto* variant) {
    using F = std::remove_pointer_t<decltype(variant)>;
    parallel_for(chunks, d.view.size(), [&](std::size_t i0, std::size_t i1) {
      RowScratch& k = row_scratch(channels);
      for (std::size_t i = i0; i < i1; ++i)
        for (std::size_t a = chunk_first_row(d, i); a < chunk_first_row(d, i + 1); ++a) {
          const RowView view = fill_row(d, call.stats, p, a, k);
          if (reduce) row_reduce<F>(call, view, k, a, chunk_sums(i));
          if (apply) row_dx<F>(call, p, view, k, a);
        }
    });
  });
  if (!reduce) return;
  ParameterSums& sums = call.sums.parameters;
  for (std::size_t i = 0; i < chunks; ++i) {
    const ChunkSums chunk = chunk_sums(i);
    for (std::size_t c = 0; c < channels; ++c) {
      if (!sums.gamma.empty()) sums.gamma[c] += chunk.gamma[c];
      if (!sums.beta.empty()) sums.beta[c] += chunk.beta[c];
      if (!sums.tau.empty()) sums.tau[c] += chunk.tau[c];
      if (!sums.v.empty()) sums.v[d.shared_v ? 0 : c] += chunk.v[c];
    }
  }
}

template struct PointwiseRows<float>;
template struct PointwiseRows<double>;
template struct PointwiseRows<bfloat16>;

}  // namespace NORMLAB_ENGINE_NAMESPACE
}  // namespace normlab
