// normlab demo: every norm on one sample input, and which statistics of the
// output each one pins to (mean 0, std 1).
#include <boost/program_options.hpp>
#include <cmath>
#include <cstdio>
#include <iostream>
#include <limits>
#include <xtensor/xarray.hpp>
#include <xtensor/xbuilder.hpp>
#include <xtensor/xrandom.hpp>

#include "commands.hpp"
#include "normlab/normlab.hpp"
#include "parse_options.hpp"

namespace po = boost::program_options;

namespace normlab::cli {
namespace {

// Largest deviation from (mean 0, std 1) over the slices x[index] of a 4-D
// tensor, where slice_of maps (n, c) to a slice id.
template <class SliceOf>
double worst_deviation(const xt::xarray<double>& y, std::size_t slices, SliceOf slice_of) {
  const std::size_t n = y.shape(0), c = y.shape(1), s = y.size() / (n * c);
  std::vector<double> sum(slices, 0), sq(slices, 0), count(slices, 0);
  for (std::size_t i = 0; i < n; ++i)
    for (std::size_t j = 0; j < c; ++j)
      for (std::size_t k = 0; k < s; ++k) {
        const double v = y.data()[(i * c + j) * s + k];
        const std::size_t id = slice_of(i, j);
        sum[id] += v, sq[id] += v * v, count[id] += 1;
      }
  double worst = 0;
  for (std::size_t id = 0; id < slices; ++id) {
    const double mean = sum[id] / count[id];
    const double sd = std::sqrt(sq[id] / count[id] - mean * mean);
    worst = std::max({worst, std::abs(mean), std::abs(sd - 1)});
  }
  return worst;
}

}  // namespace

int demo_command(const Args& args) {
  std::string seed_text = "0";
  po::options_description desc(
      "usage: normlab demo [--seed N]\n\n"
      "Applies every registered norm (default options) to one random input of shape\n"
      "(N=8, C=8, H=5, W=5) whose samples and channels have different offsets and scales,\n"
      "and shows over which slices each output has mean 0 and standard deviation 1: per\n"
      "channel over the batch (batch), per sample (layer), per sample and group (group), ...\n"
      "Options");
  desc.add_options()("help,h", "show this help")("seed", po::value(&seed_text)->value_name("N"),
                                                 "random seed, an integer >= 0 (default 0)");
  if (!parse_options(args, desc)) return 0;
  const std::size_t seed =
      std::size_t(integer_option("--seed", seed_text, 0, std::numeric_limits<long long>::max()));

  // x: (N=8, C=8, H=5, W=5); channel c has mean 2c - 7 and std 1 + c / 2,
  // sample n is shifted by n, so every axis carries a different offset.
  const std::size_t N = 8, C = 8, H = 5, W = 5, channels_per_group = 2;
  xt::random::seed(seed);
  xt::xarray<double> x = xt::random::randn<double>({N, C, H, W});
  for (std::size_t n = 0; n < N; ++n)
    for (std::size_t c = 0; c < C; ++c)
      for (std::size_t k = 0; k < H * W; ++k) {
        double& v = x.data()[(n * C + c) * H * W + k];
        v = v * (1 + 0.5 * double(c)) + (2.0 * double(c) - 7) + double(n);
      }

  std::printf(
      "input (N, C, H, W) = (8, 8, 5, 5): channel means -7..7, stds 1..4.5, sample shifts "
      "0..7\n");
  std::printf(
      "after each norm (train mode, default options as a conv layer of cnn3 uses them),\n"
      "the largest |mean| or |std - 1| over the slices:\n\n");
  std::printf("%-14s %12s %12s %12s %12s\n", "norm", "per channel", "per sample", "per (n,c)",
              "per (n,2 ch)");
  std::vector<std::string> weight_norms;
  for (const NormInfo& info : registered_norms()) {
    if (info.traits.reparameterizes_weight) {
      weight_norms.push_back(info.type);
      continue;
    }
    const nlohmann::json spec = layer_spec({{"type", info.type}}, C, /*spatial=*/true);
    std::unique_ptr<Norm<double>> norm;
    try {
      norm = make_norm<double>(spec, C);
    } catch (const std::invalid_argument& e) {  // sync_batch in a build without MPI
      std::printf("%-14s skipped: %s\n", info.type.c_str(), e.what());
      continue;
    }
    const xt::xarray<double> y = norm->forward(x, Mode::train);
    std::printf("%-14s %12.2e %12.2e %12.2e %12.2e\n", info.type.c_str(),
                worst_deviation(y, C, [](std::size_t, std::size_t c) { return c; }),
                worst_deviation(y, N, [](std::size_t n, std::size_t) { return n; }),
                worst_deviation(y, N * C, [&](std::size_t n, std::size_t c) { return n * C + c; }),
                worst_deviation(y, N * C / channels_per_group, [&](std::size_t n, std::size_t c) {
                  return (n * C + c) / channels_per_group;
                }));
  }
  // A weight reparameterization normalizes a weight instead: w = g * v / ||v|| per output row.
  for (const std::string& type : weight_norms) {
    auto weight_norm = make_norm<double>({{"type", type}}, C);
    xt::xarray<double> v = xt::view(x, 0);
    const xt::xarray<double> w = weight_norm->forward(v, Mode::train);
    std::printf(
        "\n{\"type\":\"%s\"} on a (8, 5, 5) weight: g starts at ||v|| per row, so w == v: "
        "max |w - v| = %.1e\n",
        type.c_str(), double(xt::amax(xt::abs(w - v))()));
  }
  std::printf(
      "zeros mark what a norm normalizes: batch statistics the channel over the batch, layer the\n"
      "sample, instance each (sample, channel), group each (sample, group); rms and frn only\n"
      "scale, and frn's TLU and evonorm_s0's x * sigmoid(v x) change the distribution on "
      "purpose.\n");
  return 0;
}

}  // namespace normlab::cli
