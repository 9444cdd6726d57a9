// Switchable Normalization (Luo, Ren, Peng, Zhang & Li, ICLR 2019): per (n, c)
//   mean = sum_k softmax(mean_weight)_k mean_k,  var = sum_k softmax(var_weight)_k var_k,
//   y = gamma[c] (x - mean) / sqrt(var + eps) + beta[c],
// k in the order (instance, layer, batch): the instance statistics per (n, c)
// over the spatial positions, the layer statistics per n over (C, spatial), the
// batch statistics per c over (N, spatial), every variance biased (the paper's
// equations). Eval takes running batch statistics for the batch part.
//
// The engine reduces the instance statistics; the layer and batch ones are
// merged from them (equal counts: the mean of the means, and of var + the
// squared deviation of each mean). Backward: the engine's per-(n, c) sums give
// dL/dmean and dL/dvar of each (n, c); combine_gradients carries them to the
// three statistics and back, and replaces the sums by the ones for which the
// engine's dx formula gives exactly this norm's dx (see combine_gradients).
#include <cmath>

#include "channel_norm.hpp"
#include "storage.hpp"

namespace normlab {
namespace {

struct SwitchableOptions : ChannelOptions {  // always affine, always running statistics
  static const OptionSchema<SwitchableOptions>& schema() {
    static const auto s = [] {
      OptionSchema<SwitchableOptions> s;
      s.number("eps", &SwitchableOptions::eps, {0}, "added to the variance before the square root")
          .number("momentum", &SwitchableOptions::momentum, {0, 1},
                  "weight of each batch in the running batch statistics");
      return layout_option(s);
    }();
    return s;
  }
};

constexpr std::size_t kInstance = 0, kLayer = 1, kBatch = 2, kKinds = 3;

// softmax of a parameter of three values, in double.
template <class T>
void softmax3(const xt::xarray<T>& logits, double out[kKinds]) {
  double top = double(logits(0)), sum = 0;
  for (std::size_t k = 1; k < kKinds; ++k) top = std::max(top, double(logits(k)));
  for (std::size_t k = 0; k < kKinds; ++k) sum += out[k] = std::exp(double(logits(k)) - top);
  for (std::size_t k = 0; k < kKinds; ++k) out[k] /= sum;
}

template <class T>
class SwitchableNorm final : public ChannelNorm<T, SwitchableOptions> {
 public:
  SwitchableNorm(std::string type, const SwitchableOptions& options, std::size_t channels)
      : ChannelNorm<T, SwitchableOptions>(std::move(type), options, channels, /*tracks=*/true) {
    this->add_parameter("mean_weight", xt::ones<T>({kKinds}));
    this->add_parameter("var_weight", xt::ones<T>({kKinds}));
  }

 protected:
  // The engine's groups are the instance ones, per (n, c); numbered n * C + c
  // in either layout.
  NormDescription describe(const std::vector<std::size_t>& shape, Mode mode) const override {
    NormDescription d = this->channel_description(shape);
    d.pooling = Pooling::per_outer_groups;
    d.channels_per_group = 1;
    d.tracks_running_stats = true;
    if (mode == Mode::train && shape[0] * d.view.inner < 2)
      throw std::invalid_argument(this->type() +
                                  " norm needs more than one value per channel when training "
                                  "(its batch statistics), got input shape " +
                                  shape_text(shape) + " (use a batch larger than 1 or eval mode)");
    return d;
  }

  bool combines_stats() const override { return true; }
  void combine_stats(const NormDescription& d, Mode mode, GroupStats& stats) override {
    const std::size_t C = d.view.channels, N = stats.mean.size() / C;
    train_ = mode == Mode::train;
    instance_mean_ = stats.mean;
    instance_var_ = stats.var;
    merge(instance_mean_, instance_var_, N, C, /*over_channels=*/true, layer_mean_, layer_var_);
    if (train_) {
      merge(instance_mean_, instance_var_, N, C, /*over_channels=*/false, batch_mean_, batch_var_);
    } else {  // the running statistics stand for the batch's
      const xt::xarray<T>& running_mean = this->state("running_mean");
      const xt::xarray<T>& running_var = this->state("running_var");
      batch_mean_.resize(C);
      batch_var_.resize(C);
      for (std::size_t c = 0; c < C; ++c) {
        batch_mean_[c] = double(running_mean(c));
        batch_var_[c] = double(running_var(c));
      }
    }
    softmax3(this->parameter("mean_weight").value, mean_mix_);
    softmax3(this->parameter("var_weight").value, var_mix_);
    for (std::size_t n = 0; n < N; ++n)
      for (std::size_t c = 0; c < C; ++c) {
        const std::size_t g = n * C + c;
        stats.mean[g] = mean_mix_[kInstance] * instance_mean_[g] +
                        mean_mix_[kLayer] * layer_mean_[n] + mean_mix_[kBatch] * batch_mean_[c];
        stats.var[g] = var_mix_[kInstance] * instance_var_[g] + var_mix_[kLayer] * layer_var_[n] +
                       var_mix_[kBatch] * batch_var_[c];
      }
  }

  // The running statistics take the batch part (BatchNorm's update); backward
  // needs the final mean and rstd.
  void observe_stats(const NormDescription& d, Mode mode, const GroupStats& stats) override {
    mean_ = stats.mean;
    rstd_ = stats.rstd;
    if (mode != Mode::train) return;
    batch_stats_.count = stats.count * double(stats.mean.size() / d.view.channels);
    batch_stats_.mean = batch_mean_;
    batch_stats_.var = batch_var_;
    ChannelNorm<T, SwitchableOptions>::observe_stats(d, mode, batch_stats_);
  }

  // With S1 = sum(dxhat), S2 = sum(dxhat xhat) per (n, c) group of M values,
  // dL/dmean = -rstd S1 and dL/dvar = -rstd^2 S2 / 2. Each statistic k of a
  // group K of M_k values takes P_k(K) = w_k * sum of dL/dmean and Q_k(K) =
  // v_k * sum of dL/dvar over the (n, c) that use it, and gives every x of K
  // P_k / M_k + Q_k * 2 (x - mean_k) / M_k. So dx = rstd dxhat + a + b x per
  // (n, c); the engine computes dx = rstd dxhat - rstd S1' / M - rstd^2 (x -
  // mean) S2' / M, which is that with S2' = -b M / rstd^2 and
  // S1' = -(a + mean b) M / rstd. In eval the batch part is constant.
  bool combines_gradients() const override { return true; }
  void combine_gradients(const NormDescription& d, GradientSums& sums) override {
    const std::size_t C = d.view.channels, N = sums.sum_dxhat.size() / C;
    const double M = double(d.group_size());
    dmean_.assign(N * C, 0.0);
    dvar_.assign(N * C, 0.0);
    layer_p_.assign(N, 0.0);
    layer_q_.assign(N, 0.0);
    batch_p_.assign(C, 0.0);
    batch_q_.assign(C, 0.0);
    double dmean_mix[kKinds] = {0, 0, 0}, dvar_mix[kKinds] = {0, 0, 0};
    for (std::size_t n = 0; n < N; ++n)
      for (std::size_t c = 0; c < C; ++c) {
        const std::size_t g = n * C + c;
        dmean_[g] = -rstd_[g] * sums.sum_dxhat[g];
        dvar_[g] = -0.5 * rstd_[g] * rstd_[g] * sums.sum_dxhat_xhat[g];
        layer_p_[n] += dmean_[g];
        layer_q_[n] += dvar_[g];
        batch_p_[c] += dmean_[g];
        batch_q_[c] += dvar_[g];
        dmean_mix[kInstance] += dmean_[g] * instance_mean_[g];
        dmean_mix[kLayer] += dmean_[g] * layer_mean_[n];
        dmean_mix[kBatch] += dmean_[g] * batch_mean_[c];
        dvar_mix[kInstance] += dvar_[g] * instance_var_[g];
        dvar_mix[kLayer] += dvar_[g] * layer_var_[n];
        dvar_mix[kBatch] += dvar_[g] * batch_var_[c];
      }
    const double batch_part = train_ ? 1.0 : 0.0;  // running statistics are constants
    for (std::size_t n = 0; n < N; ++n)
      for (std::size_t c = 0; c < C; ++c) {
        const std::size_t g = n * C + c;
        const double w_in = mean_mix_[kInstance] / M, w_ln = mean_mix_[kLayer] / (C * M),
                     w_bn = batch_part * mean_mix_[kBatch] / (N * M);
        const double v_in = var_mix_[kInstance] / M, v_ln = var_mix_[kLayer] / (C * M),
                     v_bn = batch_part * var_mix_[kBatch] / (N * M);
        const double q_in = v_in * dvar_[g], q_ln = v_ln * layer_q_[n], q_bn = v_bn * batch_q_[c];
        const double b = 2 * (q_in + q_ln + q_bn);
        const double a =
            w_in * dmean_[g] + w_ln * layer_p_[n] + w_bn * batch_p_[c] -
            2 * (q_in * instance_mean_[g] + q_ln * layer_mean_[n] + q_bn * batch_mean_[c]);
        sums.sum_dxhat_xhat[g] = -b * M / (rstd_[g] * rstd_[g]);
        sums.sum_dxhat[g] = -(a + mean_[g] * b) * M / rstd_[g];
      }
    add_softmax_gradient("mean_weight", mean_mix_, dmean_mix);
    add_softmax_gradient("var_weight", var_mix_, dvar_mix);
  }

 private:
  // Equal-count merge of the instance statistics, per n over the channels
  // (layer) or per c over the samples (batch).
  static void merge(const std::vector<double>& mean, const std::vector<double>& var, std::size_t N,
                    std::size_t C, bool over_channels, std::vector<double>& merged_mean,
                    std::vector<double>& merged_var) {
    const std::size_t groups = over_channels ? N : C, parts = over_channels ? C : N;
    merged_mean.assign(groups, 0.0);
    merged_var.assign(groups, 0.0);
    auto at = [&](std::size_t group, std::size_t part) {
      return over_channels ? group * C + part : part * C + group;
    };
    for (std::size_t i = 0; i < groups; ++i) {
      for (std::size_t j = 0; j < parts; ++j) merged_mean[i] += mean[at(i, j)] / double(parts);
      for (std::size_t j = 0; j < parts; ++j) {
        const double deviation = mean[at(i, j)] - merged_mean[i];
        merged_var[i] += (var[at(i, j)] + deviation * deviation) / double(parts);
      }
    }
  }

  // d/dlogit_j of softmax: s_j (ds_j - sum_k s_k ds_k).
  void add_softmax_gradient(const char* name, const double mix[kKinds], const double dmix[kKinds]) {
    double dot = 0;
    for (std::size_t k = 0; k < kKinds; ++k) dot += mix[k] * dmix[k];
    xt::xarray<T>& grad = this->parameter(name).grad;
    for (std::size_t k = 0; k < kKinds; ++k) add_rounded(grad(k), mix[k] * (dmix[k] - dot));
  }

  bool train_ = true;
  double mean_mix_[kKinds] = {}, var_mix_[kKinds] = {};
  std::vector<double> instance_mean_, instance_var_, layer_mean_, layer_var_;
  std::vector<double> batch_mean_, batch_var_;
  std::vector<double> mean_, rstd_;  // the mixed statistics, per (n, c)
  GroupStats batch_stats_;
  std::vector<double> dmean_, dvar_, layer_p_, layer_q_, batch_p_, batch_q_;
};

}  // namespace

void register_switchable(NormRegistry& registry) {
  register_norm<SwitchableNorm>(
      registry,
      NormDefinition<SwitchableOptions>{
          "switchable",
          "Switchable Normalization: learned softmax mixture of instance, layer and batch "
          "statistics",
          [](const SwitchableOptions&) {
            NormTraits t;
            t.channels_last = true;
            t.torch_peer = true;  // its golden reference in torch ops
            t.batch_statistics = true;
            channel_names(t, /*affine=*/true, /*running=*/true);
            t.parameters.push_back("mean_weight");
            t.parameters.push_back("var_weight");
            return t;
          }});
}

}  // namespace normlab
