// The shared reduction engine. Every loop in here walks the activation as
// contiguous runs view[a, c, 0:inner]; a run belongs to one statistics group
// and (per-channel affine) one gamma/beta entry. All sums are kept in double.
#include "normlab/engine.hpp"

#include <algorithm>
#include <cmath>

namespace normlab {

std::size_t NormDescription::groups() const {
  return pooling == Pooling::per_channel ? chunks() * view.channels
                                         : view.outer * (view.channels / channels_per_group);
}

std::size_t NormDescription::group_size() const {
  return pooling == Pooling::per_channel ? chunk_length() * view.inner
                                         : channels_per_group * view.inner;
}

std::size_t NormDescription::affine_size() const {
  switch (affine) {
    case Affine::none: return 0;
    case Affine::per_channel: return view.channels;
    case Affine::elementwise: return view.channels * view.inner;
  }
  return 0;
}

void GroupStats::resize(std::size_t groups) {
  mean.assign(groups, 0.0);
  var.assign(groups, 0.0);
  rstd.assign(groups, 0.0);
  r.clear();
  d.clear();
}

namespace {

// Count, mean and sum of squared deviations of a set of values; two sets
// merge exactly (Chan, Golub & LeVeque), so blocks can be combined in any order.
struct Moments {
  double count = 0;
  double mean = 0;
  double m2 = 0;

  void merge(const Moments& other) {
    if (other.count == 0) return;
    const double total = count + other.count;
    const double delta = other.mean - mean;
    mean += delta * (other.count / total);
    m2 += other.m2 + delta * delta * (count * other.count / total);
    count = total;
  }
};

// Blocks small enough for L1: the second pass over a block is a cache hit.
constexpr std::size_t kBlock = 2048;

// Two-pass moments of one block: exact mean first, then squared deviations.
template <class T>
Moments block_moments(const T* x, std::size_t n) {
  double sum = 0;
#pragma omp simd reduction(+ : sum)
  for (std::size_t i = 0; i < n; ++i) sum += double(x[i]);
  const double mean = sum / double(n);
  double m2 = 0;
#pragma omp simd reduction(+ : m2)
  for (std::size_t i = 0; i < n; ++i) {
    const double dev = double(x[i]) - mean;
    m2 += dev * dev;
  }
  return {double(n), mean, m2};
}

template <class T>
void add_moments(const T* x, std::size_t n, Moments& into) {
  for (std::size_t start = 0; start < n; start += kBlock)
    into.merge(block_moments(x + start, std::min(kBlock, n - start)));
}

template <class T>
double sum_of_squares(const T* x, std::size_t n) {
  double sum = 0;
#pragma omp simd reduction(+ : sum)
  for (std::size_t i = 0; i < n; ++i) sum += double(x[i]) * double(x[i]);
  return sum;
}

// Visits every run view[a, c, :] with its offset and group.
template <class F>
void for_each_run(const NormDescription& d, F&& visit) {
  const View3& v = d.view;
  for (std::size_t a = 0; a < v.outer; ++a)
    for (std::size_t c = 0; c < v.channels; ++c)
      visit(c, (a * v.channels + c) * v.inner, d.group_of(a, c));
}

// Visits the chunks of an [outer, channels] matrix: rows [first, first + rows),
// whose column c is group base + c.
template <class F>
void for_each_column_chunk(const NormDescription& d, F&& visit) {
  const std::size_t rows = d.chunk_length();
  for (std::size_t k = 0; k < d.chunks(); ++k) visit(k * rows, rows, k * d.view.channels);
}

// A group's correction xhat -> xhat * r + d; the identity when there is none.
double correction_r(const GroupStats& stats, std::size_t g) {
  return stats.r.empty() ? 1.0 : stats.r[g];
}
double correction_d(const GroupStats& stats, std::size_t g) {
  return stats.d.empty() ? 0.0 : stats.d[g];
}

}  // namespace

void finish_rstd(const NormDescription& d, GroupStats& stats) {
  for (std::size_t g = 0; g < stats.var.size(); ++g)
    stats.rstd[g] = 1.0 / std::sqrt(stats.var[g] + d.eps);
}

// One group per column (and chunk of rows) of an [outer, channels] matrix
// (BatchNorm after a linear layer): runs have length 1, so sum down the
// columns instead, two passes, vectorized across channels.
template <class T>
void column_stats(const T* x, const NormDescription& d, GroupStats& stats) {
  const std::size_t columns = d.view.channels;
  for_each_column_chunk(d, [&](std::size_t first, std::size_t rows, std::size_t base) {
    double* mean = stats.mean.data() + base;
    double* var = stats.var.data() + base;
    if (d.centered) {
      for (std::size_t a = first; a < first + rows; ++a) {
        const T* row = x + a * columns;
#pragma omp simd
        for (std::size_t c = 0; c < columns; ++c) mean[c] += double(row[c]);
      }
      for (std::size_t c = 0; c < columns; ++c) mean[c] /= double(rows);
    }
    for (std::size_t a = first; a < first + rows; ++a) {
      const T* row = x + a * columns;
#pragma omp simd
      for (std::size_t c = 0; c < columns; ++c) {
        const double dev = double(row[c]) - mean[c];
        var[c] += dev * dev;
      }
    }
    if (d.centered || d.divide_by_count)
      for (std::size_t c = 0; c < columns; ++c) var[c] /= double(rows);
  });
}

bool is_columns(const NormDescription& d) {
  return d.pooling == Pooling::per_channel && d.view.inner == 1;
}

template <class T>
void compute_stats(const T* x, const NormDescription& d, GroupStats& stats) {
  const std::size_t groups = d.groups();
  stats.resize(groups);
  const std::size_t inner = d.view.inner;
  const double count = double(d.group_size());
  if (is_columns(d)) {
    column_stats(x, d, stats);
  } else if (!d.centered) {
    for_each_run(d, [&](std::size_t, std::size_t offset, std::size_t g) {
      stats.var[g] += sum_of_squares(x + offset, inner);
    });
    if (d.divide_by_count)
      for (double& v : stats.var) v /= count;
  } else {
    std::vector<Moments> moments(groups);
    for_each_run(d, [&](std::size_t, std::size_t offset, std::size_t g) {
      add_moments(x + offset, inner, moments[g]);
    });
    for (std::size_t g = 0; g < groups; ++g) {
      stats.mean[g] = moments[g].mean;
      stats.var[g] = moments[g].m2 / count;  // biased, as the normalization uses
    }
  }
  finish_rstd(d, stats);
}

template <class T>
void normalize_forward(const T* x, const NormDescription& d, const GroupStats& stats,
                       const T* gamma, const T* beta, T* y) {
  const std::size_t inner = d.view.inner;
  // Per-channel affine and the correction fold into one scale and shift per
  // (group, channel); (x - mean) first keeps large means exact.
  const bool per_channel = d.affine == Affine::per_channel;
  auto scale_of = [&](std::size_t c, std::size_t g) {
    const double scale = stats.rstd[g] * correction_r(stats, g);
    return per_channel ? scale * double(gamma[c]) : scale;
  };
  auto shift_of = [&](std::size_t c, std::size_t g) {
    const double shift = correction_d(stats, g);
    return (per_channel ? shift * double(gamma[c]) : shift) + (beta ? double(beta[c]) : 0.0);
  };

  if (is_columns(d)) {
    const std::size_t columns = d.view.channels;
    std::vector<double> scale(columns), shift(columns);
    for_each_column_chunk(d, [&](std::size_t first, std::size_t rows, std::size_t base) {
      for (std::size_t c = 0; c < columns; ++c)
        scale[c] = scale_of(c, base + c), shift[c] = shift_of(c, base + c);
      const double* mean = stats.mean.data() + base;
      for (std::size_t a = first; a < first + rows; ++a) {
        const T* xr = x + a * columns;
        T* yr = y + a * columns;
#pragma omp simd
        for (std::size_t c = 0; c < columns; ++c)
          yr[c] = T((double(xr[c]) - mean[c]) * scale[c] + shift[c]);
      }
    });
    return;
  }
  for_each_run(d, [&](std::size_t c, std::size_t offset, std::size_t g) {
    const double mean = stats.mean[g];
    const T* xr = x + offset;
    T* yr = y + offset;
    if (d.affine == Affine::elementwise) {
      const double scale = stats.rstd[g] * correction_r(stats, g);
      const double shift = correction_d(stats, g);
      const T* gr = gamma + c * inner;
      const T* br = beta ? beta + c * inner : nullptr;
#pragma omp simd
      for (std::size_t i = 0; i < inner; ++i)
        yr[i] = T(((double(xr[i]) - mean) * scale + shift) * double(gr[i]) +
                  (br ? double(br[i]) : 0.0));
    } else {
      const double scale = scale_of(c, g), shift = shift_of(c, g);
#pragma omp simd
      for (std::size_t i = 0; i < inner; ++i) yr[i] = T((double(xr[i]) - mean) * scale + shift);
    }
  });
}

template <class T>
void normalize_backward(const T* x, const T* dy, const NormDescription& d,
                        const GroupStats& stats, const T* gamma, T* dx, T* dgamma, T* dbeta) {
  const std::size_t inner = d.view.inner;
  const bool elementwise = d.affine == Affine::elementwise;
  auto gamma_of = [&](std::size_t c) { return d.affine == Affine::per_channel ? double(gamma[c]) : 1.0; };

  // Parameter gradients accumulate in double, then are added to the outputs.
  std::vector<double> dgamma_sum(d.affine_size(), 0.0);
  std::vector<double> dbeta_sum(d.affine_size(), 0.0);

  // First: the two reductions per group, sum(dxhat) and sum(dxhat * xhat),
  // where dxhat = dy * gamma * r. They also give dgamma and dbeta.
  std::vector<double> sum_dxhat(d.groups(), 0.0);
  std::vector<double> sum_dxhat_xhat(d.groups(), 0.0);
  // A run's (or column's) sum(dy) and sum(dy * (x - mean)) into the group
  // sums and the per-channel parameter gradients.
  auto add_run_sums = [&](std::size_t c, std::size_t g, double sum_dy, double sum_dy_xmu) {
    const double sum_dy_xhat = sum_dy_xmu * stats.rstd[g];
    const double r = correction_r(stats, g);
    if (d.affine == Affine::per_channel) {
      dgamma_sum[c] += r * sum_dy_xhat + correction_d(stats, g) * sum_dy;
      dbeta_sum[c] += sum_dy;
    }
    sum_dxhat[g] += gamma_of(c) * r * sum_dy;
    sum_dxhat_xhat[g] += gamma_of(c) * r * sum_dy_xhat;
  };
  auto reduce_run = [&](std::size_t c, std::size_t offset, std::size_t g) {
    const double mean = stats.mean[g];
    const double rstd = stats.rstd[g];
    const T* xr = x + offset;
    const T* dyr = dy + offset;
    if (elementwise) {
      const double r = correction_r(stats, g), shift = correction_d(stats, g);
      const T* gr = gamma + c * inner;
      double* dgr = dgamma_sum.data() + c * inner;
      double* dbr = dbeta_sum.data() + c * inner;
      double s1 = 0, s2 = 0;
#pragma omp simd reduction(+ : s1, s2)
      for (std::size_t i = 0; i < inner; ++i) {
        const double xhat = (double(xr[i]) - mean) * rstd;
        const double dyi = double(dyr[i]);
        dgr[i] += dyi * (xhat * r + shift);
        dbr[i] += dyi;
        s1 += dyi * double(gr[i]);
        s2 += dyi * double(gr[i]) * xhat;
      }
      sum_dxhat[g] += r * s1;
      sum_dxhat_xhat[g] += r * s2;
    } else {
      double sum_dy = 0, sum_dy_xmu = 0;
#pragma omp simd reduction(+ : sum_dy, sum_dy_xmu)
      for (std::size_t i = 0; i < inner; ++i) {
        const double dyi = double(dyr[i]);
        sum_dy += dyi;
        sum_dy_xmu += dyi * (double(xr[i]) - mean);
      }
      add_run_sums(c, g, sum_dy, sum_dy_xmu);
    }
  };
  if (is_columns(d)) {
    // Sums down the columns of [outer, channels], vectorized across channels.
    const std::size_t columns = d.view.channels;
    std::vector<double> sum_dy(columns), sum_dy_xmu(columns);
    for_each_column_chunk(d, [&](std::size_t first, std::size_t rows, std::size_t base) {
      std::fill(sum_dy.begin(), sum_dy.end(), 0.0);
      std::fill(sum_dy_xmu.begin(), sum_dy_xmu.end(), 0.0);
      const double* mean = stats.mean.data() + base;
      for (std::size_t a = first; a < first + rows; ++a) {
        const T* xr = x + a * columns;
        const T* dyr = dy + a * columns;
#pragma omp simd
        for (std::size_t c = 0; c < columns; ++c) {
          sum_dy[c] += double(dyr[c]);
          sum_dy_xmu[c] += double(dyr[c]) * (double(xr[c]) - mean[c]);
        }
      }
      for (std::size_t c = 0; c < columns; ++c) add_run_sums(c, base + c, sum_dy[c], sum_dy_xmu[c]);
    });
  } else {
    for_each_run(d, reduce_run);
  }
  if (dgamma && d.affine != Affine::none)
    for (std::size_t p = 0; p < dgamma_sum.size(); ++p) dgamma[p] += T(dgamma_sum[p]);
  if (dbeta && d.has_shift)
    for (std::size_t p = 0; p < dbeta_sum.size(); ++p) dbeta[p] += T(dbeta_sum[p]);

  // Then apply: dx = rstd * (dxhat - mean(dxhat) - xhat * sum(dxhat * xhat) / divisor).
  // Given statistics are constants, so both correction terms vanish.
  const double count = double(d.group_size());
  const double divisor = d.divide_by_count ? count : 1.0;
  const bool constant = d.statistics_given;
  auto mean_dxhat_of = [&](std::size_t g) {
    return constant || !d.centered ? 0.0 : sum_dxhat[g] / count;
  };
  auto xhat_coef_of = [&](std::size_t g) { return constant ? 0.0 : sum_dxhat_xhat[g] / divisor; };
  // Per-channel affine: dx = dy * dy_scale + (x - mean) * x_scale + shift.
  struct Coefficients {
    double dy_scale, x_scale, shift;
  };
  auto coefficients = [&](std::size_t c, std::size_t g) {
    const double rstd = stats.rstd[g];
    return Coefficients{rstd * gamma_of(c) * correction_r(stats, g), -rstd * rstd * xhat_coef_of(g),
                        -rstd * mean_dxhat_of(g)};
  };
  if (is_columns(d)) {
    const std::size_t columns = d.view.channels;
    std::vector<double> dy_scale(columns), x_scale(columns), shift(columns);
    for_each_column_chunk(d, [&](std::size_t first, std::size_t rows, std::size_t base) {
      for (std::size_t c = 0; c < columns; ++c) {
        const Coefficients k = coefficients(c, base + c);
        dy_scale[c] = k.dy_scale, x_scale[c] = k.x_scale, shift[c] = k.shift;
      }
      const double* mean = stats.mean.data() + base;
      for (std::size_t a = first; a < first + rows; ++a) {
        const T* xr = x + a * columns;
        const T* dyr = dy + a * columns;
        T* dxr = dx + a * columns;
#pragma omp simd
        for (std::size_t c = 0; c < columns; ++c)
          dxr[c] =
              T(double(dyr[c]) * dy_scale[c] + (double(xr[c]) - mean[c]) * x_scale[c] + shift[c]);
      }
    });
    return;
  }
  for_each_run(d, [&](std::size_t c, std::size_t offset, std::size_t g) {
    const double mean = stats.mean[g];
    const double rstd = stats.rstd[g];
    const T* xr = x + offset;
    const T* dyr = dy + offset;
    T* dxr = dx + offset;
    if (elementwise) {
      const double mean_dxhat = mean_dxhat_of(g), xhat_coef = xhat_coef_of(g);
      const double r = correction_r(stats, g);
      const T* gr = gamma + c * inner;
#pragma omp simd
      for (std::size_t i = 0; i < inner; ++i) {
        const double xhat = (double(xr[i]) - mean) * rstd;
        dxr[i] = T(rstd * (double(dyr[i]) * double(gr[i]) * r - mean_dxhat - xhat * xhat_coef));
      }
    } else {
      const Coefficients k = coefficients(c, g);
#pragma omp simd
      for (std::size_t i = 0; i < inner; ++i)
        dxr[i] = T(double(dyr[i]) * k.dy_scale + (double(xr[i]) - mean) * k.x_scale + k.shift);
    }
  });
}

#define NORMLAB_INSTANTIATE(T)                                                                 \
  template void compute_stats<T>(const T*, const NormDescription&, GroupStats&);              \
  template void normalize_forward<T>(const T*, const NormDescription&, const GroupStats&,     \
                                     const T*, const T*, T*);                                  \
  template void normalize_backward<T>(const T*, const T*, const NormDescription&,             \
                                      const GroupStats&, const T*, T*, T*, T*);
NORMLAB_INSTANTIATE(float)
NORMLAB_INSTANTIATE(double)
#undef NORMLAB_INSTANTIATE

}  // namespace normlab
