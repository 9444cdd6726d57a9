// WeightNorm (Salimans & Kingma 2016): w = g * v / ||v||, one L2 norm per
// slice of v along `dim`. The input is v, the output w; g is the only parameter.
#include <stdexcept>
#include <xtensor/xbuilder.hpp>

#include "norms.hpp"
#include "shapes.hpp"

namespace normlab {
namespace {

template <class T>
class WeightNorm final : public Norm<T> {
 public:
  WeightNorm(nlohmann::json spec, std::size_t slices) : Norm<T>(std::move(spec)) {
    if (slices) this->add_parameter("g", xt::ones<T>({slices}));
  }

  void prepare(const std::vector<std::size_t>& shape) override {
    const long long rank = static_cast<long long>(shape.size());
    const long long dim = this->spec_.at("dim").template get<long long>();
    if (rank == 0 || dim < -rank || dim >= rank)
      throw std::invalid_argument("weight norm: dim " + std::to_string(dim) +
                                  " is out of range for a weight of shape " + shape_text(shape));
    dim_ = std::size_t(dim < 0 ? dim + rank : dim);
    if (!this->has_parameter("g")) this->add_parameter("g", xt::ones<T>({shape[dim_]}));
    if (this->parameter("g").value.size() != shape[dim_])
      throw std::invalid_argument("weight norm has " + std::to_string(this->parameter("g").value.size()) +
                                  " slices but the weight has shape " + shape_text(shape) + " along dim " +
                                  std::to_string(dim_));
  }

 protected:
  const char* scale_name() const override { return "g"; }

  NormDescription describe(const std::vector<std::size_t>& shape, Mode) const override {
    NormDescription d;
    d.view = {product(shape, 0, dim_), shape[dim_], product(shape, dim_ + 1, shape.size())};
    d.pooling = Pooling::per_channel;
    d.centered = false;
    d.divide_by_count = false;  // var holds ||v||^2
    d.eps = 0;
    d.affine = Affine::per_channel;
    return d;
  }

  // g starts as ||v|| so that w == v, unless the user set g.
  void observe_stats(const NormDescription&, const GroupStats& stats) override {
    if (g_initialized_ || this->was_set("g")) return;
    xt::xarray<T>& g = this->parameter("g").value;
    for (std::size_t c = 0; c < g.size(); ++c) g(c) = T(std::sqrt(stats.var[c]));
    g_initialized_ = true;
  }

 private:
  std::size_t dim_ = 0;
  bool g_initialized_ = false;
};

}  // namespace

template <class T>
std::unique_ptr<Norm<T>> make_weight_norm(const nlohmann::json& spec, std::size_t slices) {
  return std::make_unique<WeightNorm<T>>(spec, slices);
}
NORMLAB_INSTANTIATE_MAKER(make_weight_norm)

}  // namespace normlab
