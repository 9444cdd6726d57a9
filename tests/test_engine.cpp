// The engine on its own: statistics accuracy and the worked example.
#include <doctest/doctest.h>

#include <cmath>
#include <random>
#include <xtensor/xarray.hpp>
#include <xtensor/xstrided_view.hpp>

#include "normlab/normlab.hpp"

using namespace normlab;

TEST_CASE("variance of 1e7 float32 values with mean 1000 and std 1 is accurate to 1e-3") {
  const std::size_t n = 10'000'000;
  std::vector<float> x(n);
  std::mt19937_64 rng(42);
  std::normal_distribution<double> normal(1000.0, 1.0);
  for (float& v : x) v = float(normal(rng));
  // Reference: exact two-pass in long double over the same float values.
  long double sum = 0;
  for (float v : x) sum += v;
  const long double mean = sum / n;
  long double m2 = 0;
  for (float v : x) m2 += (v - mean) * (v - mean);
  const double reference = double(m2 / n);

  NormDescription d;
  d.view = {1, 1, n};
  GroupStats stats;
  reduce_stats(x.data(), d, stats);
  CHECK(stats.mean[0] == doctest::Approx(double(mean)).epsilon(1e-12));
  CHECK(stats.var[0] == doctest::Approx(reference).epsilon(1e-3));
  CHECK(std::abs(stats.var[0] - reference) / reference < 1e-9);
}

// The issue states [-1.236, 0.106, 1.894, 3.236]; the outer two are wrong:
// mean 2.5, biased std sqrt(1.25), so x=1 gives 2 * (-1.5 / 1.118) + 1 = -1.683.
// PyTorch 1.13 (layer_norm and batch_norm alike) gives [-1.6833, 0.1056, 1.8944, 3.6833].
TEST_CASE("worked example: x = [1,2,3,4], gamma 2, beta 1") {
  xt::xarray<double> x = {{1.0, 2.0, 3.0, 4.0}};  // (N=1, C=4): LayerNorm over the row
  auto norm = make_norm<double>({{"type", "layer"}, {"eps", 0.0}}, 4);
  norm->prepare({1, 4});
  norm->set("gamma", xt::xarray<double>({2.0, 2.0, 2.0, 2.0}));
  norm->set("beta", xt::xarray<double>({1.0, 1.0, 1.0, 1.0}));
  const xt::xarray<double> y = norm->forward(x, Mode::train);
  const double expected[] = {1 - 3 / std::sqrt(1.25), 1 - 1 / std::sqrt(1.25),
                             1 + 1 / std::sqrt(1.25), 1 + 3 / std::sqrt(1.25)};
  for (int i = 0; i < 4; ++i) CHECK(y(0, i) == doctest::Approx(expected[i]).epsilon(1e-10));

  auto with_eps = make_norm<double>({{"type", "layer"}}, 4);
  with_eps->prepare({1, 4});
  with_eps->set("gamma", xt::xarray<double>({2.0, 2.0, 2.0, 2.0}));
  with_eps->set("beta", xt::xarray<double>({1.0, 1.0, 1.0, 1.0}));
  const xt::xarray<double> y5 = with_eps->forward(x, Mode::train);
  const double rounded[] = {-1.683, 0.106, 1.894, 3.683};
  for (int i = 0; i < 4; ++i)
    CHECK(std::round(y5(0, i) * 1000) / 1000 == doctest::Approx(rounded[i]));

  // The same numbers from BatchNorm: one channel, four samples.
  auto batch = make_norm<double>({{"type", "batch"}, {"eps", 0.0}}, 1);
  batch->set("gamma", xt::xarray<double>({2.0}));
  batch->set("beta", xt::xarray<double>({1.0}));
  const xt::xarray<double> column =
      xt::reshape_view(xt::xarray<double>({1.0, 2.0, 3.0, 4.0}), {4, 1});
  const xt::xarray<double> yb = batch->forward(column, Mode::train);
  for (int i = 0; i < 4; ++i) CHECK(yb(i, 0) == doctest::Approx(expected[i]).epsilon(1e-10));
}
