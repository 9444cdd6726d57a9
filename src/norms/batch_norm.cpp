// BatchNorm (Ioffe & Szegedy 2015): one group per channel, over the batch and
// spatial positions. PyTorch's defaults and semantics.
#include "channel_norm.hpp"

namespace normlab {
namespace {

struct BatchNormOptions : ChannelOptions {
  static const OptionSchema<BatchNormOptions>& schema() {
    static const auto s = [] {
      OptionSchema<BatchNormOptions> s;
      return channel_options(s, /*optional_running=*/true);
    }();
    return s;
  }
};

template <class T>
class BatchNorm final : public ChannelNorm<T, BatchNormOptions> {
 public:
  BatchNorm(std::string type, const BatchNormOptions& options, std::size_t channels)
      : ChannelNorm<T, BatchNormOptions>(std::move(type), options, channels,
                                         options.track_running_stats) {}

 protected:
  NormDescription describe(const std::vector<std::size_t>& shape, Mode mode) const override {
    NormDescription d = this->batch_description(shape, mode);
    this->require_values_to_train(d, shape, mode);
    return d;
  }
};

}  // namespace

void register_batch_norm(NormRegistry& registry) {
  register_norm<BatchNorm>(
      registry, NormDefinition<BatchNormOptions>{
                    "batch", "BatchNorm: per channel over (N, H, W); running statistics for eval",
                    [](const BatchNormOptions& o) {
                      NormTraits t;
                      t.batch_statistics = true;
                      channel_names(t, o.affine, o.track_running_stats);
                      return t;
                    }});
}

}  // namespace normlab
