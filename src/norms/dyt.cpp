// Dynamic Tanh (Zhu, Chen, He, LeCun & Liu, CVPR 2025): no statistics at all,
//   y = gamma[c] * tanh(alpha * x) + beta[c],
// alpha one learned scalar, gamma and beta per channel (dimension 1). To the
// engine it is a description without statistics (neither centered nor
// scaled) whose numerator is tanh(v x) with one v shared by every channel:
// alpha is that v, and the engine sums its gradient with gamma's and beta's.
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
    this->add_parameter("alpha", xt::xarray<T>({nearest<T>(options.alpha_init)}));
  }

 protected:
  NormDescription describe(const std::vector<std::size_t>& shape, Mode) const override {
    NormDescription d = this->channel_description(shape);
    d.pooling = Pooling::per_outer_groups;  // no statistics: the groups only index the runs,
    d.channels_per_group = shape[1];        // one per row (a group per element would be work)
    d.centered = false;                     // mean 0, rstd 1: mean 0, rstd 1
    d.scaled = false;
    d.numerator = Numerator::tanh;
    d.shared_v = true;  // v is alpha, one scalar
    return d;
  }
  const char* numerator_parameter_name() const override { return "alpha"; }
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
