// Constructors of the built-in norms; make_norm picks one by spec type.
#pragma once

#include <memory>

#include "normlab/norm.hpp"

namespace normlab {

#define NORMLAB_DECLARE_MAKER(name) \
  template <class T>                \
  std::unique_ptr<Norm<T>> name(const nlohmann::json& resolved_spec, std::size_t channels);
NORMLAB_DECLARE_MAKER(make_batch_norm)
NORMLAB_DECLARE_MAKER(make_layer_norm)
NORMLAB_DECLARE_MAKER(make_instance_norm)
NORMLAB_DECLARE_MAKER(make_group_norm)
NORMLAB_DECLARE_MAKER(make_weight_norm)
NORMLAB_DECLARE_MAKER(make_rms_norm)
NORMLAB_DECLARE_MAKER(make_ghost_norm)
NORMLAB_DECLARE_MAKER(make_batch_renorm)
#undef NORMLAB_DECLARE_MAKER

}  // namespace normlab

// Explicit instantiation of a maker for float and double, in its own .cpp.
#define NORMLAB_INSTANTIATE_MAKER(name)                                                   \
  template std::unique_ptr<Norm<float>> name<float>(const nlohmann::json&, std::size_t); \
  template std::unique_ptr<Norm<double>> name<double>(const nlohmann::json&, std::size_t);
