// EvoNorm-S0 (Liu, Brock, Simonyan & Le, NeurIPS 2020): a sample-based norm
// and activation in one,
//   y = x * sigmoid(v * x) / sqrt(groupvar(x) + eps) * gamma + beta,
// with groupvar the biased variance over each (sample, group of C/G channels,
// spatial positions), GroupNorm's groups. No batch statistics.
#include <algorithm>

#include "channel_norm.hpp"

namespace normlab {
namespace {

struct EvoNormS0Options : ChannelOptions {  // always affine, no running statistics
  std::size_t groups = 32;

  static const OptionSchema<EvoNormS0Options>& schema() {
    static const auto s = [] {
      OptionSchema<EvoNormS0Options> s;
      s.count("groups", &EvoNormS0Options::groups,
              "groups of adjacent channels; must divide C (models use min(groups, C))")
          .number("eps", &EvoNormS0Options::eps, {0},
                  "added to the group variance before the square root");
      return layout_option(s);
    }();
    return s;
  }
};

template <class T>
class EvoNormS0 final : public ChannelNorm<T, EvoNormS0Options> {
 public:
  EvoNormS0(std::string type, const EvoNormS0Options& options, std::size_t channels)
      : ChannelNorm<T, EvoNormS0Options>(std::move(type), options, 0, /*tracks=*/false) {
    if (channels) this->prepare({1, channels});
  }

  void prepare_shape(const std::vector<std::size_t>& shape) override {
    if (shape.size() >= 2) require_channel_groups(this->type(), shape[1], this->options_.groups);
    ChannelNorm<T, EvoNormS0Options>::prepare_shape(shape);
    if (!this->has_parameter("v")) this->add_parameter("v", xt::ones<T>({shape[1]}));
  }

 protected:
  NormDescription describe(const std::vector<std::size_t>& shape, Mode) const override {
    NormDescription d = this->channel_description(shape);
    d.pooling = Pooling::per_outer_groups;
    d.channels_per_group = shape[1] / this->options_.groups;
    d.numerator = Numerator::swish;
    return d;
  }
};

}  // namespace

void register_evonorm_s0(NormRegistry& registry) {
  NormDefinition<EvoNormS0Options> definition{
      "evonorm_s0", "EvoNorm-S0: x * sigmoid(v x) divided by the group std (GroupNorm's groups)",
      [](const EvoNormS0Options&) {
        NormTraits t;
        t.channels_last = true;
        t.torch_peer = true;           // a composite of torch ops
        t.includes_activation = true;  // x * sigmoid(v x) replaces the ReLU
        t.parameters = {"gamma", "beta", "v"};
        return t;
      }};
  definition.fit_layer = [](EvoNormS0Options& o, std::size_t channels, bool) {
    o.groups = std::min(o.groups, channels);
  };
  register_norm<EvoNormS0>(registry, definition);
}

}  // namespace normlab
