// Mean-only BatchNorm (Salimans & Kingma 2016, "Weight Normalization", section
// 3): subtract each channel's batch mean over (N, H, W), without dividing by
// the standard deviation; paired with WeightNorm, which sets the scale. The
// running statistics are BatchNorm's (the variance is tracked for the probe
// and precise BN, and not used); eval subtracts the running mean.
#include "channel_norm.hpp"

namespace normlab {
namespace {

struct MeanOnlyBatchNormOptions : ChannelOptions {  // no eps: nothing is divided
  static const OptionSchema<MeanOnlyBatchNormOptions>& schema() {
    static const auto s = [] {
      OptionSchema<MeanOnlyBatchNormOptions> s;
      s.number_or_null("momentum", &MeanOnlyBatchNormOptions::momentum, {0, 1},
                       "cumulative average", "weight of each batch in the running statistics")
          .boolean("affine", &MeanOnlyBatchNormOptions::affine,
                   "learned gamma and beta per channel")
          .boolean("track_running_stats", &MeanOnlyBatchNormOptions::track_running_stats,
                   "keep running statistics and use the running mean in eval");
      return layout_option(s);
    }();
    return s;
  }
};

template <class T>
class MeanOnlyBatchNorm final : public ChannelNorm<T, MeanOnlyBatchNormOptions> {
 public:
  MeanOnlyBatchNorm(std::string type, const MeanOnlyBatchNormOptions& options, std::size_t channels)
      : ChannelNorm<T, MeanOnlyBatchNormOptions>(std::move(type), options, channels,
                                                 options.track_running_stats) {}

 protected:
  NormDescription describe(const std::vector<std::size_t>& shape, Mode mode) const override {
    NormDescription d = this->batch_description_to_train(shape, mode);
    d.scaled = false;  // centered only: rstd is 1
    return d;
  }
};

}  // namespace

void register_mean_only_batch_norm(NormRegistry& registry) {
  register_norm<MeanOnlyBatchNorm>(registry,
                                   NormDefinition<MeanOnlyBatchNormOptions>{
                                       "mean_only_batch",
                                       "Mean-only BatchNorm: subtracts the per-channel mean over "
                                       "(N, H, W), no division",
                                       [](const MeanOnlyBatchNormOptions& o) {
                                         NormTraits t;
                                         t.channels_last = true;
                                         t.batch_statistics = true;
                                         channel_names(t, o.affine, o.track_running_stats);
                                         return t;
                                       }});
}

}  // namespace normlab
