// JSON values to Python objects and back: norm specs, configs and result
// records cross the boundary as dicts, lists, strings, numbers, bools and None.
#pragma once

#include <pybind11/pybind11.h>

#include <nlohmann/json.hpp>

namespace normlab::python {

// A dict/list/str/int/float/bool/None value as JSON; anything else (a set, an
// object, a dict with a non-string key, a float that is not finite) is
// std::invalid_argument naming `what` and the place in it.
nlohmann::json to_json(pybind11::handle value, const std::string& what);

pybind11::object from_json(const nlohmann::json& value);

}  // namespace normlab::python
