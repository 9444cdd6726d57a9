// The small-batch remedies without PyTorch: Ghost BatchNorm against BatchNorm
// on each virtual batch, Batch Renormalization against its formula (r and d by
// hand) and against finite differences of the forward with r and d frozen,
// Ghost BN against finite differences, spec errors, Norm::batch_statistics,
// `normlab apply`, and their use in experiments: skipped cells and precise BN.
// The PyTorch golden vectors are in test_golden.cpp.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <functional>
#include <string>
#include <vector>
#include <xtensor/xarray.hpp>
#include <xtensor/xbuilder.hpp>
#include <xtensor/xmath.hpp>
#include <xtensor/xtensor.hpp>
#include <xtensor/xview.hpp>

#include "normlab/analysis.hpp"
#include "normlab/experiment.hpp"
#include "normlab/normlab.hpp"
#include "test_helpers.hpp"

using namespace normlab;
using nlohmann::json;
using normlab::test::central_difference;
using normlab::test::check_mentions;
using normlab::test::error_of;
using normlab::test::random_normal;
using normlab::test::random_uniform;
using normlab::test::read_file;
using normlab::test::run_cli;
using normlab::test::ScratchDir;

namespace {

using Shape = std::vector<std::size_t>;
using Array = xt::xarray<double>;

// |a - b| / max(1, |a|, |b|), the worst entry.
double worst_difference(const Array& a, const Array& b) {
  REQUIRE(a.shape() == b.shape());
  double worst = 0;
  for (std::size_t i = 0; i < a.size(); ++i) {
    const double x = a.flat(i), y = b.flat(i);
    worst = std::max(worst, std::abs(x - y) / std::max({1.0, std::abs(x), std::abs(y)}));
  }
  return worst;
}

// d loss / d values by central differences; every entry is restored.
Array numeric_gradient(Array& values, const std::function<double()>& loss) {
  Array gradient = xt::zeros<double>(values.shape());
  for (std::size_t i = 0; i < values.size(); ++i)
    gradient.flat(i) = central_difference(loss, values.flat(i), 1e-6);
  return gradient;
}

constexpr double kGradTolerance = 1e-6;

// Per-channel mean and biased variance of x (N, C, ...) over N and the rest.
struct ChannelMoments {
  std::vector<double> mean, var;
  double count = 0;
};
ChannelMoments moments(const Array& x) {
  const std::size_t n = x.shape(0), c = x.shape(1), inner = x.size() / (n * c);
  ChannelMoments m{std::vector<double>(c, 0.0), std::vector<double>(c, 0.0), double(n * inner)};
  for (std::size_t a = 0; a < n; ++a)
    for (std::size_t k = 0; k < c; ++k)
      for (std::size_t i = 0; i < inner; ++i)
        m.mean[k] += x.flat((a * c + k) * inner + i) / m.count;
  for (std::size_t a = 0; a < n; ++a)
    for (std::size_t k = 0; k < c; ++k)
      for (std::size_t i = 0; i < inner; ++i) {
        const double dev = x.flat((a * c + k) * inner + i) - m.mean[k];
        m.var[k] += dev * dev / m.count;
      }
  return m;
}

// Samples [first, first + count) of x, as an array of their own.
Array rows(const Array& x, std::size_t first, std::size_t count) {
  return xt::view(x, xt::range(first, first + count));
}

// Random gamma and beta, and running statistics where the norm has them.
void randomize(Norm<double>& norm, std::mt19937_64& rng) {
  for (const std::string& name : norm.parameter_names())
    norm.set(name, random_uniform<double>(rng, norm.parameter(name).value.shape(), 0.5, 1.5) *
                       (name == "beta" ? -1.0 : 1.0));
  for (const char* name : {"running_mean", "running_var"}) {
    const std::vector<std::string> states = norm.state_names();
    if (std::find(states.begin(), states.end(), name) == states.end()) continue;
    const Shape shape = {norm.state(name).size()};
    norm.set(name, std::string(name) == "running_var" ? random_uniform<double>(rng, shape, 0.5, 2.0)
                                                      : random_normal<double>(rng, shape));
  }
}

// Checks dx and every parameter gradient of L = sum(y * dy) against central
// differences of `loss`, which evaluates L from x and the parameter values.
void check_gradients(Norm<double>& norm, Array& x, const Array& dy, Mode mode,
                     const std::function<double()>& loss) {
  norm.forward(x, mode);
  norm.zero_grad();
  const Array dx = norm.backward(dy);
  CHECK(worst_difference(dx, numeric_gradient(x, loss)) < kGradTolerance);
  for (const std::string& name : norm.parameter_names()) {
    INFO("d" << name);
    const Array analytic = norm.parameter(name).grad;
    CHECK(worst_difference(analytic, numeric_gradient(norm.parameter(name).value, loss)) <
          kGradTolerance);
  }
}

double weighted_sum(const Array& y, const Array& dy) {
  return xt::sum(y * dy)();
}

}  // namespace

// --- Ghost BatchNorm ---

TEST_CASE("ghost: every virtual batch is batch-normalized on its own; running stats average them") {
  struct Case {
    Shape shape;
    std::size_t v;
  };
  for (const Case& c : {Case{{8, 3}, 4}, Case{{6, 5}, 2}, Case{{6, 4, 5}, 3}, Case{{4, 3, 2, 3}, 2},
                        Case{{3, 2, 3, 3}, 1}}) {
    INFO("shape (" << c.shape[0] << ", " << c.shape[1] << ", ...), V = " << c.v);
    std::mt19937_64 rng(c.shape[0] * 100 + c.v);
    auto ghost =
        make_norm<double>({{"type", "ghost"}, {"virtual_batch_size", c.v}, {"momentum", 0.25}}, 0);
    ghost->prepare(c.shape);
    randomize(*ghost, rng);
    const Array running_mean = ghost->state("running_mean"),
                running_var = ghost->state("running_var");
    const Array x = random_normal<double>(rng, c.shape, 1.5, 2.0);
    const Array dy = random_normal<double>(rng, c.shape);
    const Array y = ghost->forward(x, Mode::train);
    const Array dx = ghost->backward(dy);

    const std::size_t channels = c.shape[1], chunks = c.shape[0] / c.v;
    Array dgamma = xt::zeros<double>({channels}), dbeta = xt::zeros<double>({channels});
    Array mean_of_means = xt::zeros<double>({channels}),
          mean_of_vars = xt::zeros<double>({channels});
    for (std::size_t k = 0; k < chunks; ++k) {
      auto bn = make_norm<double>({{"type", "batch"}, {"track_running_stats", false}}, channels);
      bn->set("gamma", ghost->parameter("gamma").value);
      bn->set("beta", ghost->parameter("beta").value);
      const Array xk = rows(x, k * c.v, c.v);
      CHECK(worst_difference(rows(y, k * c.v, c.v), bn->forward(xk, Mode::train)) < 1e-13);
      CHECK(worst_difference(rows(dx, k * c.v, c.v), bn->backward(rows(dy, k * c.v, c.v))) < 1e-13);
      dgamma += bn->parameter("gamma").grad;
      dbeta += bn->parameter("beta").grad;
      const ChannelMoments m = moments(xk);
      for (std::size_t ch = 0; ch < channels; ++ch) {
        mean_of_means(ch) += m.mean[ch] / double(chunks);
        mean_of_vars(ch) += m.var[ch] * m.count / (m.count - 1) / double(chunks);
      }
    }
    CHECK(worst_difference(ghost->parameter("gamma").grad, dgamma) < 1e-13);
    CHECK(worst_difference(ghost->parameter("beta").grad, dbeta) < 1e-13);
    // Keras: one update per forward with the average of the virtual batches'
    // statistics (the variance unbiased per virtual batch, as running_var is).
    CHECK(worst_difference(ghost->state("running_mean"),
                           0.75 * running_mean + 0.25 * mean_of_means) < 1e-13);
    CHECK(worst_difference(ghost->state("running_var"), 0.75 * running_var + 0.25 * mean_of_vars) <
          1e-13);
    const BatchStatistics& batch = ghost->batch_statistics();
    for (std::size_t ch = 0; ch < channels; ++ch) {
      CHECK(batch.mean[ch] == doctest::Approx(mean_of_means(ch)).epsilon(1e-13));
      CHECK(batch.var[ch] == doctest::Approx(mean_of_vars(ch)).epsilon(1e-13));
    }
  }
}

TEST_CASE("ghost: one virtual batch is plain batch norm, bit for bit") {
  for (const Shape& shape : {Shape{4, 6}, Shape{4, 3, 5}}) {
    std::mt19937_64 rng(7);
    auto ghost = make_norm<double>({{"type", "ghost"}, {"virtual_batch_size", 4}}, 0);
    auto batch = make_norm<double>({{"type", "batch"}}, 0);
    ghost->prepare(shape);
    batch->prepare(shape);
    randomize(*ghost, rng);
    for (const char* name : {"gamma", "beta"}) batch->set(name, ghost->parameter(name).value);
    for (const char* name : {"running_mean", "running_var"}) batch->set(name, ghost->state(name));
    const Array x = random_normal<double>(rng, shape, -1.0, 3.0),
                dy = random_normal<double>(rng, shape);
    CHECK(ghost->forward(x, Mode::train) == batch->forward(x, Mode::train));
    CHECK(ghost->backward(dy) == batch->backward(dy));
    for (const char* name : {"gamma", "beta"})
      CHECK(ghost->parameter(name).grad == batch->parameter(name).grad);
    for (const char* name : {"running_mean", "running_var"})
      CHECK(ghost->state(name) == batch->state(name));
    // Eval normalizes with the running statistics, at any batch size.
    const Array x3 = rows(x, 0, 3);
    CHECK(ghost->forward(x3, Mode::eval) == batch->forward(x3, Mode::eval));
  }
}

TEST_CASE("ghost: gradients match finite differences") {
  struct Case {
    json spec;
    Shape shape;
    Mode mode;
  };
  const std::vector<Case> cases = {
      {{{"type", "ghost"}, {"virtual_batch_size", 2}}, {6, 3}, Mode::train},
      {{{"type", "ghost"}, {"virtual_batch_size", 3}}, {6, 2, 4}, Mode::train},
      {{{"type", "ghost"}, {"virtual_batch_size", 2}}, {4, 2, 3, 2}, Mode::train},
      {{{"type", "ghost"}, {"virtual_batch_size", 1}}, {2, 3, 4}, Mode::train},
      {{{"type", "ghost"}, {"virtual_batch_size", 2}, {"affine", false}}, {4, 3}, Mode::train},
      {{{"type", "ghost"}, {"virtual_batch_size", 4}}, {3, 2, 5}, Mode::eval},
      {{{"type", "ghost"}, {"virtual_batch_size", 2}, {"track_running_stats", false}},
       {4, 2, 3},
       Mode::eval},
  };
  for (std::size_t i = 0; i < cases.size(); ++i) {
    const Case& c = cases[i];
    INFO(c.spec.dump() << " in " << to_string(c.mode));
    std::mt19937_64 rng(50 + i);
    auto norm = make_norm<double>(c.spec, 0);
    norm->prepare(c.shape);
    randomize(*norm, rng);
    Array x = random_normal<double>(rng, c.shape, 0.7, 1.5);
    const Array dy = random_normal<double>(rng, c.shape);
    check_gradients(*norm, x, dy, c.mode,
                    [&] { return weighted_sum(norm->forward(x, c.mode), dy); });
  }
}

TEST_CASE("ghost: a batch that does not split into virtual batches is an error naming N and V") {
  auto ghost = make_norm<double>({{"type", "ghost"}, {"virtual_batch_size", 4}}, 3);
  check_mentions(error_of<std::invalid_argument>([&] {
                   ghost->forward(xt::ones<double>({6, 3}), Mode::train);
                 }),
                 {"ghost norm", "N = 6", "V = 4", "(6, 3)"});
  check_mentions(error_of<std::invalid_argument>([&] {
                   ghost->forward(xt::ones<double>({2, 3, 5}), Mode::train);
                 }),
                 {"N = 2", "V = 4"});
  // Without running statistics eval uses the virtual batches too.
  auto untracked = make_norm<double>({{"type", "ghost"}, {"track_running_stats", false}}, 3);
  check_mentions(error_of<std::invalid_argument>([&] {
                   untracked->forward(xt::ones<double>({5, 3}), Mode::eval);
                 }),
                 {"N = 5", "V = 4"});
  // One value per channel and virtual batch.
  auto v1 = make_norm<double>({{"type", "ghost"}, {"virtual_batch_size", 1}}, 3);
  check_mentions(
      error_of<std::invalid_argument>([&] {
        v1->forward(xt::ones<double>({4, 3}), Mode::train);
      }),
      {"ghost norm needs more than one value per channel in each virtual batch", "(4, 3)"});
  CHECK_NOTHROW(v1->forward(xt::ones<double>({4, 3}), Mode::eval));
}

// --- Batch Renormalization ---

namespace {

// r and d as README defines them, from the batch and the running statistics
// before it, at step t of a warm-up of `warmup` steps.
struct Correction {
  std::vector<double> r, d;
};
Correction expected_correction(const Array& x, const Array& running_mean, const Array& running_var,
                               double eps, double rmax, double dmax, double t, double warmup) {
  const double done = warmup > 0 ? std::min(1.0, t / warmup) : 1.0;
  const double rmax_t = 1 + (rmax - 1) * done, dmax_t = dmax * done;
  const ChannelMoments m = moments(x);
  Correction k;
  for (std::size_t c = 0; c < m.mean.size(); ++c) {
    const double sigma = std::sqrt(running_var(c) + eps);
    k.r.push_back(std::clamp(std::sqrt(m.var[c] + eps) / sigma, 1 / rmax_t, rmax_t));
    k.d.push_back(std::clamp((m.mean[c] - running_mean(c)) / sigma, -dmax_t, dmax_t));
  }
  return k;
}

// Batch renorm's train forward with r and d frozen: BatchNorm with gamma * r
// and gamma * d + beta.
Array frozen_forward(const Array& x, const Array& gamma, const Array& beta, const Correction& k) {
  const std::size_t channels = x.shape(1);
  auto bn = make_norm<double>({{"type", "batch"}, {"track_running_stats", false}}, channels);
  Array scale = xt::empty<double>({channels}), shift = xt::empty<double>({channels});
  for (std::size_t c = 0; c < channels; ++c) {
    scale(c) = gamma(c) * k.r[c];
    shift(c) = gamma(c) * k.d[c] + beta(c);
  }
  bn->set("gamma", scale);
  bn->set("beta", shift);
  return bn->forward(x, Mode::train);
}

json renorm(double rmax, double dmax, long long warmup) {
  return {{"type", "batch_renorm"}, {"rmax", rmax}, {"dmax", dmax}, {"warmup_steps", warmup}};
}

}  // namespace

TEST_CASE("batch renorm: y = gamma * (xhat * r + d) + beta with r, d clipped as defined") {
  struct Case {
    json spec;
    Shape shape;
    double steps_before;  // num_batches_tracked
  };
  const std::vector<Case> cases = {
      {renorm(1.5, 0.5, 0), {6, 8}, 0},          // tight limits: some channels clip
      {renorm(3, 5, 0), {4, 5, 3}, 0},           // wide limits: few clip
      {renorm(2, 1, 4), {4, 6, 5}, 3},           // three quarters into the warm-up
      {renorm(1.2, 0.3, 10), {3, 4, 2, 2}, 25},  // past the warm-up
  };
  for (std::size_t i = 0; i < cases.size(); ++i) {
    const Case& c = cases[i];
    INFO(c.spec.dump());
    std::mt19937_64 rng(90 + i);
    auto norm = make_norm<double>(c.spec, 0);
    norm->prepare(c.shape);
    randomize(*norm, rng);
    norm->set("num_batches_tracked", Array{c.steps_before});
    const Array running_mean = norm->state("running_mean"),
                running_var = norm->state("running_var");
    const Array x = random_normal<double>(rng, c.shape, 0.5, 1.8);
    const Correction k =
        expected_correction(x, running_mean, running_var, 1e-5, c.spec["rmax"], c.spec["dmax"],
                            c.steps_before, c.spec["warmup_steps"]);
    const Array gamma = norm->parameter("gamma").value, beta = norm->parameter("beta").value;
    CHECK(worst_difference(norm->forward(x, Mode::train), frozen_forward(x, gamma, beta, k)) <
          1e-13);
    CHECK(norm->state("num_batches_tracked")(0) == c.steps_before + 1);
    // Running statistics as BatchNorm's.
    auto bn = make_norm<double>({{"type", "batch"}}, c.shape[1]);
    bn->set("running_mean", running_mean);
    bn->set("running_var", running_var);
    bn->forward(x, Mode::train);
    CHECK(norm->state("running_mean") == bn->state("running_mean"));
    CHECK(norm->state("running_var") == bn->state("running_var"));
  }
}

TEST_CASE("batch renorm: gradients are those of the forward with r and d frozen") {
  struct Case {
    json spec;
    Shape shape;
  };
  const std::vector<Case> cases = {
      {renorm(1.5, 0.5, 0), {6, 5}},
      {renorm(1.3, 0.4, 0), {3, 4, 5}},
      {renorm(3, 5, 0), {2, 3, 3, 2}},
      {renorm(2, 1, 4), {4, 3, 2}},
  };
  for (std::size_t i = 0; i < cases.size(); ++i) {
    const Case& c = cases[i];
    INFO(c.spec.dump());
    std::mt19937_64 rng(120 + i);
    auto norm = make_norm<double>(c.spec, 0);
    norm->prepare(c.shape);
    randomize(*norm, rng);
    norm->set("num_batches_tracked", Array{2.0});
    Array x = random_normal<double>(rng, c.shape, 0.7, 1.5);
    const Array dy = random_normal<double>(rng, c.shape);
    const Correction k =
        expected_correction(x, norm->state("running_mean"), norm->state("running_var"), 1e-5,
                            c.spec["rmax"], c.spec["dmax"], 2.0, c.spec["warmup_steps"]);
    Array& gamma = norm->parameter("gamma").value;
    Array& beta = norm->parameter("beta").value;
    check_gradients(*norm, x, dy, Mode::train,
                    [&] { return weighted_sum(frozen_forward(x, gamma, beta, k), dy); });
  }
}

TEST_CASE("batch renorm: step 0 of the warm-up is batch norm; eval is batch norm's eval") {
  for (const Shape& shape : {Shape{5, 4}, Shape{3, 2, 4, 3}}) {
    std::mt19937_64 rng(11);
    auto renormed = make_norm<double>({{"type", "batch_renorm"}}, 0);  // warmup_steps 1000
    auto batch = make_norm<double>({{"type", "batch"}}, 0);
    renormed->prepare(shape);
    batch->prepare(shape);
    randomize(*renormed, rng);
    for (const char* name : {"gamma", "beta"}) batch->set(name, renormed->parameter(name).value);
    for (const char* name : {"running_mean", "running_var"})
      batch->set(name, renormed->state(name));
    const Array x = random_normal<double>(rng, shape, 2.0, 3.0),
                dy = random_normal<double>(rng, shape);
    for (Mode mode : {Mode::train, Mode::eval}) {
      INFO(to_string(mode));
      renormed->zero_grad();
      batch->zero_grad();
      CHECK(renormed->forward(x, mode) == batch->forward(x, mode));
      CHECK(renormed->backward(dy) == batch->backward(dy));
      for (const char* name : {"gamma", "beta"})
        CHECK(renormed->parameter(name).grad == batch->parameter(name).grad);
      for (const char* name : {"running_mean", "running_var"})
        CHECK(renormed->state(name) == batch->state(name));
    }
    // Eval forwards are not training steps.
    CHECK(renormed->state("num_batches_tracked")(0) == 1.0);
  }
}

TEST_CASE("batch renorm: unclipped, training output equals eval output with the running stats") {
  std::mt19937_64 rng(13);
  auto norm = make_norm<double>(renorm(1e9, 1e9, 0), 0);
  const Shape shape = {4, 3, 5};
  norm->prepare(shape);
  randomize(*norm, rng);
  const Array x = random_normal<double>(rng, shape, 1.0, 2.0);
  const Array eval = norm->forward(x, Mode::eval);
  CHECK(worst_difference(norm->forward(x, Mode::train), eval) < 1e-12);
}

TEST_CASE("batch renorm: warm-up schedule of rmax and dmax") {
  // Running statistics far from the batch's: r and d sit at their limits,
  // y = xhat * rmax_t + dmax_t with gamma 1 and beta 0.
  const Shape shape = {4, 2};
  const Array x = {{1.0, -2.0}, {3.0, 0.5}, {-1.0, 4.0}, {2.0, 1.0}};
  auto bn = make_norm<double>({{"type", "batch"}, {"affine", false}}, 2);
  const Array xhat = bn->forward(x, Mode::train);
  for (const double t : {0.0, 1.0, 5.0, 10.0, 30.0}) {
    INFO("step " << t);
    auto norm = make_norm<double>(renorm(3.0, 2.0, 10), 2);
    norm->set("running_mean", Array{-100.0, -100.0});
    norm->set("running_var", Array{1e-4, 1e-4});
    norm->set("num_batches_tracked", Array{t});
    const double done = std::min(1.0, t / 10);
    const double rmax = 1 + 2 * done, dmax = 2 * done;
    CHECK(worst_difference(norm->forward(x, Mode::train), xhat * rmax + dmax) < 1e-12);
  }
  // Without warm-up the limits hold from the first step.
  auto at_once = make_norm<double>(renorm(3.0, 2.0, 0), 2);
  at_once->set("running_mean", Array{-100.0, -100.0});
  at_once->set("running_var", Array{1e-4, 1e-4});
  CHECK(worst_difference(at_once->forward(x, Mode::train), xhat * 3.0 + 2.0) < 1e-12);
}

TEST_CASE("remedies: spec defaults, state and errors") {
  const json ghost = make_norm<double>({{"type", "ghost"}}, 3)->to_json();
  CHECK(ghost == json{{"type", "ghost"},
                      {"virtual_batch_size", 4},
                      {"eps", 1e-5},
                      {"momentum", 0.1},
                      {"affine", true},
                      {"track_running_stats", true}});
  auto renormed = make_norm<double>({{"type", "batch_renorm"}}, 3);
  CHECK(renormed->to_json() == json{{"type", "batch_renorm"},
                                    {"eps", 1e-5},
                                    {"momentum", 0.1},
                                    {"affine", true},
                                    {"rmax", 3.0},
                                    {"dmax", 5.0},
                                    {"warmup_steps", 1000}});
  CHECK(renormed->state_names() ==
        std::vector<std::string>{"num_batches_tracked", "running_mean", "running_var"});
  CHECK(renormed->parameter_names() == std::vector<std::string>{"beta", "gamma"});
  CHECK(make_norm<float>(renormed->to_json(), 3)->to_json() == renormed->to_json());

  auto spec_error = [](const json& spec) {
    return error_of<std::invalid_argument>([&] { make_norm<double>(spec, 3); });
  };
  check_mentions(spec_error({{"type", "ghost"}, {"virtual_batch_size", 0}}),
                 {"virtual_batch_size: expected a positive integer"});
  check_mentions(spec_error({{"type", "ghost"}, {"virtual_batch_size", 2.5}}),
                 {"virtual_batch_size: expected a positive integer, got a number"});
  check_mentions(spec_error({{"type", "ghost"}, {"groups", 2}}),
                 {"unknown key 'groups' for type ghost", "virtual_batch_size"});
  check_mentions(spec_error({{"type", "batch_renorm"}, {"rmax", 0.5}}),
                 {"rmax: expected a number >= 1"});
  check_mentions(spec_error({{"type", "batch_renorm"}, {"dmax", -1}}),
                 {"dmax: expected a number >= 0"});
  check_mentions(spec_error({{"type", "batch_renorm"}, {"warmup_steps", -1}}),
                 {"warmup_steps: expected an integer >= 0"});
  check_mentions(spec_error({{"type", "batch_renorm"}, {"warmup_steps", 1.5}}),
                 {"warmup_steps: expected an integer, got a number"});
  check_mentions(spec_error({{"type", "batch_renorm"}, {"momentum", nullptr}}),
                 {"momentum: expected a number, got null"});
  const std::string momentum = spec_error({{"type", "batch_renorm"}, {"momentum", 2}});
  check_mentions(momentum, {"momentum: expected a number in [0, 1]"});
  CHECK(momentum.find("null") == std::string::npos);
  check_mentions(spec_error({{"type", "batch_renorm"}, {"track_running_stats", false}}),
                 {"unknown key 'track_running_stats' for type batch_renorm"});
  // The step count is state: shape (1,).
  check_mentions(error_of<std::invalid_argument>(
                     [&] { renormed->set("num_batches_tracked", xt::zeros<double>({3})); }),
                 {"num_batches_tracked has shape (3,)", "needs (1,)"});
}

// --- Norm::batch_statistics ---

TEST_CASE("batch_statistics: mean and unbiased variance of the last train forward") {
  auto batch = make_norm<double>({{"type", "batch"}}, 2);
  check_mentions(error_of<std::logic_error>([&] { batch->batch_statistics(); }),
                 {"batch norm has no batch statistics", "train forward"});
  std::mt19937_64 rng(3);
  const Array x = random_normal<double>(rng, {3, 2, 4}, 1.0, 2.0);
  batch->forward(x, Mode::train);
  batch->forward(random_normal<double>(rng, {3, 2, 4}), Mode::eval);  // does not replace them
  const ChannelMoments m = moments(x);
  for (std::size_t c = 0; c < 2; ++c) {
    CHECK(batch->batch_statistics().mean[c] == doctest::Approx(m.mean[c]).epsilon(1e-14));
    CHECK(batch->batch_statistics().var[c] ==
          doctest::Approx(m.var[c] * m.count / (m.count - 1)).epsilon(1e-14));
  }
  auto layer = make_norm<double>({{"type", "layer"}}, 0);
  layer->forward(x, Mode::train);
  check_mentions(error_of<std::logic_error>([&] { layer->batch_statistics(); }), {"layer norm"});
}

// --- normlab apply ---

TEST_CASE("apply: ghost and batch_renorm by name, outputs as the library's") {
  ScratchDir dir;
  std::mt19937_64 rng(21);
  const Array x = random_normal<double>(rng, {8, 3, 2}, 1.0, 2.0),
              dy = random_normal<double>(rng, {8, 3, 2});
  save_npy<double>(dir / "x.npy", x);
  save_npy<double>(dir / "dy.npy", dy);
  save_npy<double>(dir / "steps.npy", Array{500.0});
  for (const json& spec :
       {json{{"type", "ghost"}, {"virtual_batch_size", 2}}, json{{"type", "batch_renorm"}}}) {
    INFO(spec.dump());
    const std::string out = dir / spec["type"].get<std::string>();
    std::vector<std::string> args = {"apply",        "--norm",      spec.dump(),
                                     "--input",      dir / "x.npy", "--grad",
                                     dir / "dy.npy", "--out",       out};
    auto norm = make_norm<double>(spec, 0);
    norm->prepare({8, 3, 2});
    if (spec["type"] == "batch_renorm") {  // halfway through the warm-up
      args.insert(args.end(), {"--param", "num_batches_tracked=" + (dir / "steps.npy")});
      norm->set("num_batches_tracked", Array{500.0});
    }
    REQUIRE(run_cli(dir, args).status == 0);
    CHECK(load_npy<double>(out + "/y.npy") == norm->forward(x, Mode::train));
    CHECK(load_npy<double>(out + "/dx.npy") == norm->backward(dy));
    CHECK(load_npy<double>(out + "/dgamma.npy") == norm->parameter("gamma").grad);
    for (const std::string& state : norm->state_names())
      CHECK(load_npy<double>(out + "/" + state + ".npy") == norm->state(state));
  }
  // A batch that does not split: exit 1, one line naming N and V, nothing written.
  save_npy<double>(dir / "x6.npy", rows(x, 0, 6));
  const auto failed = run_cli(dir, {"apply", "--norm", R"({"type":"ghost"})", "--input",
                                    dir / "x6.npy", "--out", dir / "bad6"});
  CHECK(failed.status == 1);
  check_mentions(failed.err, {"normlab apply: ghost norm", "N = 6", "V = 4"});
  CHECK_FALSE(std::filesystem::exists(dir / "bad6"));
}

// --- Experiments ---

namespace {

const char* const kRemediesConfig = R"({
  "name": "remedies_tiny",
  "dataset": {"type": "synthetic", "train_size": 256, "test_size": 128, "classes": 4, "seed": 5},
  "model": "mlp2",
  "norms": ["ghost", "batch_renorm", "layer"],
  "batch_sizes": [16, 4, 2],
  "seeds": [0],
  "epochs": 1,
  "optimizer": {"lr": 0.05},
  "evaluation": {"batch_size": 64, "precise_bn_batches": 5}
})";

std::string config_error(const json& config) {
  return error_of<std::invalid_argument>([&] { parse_config(config); });
}

}  // namespace

TEST_CASE("experiments: ghost cells that cannot or need not run are skipped, with the reason") {
  CHECK(skip_reason(norm_traits({{"type", "ghost"}}), 8) == "");
  check_mentions(skip_reason(norm_traits({{"type", "ghost"}}), 4),
                 {"batch size 4 equals virtual_batch_size 4", "plain batch norm"});
  check_mentions(skip_reason(norm_traits({{"type", "ghost"}}), 2),
                 {"batch size 2 does not split into virtual batches of 4"});
  check_mentions(skip_reason(norm_traits({{"type", "ghost"}, {"virtual_batch_size", 3}}), 16),
                 {"16", "virtual batches of 3"});
  CHECK(skip_reason(norm_traits({{"type", "batch"}}), 2) == "");
  CHECK(skip_reason(norm_traits({{"type", "batch_renorm"}}), 2) == "");

  const ExperimentConfig config = parse_config(json::parse(kRemediesConfig));
  const std::vector<Cell> cells = grid_cells(config);
  REQUIRE(cells.size() == 9);
  std::vector<std::string> skipped;
  for (const Cell& cell : cells)
    if (!cell.skipped.empty()) skipped.push_back(cell.id());
  CHECK(skipped == std::vector<std::string>{"ghost/B4/seed0", "ghost/B2/seed0"});

  // B = 1: a skip for ghost, an error for the norms that would train on one value.
  json one = json::parse(kRemediesConfig);
  one["batch_sizes"] = {16, 1};
  one["norms"] = {"ghost", "layer"};
  CHECK_NOTHROW(parse_config(one));
  one["norms"] = {"batch_renorm"};
  check_mentions(config_error(one),
                 {"batch_sizes: batch_renorm norm in mlp2 needs batch size >= 2"});
  // A virtual batch of one sample has one value per channel after a linear layer.
  json v1 = json::parse(kRemediesConfig);
  v1["norms"] = {{{"type", "ghost"}, {"virtual_batch_size", 1}}};
  check_mentions(config_error(v1), {"norms[0]:", "virtual_batch_size 1", "mlp2"});
  CHECK_NOTHROW(parse_config([&] {
    json cnn = v1;
    cnn["model"] = "cnn3";
    return cnn;
  }()));
}

TEST_CASE("experiments: evaluation.precise_bn_batches") {
  json config = json::parse(kRemediesConfig);
  CHECK(parse_config(config).evaluation.precise_bn_batches == 5);
  CHECK(parse_config(config).resolved["evaluation"]["precise_bn_batches"] == 5);
  config["evaluation"].erase("precise_bn_batches");
  CHECK(parse_config(config).evaluation.precise_bn_batches == 0);
  // Off: absent from the resolved config, which older output folders compare with.
  CHECK_FALSE(parse_config(config).resolved["evaluation"].contains("precise_bn_batches"));
  config["evaluation"]["precise_bn_batches"] = -1;
  check_mentions(config_error(config), {"evaluation.precise_bn_batches: expected an integer >= 0"});
  config["evaluation"]["precise_bn_batches"] = "all";
  check_mentions(config_error(config), {"evaluation.precise_bn_batches: expected an integer"});
}

TEST_CASE("precise_bn: running statistics become the average over K train batches") {
  Dataset train = make_synthetic(64, 4, 9);
  // A model of one batch norm over the image's single channel: its batch
  // statistics are those of the pixels, which the test computes itself.
  Model<float> model;
  model.add(make_norm_layer<float>(make_norm<float>({{"type", "batch_renorm"}}, 1)));
  Norm<float>& norm = *model.norms()[0];
  norm.set("running_mean", xt::xarray<float>{5.0f});
  norm.set("num_batches_tracked", xt::xarray<float>{7.0f});
  const std::size_t batch = 8, batches = 3;
  CHECK(precise_bn(model, train, batch, batches, 42) == batches);

  const std::vector<std::size_t> order = permutation(train.size(), 42);
  const std::size_t pixels = 28 * 28;
  double mean_sum = 0, var_sum = 0;
  for (std::size_t k = 0; k < batches; ++k) {
    Array x = xt::empty<double>({batch, std::size_t(1), pixels});
    for (std::size_t i = 0; i < batch; ++i)
      for (std::size_t p = 0; p < pixels; ++p)
        x(i, 0, p) = train.images.data()[order[k * batch + i] * pixels + p];
    const ChannelMoments m = moments(x);
    mean_sum += m.mean[0];
    var_sum += m.var[0] * m.count / (m.count - 1);
  }
  CHECK(norm.state("running_mean")(0) == doctest::Approx(mean_sum / batches).epsilon(1e-5));
  CHECK(norm.state("running_var")(0) == doctest::Approx(var_sum / batches).epsilon(1e-5));
  CHECK(norm.state("num_batches_tracked")(0) == 7.0f);  // other state as it was

  // At most one pass over the data; no running statistics, nothing to do.
  CHECK(precise_bn(model, train, batch, 100, 1) == 64 / batch);
  Model<float> layer_only;
  layer_only.add(make_norm_layer<float>(make_norm<float>({{"type", "layer"}}, 1)));
  CHECK(precise_bn(layer_only, train, batch, 3, 1) == 0);
}

TEST_CASE("run: remedies grid with skipped cells, batch-statistics and precise-BN accuracies") {
  ScratchDir dir;
  const ExperimentConfig config = parse_config(json::parse(kRemediesConfig));
  run_experiment(config, {dir / "out", false});
  std::vector<json> records;
  std::ifstream in(dir / "out/results.jsonl");
  for (std::string line; std::getline(in, line);) records.push_back(json::parse(line));
  REQUIRE(records.size() == 7);  // 9 cells, 2 skipped
  for (const json& r : records) {
    INFO(r["cell"]);
    CHECK_FALSE(r["diverged"].get<bool>());
    CHECK(r["test_accuracy"].get<double>() > 0.4);  // 4 classes: chance is 0.25
    const bool batch_stats = r["norm"] != "layer";
    CHECK(r["test_accuracy_batch_stats"].is_null() != batch_stats);
    CHECK(r["test_accuracy_precise_bn"].is_null() != batch_stats);
    CHECK(r["precise_bn_batches"] == (batch_stats ? 5 : 0));
    if (batch_stats)
      CHECK(r["test_error_precise_bn"].get<double>() ==
            doctest::Approx(1 - r["test_accuracy_precise_bn"].get<double>()));
  }
  const std::string table = read_file(dir / "out/table.md");
  check_mentions(table, {"| ghost |", "| skipped | skipped |",
                         "Skipped cells:", "- ghost, B=4: batch size 4 equals virtual_batch_size 4",
                         "- ghost, B=2: batch size 2 does not split"});
  check_mentions(read_file(dir / "out/results.csv"), {"test_error_precise_bn_percent"});

  // The report: 7 of 7 cells, skipped cells marked, the precise-BN errors.
  write_report({dir / "out"}, {dir / "report"});
  check_mentions(read_file(dir / "report/report.md"),
                 {"7 of 7 cells finished", "| skipped | skipped |",
                  "Skipped cells: ghost, B=4: batch size 4 equals virtual_batch_size 4",
                  "Test error (%) with precise BN", "over up to 5 training batches"});
}

TEST_CASE("probe: leaves out the batch sizes the run skips") {
  json config = json::parse(kRemediesConfig);
  config["norms"] = {"ghost"};
  config["batch_sizes"] = {8, 4, 2};
  config["probe"] = {{"batches", 3}};
  const std::vector<json> records = run_probe(parse_config(config), {}, [](const std::string&) {});
  REQUIRE(records.size() == 2);  // mlp2's two norm layers, at B = 8 only
  for (const json& r : records) CHECK(r["batch_size"] == 8);
}
