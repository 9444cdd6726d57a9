// The open description: centering and scaling independent (mean-only,
// scale-only, both, neither), the tanh numerator (a map without statistics),
// and statistics supplied by the norm in train mode.
//  (a) On every traversal, the engine's dx and parameter gradients of
//      L = sum(y * w) match central finite differences in double, for each
//      combination of centered and scaled.
//  (b) Mean-only and the tanh map match their formulas written out here.
//  (c) Statistics supplied by the norm (statistics_given) that equal the
//      batch's give the batch path's y and dx when they carry the gradient
//      (statistics_constant false), and dx = dxhat * rstd when constant.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

#include "engine_cases.hpp"
#include "normlab/engine.hpp"

using namespace normlab;
using normlab::test::description;

namespace {

struct Case {
  std::string name;
  NormDescription d;
};

// One small description per traversal: columns, strided runs, contiguous
// groups (per-channel and elementwise affine), GroupNorm on (N, C), Ghost BN.
std::vector<Case> traversals() {
  const auto per_channel = Pooling::per_channel, groups = Pooling::per_outer_groups;
  std::vector<Case> cases = {
      {"columns (BN on (N, C))", description({9, 5, 1}, per_channel, 1, Affine::per_channel, true)},
      {"strided runs (BN on images)",
       description({4, 3, 7}, per_channel, 1, Affine::per_channel, true)},
      {"contiguous groups (GN)", description({3, 6, 5}, groups, 2, Affine::per_channel, true)},
      {"contiguous groups, elementwise affine (LN)",
       description({4, 2, 6}, groups, 1, Affine::elementwise, true)},
      {"GN on (N, C)", description({5, 8, 1}, groups, 4, Affine::per_channel, true)},
  };
  NormDescription ghost = description({6, 3, 4}, per_channel, 1, Affine::per_channel, true);
  ghost.outer_chunk = 2;
  cases.push_back({"Ghost BN chunks", ghost});
  NormDescription nhwc =
      channels_last(description({3, 4, 6}, groups, 2, Affine::per_channel, true));
  cases.push_back({"channels-last GN (columns in chunks)", nhwc});
  return cases;
}

std::vector<double> normal(std::mt19937_64& rng, std::size_t n, double mean, double sd) {
  std::normal_distribution<double> dist(mean, sd);
  std::vector<double> v(n);
  for (double& e : v) e = dist(rng);
  return v;
}

struct Data {
  std::vector<double> x, w, gamma, beta, v;
  NormParameters<double> params() const {
    auto ptr = [](const std::vector<double>& a) { return a.empty() ? nullptr : a.data(); };
    return {ptr(gamma), ptr(beta), nullptr, ptr(v)};
  }
};

Data make_data(const NormDescription& d, std::uint64_t seed) {
  std::mt19937_64 rng(seed);
  Data in;
  in.x = normal(rng, d.view.size(), 0.7, 1.5);
  in.w = normal(rng, d.view.size(), 0.0, 1.0);
  if (d.affine != Affine::none) in.gamma = normal(rng, d.affine_size(), 1.0, 0.3);
  if (d.has_shift) in.beta = normal(rng, d.affine_size(), 0.0, 0.5);
  if (d.numerator != Numerator::input)
    in.v = normal(rng, d.shared_v ? 1 : d.view.channels, 0.8, 0.3);
  return in;
}

// y of the description in train mode (batch statistics).
std::vector<double> forward(const NormDescription& d, const Data& in, GroupStats& stats) {
  std::vector<double> y(in.x.size());
  reduce_stats(in.x.data(), d, stats);
  finish_stats(d, stats);
  apply_stats(in.x.data(), d, stats, in.params(), y.data());
  return y;
}

double loss(const NormDescription& d, const Data& in) {
  GroupStats stats;
  const std::vector<double> y = forward(d, in, stats);
  double l = 0;
  for (std::size_t i = 0; i < y.size(); ++i) l += y[i] * in.w[i];
  return l;
}

// Central differences of the loss in every entry of `values`, against `analytic`.
void check_derivatives(const NormDescription& d, Data& in, std::vector<double>& values,
                       const std::vector<double>& analytic, const std::string& what) {
  REQUIRE(analytic.size() == values.size());
  const double h = 1e-6;
  for (std::size_t i = 0; i < values.size(); ++i) {
    const double saved = values[i];
    values[i] = saved + h;
    const double up = loss(d, in);
    values[i] = saved - h;
    const double down = loss(d, in);
    values[i] = saved;
    const double numeric = (up - down) / (2 * h);
    INFO(what << "[" << i << "]: numeric " << numeric << ", engine " << analytic[i]);
    CHECK(std::abs(numeric - analytic[i]) <= 1e-6 * (1 + std::abs(numeric)));
  }
}

void gradcheck(const NormDescription& d, std::uint64_t seed) {
  Data in = make_data(d, seed);
  GroupStats stats;
  forward(d, in, stats);
  GradientSums sums;
  std::vector<double> dx(in.x.size());
  normalize_backward(in.x.data(), in.w.data(), d, stats, in.params(), sums, dx.data());
  check_derivatives(d, in, in.x, dx, "dx");
  if (!in.gamma.empty()) check_derivatives(d, in, in.gamma, sums.parameters.gamma, "dgamma");
  if (!in.beta.empty()) check_derivatives(d, in, in.beta, sums.parameters.beta, "dbeta");
  if (!in.v.empty()) check_derivatives(d, in, in.v, sums.parameters.v, "dv");
}

}  // namespace

TEST_CASE("gradcheck: engine, centering and scaling independent, on every traversal") {
  for (const Case& c : traversals())
    for (int centered = 0; centered < 2; ++centered)
      for (int scaled = 0; scaled < 2; ++scaled) {
        NormDescription d = c.d;
        d.centered = centered;
        d.scaled = scaled;
        CAPTURE(c.name);
        CAPTURE(centered);
        CAPTURE(scaled);
        d.validate();
        gradcheck(d, 11 + 2 * centered + scaled);
      }
}

TEST_CASE("gradcheck: engine, tanh numerator (DyT), per channel and shared v, with TLU") {
  for (bool shared : {false, true})
    for (bool tlu : {false, true})
      for (View3 view : {View3{3, 4, 5}, View3{6, 4, 1}}) {
        NormDescription d =
            description(view, Pooling::per_outer_groups, 1, Affine::per_channel, true);
        d.centered = d.scaled = false;
        d.numerator = Numerator::tanh;
        d.shared_v = shared;
        if (tlu) d.epilogue = Epilogue::tlu;
        CAPTURE(shared);
        CAPTURE(tlu);
        CAPTURE(view.inner);
        if (!tlu) gradcheck(d, 5);
        // channels last: the pointwise column kernels
        const NormDescription last = channels_last(d);
        if (!tlu) gradcheck(last, 6);
        // TLU's kink: check y only against the formula below, not by differences.
        Data in = make_data(d, 7);
        GroupStats stats;
        std::vector<double> tau(view.channels, 0.1);
        NormParameters<double> p = in.params();
        p.tau = tlu ? tau.data() : nullptr;
        std::vector<double> y(in.x.size());
        normalize_with_batch_stats(in.x.data(), d, stats, p, y.data());
        for (std::size_t a = 0; a < view.outer; ++a)
          for (std::size_t c = 0; c < view.channels; ++c)
            for (std::size_t i = 0; i < view.inner; ++i) {
              const std::size_t at = (a * view.channels + c) * view.inner + i;
              double want = in.gamma[c] * std::tanh(in.v[shared ? 0 : c] * in.x[at]) + in.beta[c];
              if (tlu) want = std::max(want, tau[c]);
              CHECK(y[at] == doctest::Approx(want).epsilon(1e-14));
            }
      }
}

TEST_CASE("engine: mean-only subtracts the group mean and does not divide") {
  for (const Case& c : traversals()) {
    NormDescription d = c.d;
    d.scaled = false;
    CAPTURE(c.name);
    Data in = make_data(d, 3);
    GroupStats stats;
    const std::vector<double> y = forward(d, in, stats);
    // The group means written out: every element's group through group_of.
    std::vector<double> sum(d.groups(), 0.0);
    const View3 v = d.view;
    const std::size_t per_row = v.channels / d.channels_per_group;
    auto group = [&](std::size_t a, std::size_t ch) {
      return d.pooling == Pooling::per_channel ? d.group_of(a, ch)
                                               : a * per_row + ch / d.channels_per_group;
    };
    for (std::size_t a = 0; a < v.outer; ++a)
      for (std::size_t ch = 0; ch < v.channels; ++ch)
        for (std::size_t i = 0; i < v.inner; ++i)
          sum[group(a, ch)] += in.x[(a * v.channels + ch) * v.inner + i];
    for (std::size_t a = 0; a < v.outer; ++a)
      for (std::size_t ch = 0; ch < v.channels; ++ch)
        for (std::size_t i = 0; i < v.inner; ++i) {
          const std::size_t at = (a * v.channels + ch) * v.inner + i;
          const std::size_t p = d.affine == Affine::elementwise ? ch * v.inner + i : ch;
          const double mean = sum[group(a, ch)] / double(d.group_size());
          CHECK(y[at] == doctest::Approx((in.x[at] - mean) * in.gamma[p] + in.beta[p]));
        }
    for (double r : stats.rstd) CHECK(r == 1.0);
  }
}

TEST_CASE("engine: statistics supplied by the norm in train mode") {
  for (const Case& c : traversals()) {
    CAPTURE(c.name);
    const NormDescription batch = c.d;
    Data in = make_data(batch, 21);
    GroupStats stats;
    const std::vector<double> y_batch = forward(batch, in, stats);
    GradientSums sums;
    std::vector<double> dx_batch(in.x.size());
    normalize_backward(in.x.data(), in.w.data(), batch, stats, in.params(), sums, dx_batch.data());

    // The same statistics, handed over: with the gradient through them, the
    // batch path's results; as constants, dx = dy * gamma * rstd.
    NormDescription given = batch;
    given.statistics_given = true;
    given.statistics_constant = false;
    std::vector<double> y(in.x.size()), dx(in.x.size());
    apply_stats(in.x.data(), given, stats, in.params(), y.data());
    GradientSums given_sums;
    normalize_backward(in.x.data(), in.w.data(), given, stats, in.params(), given_sums, dx.data());
    for (std::size_t i = 0; i < y.size(); ++i) {
      CHECK(y[i] == y_batch[i]);
      CHECK(dx[i] == doctest::Approx(dx_batch[i]).epsilon(1e-12));
    }
    given.statistics_constant = true;
    normalize_backward(in.x.data(), in.w.data(), given, stats, in.params(), given_sums, dx.data());
    const View3 v = batch.view;
    double differs = 0;
    for (std::size_t a = 0; a < v.outer; ++a)
      for (std::size_t ch = 0; ch < v.channels; ++ch)
        for (std::size_t i = 0; i < v.inner; ++i) {
          const std::size_t at = (a * v.channels + ch) * v.inner + i;
          const std::size_t p = batch.affine == Affine::elementwise ? ch * v.inner + i : ch;
          const std::size_t g =
              batch.pooling == Pooling::per_channel
                  ? batch.group_of(a, ch)
                  : a * (v.channels / batch.channels_per_group) + ch / batch.channels_per_group;
          CHECK(dx[at] == doctest::Approx(in.w[at] * in.gamma[p] * stats.rstd[g]));
          differs = std::max(differs, std::abs(dx[at] - dx_batch[at]));
        }
    CHECK(differs > 1e-3);  // the constant form really differs from the batch one
  }
}

TEST_CASE("engine: descriptions the open description rejects") {
  NormDescription d =
      description({2, 3, 4}, Pooling::per_outer_groups, 1, Affine::per_channel, true);
  d.numerator = Numerator::tanh;
  CHECK_THROWS_WITH_AS(d.validate(), doctest::Contains("without statistics"),
                       std::invalid_argument);
  d.numerator = Numerator::swish;
  d.scaled = false;
  CHECK_THROWS_WITH_AS(d.validate(), doctest::Contains("centered and scaled"),
                       std::invalid_argument);
  d.numerator = Numerator::input;
  d.scaled = true;
  d.shared_v = true;
  CHECK_THROWS_WITH_AS(d.validate(), doctest::Contains("shared_v"), std::invalid_argument);
}
