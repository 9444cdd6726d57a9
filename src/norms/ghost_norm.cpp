// Ghost BatchNorm (Hoffer, Hubara & Soudry 2017; Keras' virtual_batch_size):
// BatchNorm whose batch statistics come from virtual batches of V consecutive
// samples; running statistics take the average of the virtual batches'.
#include "channel_norm.hpp"

namespace normlab {
namespace {

struct GhostNormOptions : ChannelOptions {
  std::size_t virtual_batch_size = 4;  // the small-batch study's choice

  static const OptionSchema<GhostNormOptions>& schema() {
    static const auto s = [] {
      OptionSchema<GhostNormOptions> s;
      s.count("virtual_batch_size", &GhostNormOptions::virtual_batch_size,
              "samples per virtual batch; N must be a multiple of it");
      return channel_options(s, /*optional_running=*/true);
    }();
    return s;
  }
};

template <class T>
class GhostBatchNorm final : public ChannelNorm<T, GhostNormOptions> {
 public:
  GhostBatchNorm(std::string type, const GhostNormOptions& options, std::size_t channels)
      : ChannelNorm<T, GhostNormOptions>(std::move(type), options, channels,
                                         options.track_running_stats) {}

 protected:
  NormDescription describe(const std::vector<std::size_t>& shape, Mode mode) const override {
    NormDescription d = this->batch_description(shape, mode);
    if (d.statistics_given) return d;  // running statistics: any batch size
    const std::size_t v = this->options_.virtual_batch_size;
    if (shape[0] == 0 || shape[0] % v != 0)
      throw std::invalid_argument(
          this->type() + " norm: a batch of N = " + std::to_string(shape[0]) +
          " samples does not split into virtual batches of virtual_batch_size V = " +
          std::to_string(v) + " (N must be a positive multiple of V), input shape " +
          shape_text(shape));
    d.outer_chunk = v;
    this->require_values_to_train(d, shape, mode);
    return d;
  }
};

}  // namespace

void register_ghost_norm(NormRegistry& registry) {
  NormDefinition<GhostNormOptions> definition{
      "ghost", "Ghost BatchNorm: BatchNorm statistics per virtual batch of V samples",
      [](const GhostNormOptions& o) {
        NormTraits t;
        t.channels_last = true;
        t.batch_statistics = true;
        t.virtual_batch_size = o.virtual_batch_size;
        channel_names(t, o.affine, o.track_running_stats);
        return t;
      }};
  // Without spatial positions a virtual batch of one sample has one value per channel.
  definition.fit_layer = [](GhostNormOptions& o, std::size_t, bool spatial) {
    if (!spatial && o.virtual_batch_size == 1)
      throw std::invalid_argument(
          "norm 'ghost' with virtual_batch_size 1 has one value per channel after a linear "
          "layer: use a larger virtual_batch_size, or a convolutional model (cnn3)");
  };
  register_norm<GhostBatchNorm>(registry, definition);
}

}  // namespace normlab
