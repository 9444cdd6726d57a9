// GroupNorm (Wu & He 2018): one group per (sample, run of C/G channels), over
// those channels and the spatial positions.
#include <algorithm>

#include "channel_norm.hpp"

namespace normlab {
namespace {

struct GroupNormOptions : ChannelOptions {
  std::size_t groups = 4;

  static const OptionSchema<GroupNormOptions>& schema() {
    static const auto s = [] {
      OptionSchema<GroupNormOptions> s;
      channel_options(s, /*optional_running=*/false);
      s.count("groups", &GroupNormOptions::groups,
              "groups of adjacent channels; must divide C (models use min(groups, C))");
      return s;
    }();
    return s;
  }
};

template <class T>
class GroupNorm final : public ChannelNorm<T, GroupNormOptions> {
 public:
  GroupNorm(std::string type, const GroupNormOptions& options, std::size_t channels)
      : ChannelNorm<T, GroupNormOptions>(std::move(type), options, 0, /*tracks=*/false) {
    if (channels) this->prepare({1, channels});
  }

  void prepare_shape(const std::vector<std::size_t>& shape) override {
    if (shape.size() >= 2) require_channel_groups(this->type(), shape[1], this->options_.groups);
    ChannelNorm<T, GroupNormOptions>::prepare_shape(shape);
  }

 protected:
  NormDescription describe(const std::vector<std::size_t>& shape, Mode) const override {
    NormDescription d = this->channel_description(shape);
    d.pooling = Pooling::per_outer_groups;
    d.channels_per_group = shape[1] / this->options_.groups;
    return d;
  }
};

}  // namespace

void register_group_norm(NormRegistry& registry) {
  NormDefinition<GroupNormOptions> definition{
      "group", "GroupNorm: per (sample, group of C/G channels) over those channels and (H, W)",
      [](const GroupNormOptions& o) {
        NormTraits t;
        t.channels_last = true;
        t.torch_peer = true;  // F.group_norm
        channel_names(t, o.affine, /*running=*/false);
        return t;
      }};
  definition.fit_layer = [](GroupNormOptions& o, std::size_t channels, bool) {
    o.groups = std::min(o.groups, channels);
  };
  register_norm<GroupNorm>(registry, definition);
}

}  // namespace normlab
