// RMSNorm (Zhang & Sennrich 2019; torch.nn.RMSNorm semantics): LayerNorm's
// grouping, uncentered, scale only. eps null means the data type's machine epsilon.
#include "layer_norm.hpp"

namespace normlab {
namespace {

struct RmsNormOptions : RowNormOptions {
  static constexpr bool centered = false;
  static const OptionSchema<RmsNormOptions>& schema() {
    static const auto s = row_norm_schema<RmsNormOptions>([](OptionSchema<RmsNormOptions>& s) {
      s.number_or_null("eps", &RmsNormOptions::eps, {0}, "the data type's machine epsilon",
                       "added to the mean square before the square root");
    });
    return s;
  }
};

template <class T>
using RmsNorm = RowNorm<T, RmsNormOptions>;

}  // namespace

void register_rms_norm(NormRegistry& registry) {
  NormDefinition<RmsNormOptions> definition{
      "rms", "RMSNorm: LayerNorm's grouping, divided by the root mean square, no centering",
      [](const RmsNormOptions& o) { return row_norm_traits(o, /*centered=*/false); }};
  definition.fit_layer = fit_row_norm<RmsNormOptions>;
  register_norm<RmsNorm>(registry, definition);
}

}  // namespace normlab
