// make_norm: spec -> norm.
#include "norms.hpp"
#include "spec.hpp"

namespace normlab {

template <class T>
std::unique_ptr<Norm<T>> make_norm(const nlohmann::json& spec, std::size_t channels) {
  const nlohmann::json resolved = resolve_spec(spec);
  const std::string type = resolved.at("type").get<std::string>();
  if (type == "batch") return make_batch_norm<T>(resolved, channels);
  if (type == "layer") return make_layer_norm<T>(resolved, channels);
  if (type == "instance") return make_instance_norm<T>(resolved, channels);
  if (type == "group") return make_group_norm<T>(resolved, channels);
  if (type == "weight") return make_weight_norm<T>(resolved, channels);
  if (type == "ghost") return make_ghost_norm<T>(resolved, channels);
  if (type == "batch_renorm") return make_batch_renorm<T>(resolved, channels);
  return make_rms_norm<T>(resolved, channels);  // resolve_spec admits no other type
}

template std::unique_ptr<Norm<float>> make_norm(const nlohmann::json&, std::size_t);
template std::unique_ptr<Norm<double>> make_norm(const nlohmann::json&, std::size_t);

}  // namespace normlab
