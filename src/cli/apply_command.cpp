// normlab apply: one norm, forward (and backward) on .npy files, so that users
// can check normlab against their own framework.
#include <algorithm>
#include <boost/program_options.hpp>
#include <iostream>
#include <map>
#include <stdexcept>
#include <type_traits>
#include <xtensor/xarray.hpp>

#include "commands.hpp"
#include "normlab/normlab.hpp"
#include "parse_options.hpp"

namespace po = boost::program_options;

namespace normlab::cli {
namespace {

struct ApplyOptions {
  std::string norm;
  std::string input;
  std::string grad;
  std::string mode = "train";
  std::vector<std::string> params;
  std::string layout;
  std::string dtype;  // empty: the input file's
  std::string out;
};

// Loads an .npy as T: for float and double a file of either float dtype,
// converted; for bfloat16 a float32 file, each value rounded to bfloat16 (to
// nearest even; a float64 value would be rounded twice, so such files are
// refused).
template <class T>
xt::xarray<T> load_as(const std::string& path) {
  if constexpr (std::is_same_v<T, bfloat16>) {
    if (npy_dtype(path) != DType::float32)
      throw std::invalid_argument(path +
                                  " is float64, but --dtype bfloat16 reads float32 files (each "
                                  "value rounded to bfloat16): convert it, e.g. with numpy's "
                                  ".astype(np.float32)");
    const xt::xarray<float> wide = load_npy<float>(path);
    xt::xarray<bfloat16> narrow = xt::xarray<bfloat16>::from_shape(wide.shape());
    to_bfloat16(wide.data(), narrow.data(), wide.size());
    return narrow;
  } else {
    if (npy_dtype(path) == DType::float32) return xt::xarray<T>(load_npy<float>(path));
    return xt::xarray<T>(load_npy<double>(path));
  }
}

// Writes an output of type T: bfloat16 as a float32 file holding its values
// (the low 16 bits of every float zero).
template <class T>
void save_as(const std::string& path, const xt::xarray<T>& value) {
  if constexpr (std::is_same_v<T, bfloat16>) {
    xt::xarray<float> wide = xt::xarray<float>::from_shape(value.shape());
    to_float(value.data(), wide.data(), value.size());
    save_npy<float>(path, wide);
  } else {
    save_npy<T>(path, value);
  }
}

// numpy writes arrays with a zero-size dimension; no norm has statistics of them.
template <class T>
void require_values(const std::string& path, const xt::xarray<T>& x) {
  for (std::size_t axis = 0; axis < x.dimension(); ++axis) {
    if (x.shape()[axis] != 0) continue;
    std::string shape;
    for (std::size_t d : x.shape()) shape += (shape.empty() ? "" : ", ") + std::to_string(d);
    if (x.dimension() == 1) shape += ",";
    throw std::invalid_argument(path + ": shape (" + shape + ") has a zero-size dimension (axis " +
                                std::to_string(axis) +
                                "): a norm needs at least one value along every axis");
  }
}

template <class T>
void run_apply(const ApplyOptions& o, const nlohmann::json& spec) {
  const Mode mode = parse_mode(o.mode);
  const xt::xarray<T> x = load_as<T>(o.input);
  require_values(o.input, x);
  auto norm = make_norm<T>(spec, 0);
  norm->prepare(std::vector<std::size_t>(x.shape().begin(), x.shape().end()));

  for (const std::string& assignment : o.params) {
    const std::size_t eq = assignment.find('=');
    if (eq == std::string::npos || eq == 0)
      throw UsageError("--param '" + assignment + "': expected NAME=FILE.npy");
    const std::string name = assignment.substr(0, eq);
    norm->set(name, load_as<T>(assignment.substr(eq + 1)));
  }

  // Compute everything before writing anything.
  std::map<std::string, xt::xarray<T>> outputs;
  outputs["y"] = norm->forward(x, mode);
  if (!o.grad.empty()) {
    const xt::xarray<T> dy = load_as<T>(o.grad);
    outputs["dx"] = norm->backward(dy);
    for (const std::string& name : norm->parameter_names())
      outputs["d" + name] = norm->parameter(name).grad;
  }
  if (mode == Mode::train)
    for (const std::string& name : norm->state_names()) outputs[name] = norm->state(name);

  StagedOutput out(o.out);
  for (const auto& entry : outputs) {
    const auto& value = entry.second;  // not a binding: lambdas capture it (C++17)
    out.write(entry.first + ".npy", [&](const std::string& path) { save_as<T>(path, value); });
  }
  out.commit();
  std::cout << "wrote";
  for (const auto& entry : outputs) std::cout << " " << entry.first << ".npy";
  std::cout << " to " << o.out << "\n";
}

}  // namespace

int apply_command(const Args& args) {
  ApplyOptions o;
  po::options_description desc(
      "usage: normlab apply --norm NAME|SPEC --input X.npy [--grad DY.npy] [--mode train|eval]\n"
      "                     [--param NAME=FILE.npy ...] [--layout nchw|nhwc]\n"
      "                     [--dtype float32|float64|bfloat16] --out DIR\n\n"
      "Writes DIR/y.npy; with --grad also dx.npy and d<param>.npy; after a train\n"
      "forward the updated running_mean.npy / running_var.npy. Options");
  desc.add_options()("help,h", "show this help")(
      "norm", po::value(&o.norm)->required()->value_name("NAME|SPEC"),
      "the norm: a name from `normlab list norms` (its defaults), or a JSON spec, e.g. "
      "'{\"type\":\"group\",\"groups\":4}'")("input",
                                             po::value(&o.input)->required()->value_name("X.npy"),
                                             "input .npy (float32 or float64; WeightNorm: v)")(
      "grad", po::value(&o.grad)->value_name("DY.npy"),
      "upstream gradient dy .npy (same shape as the input)")(
      "mode", po::value(&o.mode)->value_name("MODE"), "train (default) or eval")(
      "param", po::value(&o.params)->composing()->value_name("NAME=FILE.npy"),
      "set a parameter or running state by name: gamma, beta, g (weight), tau (frn), v "
      "(evonorm_s0), running_mean, running_var, num_batches_tracked (batch_renorm); "
      "`normlab list norms` lists each norm's")(
      "layout", po::value(&o.layout)->value_name("LAYOUT"),
      "nchw: (N, C, H, W) files (default); nhwc: (N, H, W, C) files, channels last, for the "
      "norms with a \"layout\" option (same as putting it in --norm)")(
      "dtype", po::value(&o.dtype)->value_name("DTYPE"),
      "the data type of the norm and its outputs: float32 or float64 (default: the input's; "
      "files of the other one are converted), or bfloat16: float32 files rounded to bfloat16 "
      "(to nearest even), the norm in bfloat16 (float arithmetic inside, as PyTorch's "
      ".to(torch.bfloat16)), outputs written as float32 files holding bfloat16 values")(
      "out", po::value(&o.out)->required()->value_name("DIR"), "output directory");
  if (!parse_options(args, desc)) return 0;

  nlohmann::json spec = norm_option("--norm", o.norm);
  try {
    parse_mode(o.mode);  // names the choices when it is neither
  } catch (const std::invalid_argument& e) {
    throw UsageError(std::string("--mode: ") + e.what());
  }
  if (!o.layout.empty()) {
    try {
      parse_layout(o.layout);  // names the choices when it is neither
    } catch (const std::invalid_argument& e) {
      throw UsageError(std::string("--layout: ") + e.what());
    }
    if (spec.contains("layout") && spec["layout"] != o.layout)
      throw UsageError("--layout " + o.layout + " contradicts --norm's \"layout\": " +
                       spec["layout"].dump() + " (give one of them)");
    // resolve_spec names a missing type, or one that is not a string.
    const NormInfo& info = norm_info(resolve_spec(spec)["type"].get<std::string>());
    const bool has_layout = std::any_of(info.options.begin(), info.options.end(),
                                        [](const NormOption& o) { return o.key == "layout"; });
    if (!has_layout)
      throw UsageError("--layout: " + info.type +
                       " norm has no layout (its input is not (N, C, ...) activations)");
    spec["layout"] = o.layout;
  }
  if (!o.dtype.empty() && o.dtype != "float32" && o.dtype != "float64" && o.dtype != "bfloat16")
    throw UsageError("--dtype '" + o.dtype + "': use float32, float64 or bfloat16");
  const std::string dtype = !o.dtype.empty()                       ? o.dtype
                            : npy_dtype(o.input) == DType::float32 ? "float32"
                                                                   : "float64";
  if (dtype == "bfloat16")
    run_apply<bfloat16>(o, spec);
  else if (dtype == "float32")
    run_apply<float>(o, spec);
  else
    run_apply<double>(o, spec);
  return 0;
}

}  // namespace normlab::cli
