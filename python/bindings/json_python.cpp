#include "json_python.hpp"

#include <cmath>
#include <stdexcept>
#include <string>

#include "normlab/experiment.hpp"

namespace py = pybind11;

namespace normlab::python {
namespace {

nlohmann::json convert(py::handle value, const std::string& where, int depth) {
  if (depth > kMaxJsonDepth)
    throw std::invalid_argument(where + ": nested deeper than " + std::to_string(kMaxJsonDepth) +
                                " levels");
  if (value.is_none()) return nullptr;
  if (py::isinstance<py::bool_>(value)) return value.cast<bool>();  // before int: bool is an int
  if (py::isinstance<py::int_>(value)) {
    // Python ints are unbounded; JSON numbers here are 64-bit.
    try {
      return value.cast<long long>();
    } catch (const py::cast_error&) {
    }
    try {
      return value.cast<unsigned long long>();
    } catch (const py::cast_error&) {
    }
    throw std::invalid_argument(where + ": the integer " + py::str(value).cast<std::string>() +
                                " does not fit in 64 bits");
  }
  if (py::isinstance<py::float_>(value)) {
    const double number = value.cast<double>();
    if (!std::isfinite(number))
      throw std::invalid_argument(where + ": expected a finite number, got " +
                                  py::str(value).cast<std::string>());
    return number;
  }
  if (py::isinstance<py::str>(value)) return value.cast<std::string>();
  if (py::isinstance<py::dict>(value)) {
    nlohmann::json object = nlohmann::json::object();
    for (const auto& [key, item] : value.cast<py::dict>()) {
      if (!py::isinstance<py::str>(key))
        throw std::invalid_argument(where + ": keys must be strings, got " +
                                    py::repr(key).cast<std::string>());
      const std::string name = key.cast<std::string>();
      object[name] = convert(item, where + "." + name, depth + 1);
    }
    return object;
  }
  if (py::isinstance<py::list>(value) || py::isinstance<py::tuple>(value)) {
    nlohmann::json array = nlohmann::json::array();
    std::size_t index = 0;
    for (py::handle item : value)
      array.push_back(convert(item, where + "[" + std::to_string(index++) + "]", depth + 1));
    return array;
  }
  throw std::invalid_argument(where + ": expected a dict, list, str, number, bool or None, got " +
                              std::string(py::str(py::type::of(value).attr("__name__"))));
}

}  // namespace

nlohmann::json to_json(py::handle value, const std::string& what) {
  return convert(value, what, 0);
}

py::object from_json(const nlohmann::json& value) {
  switch (value.type()) {
    case nlohmann::json::value_t::null:
      return py::none();
    case nlohmann::json::value_t::boolean:
      return py::bool_(value.get<bool>());
    case nlohmann::json::value_t::number_integer:
      return py::int_(value.get<long long>());
    case nlohmann::json::value_t::number_unsigned:
      return py::int_(value.get<unsigned long long>());
    case nlohmann::json::value_t::number_float:
      return py::float_(value.get<double>());
    case nlohmann::json::value_t::string:
      return py::str(value.get_ref<const std::string&>());
    case nlohmann::json::value_t::array: {
      py::list list;
      for (const nlohmann::json& item : value) list.append(from_json(item));
      return std::move(list);
    }
    case nlohmann::json::value_t::object: {
      py::dict dict;
      for (const auto& [key, item] : value.items()) dict[py::str(key)] = from_json(item);
      return std::move(dict);
    }
    default:  // binary and discarded values do not occur in normlab's JSON
      throw std::logic_error("from_json: unexpected JSON value");
  }
}

}  // namespace normlab::python
