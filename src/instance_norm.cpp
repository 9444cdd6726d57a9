// InstanceNorm: one group per (sample, channel), over spatial positions.
#include "norms.hpp"

#include "channel_norm.hpp"

namespace normlab {
namespace {

template <class T>
class InstanceNorm final : public ChannelNorm<T> {
 public:
  using ChannelNorm<T>::ChannelNorm;

 protected:
  NormDescription describe(const std::vector<std::size_t>& shape, Mode mode) const override {
    NormDescription d = this->channel_description(shape);
    d.pooling = Pooling::per_outer_groups;
    d.channels_per_group = 1;
    this->use_running_stats(d, mode);
    if (mode == Mode::train && d.view.inner < 2)
      throw std::invalid_argument(
          "instance norm needs more than one spatial element per channel when training, got "
          "input shape " + shape_text(shape) + " (use an (N, C, H, W) or (N, C, L) input)");
    return d;
  }
};

}  // namespace

template <class T>
std::unique_ptr<Norm<T>> make_instance_norm(const nlohmann::json& spec, std::size_t channels) {
  return std::make_unique<InstanceNorm<T>>(spec, channels);
}
NORMLAB_INSTANTIATE_MAKER(make_instance_norm)

}  // namespace normlab
