// Dynamic Tanh (Zhu, Chen, He, LeCun & Liu, CVPR 2025): no statistics at all,
//   y = gamma[c] * tanh(alpha * x) + beta[c],
// alpha one learned scalar, gamma and beta per channel (dimension 1). The tanh
// is an elementwise map in front of the engine (Norm::map_input); the engine
// applies the per-channel affine to it with given statistics mean 0, rstd 1,
// and sums dgamma and dbeta.
#include <cmath>

#include "channel_norm.hpp"

namespace normlab {
namespace {

struct DytOptions : ChannelOptions {  // always affine, no statistics, no running state
  double alpha_init = 0.5;

  static const OptionSchema<DytOptions>& schema() {
    static const auto s = [] {
      OptionSchema<DytOptions> s;
      s.number("alpha_init", &DytOptions::alpha_init, {},
               "the starting value of the learned scalar alpha in tanh(alpha x)");
      return layout_option(s);
    }();
    return s;
  }
};

template <class T>
class DynamicTanh final : public ChannelNorm<T, DytOptions> {
 public:
  DynamicTanh(std::string type, const DytOptions& options, std::size_t channels)
      : ChannelNorm<T, DytOptions>(std::move(type), options, channels, /*tracks=*/false) {
    this->add_parameter("alpha", xt::xarray<T>({T(options.alpha_init)}));
  }

 protected:
  NormDescription describe(const std::vector<std::size_t>& shape, Mode) const override {
    NormDescription d = this->channel_description(shape);
    d.pooling = Pooling::per_channel;  // one "group" per channel: its affine
    d.centered = false;
    d.eps = 0;
    d.statistics_given = true;  // mean 0, rstd 1: the engine applies gamma and beta only
    return d;
  }
  void given_stats(const NormDescription& d, GroupStats& stats) const override {
    stats.resize(d.groups());
    stats.count = double(d.group_size());
    for (std::size_t g = 0; g < d.groups(); ++g) {
      stats.mean[g] = 0;
      stats.var[g] = 1;
      stats.rstd[g] = 1;
    }
  }

  // t = tanh(alpha x), kept for the engine and for backward.
  const T* map_input(const T* x, std::size_t n) override {
    tanh_.resize(n);
    const double alpha = double(this->parameter("alpha").value(0));
    for (std::size_t i = 0; i < n; ++i) tanh_[i] = T(std::tanh(alpha * double(x[i])));
    return tanh_.data();
  }
  // dx = dt * alpha * (1 - t^2); dalpha = sum(dt * x * (1 - t^2)), in double.
  void map_input_backward(const T* x, const T* t, T* dx, std::size_t n) override {
    Parameter<T>& alpha = this->parameter("alpha");
    const double a = double(alpha.value(0));
    double dalpha = 0;
    for (std::size_t i = 0; i < n; ++i) {
      const double slope = 1 - double(t[i]) * double(t[i]);
      const double dt = double(dx[i]);
      dalpha += dt * double(x[i]) * slope;
      dx[i] = T(dt * a * slope);
    }
    alpha.grad(0) += T(dalpha);
  }

 private:
  std::vector<T> tanh_;
};

}  // namespace

void register_dyt(NormRegistry& registry) {
  register_norm<DynamicTanh>(
      registry,
      NormDefinition<DytOptions>{"dyt", "Dynamic Tanh: gamma * tanh(alpha x) + beta, no statistics",
                                 [](const DytOptions&) {
                                   NormTraits t;
                                   t.channels_last = true;
                                   t.torch_peer = true;  // its golden reference in torch ops
                                   t.parameters = {"gamma", "beta", "alpha"};
                                   return t;
                                 }});
}

}  // namespace normlab
