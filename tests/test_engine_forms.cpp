// Canonical descriptions: the engine rewrites a description into the
// equivalent one of its fastest traversal before it runs (canonical_form in
// src/engine/engine.cpp). Pairs of descriptions of the same norm give the same
// bytes, and both match the description's meaning written out here in double.
#include <doctest/doctest.h>

#include <cmath>
#include <random>
#include <string>
#include <vector>

#include "engine/engine_isa.hpp"
#include "engine_cases.hpp"
#include "normlab/engine.hpp"

using namespace normlab;
using normlab::test::same_bytes;

namespace {

struct Results {
  GroupStats stats;
  std::vector<double> y, dx;
  GradientSums sums;
};

Results run(const NormDescription& d, const std::vector<double>& x, const std::vector<double>& dy,
            const NormParameters<double>& params) {
  Results r;
  r.y.resize(x.size());
  r.dx.resize(x.size());
  normalize_with_batch_stats(x.data(), d, r.stats, params, r.y.data());
  normalize_backward(x.data(), dy.data(), d, r.stats, params, r.sums, r.dx.data());
  return r;
}

// The description's y, from its definition: element (a, c, i) of the view is
// in group (chunk of a, c / channels_per_group) or (a, c / channels_per_group).
std::vector<double> reference_y(const NormDescription& d, const std::vector<double>& x,
                                const std::vector<double>& gamma) {
  const View3 v = d.view;
  const std::size_t per_row = v.channels / d.channels_per_group;
  auto group = [&](std::size_t a, std::size_t c) {
    const std::size_t row = d.pooling == Pooling::per_channel ? a / d.chunk_length() : a;
    return row * per_row + c / d.channels_per_group;
  };
  std::vector<double> sum(d.groups(), 0.0), squares(d.groups(), 0.0);
  const double n = double(d.group_size());
  for (std::size_t a = 0; a < v.outer; ++a)
    for (std::size_t c = 0; c < v.channels; ++c)
      for (std::size_t i = 0; i < v.inner; ++i)
        sum[group(a, c)] += x[(a * v.channels + c) * v.inner + i];
  for (std::size_t a = 0; a < v.outer; ++a)
    for (std::size_t c = 0; c < v.channels; ++c)
      for (std::size_t i = 0; i < v.inner; ++i) {
        const std::size_t g = group(a, c);
        const double centered =
            x[(a * v.channels + c) * v.inner + i] - (d.centered ? sum[g] / n : 0);
        squares[g] += centered * centered;
      }
  std::vector<double> y(x.size());
  for (std::size_t a = 0; a < v.outer; ++a)
    for (std::size_t c = 0; c < v.channels; ++c)
      for (std::size_t i = 0; i < v.inner; ++i) {
        const std::size_t at = (a * v.channels + c) * v.inner + i, g = group(a, c);
        const double mean = d.centered ? sum[g] / n : 0;
        const double rstd = 1 / std::sqrt(squares[g] / n + d.eps);
        double value = (x[at] - mean) * rstd;
        if (d.affine == Affine::per_channel) value *= gamma[c];
        if (d.affine == Affine::elementwise) value *= gamma[c * v.inner + i];
        y[at] = value;
      }
  return y;
}

struct Pair {
  std::string name;
  NormDescription a, b;
};

NormDescription make(View3 view, Pooling pooling, std::size_t cpg, std::size_t outer_chunk,
                     bool centered, Affine affine) {
  NormDescription d;
  d.view = view;
  d.pooling = pooling;
  d.channels_per_group = cpg;
  d.outer_chunk = outer_chunk;
  d.centered = centered;
  d.affine = affine;
  return d;
}

std::vector<Pair> pairs() {
  const auto per_channel = Pooling::per_channel, groups = Pooling::per_outer_groups;
  return {
      // PixelNorm on (N, C): per sample over C, uncentered, as [N*C, 1, 1]
      // columns in chunks of C rows, and as RMSNorm's [N, 1, C].
      {"PixelNorm's description and RMSNorm's",
       make({6 * 40, 1, 1}, per_channel, 1, 40, false, Affine::none),
       make({6, 1, 40}, groups, 1, 0, false, Affine::none)},
      // Ghost BN with virtual batches of one sample is InstanceNorm.
      {"per_channel, chunks of one row, against per_outer_groups "
       "(InstanceNorm)",
       make({5, 4, 9}, per_channel, 1, 1, true, Affine::per_channel),
       make({5, 4, 9}, groups, 1, 0, true, Affine::per_channel)},
      {"per_channel over whole chunks, against one contiguous group per chunk",
       make({8, 3, 5}, per_channel, 3, 2, true, Affine::none),
       make({4, 1, 30}, groups, 1, 0, true, Affine::none)},
      {"GroupNorm on (N, C), against its groups as rows with per-element gamma",
       make({7, 12, 1}, groups, 4, 0, true, Affine::per_channel),
       make({7, 3, 4}, groups, 1, 0, true, Affine::elementwise)},
  };
}

}  // namespace

TEST_CASE("engine: equivalent descriptions give the same results (canonical forms)") {
  for (const Pair& p : pairs()) {
    CAPTURE(p.name);
    REQUIRE(p.a.view.size() == p.b.view.size());
    REQUIRE(p.a.groups() == p.b.groups());
    std::mt19937_64 rng(9);
    std::normal_distribution<double> normal(0.5, 2.0);
    std::vector<double> x(p.a.view.size()), dy(x.size()), gamma(p.a.affine_size());
    for (double& e : x) e = normal(rng);
    for (double& e : dy) e = normal(rng);
    for (double& e : gamma) e = normal(rng);
    const NormParameters<double> params{gamma.empty() ? nullptr : gamma.data(), nullptr, nullptr,
                                        nullptr};
    const Results a = run(p.a, x, dy, params), b = run(p.b, x, dy, params);
    // Both run as one canonical description: the same bytes.
    const NormDescription ca = canonical_form(p.a), cb = canonical_form(p.b);
    CHECK(ca.pooling == cb.pooling);
    CHECK(ca.view.outer == cb.view.outer);
    CHECK(ca.view.channels == cb.view.channels);
    CHECK(ca.view.inner == cb.view.inner);
    CHECK(ca.channels_per_group == cb.channels_per_group);
    CHECK(same_bytes(a.y, b.y));
    CHECK(same_bytes(a.dx, b.dx));
    CHECK(same_bytes(a.stats.mean, b.stats.mean));
    CHECK(same_bytes(a.stats.rstd, b.stats.rstd));
    CHECK(same_bytes(a.sums.sum_dxhat, b.sums.sum_dxhat));
    CHECK(same_bytes(a.sums.parameters.gamma, b.sums.parameters.gamma));
    // And that is what each description means.
    for (const NormDescription* d : {&p.a, &p.b}) {
      const std::vector<double> want = reference_y(*d, x, gamma);
      for (std::size_t i = 0; i < x.size(); ++i)
        CHECK(a.y[i] == doctest::Approx(want[i]).epsilon(1e-12));
    }
  }
}
