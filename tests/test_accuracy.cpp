// Float32 accuracy on adversarial inputs: groups of 2^17 to 2^18 values whose
// mean is 1e4 standard deviations from zero. normlab sums float data in float
// (blockwise, carried in double); it must be at least as accurate as PyTorch's
// float32 path, whose errors tests/golden/make_adversarial.py recorded in
// tests/golden/adversarial_offset.json on the same inputs. The reference is
// computed here, in long double, from the definitions.
#include <doctest/doctest.h>

#include <cmath>
#include <cstdint>
#include <fstream>
#include <functional>
#include <string>
#include <vector>
#include <xtensor/xarray.hpp>

#include "normlab/normlab.hpp"

using namespace normlab;

namespace {

// The generator's draws: splitmix64(seed + i) to u uniform with standard
// deviation 1, then offset + spread * u rounded to float (as make_adversarial.py).
std::uint64_t splitmix64(std::uint64_t z) {
  z *= 0x9E3779B97F4A7C15ull;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}
xt::xarray<float> draw(const std::vector<std::size_t>& shape, double offset, double spread,
                       std::uint64_t seed) {
  xt::xarray<float> a = xt::xarray<float>::from_shape(shape);
  for (std::size_t i = 0; i < a.size(); ++i) {
    const double unit = double(splitmix64(seed + i) >> 11) * 0x1p-53;
    a.flat(i) = float(offset + spread * (2.0 * unit - 1.0) * std::sqrt(3.0));
  }
  return a;
}

// Which group (statistics) and which parameter each element belongs to, and
// the engine's description of those groups.
struct Grouping {
  std::size_t groups, parameters;
  std::function<std::size_t(std::size_t)> group_of, parameter_of;
  NormDescription description;
  std::size_t group(std::size_t i) const { return group_of(i); }
};
Grouping grouping(const std::string& type, const nlohmann::json& spec,
                  const std::vector<std::size_t>& shape) {
  const std::size_t n = shape[0], c = shape[1];
  std::size_t size = 1;
  for (std::size_t s : shape) size *= s;
  const std::size_t per_sample = size / n, inner = per_sample / c;
  NormDescription d;
  d.view = {n, c, inner};
  if (type == "layer") {
    d.view = {n, 1, per_sample};
    return {n, per_sample, [=](std::size_t i) { return i / per_sample; },
            [=](std::size_t i) { return i % per_sample; }, d};
  }
  auto channel = [=](std::size_t i) { return (i / inner) % c; };
  if (type == "batch") {
    d.pooling = Pooling::per_channel;
    return {c, c, channel, channel, d};
  }
  const std::size_t g = type == "instance" ? c : spec.at("groups").get<std::size_t>();
  d.channels_per_group = c / g;
  return {n * g, c, [=](std::size_t i) { return (i / per_sample) * g + channel(i) / (c / g); },
          channel, d};
}

// y, dx, dgamma, dbeta, mean and rstd of a norm with gamma 1 and beta 0, from
// the definitions in long double.
struct Outputs {
  std::vector<double> y, dx, dgamma, dbeta, mean, rstd;
};
Outputs reference(const Grouping& k, const xt::xarray<float>& x, const xt::xarray<float>& dy,
                  double eps) {
  const std::size_t size = x.size();
  std::vector<long double> sum(k.groups), count(k.groups), m2(k.groups), mean(k.groups),
      rstd(k.groups), sum_dy(k.groups), sum_dy_xhat(k.groups);
  for (std::size_t i = 0; i < size; ++i) sum[k.group(i)] += x.flat(i), count[k.group(i)] += 1;
  for (std::size_t g = 0; g < k.groups; ++g) mean[g] = sum[g] / count[g];
  for (std::size_t i = 0; i < size; ++i) {
    const long double dev = x.flat(i) - mean[k.group(i)];
    m2[k.group(i)] += dev * dev;
  }
  for (std::size_t g = 0; g < k.groups; ++g) rstd[g] = 1 / std::sqrt(m2[g] / count[g] + eps);
  Outputs out;
  out.y.resize(size), out.dx.resize(size);
  std::vector<long double> dgamma(k.parameters), dbeta(k.parameters);
  for (std::size_t i = 0; i < size; ++i) {
    const std::size_t g = k.group(i);
    const long double xhat = (x.flat(i) - mean[g]) * rstd[g];
    out.y[i] = double(xhat);
    sum_dy[g] += dy.flat(i), sum_dy_xhat[g] += dy.flat(i) * xhat;
    dgamma[k.parameter_of(i)] += dy.flat(i) * xhat, dbeta[k.parameter_of(i)] += dy.flat(i);
  }
  for (std::size_t i = 0; i < size; ++i) {
    const std::size_t g = k.group(i);
    const long double xhat = (x.flat(i) - mean[g]) * rstd[g];
    out.dx[i] =
        double(rstd[g] * (dy.flat(i) - sum_dy[g] / count[g] - xhat * sum_dy_xhat[g] / count[g]));
  }
  out.dgamma.assign(dgamma.begin(), dgamma.end());
  out.dbeta.assign(dbeta.begin(), dbeta.end());
  out.mean.assign(mean.begin(), mean.end());
  out.rstd.assign(rstd.begin(), rstd.end());
  return out;
}

// max |got - want| / max |want|, as the generator measures.
double scaled_error(const xt::xarray<float>& got, const std::vector<double>& want) {
  REQUIRE(got.size() == want.size());
  double worst = 0, scale = 0;
  for (std::size_t i = 0; i < want.size(); ++i) {
    worst = std::max(worst, std::abs(double(got.flat(i)) - want[i]));
    scale = std::max(scale, std::abs(want[i]));
  }
  return std::isfinite(worst) ? worst / scale : HUGE_VAL;
}

}  // namespace

TEST_CASE("float32 accuracy with a mean 1e4 standard deviations from zero: at least PyTorch's") {
  std::ifstream in(std::string(NORMLAB_GOLDEN_DIR) + "/adversarial_offset.json");
  REQUIRE(in);
  const nlohmann::json cases = nlohmann::json::parse(in).at("cases");
  REQUIRE(cases.size() >= 5);
  for (const nlohmann::json& c : cases) {
    const std::string name = c.at("name");
    INFO(name);
    const auto shape = c.at("shape").get<std::vector<std::size_t>>();
    const std::uint64_t seed = c.at("seed");
    const xt::xarray<float> x = draw(shape, c.at("offset"), c.at("spread"), seed);
    const xt::xarray<float> dy = draw(shape, 0.0, 1.0, seed + (std::uint64_t(1) << 32));
    const Grouping k = grouping(c.at("spec").at("type"), c.at("spec"), shape);
    const Outputs want = reference(k, x, dy, c.at("eps"));

    auto norm = make_norm<float>(c.at("spec"), 0);
    const xt::xarray<float> y = norm->forward(x, Mode::train);
    const xt::xarray<float> dx = norm->backward(dy);
    GroupStats stats;  // the engine's statistics of the same groups
    reduce_stats(x.data(), k.description, stats);
    finish_stats(k.description, stats);
    REQUIRE(stats.mean.size() == k.groups);
    double mean_error = 0, rstd_error = 0;
    for (std::size_t g = 0; g < k.groups; ++g) {
      mean_error = std::max(mean_error, std::abs(stats.mean[g] - want.mean[g]) * want.rstd[g]);
      rstd_error = std::max(rstd_error, std::abs(stats.rstd[g] / want.rstd[g] - 1));
    }
    const nlohmann::json& torch = c.at("torch_float32");
    const std::vector<std::pair<std::string, double>> errors = {
        {"y", scaled_error(y, want.y)},
        {"dx", scaled_error(dx, want.dx)},
        {"dgamma", scaled_error(norm->parameter("gamma").grad, want.dgamma)},
        {"dbeta", scaled_error(norm->parameter("beta").grad, want.dbeta)},
        {"mean", mean_error},
        {"rstd", rstd_error}};
    // At least as accurate as PyTorch, or at float's rounding of the result
    // itself (2^-23 of the largest value), where PyTorch may be as well.
    for (const auto& entry : errors) {  // (clang 14 cannot capture a structured binding in INFO)
      const std::string& what = entry.first;
      const double error = entry.second, theirs = torch.at(what).get<double>();
      INFO(what << ": normlab " << error << ", PyTorch float32 " << theirs);
      CHECK(error <= std::max(theirs, 0x1p-23));
    }
  }
}
