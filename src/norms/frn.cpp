// Filter Response Normalization with a Thresholded Linear Unit (Singh &
// Krishnan, CVPR 2020). Per (sample, channel), over the spatial positions:
//   nu2 = mean(x^2),  y = gamma * x / sqrt(nu2 + eps) + beta,  y = max(y, tau) (TLU).
// No centering and no batch statistics: train and eval are the same.
#include "channel_norm.hpp"

namespace normlab {
namespace {

struct FrnOptions : ChannelOptions {  // always affine, no running statistics
  bool tlu = true;
  FrnOptions() { eps = 1e-6; }

  static const OptionSchema<FrnOptions>& schema() {
    static const auto s = [] {
      OptionSchema<FrnOptions> s;
      s.number("eps", &FrnOptions::eps, {0}, "added to the mean square before the square root")
          .boolean("tlu", &FrnOptions::tlu, "output max(y, tau) with a learned tau per channel");
      return layout_option(s);
    }();
    return s;
  }
};

template <class T>
class FilterResponseNorm final : public ChannelNorm<T, FrnOptions> {
 public:
  FilterResponseNorm(std::string type, const FrnOptions& options, std::size_t channels)
      : ChannelNorm<T, FrnOptions>(std::move(type), options, channels, /*tracks=*/false) {
    if (channels) add_tau(channels);
  }

  void prepare_shape(const std::vector<std::size_t>& shape) override {
    ChannelNorm<T, FrnOptions>::prepare_shape(shape);
    add_tau(shape[1]);
  }

 protected:
  NormDescription describe(const std::vector<std::size_t>& shape, Mode mode) const override {
    // One spatial value would be normalized to its sign: FRN needs (H, W).
    this->require_spatial(shape, mode);
    NormDescription d = this->channel_description(shape);
    d.pooling = Pooling::per_outer_groups;
    d.channels_per_group = 1;
    d.centered = false;  // mean of squares
    d.epilogue = this->options_.tlu ? Epilogue::tlu : Epilogue::none;
    return d;
  }

 private:
  void add_tau(std::size_t channels) {
    if (this->options_.tlu && !this->has_parameter("tau"))
      this->add_parameter("tau", xt::zeros<T>({channels}));
  }
};

}  // namespace

void register_frn(NormRegistry& registry) {
  NormDefinition<FrnOptions> definition{
      "frn", "Filter Response Normalization: per (sample, channel) by the RMS over (H, W), TLU",
      [](const FrnOptions& o) {
        NormTraits t;
        t.channels_last = true;
        t.torch_peer = true;  // a composite of torch ops
        t.needs_spatial = true;
        t.includes_activation = o.tlu;  // the TLU replaces the ReLU
        t.parameters = {"gamma", "beta"};
        if (o.tlu) t.parameters.push_back("tau");
        return t;
      }};
  register_norm<FilterResponseNorm>(registry, definition);
}

}  // namespace normlab
