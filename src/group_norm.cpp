// GroupNorm (Wu & He 2018): one group per (sample, run of C/G channels).
#include "norms.hpp"

#include "channel_norm.hpp"

namespace normlab {
namespace {

template <class T>
class GroupNorm final : public ChannelNorm<T> {
 public:
  GroupNorm(const nlohmann::json& spec, std::size_t channels)
      : ChannelNorm<T>(spec, 0), groups_(spec.at("groups").get<std::size_t>()) {
    if (channels) prepare({1, channels});
  }

  void prepare(const std::vector<std::size_t>& shape) override {
    if (shape.size() >= 2 && shape[1] % groups_ != 0)
      throw std::invalid_argument("group norm: " + std::to_string(shape[1]) +
                                  " channels do not split into " + std::to_string(groups_) +
                                  " groups (C % G must be 0; choose groups dividing C)");
    ChannelNorm<T>::prepare(shape);
  }

 protected:
  NormDescription describe(const std::vector<std::size_t>& shape, Mode) const override {
    NormDescription d = this->channel_description(shape);
    d.pooling = Pooling::per_outer_groups;
    d.channels_per_group = shape[1] / groups_;
    return d;
  }

 private:
  std::size_t groups_;
};

}  // namespace

template <class T>
std::unique_ptr<Norm<T>> make_group_norm(const nlohmann::json& spec, std::size_t channels) {
  return std::make_unique<GroupNorm<T>>(spec, channels);
}
NORMLAB_INSTANTIATE_MAKER(make_group_norm)

}  // namespace normlab
