// The contiguous-groups traversal: per_outer_groups pooling, whose groups
// (LayerNorm's rows, InstanceNorm's and GroupNorm's channels of a sample) are
// contiguous in memory. The fused calls do a group's statistics and its y, or
// its backward sums and its dx, while the group is in cache. With an
// elementwise affine (LayerNorm's normalized_shape) the parameter gradients
// are sums over rows, done here in blocks of rows; the pointwise kernels'
// backward (FRN's TLU, EvoNorm-S0's swish, DyT's tanh) is here too.
#include "pointwise.hpp"
#include "traversals.hpp"

namespace normlab {
namespace NORMLAB_ENGINE_NAMESPACE {

// Mean and var of contiguous group g.
template <class T>
void Groups<T>::group_stats(const T* x, const NormDescription& d, std::size_t g,
                            GroupStats& stats) {
  if (!d.has_statistics()) return;  // a map without statistics: mean 0, rstd 1
  const std::size_t n = d.group_size();
  const T* span = x + g * n;
  if (d.centered) {
    const Moments m = span_moments(span, n);
    stats.mean[g] = m.mean;
    stats.var[g] = m.m2 / double(n);  // biased, as the normalization uses
  } else {
    stats.var[g] = sum_of_squares(span, n) / (d.divide_by_count ? double(n) : 1.0);
  }
}

template <class T>
void Groups<T>::stats(const T* x, const NormDescription& d, GroupStats& stats) {
  parallel_for(d.groups(), d.view.size(), [&](std::size_t g0, std::size_t g1) {
    for (std::size_t g = g0; g < g1; ++g) group_stats(x, d, g, stats);
  });
}

template <class T>
void Groups<T>::normalize(const T* x, const NormDescription& d, GroupStats& stats,
                          const NormParameters<T>& params, T* y) {
  const ChannelAffine<T> affine{d, stats, params};
  const std::size_t per_outer = d.view.channels / d.channels_per_group;
  const bool stream_y = streams_forward_output<T>(d);
  parallel_for(d.groups(), d.view.size(), [&](std::size_t g0, std::size_t g1) {
    for (std::size_t g = g0; g < g1; ++g) {
      group_stats(x, d, g, stats);
      stats.rstd[g] = group_rstd(d, stats.var[g]);
      const std::size_t a = g / per_outer, first = (g % per_outer) * d.channels_per_group;
      if (is_pointwise(d))
        apply_pointwise_runs(x, d, stats, affine, a, first, d.channels_per_group, g, y);
      else
        for (std::size_t c = first; c < first + d.channels_per_group; ++c)
          apply_one_run(x, d, stats, affine, a, c, g, y, stream_y);
    }
  });
}

// Per group, the reduce sums and then dx while the group is in cache; the run
// sums are kept for the parameter gradients, added in row order afterwards.
template <class T>
void Groups<T>::backward(BackwardCall<T>& call) {
  const NormDescription& d = call.d;
  Workspace& w = workspace();
  std::vector<double>& sum_dy = zeroed(w.run_sum_dy, runs(d));
  std::vector<double>& sum_dy_xmu = zeroed(w.run_sum_dy_xmu, runs(d));
  const std::size_t cpg = d.channels_per_group, channels = d.view.channels;
  const std::size_t per_outer = channels / cpg;
  call.for_groups([&](std::size_t g) {
    const std::size_t a = g / per_outer, first = (g % per_outer) * cpg;
    for (std::size_t c = first; c < first + cpg; ++c) {
      const std::size_t r = a * channels + c;
      call.run_sums(r, sum_dy[r], sum_dy_xmu[r]);
      call.add_to_group_sums(c, g, sum_dy[r], sum_dy_xmu[r]);
    }
    for (std::size_t c = first; c < first + cpg; ++c) call.run_input_gradient(a * channels + c);
  });
  for (std::size_t r = 0; r < runs(d); ++r) {
    const std::size_t c = r % channels;
    call.add_parameter_gradients(c, d.group_of(r / channels, c), sum_dy[r], sum_dy_xmu[r]);
  }
}

// ---- Rows: an elementwise affine ----

namespace {

// S1 and S2 of one group (elementwise gamma).
template <class T>
void row_group_sums(BackwardCall<T>& call, std::size_t g) {
  using A = compute_t<T>;
  const NormDescription& d = call.d;
  const std::size_t n = d.group_size();
  const std::size_t row_position = (g % (d.affine_size() / n)) * n;
  const T* xr = call.x + g * n;
  const T* dyr = call.dy + g * n;
  const T* gr = call.params.gamma + row_position;
  const SplitMean<A> m(call.stats.mean[g]);
  const double rstd = call.stats.rstd[g], r = correction_r(call.stats, g);
  double sum_dxhat, sum_dxhat_xhat;
  lane_sum2<A>(
      n,
      [=](std::size_t i, A& a1, A& a2) {
        const A dxhat = load<A>(dyr[i]) * load<A>(gr[i]);
        a1 += dxhat;
        a2 += dxhat * m.centered(load<A>(xr[i]));
      },
      sum_dxhat, sum_dxhat_xhat);
  call.sums.sum_dxhat[g] = r * sum_dxhat;
  call.sums.sum_dxhat_xhat[g] = r * (sum_dxhat_xhat * rstd);
}

// Row a, positions [p0, p1) of a tile: dx, and the parameter gradients added
// into dgamma[p - p0] and (when not null) dbeta[p - p0], in the compute type
// (the caller carries them on in double).
// The loops are marked ivdep: the sums are of the data's own type, and GCC,
// fearing that they alias dx, would otherwise version them behind a check that
// took the scalar copy here. They never alias: the sums are scratch.
template <class T>
void row_tile(const BackwardCall<T>& call, std::size_t a, std::size_t p0, std::size_t p1,
              compute_t<T>* dgamma, compute_t<T>* dbeta) {
  using A = compute_t<T>;
  const NormDescription& d = call.d;
  const GroupStats& stats = call.stats;
  const std::size_t row = d.affine_size(), group = d.group_size();
  const T* xr = call.x + a * row;
  const T* dyr = call.dy + a * row;
  const T* gamma = call.params.gamma;
  T* dxr = call.dx + a * row;
  const std::size_t tile = p0;  // dgamma[0] and dbeta[0] are position p0's
  while (p0 < p1) {             // the tile's pieces within one group
    const std::size_t g = (a * row + p0) / group;
    const std::size_t end = std::min(p1, (g + 1) * group - a * row);
    const double rstd = stats.rstd[g];
    const auto t = call.group_terms(g);
    // dx = dy * gamma * (rstd r) + (x - mean) * (-rstd^2 coef) - rstd m, and
    // for dgamma xhat * r + shift = (x - mean) * (rstd r) + shift.
    const SplitMean<A> m(stats.mean[g]);
    const A scale = A(rstd * correction_r(stats, g)), shift = A(correction_d(stats, g));
    const A x_scale = A(-rstd * rstd * t.xhat_coef), dx_shift = A(-rstd * t.mean_dxhat);
    if (dbeta) {
#pragma GCC ivdep
      for (std::size_t p = p0; p < end; ++p) {
        const A centered = m.centered(load<A>(xr[p])), dyp = load<A>(dyr[p]);
        dxr[p] = store<T>(dyp * load<A>(gamma[p]) * scale + (centered * x_scale + dx_shift));
        dgamma[p - tile] += dyp * (centered * scale + shift);
        dbeta[p - tile] += dyp;
      }
    } else {  // no shift (RMSNorm)
#pragma GCC ivdep
      for (std::size_t p = p0; p < end; ++p) {
        const A centered = m.centered(load<A>(xr[p])), dyp = load<A>(dyr[p]);
        dxr[p] = store<T>(dyp * load<A>(gamma[p]) * scale + (centered * x_scale + dx_shift));
        dgamma[p - tile] += dyp * (centered * scale + shift);
      }
    }
    p0 = end;
  }
}

// A tile's parameter sums in the compute type, per thread (reused: no
// allocation per call); added into double every kRowsPerFlush rows.
template <class A>
struct TileSums {
  std::vector<A> gamma, beta;
};
template <class A>
TileSums<A>& tile_sums() {
  static thread_local TileSums<A> sums;
  return sums;
}
constexpr std::size_t kRowsPerFlush = 64;

}  // namespace

template <class T>
void Groups<T>::rows_reduce_sums(BackwardCall<T>& call) {
  call.for_groups([&](std::size_t g) { row_group_sums(call, g); });
}

// LayerNorm over trailing dims: gamma and beta per element, so their
// gradients are sums over rows. A row is a contiguous span whose position is
// the parameter index, cut into groups. Threads take fixed chunks of rows,
// each with its own partial parameter gradients, added in chunk order. Within
// a chunk, blocks of rows that fit in L2 are done in two steps:
//   first: each group's reduce sums (a pass over the block; skipped when
//          rows_reduce_sums already made them);
//   then:  dx and the parameter gradients tile by tile, each tile of
//          parameter sums staying in L1 across the block's rows (in the
//          compute type for up to kRowsPerFlush rows, then in double).
template <class T>
void Groups<T>::rows_gradients(BackwardCall<T>& call, bool reduce_first) {
  using A = compute_t<T>;
  const NormDescription& d = call.d;
  Workspace& w = workspace();
  ParameterSums& p = call.sums.parameters;
  const std::size_t row = d.affine_size(), group = d.group_size();
  const std::size_t chunks = row_chunks(d);
  // Chunk 0 sums straight into the result (zeroed by zero_sums()); the others
  // into scratch, added in chunk order afterwards.
  std::vector<double>& more_gamma = zeroed(w.chunk_dgamma, (chunks - 1) * row);
  std::vector<double>& more_beta = zeroed(w.chunk_dbeta, p.beta.empty() ? 0 : (chunks - 1) * row);
  auto dgamma_of = [&](std::size_t k) {
    return k == 0 ? p.gamma.data() : more_gamma.data() + (k - 1) * row;
  };
  auto dbeta_of = [&](std::size_t k) -> double* {
    if (p.beta.empty()) return nullptr;
    return k == 0 ? p.beta.data() : more_beta.data() + (k - 1) * row;
  };
  // Rows too large for L2 are re-read from memory instead, a whole chunk per
  // block, in wide tiles (long contiguous reads) whose parameter sums stay in L2.
  const std::size_t rows_in_l2 = kL2Bytes / (2 * sizeof(T) * row);
  const std::size_t block_rows = rows_in_l2 > 0 ? rows_in_l2 : d.view.outer;
  const std::size_t tile = rows_in_l2 > 0 ? kTile : kL2Bytes / (4 * sizeof(double));
  parallel_for(chunks, d.view.size(), [&](std::size_t k0, std::size_t k1) {
    std::vector<A>& tile_gamma = tile_sums<A>().gamma;
    std::vector<A>& tile_beta = tile_sums<A>().beta;
    tile_gamma.resize(tile), tile_beta.resize(p.beta.empty() ? 0 : tile);
    for (std::size_t k = k0; k < k1; ++k) {
      const std::size_t last = chunk_first_row(d, k + 1);
      double* dgamma = dgamma_of(k);
      double* dbeta = dbeta_of(k);
      for (std::size_t a0 = chunk_first_row(d, k); a0 < last; a0 += block_rows) {
        const std::size_t a1 = std::min(a0 + block_rows, last);
        if (reduce_first)
          for (std::size_t g = a0 * (row / group); g < a1 * (row / group); ++g)
            row_group_sums(call, g);
        for (std::size_t p0 = 0; p0 < row; p0 += tile) {
          const std::size_t p1 = std::min(p0 + tile, row);
          for (std::size_t f0 = a0; f0 < a1; f0 += kRowsPerFlush) {
            std::fill(tile_gamma.begin(), tile_gamma.end(), A(0));
            std::fill(tile_beta.begin(), tile_beta.end(), A(0));
            const std::size_t f1 = std::min(f0 + kRowsPerFlush, a1);
            for (std::size_t a = f0; a < f1; ++a)
              row_tile(call, a, p0, p1, tile_gamma.data(), dbeta ? tile_beta.data() : nullptr);
            for (std::size_t pos = p0; pos < p1; ++pos) dgamma[pos] += double(tile_gamma[pos - p0]);
            if (dbeta)
              for (std::size_t pos = p0; pos < p1; ++pos) dbeta[pos] += double(tile_beta[pos - p0]);
          }
        }
      }
    }
  });
  for (std::size_t k = 1; k < chunks; ++k) {
    const double* more = dgamma_of(k);
    for (std::size_t pos = 0; pos < row; ++pos) p.gamma[pos] += more[pos];
    if (const double* more_b = dbeta_of(k))
      for (std::size_t pos = 0; pos < row; ++pos) p.beta[pos] += more_b[pos];
  }
}

// ---- The pointwise kernels on contiguous groups ----

namespace {

// Per run: sum(passed), sum(passed * nhat) and the tau and v terms, in the
// workspace of the thread that started the call.
struct PointwiseRunTerms {
  double *passed, *passed_nhat, *dtau, *dv;
};

// One group's reduce sums and per-run parameter terms, its dx, or both.
template <class F, class T>
void pointwise_group(BackwardCall<T>& call, const PointwiseRunTerms& run, std::size_t g,
                     bool reduce, bool apply) {
  const NormDescription& d = call.d;
  const GroupStats& stats = call.stats;
  const std::size_t cpg = d.channels_per_group, inner = d.view.inner;
  const std::size_t per_outer = d.view.channels / cpg;
  const std::size_t a = g / per_outer, first = (g % per_outer) * cpg;
  if (reduce) {
    double s1 = 0, s2 = 0;
    for (std::size_t c = first; c < first + cpg; ++c) {
      const std::size_t r = a * d.view.channels + c, offset = r * inner;
      const F f(stats, call.params, call.affine, c, g);
      const T* xr = call.x + offset;
      const T* dyr = call.dy + offset;
      // sum(dy), sum(passed), sum(passed * nhat), sum(passed * d numerator / dv)
      double sums[4];
      lane_sum4(
          inner,
          [&](std::size_t i, double& sum_dy, double& sum_pass, double& sum_pass_nhat,
              double& sum_dv) {
            const double xi = load<double>(xr[i]), dyi = load<double>(dyr[i]), gate = f.gate(xi);
            const double nhat = f.numerator(xi, gate) * f.rstd;
            const double passed = f.passed(nhat * f.scale + f.shift, dyi);
            sum_dy += dyi;
            sum_pass += passed;
            sum_pass_nhat += passed * nhat;
            if (F::has_v) sum_dv += passed * f.numerator_dv(xi, gate);
          },
          sums);
      s1 += f.scale * sums[1];
      s2 += f.scale * sums[2];
      // Per-run parameter terms, added per channel in row order afterwards.
      run.passed[r] = sums[1];
      run.passed_nhat[r] = sums[2];
      run.dtau[r] = sums[0] - sums[1];
      run.dv[r] = sums[3] * f.scale * f.rstd;
    }
    call.sums.sum_dxhat[g] = s1;
    call.sums.sum_dxhat_xhat[g] = s2;
  }
  if (apply) {
    const auto t = call.group_terms(g);
    const double rstd = stats.rstd[g];
    const double x_scale = -rstd * rstd * t.xhat_coef, shift = -rstd * t.mean_dxhat;
    for (std::size_t c = first; c < first + cpg; ++c) {
      const std::size_t offset = (a * d.view.channels + c) * inner;
      const F f(stats, call.params, call.affine, c, g);
      const T* xr = call.x + offset;
      const T* dyr = call.dy + offset;
      T* dxr = call.dx + offset;
      for (std::size_t i = 0; i < inner; ++i)
        dxr[i] = store<T>(f.dx(load<double>(xr[i]), load<double>(dyr[i]), x_scale, shift));
    }
  }
}

}  // namespace

template <class T>
void Groups<T>::pointwise_backward(BackwardCall<T>& call, bool reduce, bool apply) {
  const NormDescription& d = call.d;
  // The calling thread's workspace holds the per-run terms for every thread.
  Workspace& w = workspace();
  const std::size_t n = reduce ? runs(d) : 0;
  const PointwiseRunTerms run{zeroed(w.run_sum_passed, n).data(),
                              zeroed(w.run_sum_passed_nhat, n).data(), zeroed(w.run_dtau, n).data(),
                              zeroed(w.run_dv, n).data()};
  with_pointwise<T>(d, [&](auto* variant) {
    using F = std::remove_pointer_t<decltype(variant)>;
    call.for_groups([&](std::size_t g) { pointwise_group<F>(call, run, g, reduce, apply); });
  });
  if (!reduce) return;
  // Parameter gradients, per channel in row order.
  ParameterSums& p = call.sums.parameters;
  const std::size_t channels = d.view.channels;
  for (std::size_t r = 0; r < runs(d); ++r) {
    const std::size_t c = r % channels, g = d.group_of(r / channels, c);
    if (!p.gamma.empty())
      p.gamma[c] += correction_r(call.stats, g) * run.passed_nhat[r] +
                    correction_d(call.stats, g) * run.passed[r];
    if (!p.beta.empty()) p.beta[c] += run.passed[r];
    if (!p.tau.empty()) p.tau[c] += run.dtau[r];
    if (!p.v.empty()) p.v[d.shared_v ? 0 : c] += run.dv[r];
  }
}

template struct Groups<float>;
template struct Groups<double>;
template struct Groups<bfloat16>;

}  // namespace NORMLAB_ENGINE_NAMESPACE
}  // namespace normlab
