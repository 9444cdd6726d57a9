// Finite-difference gradient checks in double for every norm type: dx and
// every parameter gradient of L = sum(y * r) against central differences.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <functional>
#include <string>
#include <vector>
#include <xtensor/xarray.hpp>
#include <xtensor/xmath.hpp>

#include "normlab/normlab.hpp"
#include "test_helpers.hpp"

using namespace normlab;
using normlab::test::central_difference;
using normlab::test::random_normal;
using normlab::test::random_uniform;

namespace {

constexpr double kStep = 1e-6;
// |analytic - numeric| / max(1, |analytic|, |numeric|): gradients here are of
// order one, so the floor keeps the rounding noise of L (~1e-10) from
// dominating near-zero entries.
constexpr double kTolerance = 1e-6;

struct GradCase {
  nlohmann::json spec;
  std::vector<std::size_t> shape;
  Mode mode;
  std::vector<std::string> parameters;  // expected names, sorted
};

std::string describe(const GradCase& c) {
  std::string shape;
  for (std::size_t d : c.shape) shape += (shape.empty() ? "" : "x") + std::to_string(d);
  return c.spec.dump() + " on " + shape + " in " + to_string(c.mode);
}

void check_against_differences(const std::string& what, const xt::xarray<double>& analytic,
                               xt::xarray<double>& values, const std::function<double()>& loss) {
  normlab::test::check_against_differences(what, analytic, values, loss, kStep, kTolerance);
}

// The one gradient check used for every norm: random parameters, random
// positive running variances, x with a nonzero mean, a fixed random r.
void check_gradients(const GradCase& c, std::uint64_t seed) {
  INFO(describe(c));
  std::mt19937_64 rng(seed);
  auto norm = make_norm<double>(c.spec, 0);
  norm->prepare(c.shape);
  CHECK(norm->parameter_names() == c.parameters);
  for (const std::string& name : norm->parameter_names())
    norm->set(name, random_uniform<double>(rng, norm->parameter(name).value.shape(), 0.5, 1.5) *
                        (name == "beta" ? -1.0 : 1.0));
  for (const std::string& name : norm->state_names()) {
    const auto& shape = norm->state(name).shape();
    norm->set(name, name == "running_var" ? random_uniform<double>(rng, {shape[0]}, 0.5, 2.0)
                                          : random_normal<double>(rng, {shape[0]}));
  }
  xt::xarray<double> x = random_normal<double>(rng, c.shape, 0.7, 1.5);
  const xt::xarray<double> r = random_normal<double>(rng, c.shape);
  const auto loss = [&] { return double(xt::sum(norm->forward(x, c.mode) * r)()); };

  norm->forward(x, c.mode);
  norm->zero_grad();
  const xt::xarray<double> dx = norm->backward(r);
  std::vector<xt::xarray<double>> grads;
  for (const std::string& name : c.parameters) grads.push_back(norm->parameter(name).grad);

  check_against_differences("dx", dx, x, loss);
  for (std::size_t i = 0; i < grads.size(); ++i)
    check_against_differences("d" + c.parameters[i], grads[i],
                              norm->parameter(c.parameters[i]).value, loss);
}

void check_all(const std::vector<GradCase>& cases) {
  for (std::size_t i = 0; i < cases.size(); ++i) check_gradients(cases[i], 1000 + i);
}

using Names = std::vector<std::string>;
const Names kAffine = {"beta", "gamma"};
const Names kSwitchable = {"beta", "gamma", "mean_weight", "var_weight"};
const Mode train = Mode::train;
const Mode eval = Mode::eval;

}  // namespace

TEST_CASE("gradcheck: batch norm") {
  const nlohmann::json batch = {{"type", "batch"}};
  check_all({
      {batch, {4, 3}, train, kAffine},
      {batch, {1, 3, 5}, train, kAffine},
      {batch, {2, 5, 3, 3}, train, kAffine},
      {{{"type", "batch"}, {"momentum", nullptr}}, {3, 6}, train, kAffine},
      {{{"type", "batch"}, {"affine", false}}, {3, 5, 3}, train, {}},
      // Eval with running statistics: they are constants.
      {batch, {2, 5, 3}, eval, kAffine},
      {batch, {1, 3}, eval, kAffine},
      {batch, {2, 3, 3, 5}, eval, kAffine},
      // Without running statistics eval uses the batch's.
      {{{"type", "batch"}, {"track_running_stats", false}}, {2, 3, 5}, eval, kAffine},
  });
}

TEST_CASE("gradcheck: mean-only batch norm") {
  const nlohmann::json mean_only = {{"type", "mean_only_batch"}};
  check_all({
      {mean_only, {4, 3}, train, kAffine},
      {mean_only, {2, 3, 3, 5}, train, kAffine},
      {mean_only, {2, 3, 5}, eval, kAffine},
      {{{"type", "mean_only_batch"}, {"affine", false}}, {3, 4, 2}, train, {}},
  });
}

TEST_CASE("gradcheck: layer norm") {
  const nlohmann::json layer = {{"type", "layer"}};
  const nlohmann::json channel = {{"type", "layer"}, {"channel_affine", true}};
  check_all({
      {layer, {3, 5}, train, kAffine},
      {layer, {2, 3, 5}, eval, kAffine},
      {layer, {1, 3, 3, 5}, train, kAffine},
      {{{"type", "layer"}, {"normalized_shape", {5}}}, {2, 3, 5}, train, kAffine},
      {{{"type", "layer"}, {"normalized_shape", {3, 5}}}, {2, 3, 3, 5}, train, kAffine},
      {{{"type", "layer"}, {"affine", false}}, {3, 7}, train, {}},
      {channel, {3, 5}, train, kAffine},
      {channel, {2, 3, 5}, train, kAffine},
      {channel, {1, 6, 3, 3}, eval, kAffine},
  });
}

TEST_CASE("gradcheck: instance norm") {
  const nlohmann::json affine = {{"type", "instance"}, {"affine", true}};
  const nlohmann::json tracked = {
      {"type", "instance"}, {"affine", true}, {"track_running_stats", true}};
  check_all({
      {{{"type", "instance"}}, {2, 3, 5}, train, {}},
      {affine, {1, 5, 3, 3}, train, kAffine},
      {affine, {2, 3, 7}, eval, kAffine},
      {tracked, {3, 3, 5}, train, kAffine},
      // Eval with running statistics: constants, so spatial size 1 is fine too.
      {tracked, {2, 3, 5}, eval, kAffine},
      {tracked, {2, 3, 1}, eval, kAffine},
      {{{"type", "instance"}, {"track_running_stats", true}}, {2, 3, 3, 3}, eval, {}},
  });
}

TEST_CASE("gradcheck: group norm") {
  const auto group = [](int groups) {
    return nlohmann::json{{"type", "group"}, {"groups", groups}};
  };
  check_all({
      {group(1), {2, 6, 3}, train, kAffine},
      {group(2), {1, 6, 5}, train, kAffine},
      {group(3), {3, 6, 3, 3}, train, kAffine},
      {group(6), {2, 6, 3}, eval, kAffine},
      {group(5), {2, 5, 3}, train, kAffine},
      {group(3), {2, 9, 1}, train, kAffine},
      {group(2), {4, 6}, train, kAffine},
      {{{"type", "group"}, {"groups", 2}, {"affine", false}}, {2, 6, 3}, train, {}},
  });
}

TEST_CASE("gradcheck: weight norm") {
  const auto weight = [](int dim) { return nlohmann::json{{"type", "weight"}, {"dim", dim}}; };
  check_all({
      {weight(0), {3, 5}, train, {"g"}},
      {weight(0), {4, 3, 3, 3}, train, {"g"}},
      {weight(1), {3, 5}, train, {"g"}},
      {weight(1), {2, 3, 5}, eval, {"g"}},
      {weight(-1), {3, 4}, train, {"g"}},
  });
}

TEST_CASE("gradcheck: rms norm") {
  const nlohmann::json rms = {{"type", "rms"}};
  check_all({
      {rms, {3, 5}, train, {"gamma"}},
      {rms, {2, 3, 5}, eval, {"gamma"}},
      {{{"type", "rms"}, {"normalized_shape", {5}}}, {2, 3, 5}, train, {"gamma"}},
      {{{"type", "rms"}, {"eps", 1e-3}}, {2, 3, 3, 3}, train, {"gamma"}},
      {{{"type", "rms"}, {"affine", false}}, {1, 7}, train, {}},
  });
}

// Batch Renorm's train forward moves the running statistics its r and d come
// from, so differences of repeated forwards do not see one function; its
// channels-last form is checked by the golden cases.
TEST_CASE("gradcheck: channels-last (nhwc) inputs of every norm with a layout") {
  const auto nhwc = [](nlohmann::json spec) {
    spec["layout"] = "nhwc";
    return spec;
  };
  std::vector<GradCase> cases = {
      {nhwc({{"type", "batch"}}), {2, 3, 2, 5}, train, kAffine},
      {nhwc({{"type", "batch"}}), {2, 3, 2, 5}, eval, kAffine},
      {nhwc({{"type", "ghost"}, {"virtual_batch_size", 2}}), {4, 3, 5}, train, kAffine},
      {nhwc({{"type", "instance"}, {"affine", true}}), {2, 3, 3, 4}, train, kAffine},
      {nhwc({{"type", "instance"}}), {2, 5, 3}, train, {}},
      {nhwc({{"type", "group"}, {"groups", 2}}), {2, 3, 2, 6}, train, kAffine},
      {nhwc({{"type", "group"}, {"groups", 3}}), {1, 4, 6}, eval, kAffine},
      {nhwc({{"type", "layer"}, {"channel_affine", true}}), {2, 3, 2, 4}, train, kAffine},
      {nhwc({{"type", "rms"}, {"channel_affine", true}}), {2, 3, 2, 4}, train, {"gamma"}},
      {nhwc({{"type", "frn"}}), {2, 3, 3, 4}, train, {"beta", "gamma", "tau"}},
      {nhwc({{"type", "frn"}, {"tlu", false}}), {2, 5, 3}, eval, kAffine},
      {nhwc({{"type", "evonorm_s0"}, {"groups", 2}}), {2, 3, 2, 4}, train, {"beta", "gamma", "v"}},
      {nhwc({{"type", "evonorm_s0"}, {"groups", 1}}), {1, 5, 3}, train, {"beta", "gamma", "v"}},
      {nhwc({{"type", "batch"}, {"frozen", true}}), {2, 3, 2, 5}, train, kAffine},
      {nhwc({{"type", "dyt"}}), {2, 3, 2, 4}, train, {"alpha", "beta", "gamma"}},
      {nhwc({{"type", "switchable"}}), {2, 3, 2, 4}, train, kSwitchable},
      {nhwc({{"type", "switchable"}}), {2, 3, 2, 4}, eval, kSwitchable},
  };
  if (built_with_mpi())  // one process: sync_batch is batch
    cases.push_back({nhwc({{"type", "sync_batch"}}), {2, 3, 2, 5}, train, kAffine});
  else
    MESSAGE("skipped sync_batch: this build has no MPI (NORMLAB_WITH_MPI=OFF)");
  check_all(cases);
}

TEST_CASE("gradcheck: frozen batch norm (running statistics in train, constants)") {
  const nlohmann::json frozen = {{"type", "batch"}, {"frozen", true}};
  check_all({
      {frozen, {2, 3}, train, kAffine},
      {frozen, {1, 3, 5}, train, kAffine},  // one sample: no batch statistics needed
      {frozen, {2, 4, 3, 3}, train, kAffine},
      {{{"type", "batch"}, {"frozen", true}, {"affine", false}}, {2, 3, 4}, train, {}},
  });
}

TEST_CASE("gradcheck: dyt, alpha included") {
  const Names dyt = {"alpha", "beta", "gamma"};
  check_all({
      {{{"type", "dyt"}}, {3, 4}, train, dyt},
      {{{"type", "dyt"}}, {2, 3, 5}, eval, dyt},
      {{{"type", "dyt"}, {"alpha_init", 2.0}}, {2, 3, 2, 3}, train, dyt},
  });
}

TEST_CASE("gradcheck: switchable, through all three statistics and both mixture weights") {
  const nlohmann::json sn = {{"type", "switchable"}};
  check_all({
      {sn, {2, 3, 2, 3}, train, kSwitchable},
      {sn, {3, 4, 5}, train, kSwitchable},
      {sn, {4, 5}, train, kSwitchable},       // (N, C): instance statistics of one value
      {sn, {2, 3, 2, 3}, eval, kSwitchable},  // the batch part from running statistics
      {sn, {1, 4, 6}, eval, kSwitchable},
      {{{"type", "switchable"}, {"eps", 0.1}}, {2, 2, 3, 3}, train, kSwitchable},
  });
}
