// Moving Average Batch Normalization (Yan, Wan, Zhang, Zhang, Wei & Sun, ICLR
// 2020, Algorithm 1), per channel over (N, spatial):
//   forward   chi_B = mean(x^2) (reduced normalization: no centering);
//             chi = the simple moving average of chi_B over the last buffer_size
//             steps; y = gamma * r * x / sqrt(chi + eps) + beta
//   backward  psi_B = mean(dxhat * xhat), dxhat = dy * gamma * r, xhat = x / sqrt(chi + eps);
//             psi = its moving average; dx = (dxhat - xhat * psi) / sqrt(chi + eps)
//   eval      y = gamma * x / sqrt(running_var + eps) + beta, running_var the
//             exponential average of chi
// Steps t <= buffer_size or t < warmup_steps use the batch's own chi_B and psi_B.
// r = sqrt(chi + eps) / sqrt(running_var + eps), clipped to [1/rmax, rmax], is
// the renormalization of the authors' code; it is 1 until step renorm_start.
// The engine reduces chi_B and the backward's sums; the hooks swap in the
// averages (the engine's uncentered backward is dx = rstd (dxhat - xhat S2 / M)).
#include <algorithm>
#include <cmath>

#include "channel_norm.hpp"

namespace normlab {
namespace {

struct MabnOptions : ChannelOptions {  // always affine; its own running state
  std::size_t buffer_size = 16;
  long long warmup_steps = 100;
  double rmax = 5.0;
  long long renorm_start = 1000;
  MabnOptions() { momentum = 0.02; }  // the authors' 0.98 on the old value

  static const OptionSchema<MabnOptions>& schema() {
    static const auto s = [] {
      OptionSchema<MabnOptions> s;
      s.number("eps", &MabnOptions::eps, {0}, "added to the mean square before the square root")
          .number("momentum", &MabnOptions::momentum, {0, 1},
                  "weight of each step's averaged mean square in running_var")
          .count("buffer_size", &MabnOptions::buffer_size,
                 "steps whose statistics the moving averages span (forward and backward)")
          .integer("warmup_steps", &MabnOptions::warmup_steps, 0,
                   "steps that use the batch's own statistics before the moving averages")
          .number("rmax", &MabnOptions::rmax, {1},
                  "largest renormalization r = sqrt(chi + eps) / sqrt(running_var + eps)")
          .integer("renorm_start", &MabnOptions::renorm_start, 0,
                   "steps with r = 1 before the renormalization starts");
      return layout_option(s);
    }();
    return s;
  }
};

template <class T>
class MovingAverageBatchNorm final : public ChannelNorm<T, MabnOptions> {
 public:
  MovingAverageBatchNorm(std::string type, const MabnOptions& options, std::size_t channels)
      : ChannelNorm<T, MabnOptions>(std::move(type), options, 0, /*tracks=*/false) {
    if (channels) this->prepare({1, channels});
  }

  void prepare_shape(const std::vector<std::size_t>& shape) override {
    ChannelNorm<T, MabnOptions>::prepare_shape(shape);
    if (this->has_state("running_var")) return;
    const std::size_t C = shape[1], m = this->options_.buffer_size;
    this->add_state("running_var", xt::ones<T>({C}));
    this->add_state("forward_buffer", xt::zeros<T>({m, C}));   // chi_B of the last m steps
    this->add_state("backward_buffer", xt::zeros<T>({m, C}));  // psi_B of the last m steps
    this->add_state("num_batches_tracked", xt::zeros<T>({std::size_t{1}}));
  }

 protected:
  NormDescription describe(const std::vector<std::size_t>& shape, Mode mode) const override {
    NormDescription d = this->channel_description(shape);
    d.pooling = Pooling::per_channel;
    d.centered = false;
    d.statistics_given = mode == Mode::eval;
    return d;
  }
  void given_stats(const NormDescription& d, GroupStats& stats) const override {
    const xt::xarray<T>& running_var = this->state("running_var");
    stats.resize(d.groups());
    stats.count = double(d.group_size());
    for (std::size_t c = 0; c < d.groups(); ++c) {
      stats.mean[c] = 0;
      stats.var[c] = double(running_var(c));
    }
    finish_stats(d, stats);
  }

  // Train: record chi_B, normalize with its moving average, renormalize.
  bool combines_stats() const override { return true; }
  void combine_stats(const NormDescription& d, Mode, GroupStats& stats) override {
    const MabnOptions& o = this->options_;
    xt::xarray<T>& steps = this->mutable_state("num_batches_tracked");
    step_ = static_cast<long long>(steps_count_.increment(steps));
    averaged_ = step_ > static_cast<long long>(o.buffer_size) && step_ >= o.warmup_steps;
    const bool renormalized = step_ > std::max(o.renorm_start, o.warmup_steps);
    xt::xarray<T>& buffer = this->mutable_state("forward_buffer");
    xt::xarray<T>& running_var = this->mutable_state("running_var");
    record(buffer, stats.var);
    stats.r.assign(d.groups(), 1.0);
    stats.d.assign(d.groups(), 0.0);
    for (std::size_t c = 0; c < d.groups(); ++c) {
      if (averaged_) stats.var[c] = average(buffer, c);
      const double old_running = double(running_var(c));
      if (renormalized)
        stats.r[c] = std::clamp(std::sqrt(stats.var[c] + d.eps) / std::sqrt(old_running + d.eps),
                                1 / o.rmax, o.rmax);
      running_var(c) = nearest<T>((1 - *o.momentum) * old_running + *o.momentum * stats.var[c]);
    }
  }

  // Train: record psi_B and put its moving average in the engine's S2.
  bool combines_gradients() const override { return true; }
  void combine_gradients(const NormDescription& d, GradientSums& sums) override {
    if (d.statistics_given) return;  // eval: the statistics are constants
    const double count = double(d.group_size());
    psi_.resize(sums.sum_dxhat_xhat.size());
    for (std::size_t c = 0; c < psi_.size(); ++c) psi_[c] = sums.sum_dxhat_xhat[c] / count;
    xt::xarray<T>& buffer = this->mutable_state("backward_buffer");
    record(buffer, psi_);
    if (!averaged_) return;
    for (std::size_t c = 0; c < psi_.size(); ++c)
      sums.sum_dxhat_xhat[c] = average(buffer, c) * count;
  }

 private:
  // Row step % buffer_size of a (buffer_size, C) buffer takes this step's values.
  void record(xt::xarray<T>& buffer, const std::vector<double>& values) const {
    const std::size_t row = std::size_t(step_) % this->options_.buffer_size;
    for (std::size_t c = 0; c < values.size(); ++c) buffer(row, c) = nearest<T>(values[c]);
  }
  double average(const xt::xarray<T>& buffer, std::size_t c) const {
    double sum = 0;
    for (std::size_t k = 0; k < this->options_.buffer_size; ++k) sum += double(buffer(k, c));
    return sum / double(this->options_.buffer_size);
  }

  StepCount<T> steps_count_;
  long long step_ = 0;     // of the last train forward, counted from 1
  bool averaged_ = false;  // it used the moving averages
  std::vector<double> psi_;
};

}  // namespace

void register_mabn(NormRegistry& registry) {
  register_norm<MovingAverageBatchNorm>(
      registry,
      NormDefinition<MabnOptions>{
          "mabn",
          "Moving Average BatchNorm: uncentered, moving averages of the forward and backward "
          "batch statistics",
          [](const MabnOptions&) {
            NormTraits t;
            t.train_uses_state = true;  // the moving averages of earlier batches
            t.channels_last = true;
            t.torch_peer = true;  // its golden reference in torch ops
            t.batch_statistics = true;
            t.running_state = true;
            t.preceding_weight = "weight_centering";  // the paper's pairing
            t.parameters = {"gamma", "beta"};
            t.state = {"running_var", "forward_buffer", "backward_buffer", "num_batches_tracked"};
            return t;
          }});
}

}  // namespace normlab
