// Identities between norms, WeightNorm's initialization, and the running
// statistics rules (momentum and cumulative average) computed by hand.
#include <doctest/doctest.h>

#include <cmath>
#include <map>
#include <string>
#include <vector>
#include <xtensor/xarray.hpp>
#include <xtensor/xio.hpp>
#include <xtensor/xmath.hpp>
#include <xtensor/xview.hpp>

#include "normlab/normlab.hpp"
#include "test_helpers.hpp"

using namespace normlab;
using normlab::test::random_normal;
using normlab::test::random_uniform;

namespace {

// One forward and backward: everything a norm computes.
struct Pass {
  xt::xarray<double> y, dx;
  std::map<std::string, xt::xarray<double>> grads;
};

Pass run(Norm<double>& norm, const xt::xarray<double>& x, const xt::xarray<double>& dy,
         Mode mode = Mode::train) {
  Pass p;
  p.y = norm.forward(x, mode);
  norm.zero_grad();
  p.dx = norm.backward(dy);
  for (const std::string& name : norm.parameter_names()) p.grads[name] = norm.parameter(name).grad;
  return p;
}

void check_close(const std::string& what, const xt::xarray<double>& a, const xt::xarray<double>& b,
                 double tolerance = 1e-12) {
  INFO(what);
  REQUIRE(a.shape() == b.shape());
  CHECK_MESSAGE(xt::allclose(a, b, tolerance, tolerance),
                "max |difference| " << xt::amax(xt::abs(a - b))());
}

void check_same_pass(const Pass& a, const Pass& b) {
  check_close("y", a.y, b.y);
  check_close("dx", a.dx, b.dx);
  REQUIRE(a.grads.size() == b.grads.size());
  for (const auto& [name, grad] : a.grads) check_close("d" + name, grad, b.grads.at(name));
}

// The same random parameters in both norms (which must have the same ones).
void set_same_parameters(Norm<double>& a, Norm<double>& b, std::mt19937_64& rng) {
  REQUIRE(a.parameter_names() == b.parameter_names());
  for (const std::string& name : a.parameter_names()) {
    const xt::xarray<double> value = random_normal<double>(rng, a.parameter(name).value.shape());
    a.set(name, value);
    b.set(name, value);
  }
}

// Mean and unbiased variance of channel c of an (N, C, ...) array over samples [first, last).
struct Moments {
  double mean, var;
};
Moments moments(const xt::xarray<double>& x, std::size_t c, std::size_t first, std::size_t last) {
  const std::size_t channels = x.shape()[1];
  const std::size_t inner = x.size() / (x.shape()[0] * channels);
  std::vector<double> values;
  for (std::size_t n = first; n < last; ++n)
    for (std::size_t k = 0; k < inner; ++k)
      values.push_back(x.data()[(n * channels + c) * inner + k]);
  double sum = 0;
  for (double v : values) sum += v;
  const double mean = sum / double(values.size());
  double squares = 0;
  for (double v : values) squares += (v - mean) * (v - mean);
  return {mean, squares / double(values.size() - 1)};
}

// The batch statistics a norm's running stats track, per channel: BatchNorm
// pools all samples; InstanceNorm averages its per-sample statistics.
std::vector<Moments> batch_moments(const xt::xarray<double>& x, bool per_sample) {
  const std::size_t samples = x.shape()[0];
  std::vector<Moments> result;
  for (std::size_t c = 0; c < x.shape()[1]; ++c) {
    if (!per_sample) {
      result.push_back(moments(x, c, 0, samples));
      continue;
    }
    Moments average{0, 0};
    for (std::size_t n = 0; n < samples; ++n) {
      const Moments m = moments(x, c, n, n + 1);
      average.mean += m.mean / double(samples);
      average.var += m.var / double(samples);
    }
    result.push_back(average);
  }
  return result;
}

// y = (x - mean_c) / sqrt(var_c + eps) * gamma_c + beta_c.
xt::xarray<double> normalize_by_channel(const xt::xarray<double>& x, const std::vector<Moments>& m,
                                        const xt::xarray<double>& gamma,
                                        const xt::xarray<double>& beta, double eps) {
  xt::xarray<double> y = x;
  const std::size_t channels = x.shape()[1];
  const std::size_t inner = x.size() / (x.shape()[0] * channels);
  for (std::size_t i = 0; i < y.size(); ++i) {
    const std::size_t c = (i / inner) % channels;
    y.data()[i] = (x.data()[i] - m[c].mean) / std::sqrt(m[c].var + eps) * gamma(c) + beta(c);
  }
  return y;
}

// Trains `steps` batches through a norm with running statistics and checks
// them against the hand-computed rule, then eval against them.
void check_running_stats(const nlohmann::json& spec, bool per_sample) {
  INFO(spec.dump());
  const std::vector<std::size_t> shape = {4, 3, 2, 3};
  std::mt19937_64 rng(7);
  auto norm = make_norm<double>(spec, 3);
  const nlohmann::json momentum_spec = norm->to_json().at("momentum");
  std::vector<Moments> expected(3, Moments{0.0, 1.0});  // PyTorch's initial state
  const int steps = 4;
  for (int step = 1; step <= steps; ++step) {
    // Shifted and scaled batches so the statistics differ from step to step.
    const xt::xarray<double> x = random_normal<double>(rng, shape, 0.5 * step, 1.0 + 0.3 * step);
    norm->forward(x, Mode::train);
    const std::vector<Moments> batch = batch_moments(x, per_sample);
    for (std::size_t c = 0; c < 3; ++c) {
      if (momentum_spec.is_null()) {
        // Cumulative average: the plain mean of every batch's statistic so
        // far (the initial state drops out at step 1).
        expected[c].mean = (expected[c].mean * (step - 1) + batch[c].mean) / step;
        expected[c].var = (expected[c].var * (step - 1) + batch[c].var) / step;
      } else {
        const double m = momentum_spec.get<double>();
        expected[c].mean = (1 - m) * expected[c].mean + m * batch[c].mean;
        expected[c].var = (1 - m) * expected[c].var + m * batch[c].var;
      }
    }
    for (std::size_t c = 0; c < 3; ++c) {
      CAPTURE(step);
      CAPTURE(c);
      CHECK(norm->state("running_mean")(c) == doctest::Approx(expected[c].mean).epsilon(1e-12));
      CHECK(norm->state("running_var")(c) == doctest::Approx(expected[c].var).epsilon(1e-12));
    }
  }

  // Eval normalizes with the running statistics and leaves them alone.
  const xt::xarray<double> gamma = random_uniform<double>(rng, {3}, 0.5, 1.5);
  const xt::xarray<double> beta = random_normal<double>(rng, {3});
  norm->set("gamma", gamma);
  norm->set("beta", beta);
  const xt::xarray<double> running_mean = norm->state("running_mean");
  const xt::xarray<double> running_var = norm->state("running_var");
  const xt::xarray<double> x = random_normal<double>(rng, shape);
  check_close("eval y", norm->forward(x, Mode::eval),
              normalize_by_channel(x, expected, gamma, beta, 1e-5));
  check_close("running_mean after eval", norm->state("running_mean"), running_mean, 0.0);
  check_close("running_var after eval", norm->state("running_var"), running_var, 0.0);
}

}  // namespace

TEST_CASE("group norm with one group is layer norm with channel_affine") {
  std::mt19937_64 rng(1);
  for (const std::vector<std::size_t>& shape :
       std::vector<std::vector<std::size_t>>{{3, 5, 2, 3}, {2, 6, 7}, {4, 6}}) {
    CAPTURE(shape.size());
    auto group = make_norm<double>({{"type", "group"}, {"groups", 1}}, shape[1]);
    auto layer = make_norm<double>({{"type", "layer"}, {"channel_affine", true}}, shape[1]);
    set_same_parameters(*group, *layer, rng);
    const xt::xarray<double> x = random_normal<double>(rng, shape, 1.0, 2.0);
    const xt::xarray<double> dy = random_normal<double>(rng, shape);
    check_same_pass(run(*group, x, dy), run(*layer, x, dy));
  }
}

TEST_CASE("group norm with one channel per group is instance norm with affine") {
  std::mt19937_64 rng(2);
  for (const std::vector<std::size_t>& shape :
       std::vector<std::vector<std::size_t>>{{2, 4, 3, 3}, {1, 5, 7}}) {
    CAPTURE(shape.size());
    auto group = make_norm<double>({{"type", "group"}, {"groups", shape[1]}}, shape[1]);
    auto instance = make_norm<double>({{"type", "instance"}, {"affine", true}}, shape[1]);
    set_same_parameters(*group, *instance, rng);
    const xt::xarray<double> x = random_normal<double>(rng, shape, -1.0, 3.0);
    const xt::xarray<double> dy = random_normal<double>(rng, shape);
    check_same_pass(run(*group, x, dy), run(*instance, x, dy));
    // Without running statistics, eval is the same computation.
    check_same_pass(run(*group, x, dy, Mode::eval), run(*instance, x, dy, Mode::eval));
  }
}

// On zero-mean rows the mean square is the variance, so the forward passes
// agree. The backward passes do not: LayerNorm's dx also removes the row mean
// of dy * gamma (scaled by rstd), which RMSNorm keeps. Checked as that relation.
TEST_CASE("rms norm equals layer norm without beta on zero-mean rows (forward and dgamma)") {
  // Multiples of 1/8 with each row summing to zero, so the mean is exactly 0.
  const xt::xarray<double> x = {{1.0, -0.5, 0.25, -0.75, -1.0, 1.5, -1.5, -0.25, 0.25, 1.0},
                                {-2.0, 0.125, 0.875, 1.0, -1.0, 2.0, 0.5, -0.5, -0.75, -0.25},
                                {0.5, 0.5, 0.5, 0.5, 0.5, -0.5, -0.5, -0.5, -0.5, -0.5}};
  REQUIRE(xt::amax(xt::abs(xt::sum(x, {1})))() == 0.0);
  std::mt19937_64 rng(3);
  const xt::xarray<double> gamma = random_uniform<double>(rng, {10}, 0.5, 1.5);
  const xt::xarray<double> dy = random_normal<double>(rng, x.shape());
  auto rms = make_norm<double>({{"type", "rms"}, {"eps", 1e-5}}, 10);
  auto layer = make_norm<double>({{"type", "layer"}, {"eps", 1e-5}}, 10);
  rms->prepare({3, 10});
  layer->prepare({3, 10});
  rms->set("gamma", gamma);
  layer->set("gamma", gamma);
  const Pass r = run(*rms, x, dy);
  const Pass l = run(*layer, x, dy);
  check_close("y", r.y, l.y);
  check_close("dgamma", r.grads.at("gamma"), l.grads.at("gamma"));
  // dx_layer = dx_rms - rstd * mean(dy * gamma) per row.
  const xt::xarray<double> rstd = 1.0 / xt::sqrt(xt::mean(x * x, {1}) + 1e-5);
  const xt::xarray<double> row_mean = xt::mean(dy * gamma, {1});
  const xt::xarray<double> shift = xt::view(rstd * row_mean, xt::all(), xt::newaxis());
  check_close("dx relation", l.dx, r.dx - shift);
}

TEST_CASE("weight norm starts with w == v and g == ||v|| per slice") {
  std::mt19937_64 rng(4);
  for (int dim : {0, 1}) {
    CAPTURE(dim);
    const xt::xarray<double> v = random_normal<double>(rng, {4, 3, 2});
    auto weight = make_norm<double>({{"type", "weight"}, {"dim", dim}}, 0);
    check_close("w", weight->forward(v, Mode::train), v);
    const std::size_t slices = v.shape()[std::size_t(dim)];
    const xt::xarray<double> norms = xt::sqrt(
        xt::sum(v * v, dim == 0 ? std::vector<std::size_t>{1, 2} : std::vector<std::size_t>{0, 2}));
    REQUIRE(norms.size() == slices);
    check_close("g", weight->parameter("g").value, norms);
    // g is initialized once: a new v is rescaled to the first v's norms.
    const xt::xarray<double> v2 = 3.0 * v;
    check_close("w for 3v", weight->forward(v2, Mode::train), v);

    // In float as well.
    auto weight32 = make_norm<float>({{"type", "weight"}, {"dim", dim}}, 0);
    const xt::xarray<float> v32 = v;
    const xt::xarray<float> w32 = weight32->forward(v32, Mode::train);
    CHECK(xt::allclose(w32, v32, 1e-6, 1e-6));
  }
}

TEST_CASE("weight norm with g set keeps g") {
  auto weight = make_norm<double>({{"type", "weight"}}, 2);
  weight->set("g", xt::xarray<double>({2.0, 0.5}));
  const xt::xarray<double> v = {{3.0, 4.0}, {0.0, -2.0}};
  check_close("w", weight->forward(v, Mode::train), xt::xarray<double>{{1.2, 1.6}, {0.0, -0.5}});
}

TEST_CASE("running statistics: momentum 0.1, unbiased variance, and eval uses them") {
  check_running_stats({{"type", "batch"}}, false);
  check_running_stats({{"type", "batch"}, {"momentum", 0.3}}, false);
  check_running_stats({{"type", "instance"}, {"affine", true}, {"track_running_stats", true}},
                      true);
}

TEST_CASE("running statistics: momentum null is the cumulative average") {
  check_running_stats({{"type", "batch"}, {"momentum", nullptr}}, false);
  check_running_stats({{"type", "instance"},
                       {"affine", true},
                       {"track_running_stats", true},
                       {"momentum", nullptr}},
                      true);
}
