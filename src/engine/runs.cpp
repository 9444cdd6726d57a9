// The runs traversal: the activation as contiguous runs view[a, c, 0:inner],
// each run in one statistics group and (per-channel affine) under one gamma
// and beta. BatchNorm's groups span the batch: each run gets its own partial
// moments, which merge per channel in row order (docs/engine.md says why
// BatchNorm keeps two passes). Its apply and its phased backward serve every
// description made of whole runs.
#include "pointwise.hpp"
#include "traversals.hpp"

namespace normlab {
namespace NORMLAB_ENGINE_NAMESPACE {

template <class T>
void Runs<T>::stats(const T* x, const NormDescription& d, GroupStats& stats) {
  const std::size_t inner = d.view.inner, channels = d.view.channels;
  const double count = double(d.group_size());
  Workspace& w = workspace();
  if (d.centered) {
    std::vector<Moments>& moments = zeroed(w.run_moments, runs(d));
    parallel_for(runs(d), d.view.size(), [&](std::size_t r0, std::size_t r1) {
      for (std::size_t r = r0; r < r1; ++r) moments[r] = span_moments(x + r * inner, inner);
    });
    std::vector<Moments>& group = zeroed(w.group_moments, d.groups());
    for (std::size_t a = 0; a < d.view.outer; ++a)
      for (std::size_t c = 0; c < channels; ++c)
        group[d.group_of(a, c)].merge(moments[a * channels + c]);
    for (std::size_t g = 0; g < group.size(); ++g) {
      stats.mean[g] = group[g].mean;
      stats.var[g] = group[g].m2 / count;
    }
  } else {
    std::vector<double>& squares = zeroed(w.run_squares, runs(d));
    parallel_for(runs(d), d.view.size(), [&](std::size_t r0, std::size_t r1) {
      for (std::size_t r = r0; r < r1; ++r) squares[r] = sum_of_squares(x + r * inner, inner);
    });
    for (std::size_t a = 0; a < d.view.outer; ++a)
      for (std::size_t c = 0; c < channels; ++c)
        stats.var[d.group_of(a, c)] += squares[a * channels + c];
    if (d.divide_by_count)
      for (double& v : stats.var) v /= count;
  }
}

template <class T>
void Runs<T>::apply(const T* x, const NormDescription& d, const GroupStats& stats,
                    const NormParameters<T>& params, T* y, bool apply_only) {
  const ChannelAffine<T> affine{d, stats, params};
  const std::size_t channels = d.view.channels;
  const bool stream_y = streams_forward_output<T>(d) || (apply_only && streams_output<T>(d, 2));
  parallel_for(runs(d), d.view.size(), [&](std::size_t r0, std::size_t r1) {
    for (std::size_t r = r0; r < r1; ++r) {
      const std::size_t a = r / channels, c = r % channels;
      apply_one_run(x, d, stats, affine, a, c, d.group_of(a, c), y, stream_y);
    }
  });
}

// Each run's sums in parallel, then added to their groups and to the
// parameter gradients in row order.
template <class T>
void Runs<T>::reduce_sums(BackwardCall<T>& call) {
  const NormDescription& d = call.d;
  Workspace& w = workspace();
  std::vector<double>& sum_dy = zeroed(w.run_sum_dy, runs(d));
  std::vector<double>& sum_dy_xmu = zeroed(w.run_sum_dy_xmu, runs(d));
  parallel_for(runs(d), d.view.size(), [&](std::size_t r0, std::size_t r1) {
    for (std::size_t r = r0; r < r1; ++r) call.run_sums(r, sum_dy[r], sum_dy_xmu[r]);
  });
  const std::size_t channels = d.view.channels;
  for (std::size_t r = 0; r < runs(d); ++r) {
    const std::size_t c = r % channels, g = d.group_of(r / channels, c);
    call.add_to_group_sums(c, g, sum_dy[r], sum_dy_xmu[r]);
    call.add_parameter_gradients(c, g, sum_dy[r], sum_dy_xmu[r]);
  }
}

template <class T>
void Runs<T>::input_gradient(const BackwardCall<T>& call) {
  parallel_for(runs(call.d), call.d.view.size(), [&](std::size_t r0, std::size_t r1) {
    for (std::size_t r = r0; r < r1; ++r) call.run_input_gradient(r);
  });
}

template struct Runs<float>;
template struct Runs<double>;
template struct Runs<bfloat16>;

}  // namespace NORMLAB_ENGINE_NAMESPACE
}  // namespace normlab
