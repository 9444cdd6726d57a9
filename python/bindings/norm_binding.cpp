#include "norm_binding.hpp"

#include <pybind11/numpy.h>
#include <pybind11/stl.h>

#include <algorithm>
#include <memory>
#include <stdexcept>
#include <string>
#include <variant>
#include <vector>

#include "json_python.hpp"
#include "normlab/norm.hpp"

namespace py = pybind11;

namespace normlab::python {
namespace {

// A C-contiguous array of T: numpy passes the caller's array through when it
// already is one, and converts (copies) it otherwise.
template <class T>
using DenseArray = py::array_t<T, py::array::c_style | py::array::forcecast>;

// The library's API takes xt::xarray, which owns its memory: one copy in.
// `what` names the argument in the error for a value numpy cannot convert.
template <class T>
xt::xarray<T> to_xarray(const py::handle& value, const char* what) {
  const DenseArray<T> array = DenseArray<T>::ensure(value);
  if (!array)
    throw std::invalid_argument(std::string(what) + ": expected an array of numbers, got " +
                                std::string(py::str(py::type::of(value).attr("__name__"))));
  std::vector<std::size_t> shape(array.shape(), array.shape() + array.ndim());
  xt::xarray<T> result = xt::empty<T>(shape);
  std::copy(array.data(), array.data() + array.size(), result.data());
  return result;
}

// Hands `value`'s memory to numpy without a copy: the array owns the xarray.
template <class T>
py::array to_numpy(xt::xarray<T>&& value) {
  auto* owner = new xt::xarray<T>(std::move(value));
  py::capsule free_owner(owner, [](void* p) { delete static_cast<xt::xarray<T>*>(p); });
  const std::vector<py::ssize_t> shape(owner->shape().begin(), owner->shape().end());
  return py::array_t<T>(shape, owner->data(), free_owner);
}

// A copy: parameters and running statistics belong to the norm, which may
// reallocate them when the input's shape changes.
template <class T>
py::array copy_to_numpy(const xt::xarray<T>& value) {
  return to_numpy(xt::xarray<T>(value));
}

template <class T>
class TypedNorm {
 public:
  TypedNorm(const nlohmann::json& spec, std::size_t channels)
      : norm_(make_norm<T>(spec, channels)) {}

  py::array forward(const py::handle& x, bool training) {
    // Norm::forward keeps a reference to its input for backward: the input is
    // kept here, and replaced only once a forward succeeded, so that a failed
    // forward leaves the last good one to backward from.
    xt::xarray<T> input = to_xarray<T>(x, "forward: x");
    xt::xarray<T> y;
    norm_->forward(input, training ? Mode::train : Mode::eval, y);
    input_ = std::move(input);  // moves the buffer: the norm's reference stays valid
    return to_numpy(std::move(y));
  }

  py::array backward(const py::handle& dy) {
    xt::xarray<T> dx;
    norm_->backward(to_xarray<T>(dy, "backward: dy"), dx);
    return to_numpy(std::move(dx));
  }

  py::dict parameters() const { return named(norm_->parameter_names(), &Parameter<T>::value); }
  py::dict gradients() const { return named(norm_->parameter_names(), &Parameter<T>::grad); }
  py::dict state() const {
    py::dict result;
    for (const std::string& name : norm_->state_names())
      result[py::str(name)] = copy_to_numpy(norm_->state(name));
    return result;
  }

  void set(const std::string& name, const py::handle& value) {
    norm_->set(name, to_xarray<T>(value, ("set_parameter: " + name).c_str()));
  }

  Norm<T>& norm() { return *norm_; }
  const Norm<T>& norm() const { return *norm_; }

 private:
  py::dict named(const std::vector<std::string>& names, xt::xarray<T> Parameter<T>::*member) const {
    py::dict result;
    for (const std::string& name : names)
      result[py::str(name)] = copy_to_numpy(norm_->parameter(name).*member);
    return result;
  }

  std::unique_ptr<Norm<T>> norm_;
  xt::xarray<T> input_;  // the last successful forward's input
};

// normlab.Norm: a float32 or a float64 norm behind one Python class.
class PythonNorm {
 public:
  using Typed = std::variant<TypedNorm<float>, TypedNorm<double>>;

  PythonNorm(const py::object& spec, std::size_t channels, const py::object& dtype)
      : norm_(make(spec, channels, dtype)) {}

  template <class F>
  decltype(auto) visit(F&& f) {
    return std::visit(std::forward<F>(f), norm_);
  }
  template <class F>
  decltype(auto) visit(F&& f) const {
    return std::visit(std::forward<F>(f), norm_);
  }
  nlohmann::json spec() const {
    return visit([](auto& n) { return n.norm().to_json(); });
  }
  const char* dtype() const { return norm_.index() == 0 ? "float32" : "float64"; }

 private:
  static Typed make(const py::object& spec, std::size_t channels, const py::object& dtype) {
    const nlohmann::json json_spec = py::isinstance<py::str>(spec)
                                         ? nlohmann::json{{"type", spec.cast<std::string>()}}
                                         : to_json(spec, "norm spec");
    py::dtype type;
    try {
      type = py::dtype::from_args(dtype);
    } catch (const py::error_already_set&) {  // numpy's TypeError for what is no dtype
      throw std::invalid_argument("Norm: dtype must be float32 or float64, got " +
                                  std::string(py::repr(dtype)));
    }
    if (type.kind() == 'f' && type.itemsize() == 4)
      return Typed(std::in_place_index<0>, json_spec, channels);
    if (type.kind() == 'f' && type.itemsize() == 8)
      return Typed(std::in_place_index<1>, json_spec, channels);
    throw std::invalid_argument("Norm: dtype must be float32 or float64, got " +
                                std::string(py::str(type)));
  }

  Typed norm_;
};

}  // namespace

void bind_norm(py::module_& module) {
  py::class_<PythonNorm>(module, "Norm", R"(A normalization layer on numpy arrays.

Norm(spec, channels, dtype="float32"): spec is a registered type's name
("batch") or a dict ({"type": "group", "groups": 8}); channels is the size of
dimension 1 of the input, (N, C, ...) (or of the last with "layout": "nhwc").
forward(x, training=True) returns y; backward(dy) returns dx for the last
forward and adds to gradients(). Inputs are read as C-contiguous arrays of the
norm's dtype (other arrays are converted first); outputs are new arrays that
own the library's result (no copy).)")
      .def(py::init<const py::object&, std::size_t, const py::object&>(), py::arg("spec"),
           py::arg("channels"), py::arg("dtype") = "float32")
      .def(
          "forward",
          [](PythonNorm& self, const py::handle& x, bool training) {
            return self.visit([&](auto& n) { return n.forward(x, training); });
          },
          py::arg("x"), py::arg("training") = true,
          "y for x; training uses batch statistics and updates running state")
      .def(
          "backward",
          [](PythonNorm& self, const py::handle& dy) {
            return self.visit([&](auto& n) { return n.backward(dy); });
          },
          py::arg("dy"), "dx for the last forward; adds the parameter gradients to gradients()")
      .def(
          "parameters",
          [](const PythonNorm& self) { return self.visit([](auto& n) { return n.parameters(); }); },
          "dict of name -> a copy of the learned parameter")
      .def(
          "gradients",
          [](const PythonNorm& self) { return self.visit([](auto& n) { return n.gradients(); }); },
          "dict of name -> a copy of the accumulated gradient")
      .def(
          "state",
          [](const PythonNorm& self) { return self.visit([](auto& n) { return n.state(); }); },
          "dict of name -> a copy of the running state (running_mean, running_var, ...)")
      .def(
          "set_parameter",
          [](PythonNorm& self, const std::string& name, const py::handle& value) {
            self.visit([&](auto& n) { n.set(name, value); });
          },
          py::arg("name"), py::arg("value"),
          "sets a parameter or a running statistic by name; the shape must match")
      .def(
          "zero_grad", [](PythonNorm& self) { self.visit([](auto& n) { n.norm().zero_grad(); }); },
          "sets the accumulated gradients to 0")
      .def(
          "prepare",
          [](PythonNorm& self, const std::vector<std::size_t>& shape) {
            self.visit([&](auto& n) { n.norm().prepare(shape); });
          },
          py::arg("shape"), "creates the parameters and state an input of this shape needs")
      .def(
          "batch_statistics",
          [](const PythonNorm& self) {
            const BatchStatistics& stats = self.visit(
                [](auto& n) -> const BatchStatistics& { return n.norm().batch_statistics(); });
            py::dict result;
            result["mean"] = stats.mean;
            result["var"] = stats.var;
            return result;
          },
          "per-channel mean and unbiased variance of the last train forward")
      .def_property_readonly(
          "parameter_names",
          [](const PythonNorm& self) {
            return self.visit([](auto& n) { return n.norm().parameter_names(); });
          })
      .def_property_readonly("state_names",
                             [](const PythonNorm& self) {
                               return self.visit([](auto& n) { return n.norm().state_names(); });
                             })
      .def_property_readonly("type",
                             [](const PythonNorm& self) {
                               return self.visit([](auto& n) { return n.norm().type(); });
                             })
      .def_property_readonly(
          "layout",
          [](const PythonNorm& self) {
            return self.visit([](auto& n) { return std::string(to_string(n.norm().layout())); });
          })
      .def_property_readonly(
          "spec", [](const PythonNorm& self) { return from_json(self.spec()); },
          "the spec with every option resolved")
      .def_property_readonly("dtype", &PythonNorm::dtype)
      .def("__repr__", [](const PythonNorm& self) {
        return "normlab.Norm(" + self.spec().dump() + ", dtype=\"" + self.dtype() + "\")";
      });
}

}  // namespace normlab::python
