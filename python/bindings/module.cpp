// The Python module normlab._normlab (see python/normlab/__init__.py, which
// re-exports it, and docs/python.md).
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <stdexcept>

#include "experiment_binding.hpp"
#include "json_python.hpp"
#include "norm_binding.hpp"
#include "normlab/registry.hpp"
#include "normlab/threads.hpp"
#include "normlab/version.hpp"

namespace py = pybind11;

namespace normlab::python {
namespace {

py::dict norm_info_dict(const std::string& type) {
  const NormInfo& info = norm_info(type);
  py::list options;
  for (const NormOption& option : info.options) {
    py::dict entry;
    entry["key"] = option.key;
    entry["kind"] = option.kind;
    entry["default"] = from_json(option.default_value);
    entry["help"] = option.help;
    options.append(entry);
  }
  py::dict result;
  result["type"] = info.type;
  result["summary"] = info.summary;
  result["options"] = options;
  result["parameters"] = info.traits.parameters;
  result["state"] = info.traits.state;
  result["unavailable"] = why_unavailable(info.traits);  // "" when this build can make it
  return result;
}

}  // namespace
}  // namespace normlab::python

PYBIND11_MODULE(_normlab, module) {
  using namespace normlab;
  using namespace normlab::python;
  module.doc() = "normlab's C++ library: norms on numpy arrays, experiments";
  module.attr("__version__") = normlab::version;

  // Every error the library raises for what a caller passed (a spec, a shape,
  // a config, a file) is a normlab.Error, a ValueError carrying its message.
  static py::exception<std::exception> error(module, "Error", PyExc_ValueError);
  py::register_exception_translator([](std::exception_ptr thrown) {
    try {
      if (thrown) std::rethrow_exception(thrown);
    } catch (const py::builtin_exception&) {
      throw;  // pybind11's own (TypeError, ...): translated by pybind11
    } catch (const std::logic_error& e) {
      error(e.what());
    } catch (const std::runtime_error& e) {
      error(e.what());
    }
  });

  module.def("norms", &norm_types, "the registered norm types, sorted");
  module.def("norm_info", &norm_info_dict, py::arg("type"),
             "a registered type's summary, options (key, kind, default, help), parameters, "
             "state, and why this build cannot make it ('unavailable', '' when it can)");
  module.def(
      "resolve_spec",
      [](const py::object& spec) { return from_json(resolve_spec(to_json(spec, "norm spec"))); },
      py::arg("spec"), "the spec with every option filled in");
  module.def("set_num_threads", &set_num_threads, py::arg("n"),
             "threads of the norm kernels and GEMMs (1 by default)");
  module.def("num_threads", &num_threads);
  bind_norm(module);
  bind_experiments(module);
}
