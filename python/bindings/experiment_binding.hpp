// normlab.run and normlab.load_results: experiments from Python.
#pragma once

#include <pybind11/pybind11.h>

namespace normlab::python {

void bind_experiments(pybind11::module_& module);

}  // namespace normlab::python
