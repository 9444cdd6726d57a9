// Cross-Iteration Batch Normalization (Yao, Cao, Zheng, Huang & Lin, CVPR 2021),
// per channel over (N, spatial), with the conv or linear layer in front of it
// (weight W, row c making channel c) connected by the model:
//   step t keeps mu_t = mean(x) and nu_t = mean(x^2) of its own batch and their
//   gradients in W, dmu_t/dW and dnu_t/dW (the layer's weight gradient for
//   dy = 1/M and dy = 2x/M, M = N * spatial);
//   an earlier step t - tau is compensated to the current weight to first order,
//     mu_{t-tau}(W_t) = mu_{t-tau} + <dmu_{t-tau}/dW, W_t - W_{t-tau}>  (row c)
//     nu_{t-tau}(W_t) = nu_{t-tau} + <dnu_{t-tau}/dW, W_t - W_{t-tau}>;
//   a compensated step whose variance nu - mu^2 is negative is left out (the
//   authors' code; the paper clips nu to mu^2 instead), the current one never;
//   the n steps left (at most `window`) are averaged:
//     mean = sum mu / n,  var = sum (nu - mean^2) / n  (biased);
//   y = gamma (x - mean) / sqrt(var + eps) + beta.
// Gradients flow through the current step's mu_t and nu_t only (the earlier
// steps are constants), so backward is BatchNorm's with its two sums divided
// by n. The first burn_in steps are plain BatchNorm and record nothing. The
// running statistics take each batch's own statistics, as BatchNorm's do; eval
// uses them. Without a connected layer (apply, bench) the earlier steps are
// averaged uncompensated. The history is not state: a loaded model starts with
// an empty window, as the authors' module does.
#include <algorithm>
#include <deque>

#include "channel_norm.hpp"

namespace normlab {
namespace {

struct CrossIterationOptions : ChannelOptions {  // always affine, always tracking
  std::size_t window = 8;
  long long burn_in = 0;

  static const OptionSchema<CrossIterationOptions>& schema() {
    static const auto s = [] {
      OptionSchema<CrossIterationOptions> s;
      s.number("eps", &CrossIterationOptions::eps, {0},
               "added to the variance before the square root")
          .number("momentum", &CrossIterationOptions::momentum, {0, 1},
                  "weight of each batch in the running statistics")
          .count("window", &CrossIterationOptions::window,
                 "steps whose statistics are pooled, the current one included (the paper's k)")
          .integer("burn_in", &CrossIterationOptions::burn_in, 0,
                   "steps of plain BatchNorm before the window starts filling");
      return layout_option(s);
    }();
    return s;
  }
};

// One step's statistics as the window keeps them. With a layer in front, also
// their gradients in its weight W and, per channel, <gradient row c, W row c>:
// the compensation <gradient, W_now - W> is then one pass over the gradient.
template <class T>
struct StepStatistics {
  std::vector<double> mean, mean_square;
  xt::xarray<T> dmean_dweight, dmean_square_dweight;  // 0-d without a layer in front
  std::vector<double> dmean_dot_weight, dmean_square_dot_weight;
};

template <class T>
class CrossIterationBatchNorm final : public ChannelNorm<T, CrossIterationOptions> {
 public:
  CrossIterationBatchNorm(std::string type, const CrossIterationOptions& options,
                          std::size_t channels)
      : ChannelNorm<T, CrossIterationOptions>(std::move(type), options, 0, /*tracks=*/true) {
    if (channels) this->prepare({1, channels});
  }

  void prepare_shape(const std::vector<std::size_t>& shape) override {
    ChannelNorm<T, CrossIterationOptions>::prepare_shape(shape);
    if (!this->has_state("num_batches_tracked"))
      this->add_state("num_batches_tracked", xt::zeros<T>({std::size_t{1}}));
  }

 protected:
  NormDescription describe(const std::vector<std::size_t>& shape, Mode mode) const override {
    return this->batch_description_to_train(shape, mode);
  }

  bool combines_stats() const override { return true; }
  void combine_stats(const NormDescription& d, Mode mode, GroupStats& stats) override {
    batch_ = stats;  // the running statistics take the batch's own
    steps_pooled_.assign(d.groups(), 1.0);
    if (mode != Mode::train) return;
    xt::xarray<T>& steps = this->mutable_state("num_batches_tracked");
    if (static_cast<long long>(steps_count_.increment(steps)) <= this->options_.burn_in) return;

    StepStatistics<T> now;
    record(d, stats, now);
    pool(d, now, stats);
    history_.push_front(std::move(now));
    while (history_.size() >= this->options_.window) history_.pop_back();  // window - 1 kept
  }
  void observe_stats(const NormDescription& d, Mode mode, const GroupStats&) override {
    ChannelNorm<T, CrossIterationOptions>::observe_stats(d, mode, batch_);
  }

  // The pooled mean and variance are linear in the current step's mean and
  // mean square with weight 1/n: BatchNorm's backward with both sums over n.
  bool combines_gradients() const override { return true; }
  void combine_gradients(const NormDescription& d, GradientSums& sums) override {
    if (d.statistics_given) return;
    for (std::size_t c = 0; c < sums.sum_dxhat.size(); ++c) {
      sums.sum_dxhat[c] /= steps_pooled_[c];
      sums.sum_dxhat_xhat[c] /= steps_pooled_[c];
    }
  }

 private:
  // This step's mu, nu and, with a layer in front, their gradients in its weight.
  void record(const NormDescription& d, const GroupStats& stats, StepStatistics<T>& now) {
    const std::size_t C = d.groups();
    now.mean.assign(stats.mean.begin(), stats.mean.end());
    now.mean_square.resize(C);
    for (std::size_t c = 0; c < C; ++c)
      now.mean_square[c] = stats.var[c] + stats.mean[c] * stats.mean[c];
    PrecedingLayer<T>* layer = this->preceding_layer();
    if (!layer) return;
    const xt::xarray<T>& weight = layer->last_weight();
    if (weight.dimension() < 1 || weight.shape(0) != C)
      throw std::invalid_argument(
          this->type() + " norm: the layer connected in front has a weight of shape " +
          shape_text(weight.shape()) + " but the norm has " + std::to_string(C) +
          " channels (connect the layer whose outputs it normalizes)");
    const xt::xarray<T>& x = this->current_input();
    const T inverse_count = nearest<T>(1.0 / double(d.group_size()));
    dy_.resize(x.shape());
    std::fill(dy_.begin(), dy_.end(), inverse_count);
    layer->weight_gradient(dy_, now.dmean_dweight);
    std::transform(x.begin(), x.end(), dy_.begin(), [=](T value) {
      return nearest<T>(2.0 * double(value) * double(inverse_count));
    });
    layer->weight_gradient(dy_, now.dmean_square_dweight);
    now.dmean_dot_weight = row_dots(now.dmean_dweight, weight, C);
    now.dmean_square_dot_weight = row_dots(now.dmean_square_dweight, weight, C);
  }

  // Per row c of C: <a row c, b row c>, in double.
  static std::vector<double> row_dots(const xt::xarray<T>& a, const xt::xarray<T>& b,
                                      std::size_t C) {
    const std::size_t row = b.size() / C;
    std::vector<double> dots(C, 0.0);
    for (std::size_t c = 0; c < C; ++c)
      for (std::size_t j = c * row; j < (c + 1) * row; ++j)
        dots[c] += double(a.data()[j]) * double(b.data()[j]);
    return dots;
  }

  // Pools `now` with the compensated earlier steps into stats (mean, biased var).
  void pool(const NormDescription& d, const StepStatistics<T>& now, GroupStats& stats) {
    const std::size_t C = d.groups(), K = history_.size();
    old_means_.resize(K * C);
    old_mean_squares_.resize(K * C);
    for (std::size_t k = 0; k < K; ++k)
      compensate(history_[k], C, &old_means_[k * C], &old_mean_squares_[k * C]);
    for (std::size_t c = 0; c < C; ++c) {
      means_.assign(1, now.mean[c]);
      variances_.assign(1, stats.var[c]);  // the current step's, exact
      for (std::size_t k = 0; k < K; ++k) {
        const double mean = old_means_[k * C + c], mean_square = old_mean_squares_[k * C + c];
        const double var = mean_square - mean * mean;
        if (!(var >= 0)) continue;  // not a distribution any more: left out
        means_.push_back(mean);
        variances_.push_back(var);
      }
      const double n = double(means_.size());
      double mean = 0;
      for (double m : means_) mean += m;
      mean /= n;
      double var = 0;  // mean of (var_k + (mu_k - mean)^2): nu's average minus mean^2
      for (std::size_t k = 0; k < means_.size(); ++k)
        var += variances_[k] + (means_[k] - mean) * (means_[k] - mean);
      stats.mean[c] = mean;
      stats.var[c] = var / n;
      steps_pooled_[c] = n;
    }
  }

  // An earlier step's mean and mean square per channel, moved to the current
  // weight: + <gradient row c, W_now row c> - <gradient row c, W_then row c>.
  // As kept without a layer.
  void compensate(const StepStatistics<T>& old, std::size_t C, double* mean,
                  double* mean_square) const {
    PrecedingLayer<T>* layer = this->preceding_layer();
    if (!layer || old.dmean_dot_weight.empty()) {
      std::copy(old.mean.begin(), old.mean.end(), mean);
      std::copy(old.mean_square.begin(), old.mean_square.end(), mean_square);
      return;
    }
    if (layer->last_weight().size() != old.dmean_dweight.size())
      throw std::logic_error(this->type() +
                             " norm: the layer in front changed size within the window");
    const T* w_now = layer->last_weight().data();
    const T* dmean = old.dmean_dweight.data();
    const T* dmean_square = old.dmean_square_dweight.data();
    const std::size_t row = old.dmean_dweight.size() / C;
    for (std::size_t c = 0; c < C; ++c) {
      double now = 0, now_square = 0;
      for (std::size_t j = c * row; j < (c + 1) * row; ++j) {
        now += double(dmean[j]) * double(w_now[j]);
        now_square += double(dmean_square[j]) * double(w_now[j]);
      }
      mean[c] = old.mean[c] + (now - old.dmean_dot_weight[c]);
      mean_square[c] = old.mean_square[c] + (now_square - old.dmean_square_dot_weight[c]);
    }
  }

  StepCount<T> steps_count_;
  std::deque<StepStatistics<T>> history_;             // the earlier steps, newest first
  GroupStats batch_;                                  // this forward's own statistics
  std::vector<double> steps_pooled_;                  // n per channel in the last forward
  std::vector<double> old_means_, old_mean_squares_;  // (earlier step, channel), compensated
  std::vector<double> means_, variances_;             // one channel's pooled steps
  xt::xarray<T> dy_;                                  // 1/M, then 2x/M
};

}  // namespace

void register_cross_iteration_batch(NormRegistry& registry) {
  register_norm<CrossIterationBatchNorm>(
      registry,
      NormDefinition<CrossIterationOptions>{
          "cross_iteration_batch",
          "Cross-Iteration BatchNorm: statistics of the last `window` steps, compensated for "
          "the moves of the weight in front",
          [](const CrossIterationOptions&) {
            NormTraits t;
            t.train_uses_state = true;  // the window of earlier steps
            t.channels_last = true;
            t.torch_peer = true;  // its golden reference in torch ops
            t.batch_statistics = true;
            t.reads_preceding_layer = true;
            channel_names(t, /*affine=*/true, /*running=*/true);
            t.state.push_back("num_batches_tracked");
            return t;
          }});
}

}  // namespace normlab
