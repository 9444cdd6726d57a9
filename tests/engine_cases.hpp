// The engine's traversals as test cases, shared by test_engine_phases.cpp
// (float and double) and test_engine_bfloat16.cpp: path_cases, the list of
// descriptions covering every path at a small and at a threaded size; seeded
// inputs for them in float, double or bfloat16; the phased and the fused
// calls on those inputs, and the byte-for-byte comparison of their results.
#pragma once

#include <doctest/doctest.h>

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "normlab/bfloat16.hpp"
#include "normlab/engine.hpp"

namespace normlab::test {

struct PathCase {
  std::string name;
  NormDescription d;
};

inline NormDescription description(View3 view, Pooling pooling, std::size_t channels_per_group,
                                   Affine affine, bool shift) {
  NormDescription d;
  d.view = view;
  d.pooling = pooling;
  d.channels_per_group = channels_per_group;
  d.affine = affine;
  d.has_shift = shift;
  return d;
}

// Every traversal of the engine, at a small size or (`large`) at one above
// the size from which work is split across threads (2^17 elements).
inline std::vector<PathCase> path_cases(bool large) {
  const auto per_channel = Pooling::per_channel;
  const auto groups = Pooling::per_outer_groups;
  const auto pick = [large](View3 small, View3 big) { return large ? big : small; };
  std::vector<PathCase> cases;
  // per_channel, inner == 1: the column kernels (BatchNorm after a linear
  // layer); bfloat16 data are applied in double up to 256 rows, in float beyond.
  cases.push_back({"per_channel columns", description(pick({37, 19, 1}, {2000, 80, 1}), per_channel,
                                                      1, Affine::per_channel, true)});
  cases.push_back(
      {"per_channel columns, taller than 256 rows, no shift",
       description(pick({300, 19, 1}, {3000, 48, 1}), per_channel, 1, Affine::per_channel, false)});
  // per_channel, inner > 1: strided runs merged per channel (BatchNorm on
  // images), and uncentered sums of squares without eps (WeightNorm's g / ||v||).
  cases.push_back({"per_channel strided", description(pick({5, 7, 45}, {40, 7, 600}), per_channel,
                                                      1, Affine::per_channel, true)});
  {
    NormDescription d =
        description(pick({6, 5, 33}, {30, 5, 1000}), per_channel, 1, Affine::per_channel, false);
    d.centered = false;
    d.divide_by_count = false;
    d.eps = 0;
    cases.push_back({"per_channel strided, L2 norm", d});
  }
  // per_channel with outer_chunk: Ghost BN's virtual batches, strided and columns.
  {
    NormDescription d =
        description(pick({12, 5, 20}, {48, 5, 700}), per_channel, 1, Affine::per_channel, true);
    d.outer_chunk = 3;
    cases.push_back({"per_channel outer_chunk (ghost), strided", d});
    NormDescription c =
        description(pick({16, 9, 1}, {2000, 80, 1}), per_channel, 1, Affine::per_channel, true);
    c.outer_chunk = 4;
    cases.push_back({"per_channel outer_chunk (ghost), columns", c});
  }
  // Statistics given (BatchNorm in eval): dx = dxhat * rstd.
  {
    NormDescription d =
        description(pick({5, 7, 45}, {40, 7, 600}), per_channel, 1, Affine::per_channel, true);
    d.statistics_given = true;
    cases.push_back({"per_channel strided, statistics given", d});
  }
  // per_outer_groups with a per-channel affine, contiguous groups: GroupNorm,
  // InstanceNorm, LayerNorm with channel_affine; GroupNorm on (N, C), which the
  // engine runs as contiguous groups with per-element parameters; mean-only.
  cases.push_back(
      {"per_outer_groups, per-channel affine (GN)",
       description(pick({4, 12, 25}, {16, 12, 800}), groups, 3, Affine::per_channel, true)});
  cases.push_back({"per_outer_groups, one channel per group (IN), no affine",
                   description(pick({3, 5, 17}, {12, 5, 2500}), groups, 1, Affine::none, false)});
  cases.push_back(
      {"per_outer_groups, GN on (N, C)",
       description(pick({9, 12, 1}, {1500, 96, 1}), groups, 4, Affine::per_channel, true)});
  {
    NormDescription d =
        description(pick({4, 12, 25}, {16, 12, 800}), groups, 3, Affine::per_channel, true);
    d.scaled = false;
    cases.push_back({"per_outer_groups, mean-only (not scaled)", d});
  }
  // Rows, per_outer_groups with an elementwise affine: LayerNorm over trailing
  // dims (several row chunks of parameter sums), also cut into groups, with
  // rows too long for L2, and RMSNorm.
  cases.push_back(
      {"per_outer_groups, elementwise affine (LN over trailing dims)",
       description(pick({40, 1, 60}, {300, 1, 500}), groups, 1, Affine::elementwise, true)});
  cases.push_back(
      {"per_outer_groups, elementwise affine cut into groups",
       description(pick({20, 4, 15}, {200, 4, 200}), groups, 2, Affine::elementwise, true)});
  cases.push_back(
      {"per_outer_groups, elementwise affine, rows larger than L2",
       description(pick({3, 1, 70000}, {6, 1, 70000}), groups, 1, Affine::elementwise, true)});
  {
    NormDescription d =
        description(pick({33, 1, 24}, {150, 1, 1000}), groups, 1, Affine::elementwise, false);
    d.centered = false;
    cases.push_back({"per_outer_groups, elementwise scale, uncentered (RMS)", d});
  }
  // The pointwise kernels: FRN's TLU, EvoNorm-S0's swish, DyT's tanh, on
  // contiguous groups and (channels last) on columns.
  {
    NormDescription d =
        description(pick({3, 6, 30}, {10, 6, 2500}), groups, 1, Affine::per_channel, true);
    d.centered = false;
    d.eps = 1e-6;
    d.epilogue = Epilogue::tlu;
    cases.push_back({"pointwise, TLU epilogue (FRN)", d});
    cases.push_back({"pointwise, TLU epilogue (FRN), channels last (columns)", channels_last(d)});
    NormDescription n = d;
    n.affine = Affine::none;
    n.has_shift = false;
    cases.push_back({"pointwise, TLU epilogue without affine", n});
  }
  {
    NormDescription d =
        description(pick({3, 8, 20}, {10, 8, 2000}), groups, 2, Affine::per_channel, true);
    d.numerator = Numerator::swish;
    cases.push_back({"pointwise, swish numerator (EvoNorm-S0)", d});
    cases.push_back({"pointwise, swish numerator, channels last (columns)", channels_last(d)});
    NormDescription c =
        description(pick({7, 8, 1}, {2500, 64, 1}), groups, 4, Affine::per_channel, true);
    c.numerator = Numerator::swish;
    cases.push_back({"pointwise, swish numerator on (N, C)", c});
  }
  {
    NormDescription d =
        description(pick({3, 8, 20}, {10, 8, 2000}), groups, 1, Affine::per_channel, true);
    d.centered = false;
    d.scaled = false;
    d.numerator = Numerator::tanh;
    cases.push_back({"pointwise, tanh numerator (DyT)", d});
    d.shared_v = true;
    cases.push_back({"pointwise, tanh numerator, one shared v", d});
    cases.push_back({"pointwise, tanh numerator, channels last (columns)", channels_last(d)});
  }
  if (large)
    for (const PathCase& c : cases)
      REQUIRE_MESSAGE(c.d.view.size() > (std::size_t(1) << 17), c.name);
  return cases;
}

// ---------------------------------------------------------------------------
// Inputs, calls and results, for T = float, double or bfloat16

template <class T>
struct Inputs {
  std::vector<T> x, dy, gamma, beta, tau, v;
  NormParameters<T> params() const {
    auto ptr = [](const std::vector<T>& a) { return a.empty() ? nullptr : a.data(); };
    return {ptr(gamma), ptr(beta), ptr(tau), ptr(v)};
  }
};

// Normal(mean, stddev) values drawn as double, then rounded once to T.
template <class T>
std::vector<T> normal_values(std::mt19937_64& rng, std::size_t n, double mean, double stddev) {
  std::normal_distribution<double> dist(mean, stddev);
  std::vector<T> out(n);
  for (T& value : out) value = nearest<T>(dist(rng));
  return out;
}

// Inputs for d from `seed`: every parameter d reads, v (swish, tanh) per
// channel or one shared value.
template <class T>
Inputs<T> make_inputs(const NormDescription& d, std::uint64_t seed) {
  std::mt19937_64 rng(seed);
  Inputs<T> in;
  in.x = normal_values<T>(rng, d.view.size(), 0.5, 2.0);
  in.dy = normal_values<T>(rng, d.view.size(), 0.0, 1.0);
  if (d.affine != Affine::none) in.gamma = normal_values<T>(rng, d.affine_size(), 1.0, 0.3);
  if (d.has_shift) in.beta = normal_values<T>(rng, d.affine_size(), 0.0, 1.0);
  // tau near beta, the middle of a channel's outputs: a good share is clipped.
  if (d.epilogue == Epilogue::tlu) {
    in.tau = normal_values<T>(rng, d.view.channels, 0.0, 0.1);
    if (d.has_shift)
      for (std::size_t c = 0; c < d.view.channels; ++c)
        in.tau[c] = nearest<T>(double(in.tau[c]) + double(in.beta[c]));
  }
  if (d.numerator != Numerator::input)
    in.v = normal_values<T>(rng, d.shared_v ? 1 : d.view.channels, 0.5, 1.0);
  return in;
}

template <class T>
struct Results {
  GroupStats stats;
  std::vector<T> y, dx;
  GradientSums sums;
};

// reduce_stats -> finish_stats -> apply_stats, reduce_gradients -> apply_gradients.
template <class T>
Results<T> run_phased(const NormDescription& d, const Inputs<T>& in) {
  Results<T> r;
  r.y.assign(in.x.size(), T(0));
  r.dx.assign(in.x.size(), T(0));
  reduce_stats(in.x.data(), d, r.stats);
  finish_stats(d, r.stats);
  apply_stats(in.x.data(), d, r.stats, in.params(), r.y.data());
  reduce_gradients(in.x.data(), in.dy.data(), d, r.stats, in.params(), r.sums);
  apply_gradients(in.x.data(), in.dy.data(), d, r.stats, in.params(), r.sums, r.dx.data());
  return r;
}

// normalize_with_batch_stats, normalize_backward.
template <class T>
Results<T> run_fused(const NormDescription& d, const Inputs<T>& in) {
  Results<T> r;
  r.y.assign(in.x.size(), T(0));
  r.dx.assign(in.x.size(), T(0));
  normalize_with_batch_stats(in.x.data(), d, r.stats, in.params(), r.y.data());
  normalize_backward(in.x.data(), in.dy.data(), d, r.stats, in.params(), r.sums, r.dx.data());
  return r;
}

template <class V>
bool same_bytes(const V& a, const V& b) {
  return a.size() == b.size() &&
         (a.empty() || std::memcmp(a.data(), b.data(), a.size() * sizeof(a[0])) == 0);
}

// Every statistic, output and sum of a and b, byte for byte.
template <class T>
void check_identical(const Results<T>& a, const Results<T>& b) {
  CHECK(a.stats.count == b.stats.count);
  CHECK(same_bytes(a.stats.mean, b.stats.mean));
  CHECK(same_bytes(a.stats.var, b.stats.var));
  CHECK(same_bytes(a.stats.rstd, b.stats.rstd));
  CHECK(same_bytes(a.y, b.y));
  CHECK(same_bytes(a.dx, b.dx));
  CHECK(same_bytes(a.sums.sum_dxhat, b.sums.sum_dxhat));
  CHECK(same_bytes(a.sums.sum_dxhat_xhat, b.sums.sum_dxhat_xhat));
  CHECK(same_bytes(a.sums.parameters.gamma, b.sums.parameters.gamma));
  CHECK(same_bytes(a.sums.parameters.beta, b.sums.parameters.beta));
  CHECK(same_bytes(a.sums.parameters.tau, b.sums.parameters.tau));
  CHECK(same_bytes(a.sums.parameters.v, b.sums.parameters.v));
}

}  // namespace normlab::test
