// BatchNorm (Ioffe & Szegedy 2015): one group per channel, over the batch and
// spatial positions. PyTorch's defaults and semantics. "frozen": true is
// detectron2's FrozenBatchNorm2d with a trainable affine (oneDNN's
// use_global_stats): the running statistics normalize in training too, as
// constants, and are not updated.
#include "channel_norm.hpp"

namespace normlab {
namespace {

struct BatchNormOptions : ChannelOptions {
  bool frozen = false;

  static const OptionSchema<BatchNormOptions>& schema() {
    static const auto s = [] {
      OptionSchema<BatchNormOptions> s;
      channel_options(s, /*optional_running=*/true)
          .boolean("frozen", &BatchNormOptions::frozen,
                   "normalize with the running statistics in training too, without updating "
                   "them (the affine still trains)",
                   /*written_when_default=*/false)
          .check([](const BatchNormOptions& o) {
            if (o.frozen && !o.track_running_stats)
              fail_option("frozen", "false when track_running_stats is false",
                          "true (a frozen BatchNorm normalizes with its running statistics)");
          });
      return s;
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
    if (this->options_.frozen) {
      d.statistics_given = true;  // running statistics, constants in backward, never updated
      return d;
    }
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
                      t.channels_last = true;
                      t.torch_peer = true;  // F.batch_norm
                      t.batch_statistics = !o.frozen;
                      channel_names(t, o.affine, o.track_running_stats);
                      return t;
                    }});
}

}  // namespace normlab
