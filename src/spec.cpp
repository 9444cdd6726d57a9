#include "spec.hpp"

#include <stdexcept>
#include <string>
#include <vector>

#include "normlab/norm.hpp"

namespace normlab {
namespace {

enum class Kind { number, number_or_null, boolean, count, count_list_or_null, integer };

struct Field {
  const char* key;
  Kind kind;
  nlohmann::json default_value;
};

struct TypeFields {
  const char* type;
  std::vector<Field> fields;
};

// The keys each norm type accepts, with PyTorch's defaults.
const std::vector<TypeFields>& type_table() {
  static const std::vector<TypeFields> table = {
      {"batch",
       {{"eps", Kind::number, 1e-5},
        {"momentum", Kind::number_or_null, 0.1},
        {"affine", Kind::boolean, true},
        {"track_running_stats", Kind::boolean, true}}},
      {"layer",
       {{"eps", Kind::number, 1e-5},
        {"affine", Kind::boolean, true},
        {"normalized_shape", Kind::count_list_or_null, nullptr},
        {"channel_affine", Kind::boolean, false}}},
      {"instance",
       {{"eps", Kind::number, 1e-5},
        {"momentum", Kind::number_or_null, 0.1},
        {"affine", Kind::boolean, false},
        {"track_running_stats", Kind::boolean, false}}},
      {"group",
       {{"eps", Kind::number, 1e-5}, {"affine", Kind::boolean, true}, {"groups", Kind::count, 4}}},
      {"weight", {{"dim", Kind::integer, 0}}},
      // eps null: the machine epsilon of the data type, as torch.nn.RMSNorm.
      {"rms",
       {{"eps", Kind::number_or_null, nullptr},
        {"affine", Kind::boolean, true},
        {"normalized_shape", Kind::count_list_or_null, nullptr},
        {"channel_affine", Kind::boolean, false}}},
      // Keras' virtual_batch_size; 4 is the small-batch study's choice.
      {"ghost",
       {{"virtual_batch_size", Kind::count, 4},
        {"eps", Kind::number, 1e-5},
        {"momentum", Kind::number_or_null, 0.1},
        {"affine", Kind::boolean, true},
        {"track_running_stats", Kind::boolean, true}}},
      // The paper's final rmax and dmax, reached after warmup_steps train forwards.
      {"batch_renorm",
       {{"eps", Kind::number, 1e-5},
        {"momentum", Kind::number, 0.1},
        {"affine", Kind::boolean, true},
        {"rmax", Kind::number, 3.0},
        {"dmax", Kind::number, 5.0},
        {"warmup_steps", Kind::integer, 1000}}},
  };
  return table;
}

bool fits(const nlohmann::json& v, Kind kind) {
  switch (kind) {
    case Kind::number: return v.is_number();
    case Kind::number_or_null: return v.is_number() || v.is_null();
    case Kind::boolean: return v.is_boolean();
    case Kind::count: return v.is_number_integer() && v.get<long long>() > 0;
    case Kind::integer: return v.is_number_integer();
    case Kind::count_list_or_null:
      if (v.is_null()) return true;
      if (!v.is_array() || v.empty()) return false;
      for (const auto& e : v)
        if (!e.is_number_integer() || e.get<long long>() <= 0) return false;
      return true;
  }
  return false;
}

const char* expected(Kind kind) {
  switch (kind) {
    case Kind::number: return "a number";
    case Kind::number_or_null: return "a number or null";
    case Kind::boolean: return "true or false";
    case Kind::count: return "a positive integer";
    case Kind::integer: return "an integer";
    case Kind::count_list_or_null: return "a non-empty list of positive integers or null";
  }
  return "";
}

}  // namespace

const char* json_kind(const nlohmann::json& value) {
  switch (value.type()) {
    case nlohmann::json::value_t::null: return "null";
    case nlohmann::json::value_t::boolean: return "a boolean";
    case nlohmann::json::value_t::string: return "a string";
    case nlohmann::json::value_t::array: return "a list";
    case nlohmann::json::value_t::object: return "an object";
    case nlohmann::json::value_t::number_integer:
    case nlohmann::json::value_t::number_unsigned: return "an integer";
    case nlohmann::json::value_t::number_float: return "a number";
    default: return "an unknown value";
  }
}

std::vector<std::string> norm_types() {
  std::vector<std::string> names;
  for (const auto& t : type_table()) names.push_back(t.type);
  return names;
}

nlohmann::json resolve_spec(const nlohmann::json& spec) {
  if (!spec.is_object())
    throw std::invalid_argument(std::string("norm spec: expected an object like {\"type\": \"batch\"}, got ") +
                                json_kind(spec));
  std::string known_types;
  for (const auto& t : type_table()) known_types += std::string(known_types.empty() ? "" : ", ") + t.type;
  if (!spec.contains("type"))
    throw std::invalid_argument("norm spec: missing key 'type' (one of " + known_types + ")");
  if (!spec["type"].is_string())
    throw std::invalid_argument(std::string("norm spec: type: expected a string, got ") +
                                json_kind(spec["type"]));
  const std::string type = spec["type"].get<std::string>();
  const TypeFields* entry = nullptr;
  for (const auto& t : type_table())
    if (type == t.type) entry = &t;
  if (!entry)
    throw std::invalid_argument("norm spec: unknown type '" + type + "' (use one of " + known_types + ")");

  nlohmann::json resolved = {{"type", type}};
  for (const auto& field : entry->fields) resolved[field.key] = field.default_value;
  for (const auto& [key, value] : spec.items()) {
    if (key == "type") continue;
    const Field* field = nullptr;
    for (const auto& f : entry->fields)
      if (key == f.key) field = &f;
    if (!field) {
      std::string allowed;
      for (const auto& f : entry->fields) allowed += std::string(allowed.empty() ? "" : ", ") + f.key;
      throw std::invalid_argument("norm spec: unknown key '" + key + "' for type " + type +
                                  " (allowed: " + allowed + ")");
    }
    if (!fits(value, field->kind))
      throw std::invalid_argument("norm spec: " + key + ": expected " + expected(field->kind) +
                                  ", got " + json_kind(value));
    resolved[key] = value;
  }
  if (resolved.contains("eps") && resolved["eps"].is_number() && resolved["eps"].get<double>() < 0)
    throw std::invalid_argument("norm spec: eps: expected a number >= 0");
  if (resolved.contains("momentum") && resolved["momentum"].is_number()) {
    const double m = resolved["momentum"].get<double>();
    bool null_allowed = false;
    for (const auto& f : entry->fields)
      if (std::string(f.key) == "momentum") null_allowed = f.kind == Kind::number_or_null;
    if (m < 0 || m > 1)
      throw std::invalid_argument(std::string("norm spec: momentum: expected a number in [0, 1]") +
                                  (null_allowed ? " or null" : ""));
  }
  if (resolved.contains("rmax") && !(resolved["rmax"].get<double>() >= 1))
    throw std::invalid_argument("norm spec: rmax: expected a number >= 1");
  if (resolved.contains("dmax") && !(resolved["dmax"].get<double>() >= 0))
    throw std::invalid_argument("norm spec: dmax: expected a number >= 0");
  if (resolved.contains("warmup_steps") && resolved["warmup_steps"].get<long long>() < 0)
    throw std::invalid_argument("norm spec: warmup_steps: expected an integer >= 0");
  if (resolved.value("channel_affine", false) && !resolved["normalized_shape"].is_null())
    throw std::invalid_argument(
        "norm spec: channel_affine normalizes over all dims but the first; drop normalized_shape");
  return resolved;
}

}  // namespace normlab
