// Weight centralization (Yan et al., ICLR 2020, with MABN): a layer's weight
// reparameterized as w = v - mean(v) per slice along `dim` (an output channel
// of a conv or linear layer), so that each output has zero-mean weights. MABN
// does not center its input; the centered weights of the layer in front keep
// the mean of its input near zero. The input is v, the output w; no parameters.
//
// To the engine, a centered description that is not scaled (rstd = 1): each
// slice loses its mean, and backward gives dv = dw - mean(dw).
#include "registry.hpp"
#include "shapes.hpp"

namespace normlab {
namespace {

struct WeightCenteringOptions {
  long long dim = 0;

  static const OptionSchema<WeightCenteringOptions>& schema() {
    static const auto s = [] {
      OptionSchema<WeightCenteringOptions> s;
      s.integer("dim", &WeightCenteringOptions::dim, std::numeric_limits<long long>::min(),
                "the dimension of v whose slices are centered; negative counts from the end");
      return s;
    }();
    return s;
  }
};

template <class T>
class WeightCentering final : public NormWithOptions<T, WeightCenteringOptions> {
 public:
  WeightCentering(std::string type, const WeightCenteringOptions& options, std::size_t)
      : NormWithOptions<T, WeightCenteringOptions>(std::move(type), options) {}

  void prepare_shape(const std::vector<std::size_t>& shape) override {
    dim_ = weight_dimension(this->type(), this->options_.dim, shape);
  }

 protected:
  NormDescription describe(const std::vector<std::size_t>& shape, Mode) const override {
    NormDescription d;
    d.view = {product(shape, 0, dim_), shape[dim_], product(shape, dim_ + 1, shape.size())};
    d.pooling = Pooling::per_channel;
    d.scaled = false;  // centered only
    return d;
  }

 private:
  std::size_t dim_ = 0;
};

}  // namespace

void register_weight_centering(NormRegistry& registry) {
  register_norm<WeightCentering>(
      registry, NormDefinition<WeightCenteringOptions>{
                    "weight_centering",
                    "Weight centralization: reparameterizes a layer's weight, w = v - mean(v) "
                    "per slice",
                    [](const WeightCenteringOptions&) {
                      NormTraits t;
                      t.reparameterizes_weight = true;
                      return t;
                    }});
}

}  // namespace normlab
