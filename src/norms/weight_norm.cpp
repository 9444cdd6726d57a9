// WeightNorm (Salimans & Kingma 2016): w = g * v / ||v||, one L2 norm per
// slice of v along `dim`. The input is v, the output w; g is the only parameter.
#include <cmath>
#include <xtensor/xbuilder.hpp>

#include "registry.hpp"
#include "shapes.hpp"

namespace normlab {
namespace {

struct WeightNormOptions {
  long long dim = 0;

  static const OptionSchema<WeightNormOptions>& schema() {
    static const auto s = [] {
      OptionSchema<WeightNormOptions> s;
      s.integer("dim", &WeightNormOptions::dim, std::numeric_limits<long long>::min(),
                "the dimension of v that indexes g; negative counts from the end");
      return s;
    }();
    return s;
  }
};

template <class T>
class WeightNorm final : public NormWithOptions<T, WeightNormOptions> {
 public:
  WeightNorm(std::string type, const WeightNormOptions& options, std::size_t slices)
      : NormWithOptions<T, WeightNormOptions>(std::move(type), options) {
    if (slices) this->add_parameter("g", xt::ones<T>({slices}));
  }

  void prepare_shape(const std::vector<std::size_t>& shape) override {
    dim_ = weight_dimension(this->type(), this->options_.dim, shape);
    if (!this->has_parameter("g")) this->add_parameter("g", xt::ones<T>({shape[dim_]}));
    if (this->parameter("g").value.size() != shape[dim_])
      throw std::invalid_argument(this->type() + " norm has " +
                                  std::to_string(this->parameter("g").value.size()) +
                                  " slices but the weight has shape " + shape_text(shape) +
                                  " along dim " + std::to_string(dim_));
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
  void observe_stats(const NormDescription&, Mode, const GroupStats& stats) override {
    if (g_initialized_ || this->was_set("g")) return;
    xt::xarray<T>& g = this->parameter("g").value;
    for (std::size_t c = 0; c < g.size(); ++c) g(c) = nearest<T>(std::sqrt(stats.var[c]));
    g_initialized_ = true;
  }

 private:
  std::size_t dim_ = 0;
  bool g_initialized_ = false;
};

}  // namespace

void register_weight_norm(NormRegistry& registry) {
  register_norm<WeightNorm>(
      registry,
      NormDefinition<WeightNormOptions>{
          "weight", "WeightNorm: reparameterizes a layer's weight, w = g * v / ||v|| per slice",
          [](const WeightNormOptions&) {
            NormTraits t;
            t.torch_peer = true;  // torch._weight_norm
            t.reparameterizes_weight = true;
            t.parameters = {"g"};
            return t;
          }});
}

}  // namespace normlab
