// RMSNorm (torch.nn.RMSNorm semantics): LayerNorm's grouping, uncentered,
// scale only. eps null means the data type's machine epsilon.
#include "layer_norm.hpp"
#include "norms.hpp"

namespace normlab {

template <class T>
std::unique_ptr<Norm<T>> make_rms_norm(const nlohmann::json& spec, std::size_t channels) {
  return std::make_unique<LayerNorm<T>>(spec, channels, /*centered=*/false);
}
NORMLAB_INSTANTIATE_MAKER(make_rms_norm)

}  // namespace normlab
