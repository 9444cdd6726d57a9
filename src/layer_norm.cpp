#include "layer_norm.hpp"

#include <limits>
#include <stdexcept>
#include <xtensor/xbuilder.hpp>

#include "norms.hpp"
#include "shapes.hpp"

namespace normlab {

template <class T>
LayerNorm<T>::LayerNorm(nlohmann::json spec, std::size_t channels, bool centered)
    : Norm<T>(std::move(spec)),
      centered_(centered),
      channel_affine_(this->spec_.value("channel_affine", false)) {
  const nlohmann::json& given = this->spec_.at("normalized_shape");
  if (!given.is_null()) {
    normalized_shape_ = given.get<std::vector<std::size_t>>();
    create_affine(normalized_shape_);
  } else if (channel_affine_ && channels) {
    create_affine({channels});
  }
}

template <class T>
void LayerNorm<T>::create_affine(const std::vector<std::size_t>& affine_shape) {
  if (!this->spec_.at("affine").template get<bool>()) return;
  this->add_parameter("gamma", xt::ones<T>(affine_shape));
  if (centered_) this->add_parameter("beta", xt::zeros<T>(affine_shape));
}

template <class T>
void LayerNorm<T>::prepare(const std::vector<std::size_t>& shape) {
  const std::string name = this->type() + " norm";
  if (channel_affine_) {
    if (shape.size() < 2)
      throw std::invalid_argument(name + " with channel_affine needs an input of shape (N, C, ...), got " +
                                  shape_text(shape));
    if (this->spec_["affine"].template get<bool>() && !this->has_parameter("gamma"))
      create_affine({shape[1]});
    if (this->has_parameter("gamma") && this->parameter("gamma").value.size() != shape[1])
      throw std::invalid_argument(name + " has " + std::to_string(this->parameter("gamma").value.size()) +
                                  " channels but the input has shape " + shape_text(shape));
    return;
  }
  if (normalized_shape_.empty()) {
    // Default: everything but the first dimension, fixed by the first input.
    if (shape.size() < 2)
      throw std::invalid_argument(name + " needs an input of shape (N, ...), got " + shape_text(shape));
    normalized_shape_.assign(shape.begin() + 1, shape.end());
    this->spec_["normalized_shape"] = normalized_shape_;
    create_affine(normalized_shape_);
  }
  const std::size_t k = normalized_shape_.size();
  if (shape.size() < k || !std::equal(normalized_shape_.begin(), normalized_shape_.end(), shape.end() - k))
    throw std::invalid_argument(name + " normalizes over the trailing shape " +
                                shape_text(normalized_shape_) + " but the input has shape " +
                                shape_text(shape));
}

template <class T>
double LayerNorm<T>::eps() const {
  const nlohmann::json& eps = this->spec_.at("eps");
  return eps.is_null() ? double(std::numeric_limits<T>::epsilon()) : eps.get<double>();
}

template <class T>
NormDescription LayerNorm<T>::describe(const std::vector<std::size_t>& shape, Mode) const {
  NormDescription d;
  d.pooling = Pooling::per_outer_groups;
  d.centered = centered_;
  d.eps = eps();
  const bool affine = this->spec_.at("affine").template get<bool>();
  if (channel_affine_) {
    d.view = {shape[0], shape[1], product(shape, 2, shape.size())};
    d.channels_per_group = shape[1];
    d.affine = affine ? Affine::per_channel : Affine::none;
  } else {
    const std::size_t k = normalized_shape_.size();
    d.view = {product(shape, 0, shape.size() - k), 1, product(shape, shape.size() - k, shape.size())};
    d.channels_per_group = 1;
    d.affine = affine ? Affine::elementwise : Affine::none;
  }
  d.has_shift = affine && centered_;
  return d;
}

template class LayerNorm<float>;
template class LayerNorm<double>;

template <class T>
std::unique_ptr<Norm<T>> make_layer_norm(const nlohmann::json& spec, std::size_t channels) {
  return std::make_unique<LayerNorm<T>>(spec, channels);
}
NORMLAB_INSTANTIATE_MAKER(make_layer_norm)

}  // namespace normlab
