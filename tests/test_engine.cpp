// The engine on its own: statistics accuracy and the worked example.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <random>
#include <xtensor/xarray.hpp>
#include <xtensor/xstrided_view.hpp>

#include "normlab/normlab.hpp"

using namespace normlab;

TEST_CASE("variance of 1e7 float32 values with mean 1000 and std 1 is accurate to 1e-6") {
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
  // Float data are summed in float within blocks of 2048 (tests/test_accuracy.cpp
  // holds that to PyTorch's float32 accuracy); the blocks are carried in double.
  CHECK(std::abs(stats.mean[0] - double(mean)) < 1e-6);
  CHECK(std::abs(stats.var[0] - reference) / reference < 1e-6);
}

// The lanes' loops end in chunks of halving width (src/engine/moments.hpp):
// every length up to two rows of lanes and past a block must count each
// value once. A value dropped or added twice moves the mean by about 1/n of
// its distance from the mean, far beyond float's rounding here.
TEST_CASE(
    "statistics of every span length from 1 to 300, and around a block, count each value once") {
  std::mt19937_64 rng(7);
  std::uniform_real_distribution<double> uniform(-1.0, 3.0);
  std::vector<std::size_t> lengths;
  for (std::size_t n = 1; n <= 300; ++n) lengths.push_back(n);
  for (std::size_t n : {2047, 2048, 2049, 2048 + 63, 4096 + 97}) lengths.push_back(n);
  for (const std::size_t n : lengths) {
    CAPTURE(n);
    std::vector<float> x(3 * n);  // three groups of n values: LayerNorm's rows
    for (float& v : x) v = float(uniform(rng));
    NormDescription d;
    d.view = {3, 1, n};
    d.pooling = Pooling::per_outer_groups;
    GroupStats stats;
    reduce_stats(x.data(), d, stats);
    NormDescription rms = d;  // the uncentered sum of squares
    rms.centered = false;
    GroupStats squares;
    reduce_stats(x.data(), rms, squares);
    for (std::size_t g = 0; g < 3; ++g) {
      long double sum = 0, m2 = 0, sum_squares = 0;
      for (std::size_t i = 0; i < n; ++i) sum += x[g * n + i];
      const long double mean = sum / n;
      for (std::size_t i = 0; i < n; ++i) {
        const long double v = x[g * n + i];
        m2 += (v - mean) * (v - mean), sum_squares += v * v;
      }
      CHECK(stats.mean[g] == doctest::Approx(double(mean)).epsilon(1e-6));
      CHECK(stats.var[g] == doctest::Approx(double(m2 / n)).epsilon(1e-5));
      CHECK(squares.var[g] == doctest::Approx(double(sum_squares / n)).epsilon(1e-6));
    }
  }
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

// Backward writes a dx larger than the last-level cache with non-temporal
// stores (write_run in src/engine/engine_kernels.cpp): three tensors of 72 MB
// together here, more than this machine's 32 MB L3. Runs of an odd length put
// every alignment at their ends. Each element must be the formula's value.
// (Likewise.) GroupNorm-like groups of 2 channels, each group 6.4 MB: the fused
// forward streams y, and every element must be written and right.
TEST_CASE("engine: a y larger than the last-level cache (streamed stores) is right everywhere") {
  const std::size_t outer = 3, channels = 4, inner = 400'009, n = outer * channels * inner;
  std::vector<float> x(n), y(n, std::nanf("")), gamma(channels), beta(channels);
  std::mt19937_64 rng(8);
  std::normal_distribution<float> normal(0.5f, 2.0f);
  for (float& v : x) v = normal(rng);
  for (std::size_t c = 0; c < channels; ++c) gamma[c] = 1.0f + 0.1f * float(c), beta[c] = 0.2f;
  NormDescription d;
  d.view = {outer, channels, inner};
  d.channels_per_group = 2;
  d.affine = Affine::per_channel;
  d.has_shift = true;
  NormParameters<float> params;
  params.gamma = gamma.data();
  params.beta = beta.data();
  GroupStats stats;
  normalize_with_batch_stats(x.data(), d, stats, params, y.data());
  const std::size_t group = 2 * inner;
  double worst = 0;
  for (std::size_t g = 0; g < outer * channels / 2; ++g) {
    double sum = 0, squares = 0;
    for (std::size_t i = 0; i < group; ++i) sum += x[g * group + i];
    const double mean = sum / double(group);
    for (std::size_t i = 0; i < group; ++i)
      squares += (x[g * group + i] - mean) * (x[g * group + i] - mean);
    const double rstd = 1 / std::sqrt(squares / double(group) + d.eps);
    for (std::size_t i = 0; i < group; ++i) {
      const std::size_t at = g * group + i, c = (at / inner) % channels;
      const double want = (x[at] - mean) * rstd * gamma[c] + beta[c];
      const double error = std::abs(double(y[at]) - want) / (std::abs(want) + 1.0);
      worst = std::isnan(error) ? error : std::max(worst, error);  // NaN: an unwritten element
    }
  }
  CHECK(worst < 1e-6);  // the float rounding of y
}

// (On a machine with a last-level cache above 72 MB this checks the plain stores.)
TEST_CASE("engine: a dx larger than the last-level cache (streamed stores) is right everywhere") {
  const std::size_t outer = 3, channels = 5, inner = 400'009, n = outer * channels * inner;
  std::vector<float> x(n), dy(n), dx(n, std::nanf("")), gamma(channels), beta(channels);
  std::mt19937_64 rng(7);
  std::normal_distribution<float> normal(0.5f, 2.0f);
  for (std::size_t i = 0; i < n; ++i) x[i] = normal(rng), dy[i] = normal(rng);
  for (std::size_t c = 0; c < channels; ++c) gamma[c] = 1.0f + 0.1f * float(c), beta[c] = 0.2f;
  NormDescription d;  // BatchNorm: one group per channel over (outer, inner)
  d.view = {outer, channels, inner};
  d.pooling = Pooling::per_channel;
  d.affine = Affine::per_channel;
  d.has_shift = true;
  NormParameters<float> params;
  params.gamma = gamma.data();
  params.beta = beta.data();
  GroupStats stats;
  std::vector<float> y(n);
  normalize_with_batch_stats(x.data(), d, stats, params, y.data());
  GradientSums sums;
  normalize_backward(x.data(), dy.data(), d, stats, params, sums, dx.data());
  // dx = rstd * gamma * (dy - mean(dy) - xhat * mean(dy * xhat)) per channel, in double.
  const double count = double(outer * inner);
  double worst = 0;
  for (std::size_t c = 0; c < channels; ++c) {
    const double mean = stats.mean[c], rstd = stats.rstd[c];
    double sum_dy = 0, sum_dy_xhat = 0;
    for (std::size_t a = 0; a < outer; ++a)
      for (std::size_t i = 0; i < inner; ++i) {
        const std::size_t at = (a * channels + c) * inner + i;
        sum_dy += dy[at];
        sum_dy_xhat += dy[at] * (x[at] - mean) * rstd;
      }
    for (std::size_t a = 0; a < outer; ++a)
      for (std::size_t i = 0; i < inner; ++i) {
        const std::size_t at = (a * channels + c) * inner + i;
        const double xhat = (x[at] - mean) * rstd;
        const double want =
            rstd * gamma[c] * (dy[at] - sum_dy / count - xhat * sum_dy_xhat / count);
        const double error = std::abs(double(dx[at]) - want) / (std::abs(want) + 1.0);
        worst = std::isnan(error) ? error : std::max(worst, error);  // NaN: an unwritten element
      }
  }
  CHECK(worst < 1e-6);  // the float rounding of dx
}

// The column kernels pass over a block of rows either across the rows
// (rows of 2 KB or more) or down strips of columns (src/engine/columns.cpp,
// rows_first). BatchNorm on [N, C] by both, several blocks of rows each:
// y, dx and the parameter gradients against a long double reference.
TEST_CASE("column kernels: BatchNorm on [N, C] by rows and by strips matches the formulas") {
  for (const std::size_t channels : {std::size_t(40), std::size_t(700)}) {
    CAPTURE(channels);
    const std::size_t rows = 900;  // more than one block of rows at either width
    std::mt19937_64 rng(11);
    std::normal_distribution<double> normal(3.0, 2.0);
    std::vector<float> x(rows * channels), dy(rows * channels), gamma(channels), beta(channels);
    for (float& v : x) v = float(normal(rng));
    for (float& v : dy) v = float(normal(rng) - 3.0);
    for (float& v : gamma) v = float(normal(rng));
    for (float& v : beta) v = float(normal(rng));
    NormDescription d;
    d.view = {rows, channels, 1};
    d.pooling = Pooling::per_channel;
    d.affine = Affine::per_channel;
    d.has_shift = true;
    d.eps = 0;
    const NormParameters<float> params{gamma.data(), beta.data(), nullptr, nullptr};
    GroupStats stats;
    GradientSums sums;
    std::vector<float> y(x.size()), dx(x.size());
    normalize_with_batch_stats(x.data(), d, stats, params, y.data());
    normalize_backward(x.data(), dy.data(), d, stats, params, sums, dx.data());
    double worst = 0;
    auto relative = [](double got, long double want) {
      return std::abs(got - double(want)) / (std::abs(double(want)) + 1.0);
    };
    for (std::size_t c = 0; c < channels; ++c) {
      long double sum = 0, m2 = 0, sum_dy = 0, sum_dy_xhat = 0;
      for (std::size_t a = 0; a < rows; ++a) sum += x[a * channels + c];
      const long double mean = sum / rows;
      for (std::size_t a = 0; a < rows; ++a)
        m2 += (x[a * channels + c] - mean) * (x[a * channels + c] - mean);
      const long double rstd = 1 / std::sqrt(m2 / rows);
      for (std::size_t a = 0; a < rows; ++a) {
        sum_dy += dy[a * channels + c];
        sum_dy_xhat += dy[a * channels + c] * (x[a * channels + c] - mean) * rstd;
      }
      for (std::size_t a = 0; a < rows; ++a) {
        const std::size_t at = a * channels + c;
        const long double xhat = (x[at] - mean) * rstd;
        worst = std::max(worst, relative(y[at], xhat * gamma[c] + beta[c]));
        const long double want_dx =
            rstd * gamma[c] * (dy[at] - sum_dy / rows - xhat * sum_dy_xhat / rows);
        worst = std::max(worst, relative(dx[at], want_dx));
      }
      worst = std::max(worst, relative(sums.parameters.gamma[c], sum_dy_xhat) / rows);
      worst = std::max(worst, relative(sums.parameters.beta[c], sum_dy) / rows);
    }
    CHECK(worst < 1e-5);
  }
}
