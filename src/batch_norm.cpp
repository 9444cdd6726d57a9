// BatchNorm (Ioffe & Szegedy 2015): one group per channel, over the batch and
// spatial positions.
#include "norms.hpp"

#include "channel_norm.hpp"

namespace normlab {
namespace {

template <class T>
class BatchNorm final : public ChannelNorm<T> {
 public:
  using ChannelNorm<T>::ChannelNorm;

 protected:
  NormDescription describe(const std::vector<std::size_t>& shape, Mode mode) const override {
    NormDescription d = this->channel_description(shape);
    d.pooling = Pooling::per_channel;
    this->use_running_stats(d, mode);
    if (mode == Mode::train && d.group_size() < 2)
      throw std::invalid_argument(
          "batch norm needs more than one value per channel when training, got input shape " +
          shape_text(shape) + " (use a batch larger than 1 or eval mode)");
    return d;
  }
};

}  // namespace

template <class T>
std::unique_ptr<Norm<T>> make_batch_norm(const nlohmann::json& spec, std::size_t channels) {
  return std::make_unique<BatchNorm<T>>(spec, channels);
}
NORMLAB_INSTANTIATE_MAKER(make_batch_norm)

}  // namespace normlab
