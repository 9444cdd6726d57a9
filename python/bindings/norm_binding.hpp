// normlab.Norm: one registered norm on numpy arrays, in float32 or float64.
#pragma once

#include <pybind11/pybind11.h>

namespace normlab::python {

void bind_norm(pybind11::module_& module);

}  // namespace normlab::python
