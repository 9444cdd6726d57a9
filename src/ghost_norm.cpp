// Ghost BatchNorm (Hoffer, Hubara & Soudry 2017; Keras' virtual_batch_size):
// BatchNorm whose batch statistics come from virtual batches of V consecutive
// samples; running statistics take the average of the virtual batches'.
#include "norms.hpp"

#include "channel_norm.hpp"

namespace normlab {
namespace {

template <class T>
class GhostBatchNorm final : public ChannelNorm<T> {
 public:
  GhostBatchNorm(const nlohmann::json& spec, std::size_t channels)
      : ChannelNorm<T>(spec, channels),
        virtual_batch_(spec.at("virtual_batch_size").get<std::size_t>()) {}

 protected:
  NormDescription describe(const std::vector<std::size_t>& shape, Mode mode) const override {
    NormDescription d = this->batch_description(shape, mode);
    if (d.statistics_given) return d;  // running statistics: any batch size
    if (shape[0] == 0 || shape[0] % virtual_batch_ != 0)
      throw std::invalid_argument(
          "ghost norm: a batch of N = " + std::to_string(shape[0]) +
          " samples does not split into virtual batches of virtual_batch_size V = " +
          std::to_string(virtual_batch_) + " (N must be a positive multiple of V), input shape " +
          shape_text(shape));
    d.outer_chunk = virtual_batch_;
    this->require_values_to_train(d, shape, mode);
    return d;
  }

 private:
  std::size_t virtual_batch_;
};

}  // namespace

template <class T>
std::unique_ptr<Norm<T>> make_ghost_norm(const nlohmann::json& spec, std::size_t channels) {
  return std::make_unique<GhostBatchNorm<T>>(spec, channels);
}
NORMLAB_INSTANTIATE_MAKER(make_ghost_norm)

}  // namespace normlab
