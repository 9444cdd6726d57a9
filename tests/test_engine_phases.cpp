// The engine's phases against its fused calls, the Norm hooks between the
// phases, and NormDescription::validate.
//  (a) On every traversal the engine has (path_cases in engine_cases.hpp,
//      shared with test_engine_bfloat16.cpp: columns, strided runs, contiguous
//      groups, rows, the TLU, swish and tanh kernels also on columns,
//      mean-only, given statistics), reduce_stats -> finish_stats ->
//      apply_stats gives the bytes normalize_with_batch_stats gives, and
//      reduce_gradients -> apply_gradients those of normalize_backward (dx,
//      the group sums and every ParameterSums vector), float32 and float64,
//      also split across threads; the statistics match their definition.
//  (b) A Norm subclass overriding combine_stats / combine_gradients has them
//      called once per forward / backward on both poolings, and what they do
//      to the statistics and sums shows in y and dx.
//  (c) Broken descriptions are std::invalid_argument, from validate() and
//      from every engine call, before any data is touched.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <random>
#include <string>
#include <vector>
#include <xtensor/xarray.hpp>
#include <xtensor/xbuilder.hpp>

#include "engine_cases.hpp"
#include "normlab/normlab.hpp"
#include "test_helpers.hpp"

using namespace normlab;
using normlab::test::check_identical;
using normlab::test::check_mentions;
using normlab::test::error_of;
using normlab::test::Inputs;
using normlab::test::make_inputs;
using normlab::test::path_cases;
using normlab::test::PathCase;
using normlab::test::Results;
using normlab::test::run_fused;
using normlab::test::run_phased;
using normlab::test::Threads;

namespace {

// ---------------------------------------------------------------------------
// (a) phased == fused

// The statistics from their definition, in long double, group by group:
// within `tolerance` relative to the standard deviation (the mean) and to
// itself (the variance, rstd). Float data are summed in float within blocks.
// Not scaled (mean-only), rstd is 1; a map without statistics (tanh) reduces
// nothing: mean 0, var 0, rstd 1.
void check_statistics(const NormDescription& d, const std::vector<double>& x,
                      const GroupStats& stats, double tolerance) {
  const std::size_t groups = d.groups();
  REQUIRE(stats.mean.size() == groups);
  REQUIRE(stats.var.size() == groups);
  REQUIRE(stats.rstd.size() == groups);
  CHECK(stats.count == double(d.group_size()));
  std::vector<long double> sum(groups, 0), squares(groups, 0);
  for (std::size_t a = 0; a < d.view.outer; ++a)
    for (std::size_t c = 0; c < d.view.channels; ++c)
      for (std::size_t i = 0; i < d.view.inner; ++i) {
        const long double value = x[(a * d.view.channels + c) * d.view.inner + i];
        sum[d.group_of(a, c)] += value;
        squares[d.group_of(a, c)] += value * value;
      }
  const long double n = d.group_size();
  for (std::size_t g = 0; g < groups; ++g) {
    const long double mean = d.centered ? sum[g] / n : 0;
    const long double var = !d.has_statistics() ? 0
                            : d.centered        ? squares[g] / n - mean * mean
                                                : squares[g] / (d.divide_by_count ? n : 1);
    const double rstd = d.scaled ? 1 / std::sqrt(double(var) + d.eps) : 1.0;
    CHECK(std::abs(stats.mean[g] - double(mean)) <= tolerance * std::sqrt(double(var)));
    CHECK(stats.var[g] == doctest::Approx(double(var)).epsilon(tolerance));
    CHECK(stats.rstd[g] == doctest::Approx(rstd).epsilon(tolerance));
  }
}

// What each path must produce besides matching: parameter sums of the right
// sizes, and for the TLU some outputs clipped.
template <class T>
void check_shape_of_results(const NormDescription& d, const Inputs<T>& in, const Results<T>& r) {
  const ParameterSums& p = r.sums.parameters;
  CHECK(p.gamma.size() == (d.affine == Affine::none ? 0 : d.affine_size()));
  CHECK(p.beta.size() == (d.has_shift ? d.affine_size() : 0));
  CHECK(p.tau.size() == (d.epilogue == Epilogue::tlu ? d.view.channels : 0));
  CHECK(p.v.size() == (d.numerator == Numerator::input ? 0 : d.shared_v ? 1 : d.view.channels));
  CHECK(r.sums.sum_dxhat.size() == d.groups());
  if (d.epilogue == Epilogue::tlu) {
    std::size_t clipped = 0;
    for (std::size_t i = 0; i < r.y.size(); ++i)
      clipped += r.y[i] == in.tau[(i / d.view.inner) % d.view.channels];
    CHECK(clipped > r.y.size() / 5);
    CHECK(clipped < r.y.size() * 4 / 5);
  }
}

template <class T>
void check_phases_match_fused(bool large) {
  std::uint64_t seed = large ? 500 : 400;
  for (const PathCase& c : path_cases(large)) {
    INFO(c.name << " [" << c.d.view.outer << ", " << c.d.view.channels << ", " << c.d.view.inner
                << "], float" << 8 * sizeof(T));
    REQUIRE_NOTHROW(c.d.validate());
    const Inputs<T> in = make_inputs<T>(c.d, seed++);
    const Results<T> fused = run_fused(c.d, in);
    const Results<T> phased = run_phased(c.d, in);
    check_identical(phased, fused);
    check_shape_of_results(c.d, in, fused);
    if (!large)
      check_statistics(c.d, std::vector<double>(in.x.begin(), in.x.end()), fused.stats,
                       sizeof(T) == 4 ? 1e-6 : 1e-10);
    if (large) {
      // Split across threads: the same bytes as on one.
      const Threads three(3);
      check_identical(run_fused(c.d, in), fused);
      check_identical(run_phased(c.d, in), fused);
    }
  }
}

// ---------------------------------------------------------------------------
// (b) hooks

// GroupNorm-like (two channels per group) or BatchNorm-like, per-channel gamma
// and beta, with both combine hooks; counts the calls and can replace the
// statistics or simulate an all-reduce over two identical processes.
class HookedNorm : public Norm<double> {
 public:
  enum class Combine { nothing, constants, two_replicas, doubled_sums_only };

  HookedNorm(Pooling pooling, Combine combine)
      : Norm<double>("hooked"), pooling_(pooling), combine_(combine) {}

  void prepare(const std::vector<std::size_t>& shape) override {
    if (!has_parameter("gamma")) {
      add_parameter("gamma", xt::ones<double>({shape[1]}));
      add_parameter("beta", xt::zeros<double>({shape[1]}));
    }
  }

  static constexpr double kMean = 0.25, kVar = 2.0, kEps = 1e-5;
  int stats_calls = 0, gradient_calls = 0, observe_calls = 0;
  std::vector<Pooling> poolings_seen;
  std::size_t groups_seen = 0;
  double count_seen = 0;

 protected:
  NormDescription describe(const std::vector<std::size_t>& shape, Mode) const override {
    NormDescription d;
    std::size_t inner = 1;
    for (std::size_t i = 2; i < shape.size(); ++i) inner *= shape[i];
    d.view = {shape[0], shape[1], inner};
    d.pooling = pooling_;
    d.channels_per_group = pooling_ == Pooling::per_outer_groups ? 2 : 1;
    d.eps = kEps;
    d.affine = Affine::per_channel;
    d.has_shift = true;
    return d;
  }

  bool combines_stats() const override { return true; }
  void combine_stats(const NormDescription& d, Mode, GroupStats& stats) override {
    ++stats_calls;
    poolings_seen.push_back(d.pooling);
    groups_seen = stats.mean.size();
    count_seen = stats.count;
    if (combine_ == Combine::constants) {
      for (double& m : stats.mean) m = kMean;
      for (double& v : stats.var) v = kVar;
    } else if (combine_ == Combine::two_replicas) {
      stats.count *= 2;  // the other process has the same data: mean and var stay
    }
  }
  bool combines_gradients() const override { return true; }
  void combine_gradients(const NormDescription&, GradientSums& sums) override {
    ++gradient_calls;
    if (combine_ == Combine::two_replicas || combine_ == Combine::doubled_sums_only) {
      for (double& s : sums.sum_dxhat) s *= 2;
      for (double& s : sums.sum_dxhat_xhat) s *= 2;
    }
  }
  void observe_stats(const NormDescription&, Mode, const GroupStats& stats) override {
    ++observe_calls;
    if (combine_ == Combine::constants) {
      for (double m : stats.mean) CHECK(m == kMean);
      for (double r : stats.rstd) CHECK(r == 1 / std::sqrt(kVar + kEps));  // finish ran after
    }
  }

 private:
  Pooling pooling_;
  Combine combine_;
};

// The built-in norm with HookedNorm's grouping and no hooks.
std::unique_ptr<Norm<double>> builtin_like(Pooling pooling, std::size_t channels) {
  if (pooling == Pooling::per_channel)
    return make_norm<double>({{"type", "batch"}, {"track_running_stats", false}}, channels);
  return make_norm<double>({{"type", "group"}, {"groups", channels / 2}}, channels);
}

const char* name_of(Pooling p) {
  return p == Pooling::per_channel ? "per_channel" : "per_outer_groups";
}

// ---------------------------------------------------------------------------
// (c) validate

NormDescription valid_description() {
  NormDescription d;
  d.view = {6, 4, 5};
  d.pooling = Pooling::per_outer_groups;
  d.channels_per_group = 2;
  d.affine = Affine::per_channel;
  d.has_shift = true;
  return d;
}

struct Broken {
  std::string what;
  NormDescription d;
  std::vector<std::string> phrases;
};

std::vector<Broken> broken_descriptions() {
  std::vector<Broken> out;
  const NormDescription ok = valid_description();
  auto with = [&](const std::string& what, auto change, std::vector<std::string> phrases) {
    NormDescription d = ok;
    change(d);
    out.push_back({what, d, std::move(phrases)});
  };
  with("outer 0", [](NormDescription& d) { d.view.outer = 0; }, {"zero size"});
  with("channels 0", [](NormDescription& d) { d.view.channels = 0; }, {"zero size"});
  with("inner 0", [](NormDescription& d) { d.view.inner = 0; }, {"zero size"});
  with("channels_per_group 3 of 4 channels", [](NormDescription& d) { d.channels_per_group = 3; },
       {"4 channels", "groups of 3"});
  with("channels_per_group 0", [](NormDescription& d) { d.channels_per_group = 0; },
       {"groups of 0"});
  with("channels_per_group 8 of 4 channels", [](NormDescription& d) { d.channels_per_group = 8; },
       {"groups of 8"});
  with("outer_chunk 4 of outer 6",
       [](NormDescription& d) {
         d.pooling = Pooling::per_channel;
         d.outer_chunk = 4;
       },
       {"outer_chunk 4", "outer 6"});
  with("outer_chunk with per_outer_groups", [](NormDescription& d) { d.outer_chunk = 3; },
       {"outer_chunk"});
  with("negative eps", [](NormDescription& d) { d.eps = -1e-5; }, {"eps"});
  with("NaN eps", [](NormDescription& d) { d.eps = std::numeric_limits<double>::quiet_NaN(); },
       {"eps"});
  with("infinite eps", [](NormDescription& d) { d.eps = std::numeric_limits<double>::infinity(); },
       {"eps"});
  with("elementwise affine with per_channel pooling",
       [](NormDescription& d) {
         d.pooling = Pooling::per_channel;
         d.affine = Affine::elementwise;
       },
       {"elementwise", "per_outer_groups"});
  with("has_shift without affine", [](NormDescription& d) { d.affine = Affine::none; },
       {"shift", "affine"});
  with("TLU with per_channel pooling over runs of 5",
       [](NormDescription& d) {
         d.pooling = Pooling::per_channel;
         d.epilogue = Epilogue::tlu;
       },
       {"TLU", "runs of one element", "channels last"});
  with("TLU with an elementwise affine",
       [](NormDescription& d) {
         d.affine = Affine::elementwise;
         d.epilogue = Epilogue::tlu;
       },
       {"TLU"});
  with("swish with per_channel pooling",
       [](NormDescription& d) {
         d.pooling = Pooling::per_channel;
         d.numerator = Numerator::swish;
       },
       {"swish"});
  return out;
}

}  // namespace

TEST_CASE("engine phases: phased calls give the fused calls' bytes on every path, float32") {
  check_phases_match_fused<float>(false);
}

TEST_CASE("engine phases: phased calls give the fused calls' bytes on every path, float64") {
  check_phases_match_fused<double>(false);
}

TEST_CASE("engine phases: the same at sizes split across threads, float32 and float64") {
  check_phases_match_fused<float>(true);
  check_phases_match_fused<double>(true);
}

TEST_CASE("engine phases: combine hooks run once per forward and backward on both poolings") {
  for (Pooling pooling : {Pooling::per_channel, Pooling::per_outer_groups}) {
    CAPTURE(name_of(pooling));
    std::mt19937_64 rng(7);
    const xt::xarray<double> x = normlab::test::random_normal<double>(rng, {3, 4, 5}, 0.5, 2.0);
    const xt::xarray<double> dy = normlab::test::random_normal<double>(rng, {3, 4, 5});
    HookedNorm hooked(pooling, HookedNorm::Combine::nothing);
    hooked.prepare({3, 4, 5});
    const xt::xarray<double> gamma = {0.5, 1.5, -1.0, 2.0}, beta = {0.1, -0.2, 0.3, 0.0};
    hooked.set("gamma", gamma);
    hooked.set("beta", beta);

    const xt::xarray<double> y = hooked.forward(x, Mode::train);
    CHECK(hooked.stats_calls == 1);
    CHECK(hooked.observe_calls == 1);
    CHECK(hooked.gradient_calls == 0);
    const std::size_t groups = pooling == Pooling::per_channel ? 4 : 3 * 2;
    CHECK(hooked.groups_seen == groups);
    CHECK(hooked.count_seen == (pooling == Pooling::per_channel ? 15.0 : 10.0));
    const xt::xarray<double> dx = hooked.backward(dy);
    CHECK(hooked.stats_calls == 1);
    CHECK(hooked.gradient_calls == 1);
    hooked.forward(x, Mode::eval);
    hooked.backward(dy);
    CHECK(hooked.stats_calls == 2);
    CHECK(hooked.gradient_calls == 2);
    CHECK(hooked.observe_calls == 2);
    CHECK(hooked.poolings_seen == std::vector<Pooling>{pooling, pooling});

    // Hooks that change nothing: exactly the built-in norm of that grouping
    // (which takes the fused calls where it can).
    auto builtin = builtin_like(pooling, 4);
    builtin->set("gamma", gamma);
    builtin->set("beta", beta);
    CHECK(builtin->forward(x, Mode::train) == y);
    CHECK(builtin->backward(dy) == dx);
    CHECK(builtin->parameter("gamma").grad == hooked.parameter("gamma").grad / 2.0);
    CHECK(builtin->parameter("beta").grad == hooked.parameter("beta").grad / 2.0);
  }
}

TEST_CASE("engine phases: combine_stats replacing mean and var with constants sets y") {
  for (Pooling pooling : {Pooling::per_channel, Pooling::per_outer_groups}) {
    CAPTURE(name_of(pooling));
    std::mt19937_64 rng(8);
    const xt::xarray<double> x = normlab::test::random_normal<double>(rng, {2, 4, 3, 2}, 3.0, 2.0);
    HookedNorm hooked(pooling, HookedNorm::Combine::constants);
    hooked.prepare({2, 4, 3, 2});
    const xt::xarray<double> gamma = {0.5, 1.5, -1.0, 2.0}, beta = {0.1, -0.2, 0.3, 0.0};
    hooked.set("gamma", gamma);
    hooked.set("beta", beta);
    const xt::xarray<double> y = hooked.forward(x, Mode::train);
    CHECK(hooked.stats_calls == 1);
    CHECK(hooked.observe_calls == 1);
    const double rstd = 1 / std::sqrt(HookedNorm::kVar + HookedNorm::kEps);
    for (std::size_t a = 0; a < 2; ++a)
      for (std::size_t c = 0; c < 4; ++c)
        for (std::size_t h = 0; h < 3; ++h)
          for (std::size_t w = 0; w < 2; ++w)
            CHECK(y(a, c, h, w) ==
                  doctest::Approx((x(a, c, h, w) - HookedNorm::kMean) * rstd * gamma(c) + beta(c))
                      .epsilon(1e-13));
    // Not what the batch's own statistics give.
    auto builtin = builtin_like(pooling, 4);
    builtin->set("gamma", gamma);
    builtin->set("beta", beta);
    CHECK_FALSE(xt::allclose(builtin->forward(x, Mode::train), y));
  }
}

TEST_CASE("engine phases: an all-reduce over two identical processes leaves y and dx unchanged") {
  // combine_stats doubles the count, combine_gradients the group sums: the
  // means of the sums are the same numbers, so dx is the single process's.
  for (Pooling pooling : {Pooling::per_channel, Pooling::per_outer_groups}) {
    CAPTURE(name_of(pooling));
    std::mt19937_64 rng(9);
    const xt::xarray<double> x = normlab::test::random_normal<double>(rng, {4, 6, 5}, -1.0, 3.0);
    const xt::xarray<double> dy = normlab::test::random_normal<double>(rng, {4, 6, 5});
    HookedNorm reduced(pooling, HookedNorm::Combine::two_replicas);
    HookedNorm alone(pooling, HookedNorm::Combine::nothing);
    const xt::xarray<double> y = reduced.forward(x, Mode::train);
    CHECK(reduced.count_seen == (pooling == Pooling::per_channel ? 20.0 : 10.0));
    CHECK(y == alone.forward(x, Mode::train));
    const xt::xarray<double> dx = reduced.backward(dy);
    CHECK(dx == alone.backward(dy));
    CHECK(reduced.gradient_calls == 1);
    CHECK(reduced.parameter("gamma").grad == alone.parameter("gamma").grad);
    // ... while doubling the sums without the count does change dx: the group
    // terms the sums feed are not negligible here.
    HookedNorm unbalanced(pooling, HookedNorm::Combine::doubled_sums_only);
    unbalanced.forward(x, Mode::train);
    CHECK_FALSE(xt::allclose(unbalanced.backward(dy), dx, 1e-6, 1e-6));
    CHECK(unbalanced.gradient_calls == 1);
  }
}

TEST_CASE("engine phases: validate refuses broken descriptions, and so does every engine call") {
  CHECK_NOTHROW(valid_description().validate());
  for (const Broken& b : broken_descriptions()) {
    INFO(b.what);
    check_mentions(error_of<std::invalid_argument>([&] { b.d.validate(); }), b.phrases);
    // Buffers for any size the view could mean; the calls must throw before
    // reading them.
    std::vector<double> x(256, 1.0), dy(256, 1.0), out(256, 0.0), gamma(64, 1.0), beta(64, 0.0),
        tau(64, 0.0), v(64, 1.0);
    const NormParameters<double> params{gamma.data(), beta.data(), tau.data(), v.data()};
    GroupStats stats;
    stats.resize(64);
    GradientSums sums;
    CHECK_THROWS_AS(reduce_stats(x.data(), b.d, stats), std::invalid_argument);
    CHECK_THROWS_AS(apply_stats(x.data(), b.d, stats, params, out.data()), std::invalid_argument);
    CHECK_THROWS_AS(normalize_with_batch_stats(x.data(), b.d, stats, params, out.data()),
                    std::invalid_argument);
    CHECK_THROWS_AS(reduce_gradients(x.data(), dy.data(), b.d, stats, params, sums),
                    std::invalid_argument);
    CHECK_THROWS_AS(apply_gradients(x.data(), dy.data(), b.d, stats, params, sums, out.data()),
                    std::invalid_argument);
    CHECK_THROWS_AS(normalize_backward(x.data(), dy.data(), b.d, stats, params, sums, out.data()),
                    std::invalid_argument);
    std::vector<float> xf(256, 1.0f);
    CHECK_THROWS_AS(reduce_stats(xf.data(), b.d, stats), std::invalid_argument);
    // Nothing was written.
    CHECK(std::all_of(out.begin(), out.end(), [](double o) { return o == 0.0; }));
  }
}

TEST_CASE("engine phases: validate accepts the edge values") {
  // Edge values validate accepts: eps 0, per_channel with an outer_chunk of 1
  // or of all of outer, a swish numerator or TLU without an affine.
  NormDescription d = valid_description();
  d.eps = 0;
  CHECK_NOTHROW(d.validate());
  d = valid_description();
  d.pooling = Pooling::per_channel;
  for (std::size_t chunk : {1u, 2u, 3u, 6u}) {
    d.outer_chunk = chunk;
    CHECK_NOTHROW(d.validate());
  }
  d = valid_description();
  d.affine = Affine::none;
  d.has_shift = false;
  d.numerator = Numerator::swish;
  CHECK_NOTHROW(d.validate());
  d.numerator = Numerator::input;
  d.epilogue = Epilogue::tlu;
  d.centered = false;
  CHECK_NOTHROW(d.validate());
  // Channels last: per_channel pooling over rows, groups of channels, a TLU.
  d.view = {6, 4, 1};
  d.pooling = Pooling::per_channel;
  d.outer_chunk = 3;
  d.channels_per_group = 2;
  CHECK_NOTHROW(d.validate());
  CHECK(d.groups() == 2 * 2);
  CHECK(d.group_size() == 3 * 2);
  CHECK(d.group_of(4, 3) == 1 * 2 + 1);
}
