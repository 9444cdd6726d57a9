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
    NormDescription d = this->batch_description(shape, mode);
    this->require_values_to_train(d, shape, mode);
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
