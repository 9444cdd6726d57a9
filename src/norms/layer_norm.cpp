// LayerNorm (Ba, Kiros & Hinton 2016): per sample, centered, PyTorch's
// semantics (torch.nn.LayerNorm with normalized_shape).
#include "layer_norm.hpp"

namespace normlab {
namespace {

struct LayerNormOptions : RowNormOptions {
  static constexpr bool centered = true;
  LayerNormOptions() { eps = 1e-5; }
  static const OptionSchema<LayerNormOptions>& schema() {
    static const auto s = row_norm_schema<LayerNormOptions>([](OptionSchema<LayerNormOptions>& s) {
      s.number("eps", &LayerNormOptions::eps, {0}, "added to the variance before the square root");
    });
    return s;
  }
};

template <class T>
using LayerNorm = RowNorm<T, LayerNormOptions>;

}  // namespace

void register_layer_norm(NormRegistry& registry) {
  NormDefinition<LayerNormOptions> definition{
      "layer", "LayerNorm: per sample over normalized_shape (or (C, H, W) with channel_affine)",
      [](const LayerNormOptions& o) { return row_norm_traits(o, /*centered=*/true); }};
  definition.fit_layer = fit_row_norm<LayerNormOptions>;
  register_norm<LayerNorm>(registry, definition);
}

}  // namespace normlab
