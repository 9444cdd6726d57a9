// The columns traversal: per_channel pooling with runs of one element, an
// [outer, channels] matrix (BatchNorm after a linear layer, every norm on
// channels-last images). Its loops go down the columns, vectorized across
// channels: the rows are cut into blocks fixed by the shape, small enough that
// two passes over a block stay in L2; the threads take blocks, and the blocks
// merge in row order, so the sums do not depend on the threads.
#include "pointwise.hpp"
#include "traversals.hpp"

namespace normlab {
namespace NORMLAB_ENGINE_NAMESPACE {

namespace {

// Whether a block's pass from memory goes across its rows, row by row,
// rather than down strips of kLanes columns: when a row is 2 KB or more, a
// strip's next row is in another page at least every other step, where the
// hardware prefetchers do not follow, and the strips' misses are not hidden
// (BatchNorm on (32768, 1024) and (8192, 768): experiments/results/bench/
// columns_rows_first_t1.md). Short rows (channels-last images, 64 channels)
// are faster by strips, the sums in registers.
template <class T>
bool rows_first(std::size_t columns) {
  return columns * sizeof(T) >= 2048;
}

// y of a pointwise norm on columns (channels-last FRN, EvoNorm-S0): each
// column's function, row by row.
template <class T>
void pointwise_column_apply(const T* x, const NormDescription& d, const GroupStats& stats,
                            const ChannelAffine<T>& affine, T* y) {
  const std::size_t channels = d.view.channels, rows = d.chunk_length();
  with_pointwise<T>(d, [&](auto* variant) {
    using F = std::remove_pointer_t<decltype(variant)>;
    for_chunk_rows(d, [&](std::size_t k, std::size_t r0, std::size_t r1) {
      const PointwiseColumns& columns = column_coefficients<F>(d, stats, affine, k);
      for (std::size_t a = k * rows + r0; a < k * rows + r1; ++a) {
        const T* xr = x + a * channels;
        T* yr = y + a * channels;
        for (std::size_t c = 0; c < channels; ++c)
          yr[c] = store<T>(F(columns, c).y(load<double>(xr[c])));
      }
    });
  });
}

// The apply of a column norm over rows [first, last), from per-column mean,
// scale and shift. Chunks of up to kColumnRowsInDouble rows (a linear layer's
// batch) are computed in double and rounded once: they cost little either
// way, and these are the numbers of the committed mlp2 studies. Taller ones
// (channels-last images) run in the compute type like the runs' apply_run
// (float for float and bfloat16 data), twice the vector width without the
// conversions, within a few ulps of the double result.
constexpr std::size_t kColumnRowsInDouble = 256;

template <class T>
void apply_columns_in_double(const T* x, std::size_t channels, std::size_t first, std::size_t last,
                             const double* mean, const double* scale, const double* shift, T* y) {
  for (std::size_t a = first; a < last; ++a) {
    const T* xr = x + a * channels;
    T* yr = y + a * channels;
    for_column_strips(channels, [&](std::size_t c0, auto width) {
      for (std::size_t j = c0; j < c0 + width; ++j)
        yr[j] = store<T>((load<double>(xr[j]) - mean[j]) * scale[j] + shift[j]);
    });
  }
}

template <class T>
void apply_columns_in_compute_type(const T* x, std::size_t channels, std::size_t first,
                                   std::size_t last, const double* mean, const double* scale,
                                   const double* shift, T* y) {
  using A = compute_t<T>;
  static thread_local std::vector<A> hi, lo, scale_a, shift_a;  // reused: no allocation per call
  for (auto* array : {&hi, &lo, &scale_a, &shift_a}) array->resize(channels);
  for (std::size_t c = 0; c < channels; ++c) {
    const SplitMean<A> m(mean[c]);
    hi[c] = m.hi, lo[c] = m.lo, scale_a[c] = A(scale[c]), shift_a[c] = A(shift[c]);
  }
  // Copies the compiler can see are not y (for float, of the same type), so the strips vectorize.
  const A* __restrict h = hi.data();
  const A* __restrict l = lo.data();
  const A* __restrict s = scale_a.data();
  const A* __restrict t = shift_a.data();
  for (std::size_t a = first; a < last; ++a) {
    const T* xr = x + a * channels;
    T* __restrict yr = y + a * channels;
    for_column_strips(channels, [&](std::size_t c0, auto width) {
      for (std::size_t j = c0; j < c0 + width; ++j)
        yr[j] = store<T>(((load<A>(xr[j]) - h[j]) - l[j]) * s[j] + t[j]);
    });
  }
}

}  // namespace

// First, in parallel, every block of rows gets its column means, then its M2
// while still cached (x is read from memory once); then the blocks merge into
// their columns' moments in row order, and (groups of several columns:
// channels-last GroupNorm) the columns into their group's, both with
// merge_moments.
template <class T>
void Columns<T>::stats(const T* x, const NormDescription& d, GroupStats& stats) {
  const std::size_t columns = d.view.channels;
  Workspace& w = workspace();
  const ColumnBlocks blocks(d, sizeof(T));
  double* block_mean = zeroed(w.block_mean, blocks.total() * columns).data();
  double* block_m2 = zeroed(w.block_m2, blocks.total() * columns).data();  // or squares
  blocks.for_each([&](std::size_t i, std::size_t a0, std::size_t a1) {
    // The block's first pass reads x from memory: across long rows, row by
    // row (rows_first), into the block's means; the second, from L2, down
    // strips. Each column adds its rows in row order either way.
    double* __restrict block_means = block_mean + i * columns;
    const bool means_done = d.centered && rows_first<T>(columns);
    if (means_done) {
      for (std::size_t a = a0; a < a1; ++a) {
        const T* xr = x + a * columns;
        for (std::size_t c = 0; c < columns; ++c) block_means[c] += load<double>(xr[c]);
      }
      for (std::size_t c = 0; c < columns; ++c) block_means[c] /= double(a1 - a0);
    }
    for_column_strips(columns, [&](std::size_t c0, auto width) {
      const T* strip = x + c0;
      double mean[kLanes] = {}, m2[kLanes] = {};  // m2: or the sum of squares
      if (means_done) {
        std::copy(block_means + c0, block_means + c0 + width, mean);
      } else if (d.centered) {
        for (std::size_t a = a0; a < a1; ++a)
          for (std::size_t j = 0; j < width; ++j) mean[j] += load<double>(strip[a * columns + j]);
        for (std::size_t j = 0; j < width; ++j) mean[j] /= double(a1 - a0);
      }
      for (std::size_t a = a0; a < a1; ++a)
        for (std::size_t j = 0; j < width; ++j) {
          const double dev = load<double>(strip[a * columns + j]) - mean[j];
          m2[j] += dev * dev;
        }
      if (!means_done) std::copy(mean, mean + width, block_means + c0);
      std::copy(m2, m2 + width, block_m2 + i * columns + c0);
    });
  });
  // Per chunk and column: its blocks merged in row order.
  double* column_mean = zeroed(w.column_mean, d.chunks() * columns).data();
  double* column_m2 = zeroed(w.column_m2, d.chunks() * columns).data();  // or squares
  const double rows = double(d.chunk_length());
  for (std::size_t k = 0; k < d.chunks(); ++k) {
    double* mean = column_mean + k * columns;
    double* m2 = column_m2 + k * columns;
    for (std::size_t b = 0; b < blocks.per_chunk; ++b) {
      const std::size_t i = k * blocks.per_chunk + b;
      const double* bm = block_mean + i * columns;
      const double* bm2 = block_m2 + i * columns;
      if (!d.centered) {
        for (std::size_t c = 0; c < columns; ++c) m2[c] += bm2[c];
        continue;
      }
      const double n_before = double(b * blocks.rows);
      const double n_block = std::min(rows - n_before, double(blocks.rows));
      for (std::size_t c = 0; c < columns; ++c) {
        double count = n_before;
        merge_moments(count, mean[c], m2[c], n_block, bm[c], bm2[c]);
      }
    }
  }
  // Per group: its columns merged in column order.
  const std::size_t cpg = d.channels_per_group;
  const double divisor = d.centered || d.divide_by_count ? rows * double(cpg) : 1.0;
  for (std::size_t k = 0; k < d.chunks(); ++k)
    for (std::size_t c = 0; c < columns; c += cpg) {
      const std::size_t g = column_group(d, k, c), first = k * columns + c;
      double count = 0, mean = 0, m2 = 0;
      for (std::size_t j = first; j < first + cpg; ++j) {
        if (d.centered)
          merge_moments(count, mean, m2, rows, column_mean[j], column_m2[j]);
        else
          m2 += column_m2[j];
      }
      stats.mean[g] = mean;
      stats.var[g] = m2 / divisor;
    }
}

template <class T>
void Columns<T>::apply(const T* x, const NormDescription& d, const GroupStats& stats,
                       const NormParameters<T>& params, T* y) {
  const ChannelAffine<T> affine{d, stats, params};
  if (is_pointwise(d)) {
    pointwise_column_apply(x, d, stats, affine, y);
    return;
  }
  const std::size_t channels = d.view.channels, rows = d.chunk_length();
  for_chunk_rows(d, [&](std::size_t k, std::size_t r0, std::size_t r1) {
    Workspace& w = workspace();  // of the thread running this chunk
    double* scale = zeroed(w.column_scale, channels).data();
    double* shift = zeroed(w.column_shift, channels).data();
    double* mean = zeroed(w.column_center, channels).data();
    for (std::size_t c = 0; c < channels; ++c) {
      const std::size_t g = column_group(d, k, c);
      scale[c] = affine.scale(c, g), shift[c] = affine.shift(c, g), mean[c] = stats.mean[g];
    }
    const std::size_t first = k * rows + r0, last = k * rows + r1;
    if (rows > kColumnRowsInDouble)
      apply_columns_in_compute_type(x, channels, first, last, mean, scale, shift, y);
    else
      apply_columns_in_double(x, channels, first, last, mean, scale, shift, y);
  });
}

// ---- Backward ----

namespace {

// Each column's mean: its group's, in chunk k of rows (in the workspace of
// the thread that calls this).
template <class T>
const double* column_centers(const BackwardCall<T>& call, std::size_t k) {
  std::vector<double>& center = workspace().column_center;
  center.resize(call.d.view.channels);
  for (std::size_t c = 0; c < call.d.view.channels; ++c)
    center[c] = call.stats.mean[column_group(call.d, k, c)];
  return center.data();
}

// The pointwise kernels' reduce sums, per chunk and column: sum(dy),
// sum(passed), sum(passed * nhat), sum(passed * d numerator / dv); then the
// groups' sums and the parameter gradients, in chunk and column order.
template <class F, class T>
void pointwise_column_sums(BackwardCall<T>& call) {
  const NormDescription& d = call.d;
  const std::size_t channels = d.view.channels, rows = d.chunk_length();
  const std::size_t n = d.chunks() * channels;
  Workspace& w = workspace();
  double* sum_dy = zeroed(w.column_sum_dy, n).data();
  double* sum_passed = zeroed(w.column_sum_passed, n).data();
  double* sum_passed_nhat = zeroed(w.column_sum_passed_nhat, n).data();
  double* sum_dv = zeroed(w.column_sum_dv, n).data();
  for_chunk_columns(d, [&](std::size_t k, std::size_t c0, std::size_t c1) {
    const PointwiseColumns& columns = column_coefficients<F>(d, call.stats, call.affine, k);
    // Blocks of 16 columns (a cache line of floats) summed into local
    // arrays, which the compiler keeps in vector registers.
    constexpr std::size_t kColumns = 16;
    for (std::size_t b0 = c0; b0 < c1; b0 += kColumns) {
      const std::size_t width = std::min(kColumns, c1 - b0);
      double s_dy[kColumns] = {}, s_passed[kColumns] = {}, s_nhat[kColumns] = {},
             s_dv[kColumns] = {};
      for (std::size_t a = k * rows; a < (k + 1) * rows; ++a) {
        const T* xr = call.x + a * channels + b0;
        const T* dyr = call.dy + a * channels + b0;
        for (std::size_t j = 0; j < width; ++j) {
          const F f(columns, b0 + j);
          const double xi = load<double>(xr[j]), dyi = load<double>(dyr[j]);
          const double gate = f.gate(xi), nhat = f.numerator(xi, gate) * f.rstd;
          const double passed = f.passed(nhat * f.scale + f.shift, dyi);
          s_dy[j] += dyi;
          s_passed[j] += passed;
          s_nhat[j] += passed * nhat;
          if (F::has_v) s_dv[j] += passed * f.numerator_dv(xi, gate);
        }
      }
      const std::size_t at = k * channels + b0;
      for (std::size_t j = 0; j < width; ++j) {
        sum_dy[at + j] = s_dy[j], sum_passed[at + j] = s_passed[j];
        sum_passed_nhat[at + j] = s_nhat[j], sum_dv[at + j] = s_dv[j];
      }
    }
  });
  ParameterSums& p = call.sums.parameters;
  for (std::size_t k = 0; k < d.chunks(); ++k) {
    const PointwiseColumns& columns = column_coefficients<F>(d, call.stats, call.affine, k);
    for (std::size_t c = 0; c < channels; ++c) {
      const F f(columns, c);
      const std::size_t g = column_group(d, k, c), i = k * channels + c;
      call.sums.sum_dxhat[g] += f.scale * sum_passed[i];
      call.sums.sum_dxhat_xhat[g] += f.scale * sum_passed_nhat[i];
      if (!p.gamma.empty())
        p.gamma[c] += correction_r(call.stats, g) * sum_passed_nhat[i] +
                      correction_d(call.stats, g) * sum_passed[i];
      if (!p.beta.empty()) p.beta[c] += sum_passed[i];
      if (!p.tau.empty()) p.tau[c] += sum_dy[i] - sum_passed[i];
      if (!p.v.empty()) p.v[d.shared_v ? 0 : c] += sum_dv[i] * f.scale * f.rstd;
    }
  }
}

// The pointwise kernels' input gradient:
// dx = dxhat * rstd * numerator' + (x - mean) * x_scale + shift, per column.
template <class F, class T>
void pointwise_column_dx(BackwardCall<T>& call) {
  const NormDescription& d = call.d;
  const std::size_t channels = d.view.channels, rows = d.chunk_length();
  for_chunk_rows(d, [&](std::size_t k, std::size_t r0, std::size_t r1) {
    const PointwiseColumns& columns = column_coefficients<F>(d, call.stats, call.affine, k);
    Workspace& w = workspace();  // of the thread running this chunk
    double* x_scale = zeroed(w.column_x_scale, channels).data();
    double* shift = zeroed(w.column_dx_shift, channels).data();
    for (std::size_t c = 0; c < channels; ++c) {
      const std::size_t g = column_group(d, k, c);
      const auto t = call.group_terms(g);
      const double rstd = call.stats.rstd[g];
      x_scale[c] = -rstd * rstd * t.xhat_coef, shift[c] = -rstd * t.mean_dxhat;
    }
    for (std::size_t a = k * rows + r0; a < k * rows + r1; ++a) {
      const T* xr = call.x + a * channels;
      const T* dyr = call.dy + a * channels;
      T* dxr = call.dx + a * channels;
      for (std::size_t c = 0; c < channels; ++c)
        dxr[c] = store<T>(
            F(columns, c).dx(load<double>(xr[c]), load<double>(dyr[c]), x_scale[c], shift[c]));
    }
  });
}

}  // namespace

// Blocks of rows in parallel, then each column's block sums in row order,
// then the columns into their groups and the parameter gradients in column order.
template <class T>
void Columns<T>::reduce_sums(BackwardCall<T>& call) {
  const NormDescription& d = call.d;
  if (is_pointwise(d)) {
    with_pointwise<T>(d, [&](auto* variant) {
      pointwise_column_sums<std::remove_pointer_t<decltype(variant)>>(call);
    });
    return;
  }
  Workspace& w = workspace();
  const std::size_t channels = d.view.channels;
  const ColumnBlocks blocks(d, 2 * sizeof(T));  // x and dy
  std::vector<double>& sum_dy = zeroed(w.column_sum_dy, d.chunks() * channels);
  std::vector<double>& sum_dy_xmu = zeroed(w.column_sum_dy_xmu, d.chunks() * channels);
  double* block_dy = zeroed(w.block_sum_dy, blocks.total() * channels).data();
  double* block_dy_xmu = zeroed(w.block_sum_dy_xmu, blocks.total() * channels).data();
  // Across long rows row by row, as the statistics' first pass (x and dy come
  // from memory), else down strips; each column adds its rows in row order.
  blocks.for_each([&](std::size_t i, std::size_t a0, std::size_t a1) {
    const double* __restrict center = column_centers(call, i / blocks.per_chunk);
    double* __restrict s1 = block_dy + i * channels;
    double* __restrict s2 = block_dy_xmu + i * channels;
    if (!rows_first<T>(channels)) {
      for_column_strips(channels, [&](std::size_t c0, auto width) {
        const T* x_strip = call.x + c0;
        const T* dy_strip = call.dy + c0;
        double mean[kLanes], sum_dy[kLanes] = {}, sum_dy_xmu[kLanes] = {};
        std::copy(center + c0, center + c0 + width, mean);
        for (std::size_t a = a0; a < a1; ++a)
          for (std::size_t j = 0; j < width; ++j) {
            const double dyj = load<double>(dy_strip[a * channels + j]);
            sum_dy[j] += dyj;
            sum_dy_xmu[j] += dyj * (load<double>(x_strip[a * channels + j]) - mean[j]);
          }
        std::copy(sum_dy, sum_dy + width, s1 + c0);
        std::copy(sum_dy_xmu, sum_dy_xmu + width, s2 + c0);
      });
      return;
    }
    for (std::size_t a = a0; a < a1; ++a) {
      const T* xr = call.x + a * channels;
      const T* dyr = call.dy + a * channels;
      for (std::size_t c = 0; c < channels; ++c) {
        const double dyc = load<double>(dyr[c]);
        s1[c] += dyc;
        s2[c] += dyc * (load<double>(xr[c]) - center[c]);
      }
    }
  });
  for (std::size_t i = 0; i < blocks.total(); ++i) {
    const std::size_t at = (i / blocks.per_chunk) * channels;
    for (std::size_t c = 0; c < channels; ++c) {
      sum_dy[at + c] += block_dy[i * channels + c];
      sum_dy_xmu[at + c] += block_dy_xmu[i * channels + c];
    }
  }
  for (std::size_t k = 0; k < d.chunks(); ++k)
    for (std::size_t c = 0; c < channels; ++c) {
      const std::size_t g = column_group(d, k, c), i = k * channels + c;
      call.add_to_group_sums(c, g, sum_dy[i], sum_dy_xmu[i]);
      call.add_parameter_gradients(c, g, sum_dy[i], sum_dy_xmu[i]);
    }
}

// dx down the columns from the per-column coefficients.
template <class T>
void Columns<T>::input_gradient(BackwardCall<T>& call) {
  const NormDescription& d = call.d;
  if (is_pointwise(d)) {
    with_pointwise<T>(d, [&](auto* variant) {
      pointwise_column_dx<std::remove_pointer_t<decltype(variant)>>(call);
    });
    return;
  }
  const std::size_t channels = d.view.channels, rows = d.chunk_length();
  for_chunk_rows(d, [&](std::size_t k, std::size_t r0, std::size_t r1) {
    Workspace& w = workspace();  // of the thread running this chunk
    double* dy_scale = zeroed(w.column_dy_scale, channels).data();
    double* x_scale = zeroed(w.column_x_scale, channels).data();
    double* shift = zeroed(w.column_dx_shift, channels).data();
    for (std::size_t c = 0; c < channels; ++c) {
      const auto co = call.dx_coefficients(c, column_group(d, k, c));
      dy_scale[c] = co.dy_scale, x_scale[c] = co.x_scale, shift[c] = co.shift;
    }
    const double* mean = column_centers(call, k);
    for (std::size_t a = k * rows + r0; a < k * rows + r1; ++a) {
      const T* xr = call.x + a * channels;
      const T* dyr = call.dy + a * channels;
      T* dxr = call.dx + a * channels;
      for (std::size_t c = 0; c < channels; ++c)
        dxr[c] = store<T>(load<double>(dyr[c]) * dy_scale[c] +
                          (load<double>(xr[c]) - mean[c]) * x_scale[c] + shift[c]);
    }
  });
}

template struct Columns<float>;
template struct Columns<double>;
template struct Columns<bfloat16>;

}  // namespace NORMLAB_ENGINE_NAMESPACE
}  // namespace normlab
