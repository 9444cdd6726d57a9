// InstanceNorm (Ulyanov et al. 2016): one group per (sample, channel), over
// spatial positions. PyTorch's defaults: no affine, no running statistics.
#include "channel_norm.hpp"

namespace normlab {
namespace {

struct InstanceNormOptions : ChannelOptions {
  InstanceNormOptions() {
    affine = false;
    track_running_stats = false;
  }
  static const OptionSchema<InstanceNormOptions>& schema() {
    static const auto s = [] {
      OptionSchema<InstanceNormOptions> s;
      return channel_options(s, /*optional_running=*/true);
    }();
    return s;
  }
};

template <class T>
class InstanceNorm final : public ChannelNorm<T, InstanceNormOptions> {
 public:
  InstanceNorm(std::string type, const InstanceNormOptions& options, std::size_t channels)
      : ChannelNorm<T, InstanceNormOptions>(std::move(type), options, channels,
                                            options.track_running_stats) {}

 protected:
  NormDescription describe(const std::vector<std::size_t>& shape, Mode mode) const override {
    NormDescription d = this->channel_description(shape);
    d.pooling = Pooling::per_outer_groups;
    d.channels_per_group = 1;
    this->use_running_stats(d, mode);
    if (mode == Mode::train) this->require_spatial(shape, mode);
    return d;
  }
};

}  // namespace

void register_instance_norm(NormRegistry& registry) {
  register_norm<InstanceNorm>(registry,
                              NormDefinition<InstanceNormOptions>{
                                  "instance", "InstanceNorm: per (sample, channel) over (H, W)",
                                  [](const InstanceNormOptions& o) {
                                    NormTraits t;
                                    t.channels_last = true;
                                    t.torch_peer = true;  // F.instance_norm
                                    t.needs_spatial = true;
                                    channel_names(t, o.affine, o.track_running_stats);
                                    return t;
                                  }});
}

}  // namespace normlab
