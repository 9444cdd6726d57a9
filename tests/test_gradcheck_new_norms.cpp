// Finite-difference gradient checks in double for FRN (with and without its
// TLU) and EvoNorm-S0: dx and every parameter gradient (dgamma, dbeta, dtau,
// dv) of L = sum(y * r) against central differences. The names start with
// "gradcheck" so that CTest runs them again on the baseline kernels.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <functional>
#include <set>
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

// As in test_gradcheck.cpp: |analytic - numeric| / max(1, |analytic|, |numeric|).
constexpr double kStep = 1e-6;
constexpr double kTolerance = 1e-6;
// Every pre-TLU output stays at least this far from its tau, so that no step
// of kStep in any input or parameter moves it across the kink (a step moves
// y_pre by at most ~ |gamma| * rstd * kStep * (1 + 1/spatial), well below 1e-4).
constexpr double kKinkMargin = 1e-3;

using Names = std::vector<std::string>;
using Array = xt::xarray<double>;

struct GradCase {
  nlohmann::json spec;
  std::vector<std::size_t> shape;
  Mode mode;
  Names parameters;  // expected, sorted
};

std::string describe(const GradCase& c) {
  std::string shape;
  for (std::size_t d : c.shape) shape += (shape.empty() ? "" : "x") + std::to_string(d);
  return c.spec.dump() + " on " + shape + " in " + to_string(c.mode);
}

void check_against_differences(const std::string& what, const Array& analytic, Array& values,
                               const std::function<double()>& loss) {
  normlab::test::check_against_differences(what, analytic, values, loss, kStep, kTolerance);
}

// The FRN output before its TLU, from the formula: per (sample, channel),
// gamma * x / sqrt(mean over spatial of x^2 + eps) + beta.
Array frn_pre_tlu(const Array& x, const Array& gamma, const Array& beta, double eps) {
  const std::size_t n = x.shape()[0], channels = x.shape()[1], inner = x.size() / (n * channels);
  Array y = Array::from_shape(x.shape());
  for (std::size_t a = 0; a < n; ++a)
    for (std::size_t c = 0; c < channels; ++c) {
      const double* xs = x.data() + (a * channels + c) * inner;
      double* ys = y.data() + (a * channels + c) * inner;
      double nu2 = 0;
      for (std::size_t i = 0; i < inner; ++i) nu2 += xs[i] * xs[i];
      nu2 /= double(inner);
      for (std::size_t i = 0; i < inner; ++i)
        ys[i] = gamma(c) * xs[i] / std::sqrt(nu2 + eps) + beta(c);
    }
  return y;
}

// Per channel, tau in the middle of the widest gap between consecutive sorted
// pre-TLU outputs among the middle half of that channel's values: about half
// of the outputs are clipped and none is near the kink.
Array choose_tau(const Array& y_pre) {
  const std::size_t n = y_pre.shape()[0], channels = y_pre.shape()[1];
  const std::size_t inner = y_pre.size() / (n * channels);
  Array tau = Array::from_shape({channels});
  for (std::size_t c = 0; c < channels; ++c) {
    std::vector<double> values;
    for (std::size_t a = 0; a < n; ++a)
      for (std::size_t i = 0; i < inner; ++i)
        values.push_back(y_pre.data()[(a * channels + c) * inner + i]);
    std::sort(values.begin(), values.end());
    const std::size_t m = values.size();
    std::size_t best = m / 4;
    for (std::size_t k = m / 4; k + 1 < std::max(m / 4 + 2, 3 * m / 4); ++k)
      if (values[k + 1] - values[k] > values[best + 1] - values[best]) best = k;
    tau(c) = 0.5 * (values[best] + values[best + 1]);
  }
  return tau;
}

// Random parameters (gamma in [0.5, 1.5], beta and v normal, tau as
// choose_tau says), x with a nonzero mean, a fixed random r; then dx and each
// parameter gradient against central differences.
void check_gradients(const GradCase& c, std::uint64_t seed) {
  INFO(describe(c));
  std::mt19937_64 rng(seed);
  auto norm = make_norm<double>(c.spec, 0);
  norm->prepare(c.shape);
  CHECK(norm->parameter_names() == c.parameters);
  CHECK(norm->state_names().empty());  // neither norm keeps running state

  Array x = random_normal<double>(rng, c.shape, 0.7, 1.5);
  const std::size_t channels = c.shape[1];
  norm->set("gamma", random_uniform<double>(rng, {channels}, 0.5, 1.5));
  norm->set("beta", random_normal<double>(rng, {channels}));
  if (norm->to_json().at("type") == "evonorm_s0")
    norm->set("v", random_normal<double>(rng, {channels}));

  const bool tlu = c.spec.at("type") == "frn" && norm->to_json().at("tlu") == true;
  if (tlu) {
    const double eps = norm->to_json().at("eps").get<double>();
    const Array y_pre =
        frn_pre_tlu(x, norm->parameter("gamma").value, norm->parameter("beta").value, eps);
    const Array tau = choose_tau(y_pre);
    norm->set("tau", tau);
    // The chosen tau clips a good share of the outputs and keeps every
    // output well away from the kink.
    std::size_t clipped = 0;
    double closest = INFINITY;
    const std::size_t inner = x.size() / (c.shape[0] * channels);
    for (std::size_t i = 0; i < y_pre.size(); ++i) {
      const double t = tau((i / inner) % channels);
      clipped += y_pre.data()[i] < t;
      closest = std::min(closest, std::abs(y_pre.data()[i] - t));
    }
    REQUIRE(closest > kKinkMargin);
    CHECK(clipped >= y_pre.size() / 4);
    CHECK(clipped <= 3 * y_pre.size() / 4);
    // The forward is max(y_pre, tau).
    const Array y = norm->forward(x, c.mode);
    for (std::size_t i = 0; i < y.size(); ++i)
      REQUIRE(
          y.data()[i] ==
          doctest::Approx(std::max(y_pre.data()[i], tau((i / inner) % channels))).epsilon(1e-12));
  }

  const Array r = random_normal<double>(rng, c.shape);
  const auto loss = [&] { return double(xt::sum(norm->forward(x, c.mode) * r)()); };

  norm->forward(x, c.mode);
  norm->zero_grad();
  const Array dx = norm->backward(r);
  std::vector<Array> grads;
  for (const std::string& name : c.parameters) grads.push_back(norm->parameter(name).grad);
  // Every gradient is informative: none is identically zero.
  CHECK(xt::any(xt::not_equal(dx, 0.0)));
  for (std::size_t i = 0; i < grads.size(); ++i)
    CHECK_MESSAGE(xt::any(xt::not_equal(grads[i], 0.0)), "d" << c.parameters[i] << " is all zero");

  check_against_differences("dx", dx, x, loss);
  for (std::size_t i = 0; i < grads.size(); ++i)
    check_against_differences("d" + c.parameters[i], grads[i],
                              norm->parameter(c.parameters[i]).value, loss);
}

void check_all(const std::vector<GradCase>& cases, std::uint64_t seed) {
  for (std::size_t i = 0; i < cases.size(); ++i) check_gradients(cases[i], seed + i);
}

const Names kFrnTlu = {"beta", "gamma", "tau"};
const Names kFrn = {"beta", "gamma"};
const Names kEvo = {"beta", "gamma", "v"};
const Mode train = Mode::train;
const Mode eval = Mode::eval;

nlohmann::json evonorm(int groups) {
  return {{"type", "evonorm_s0"}, {"groups", groups}};
}

}  // namespace

TEST_CASE("gradcheck: frn with the TLU (tau clips about half the outputs)") {
  const nlohmann::json frn = {{"type", "frn"}};
  check_all(
      {
          {frn, {2, 3, 4, 4}, train, kFrnTlu},
          {frn, {3, 2, 5}, train, kFrnTlu},
          {frn, {1, 4, 3, 3}, eval, kFrnTlu},  // train == eval
          {{{"type", "frn"}, {"eps", 1e-3}}, {2, 3, 2, 3}, train, kFrnTlu},
          {{{"type", "frn"}, {"tlu", true}}, {2, 2, 1, 6}, train, kFrnTlu},
      },
      2000);
}

TEST_CASE("gradcheck: frn without the TLU") {
  const nlohmann::json frn = {{"type", "frn"}, {"tlu", false}};
  check_all(
      {
          {frn, {2, 3, 4, 4}, train, kFrn},
          {frn, {3, 2, 5}, eval, kFrn},
          {frn, {1, 3, 2}, train, kFrn},  // two spatial values: the smallest FRN allows
          {{{"type", "frn"}, {"tlu", false}, {"eps", 0.1}}, {2, 4, 3, 3}, train, kFrn},
      },
      2100);
}

TEST_CASE("gradcheck: evonorm_s0 on 4-D input, groups 1, 2 and C") {
  check_all(
      {
          {evonorm(1), {2, 4, 3, 3}, train, kEvo},
          {evonorm(2), {2, 4, 3, 3}, train, kEvo},
          {evonorm(4), {2, 4, 3, 3}, train, kEvo},
          {evonorm(2), {1, 6, 2, 3}, eval, kEvo},  // train == eval
          {{{"type", "evonorm_s0"}, {"groups", 3}, {"eps", 1e-2}}, {2, 6, 2, 2}, train, kEvo},
      },
      2200);
}

TEST_CASE("gradcheck: evonorm_s0 on 3-D input, groups 1, 2 and C") {
  check_all(
      {
          {evonorm(1), {2, 6, 5}, train, kEvo},
          {evonorm(2), {2, 6, 5}, train, kEvo},
          {evonorm(6), {2, 6, 5}, eval, kEvo},
          {evonorm(6), {3, 6, 1}, train, kEvo},
      },
      2300);
}

TEST_CASE("gradcheck: evonorm_s0 on 2-D input, groups 1, 2 and C") {
  check_all(
      {
          {evonorm(1), {4, 6}, train, kEvo},
          {evonorm(2), {4, 6}, train, kEvo},
          {evonorm(3), {3, 6}, eval, kEvo},
          // One channel per group and no spatial dims: groups of one value,
          // variance 0, y = x * sigmoid(v x) / sqrt(eps) * gamma + beta.
          {{{"type", "evonorm_s0"}, {"groups", 6}, {"eps", 0.5}}, {4, 6}, train, kEvo},
          {evonorm(6), {2, 6}, train, kEvo},
      },
      2400);
}

TEST_CASE("gradcheck: frn and evonorm_s0 give the same outputs in train and eval") {
  std::mt19937_64 rng(2500);
  for (const nlohmann::json& spec : {nlohmann::json{{"type", "frn"}},
                                     nlohmann::json{{"type", "frn"}, {"tlu", false}}, evonorm(2)}) {
    CAPTURE(spec.dump());
    auto norm = make_norm<double>(spec, 4);
    for (const std::string& name : norm->parameter_names())
      norm->set(name, random_normal<double>(rng, {4}));
    const Array x = random_normal<double>(rng, {3, 4, 2, 3});
    const Array y_train = norm->forward(x, Mode::train);
    const Array y_eval = norm->forward(x, Mode::eval);
    CHECK(y_train == y_eval);
  }
}
