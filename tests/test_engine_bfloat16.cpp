// The engine's six calls on bfloat16 data (x, dy, y, dx and every parameter
// bfloat16), on every traversal the engine has:
//  (a) against the same calls on float data holding exactly the same values:
//      statistics and gradient sums (double for both) within 1e-5 relative
//      (to the value, or to the vector's root mean square where it cancels);
//      y and dx within one bfloat16 ulp of the float results rounded to
//      bfloat16, and equal to them but for a few elements (see check_rounded);
//  (b) the rounding itself: y and dx are round_to_bfloat16 of the float
//      computation (the float call's outputs, rounded by the bulk
//      round_to_bfloat16), so a kernel that truncated, or rounded anything but
//      its result, fails (a) here; outputs the kernels compute in double are
//      rounded once (bfloat16_nearest, and apply_stats on columns with
//      statistics placed next to a bfloat16 tie);
//  (c) phased calls give the fused calls' bytes, also split across threads,
//      as tests/test_engine_phases.cpp checks for float and double.
// The cases, inputs and calls are engine_cases.hpp's, shared with that test.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "engine_cases.hpp"
#include "normlab/bfloat16.hpp"
#include "normlab/engine.hpp"
#include "normlab/threads.hpp"
#include "test_helpers.hpp"

// The engine's load/store helpers are internal and inline: compiled here in a
// namespace of their own, for the test of bfloat16_nearest.
#define NORMLAB_ENGINE_NAMESPACE engine_bfloat16_test
#include "engine/moments.hpp"
#undef NORMLAB_ENGINE_NAMESPACE

using namespace normlab;
using normlab::test::check_identical;
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
// Inputs as float

std::vector<float> widened(const std::vector<bfloat16>& a) {
  std::vector<float> out(a.size());
  to_float(a.data(), out.data(), a.size());
  return out;
}

// The same values as float.
Inputs<float> widened(const Inputs<bfloat16>& in) {
  return {widened(in.x),    widened(in.dy),  widened(in.gamma),
          widened(in.beta), widened(in.tau), widened(in.v)};
}

// ---------------------------------------------------------------------------
// Comparisons

// Relative agreement of two double vectors (statistics, gradient sums). A sum
// of random terms can cancel to near zero, where a relative bound means
// nothing (and the two calls may add in different orders: the column and row
// kernels cut their blocks by the data's size): each element is held to 1e-5
// of itself or of the vector's root mean square, whichever is larger.
void check_close(const std::string& what, const std::vector<double>& got,
                 const std::vector<double>& expected, double tolerance = 1e-5) {
  INFO(what);
  REQUIRE(got.size() == expected.size());
  double squares = 0;
  for (double e : expected) squares += e * e;
  const double rms = expected.empty() ? 0 : std::sqrt(squares / double(expected.size()));
  std::size_t bad = 0;
  for (std::size_t i = 0; i < got.size(); ++i) {
    const double scale = std::max(std::abs(expected[i]), rms);
    if (!(std::abs(got[i] - expected[i]) <= tolerance * scale) && bad++ < 3)
      CHECK_MESSAGE(false, what << "[" << i << "] " << got[i] << " vs " << expected[i]);
  }
  CHECK_MESSAGE(bad == 0, what << ": " << bad << " of " << got.size() << " differ");
}

// Position of a bfloat16 on the number line in ulps (-0 and +0 both 0).
long ordinal(std::uint16_t bits) {
  const long magnitude = bits & 0x7fff;
  return bits & 0x8000 ? -magnitude : magnitude;
}

// y or dx of the bfloat16 call against round_to_bfloat16 of the float call's.
// Both calls compute the same values v: the same arithmetic (float, or double
// where the kernel says so) on the same numbers, with statistics and sums
// equal up to the order of double additions (the column kernels cut their
// blocks of rows by the data's size, so v may differ in float's last bits
// there). The bfloat16 call rounds v once to bfloat16. The float call rounds
// v to float, and the test that to bfloat16. They can differ, by one ulp:
//  - where v is a double whose float lies exactly on a bfloat16 tie (the
//    float call's double rounding; the bfloat16 call is the right one). Common
//    where v saturates: gamma * tanh(v x) + beta, tanh just below 1, is just
//    off gamma + beta, which is often a tie (two bfloat16s' sum);
//  - elsewhere only where the two v differ and straddle a tie: within a few
//    float ulps of one, odds of about 2^-14 per element in the column kernels.
// So: every element within one ulp; of those differing, the ones whose float
// result is not on a tie at most 1 + n/4096 (a kernel that truncated, or
// rounded twice from float, would differ in about half).
void check_rounded(const std::string& what, const std::vector<bfloat16>& got,
                   const std::vector<float>& float_result) {
  INFO(what);
  REQUIRE(got.size() == float_result.size());
  std::vector<float> rounded(float_result.size());
  round_to_bfloat16(float_result.data(), rounded.data(), rounded.size());
  std::size_t on_tie = 0, off_tie = 0, far = 0, not_finite = 0;
  for (std::size_t i = 0; i < got.size(); ++i) {
    const bfloat16 expected(rounded[i]);  // exact: rounded is a bfloat16
    not_finite += !std::isfinite(float_result[i]);
    if (got[i].bits == expected.bits) continue;
    std::uint32_t u;
    std::memcpy(&u, &float_result[i], sizeof u);
    ++((u & 0xffff) == 0x8000 ? on_tie : off_tie);
    if (std::abs(ordinal(got[i].bits) - ordinal(expected.bits)) > 1 && far++ < 3)
      CHECK_MESSAGE(false, what << "[" << i << "] " << float(got[i]) << " vs " << rounded[i]
                                << " (float " << float_result[i] << ")");
  }
  CHECK(not_finite == 0);
  CHECK_MESSAGE(far == 0, what << ": " << far << " elements more than one ulp away");
  CHECK_MESSAGE(off_tie <= 1 + got.size() / 4096, what << ": " << off_tie << " of " << got.size()
                                                       << " differ by one ulp, not at a tie");
}

void compare_to_float(const NormDescription& d, const Results<bfloat16>& b,
                      const Results<float>& f) {
  CHECK(b.stats.count == f.stats.count);
  check_close("mean", b.stats.mean, f.stats.mean);
  check_close("var", b.stats.var, f.stats.var);
  check_close("rstd", b.stats.rstd, f.stats.rstd);
  check_rounded("y", b.y, f.y);
  check_rounded("dx", b.dx, f.dx);
  check_close("sum_dxhat", b.sums.sum_dxhat, f.sums.sum_dxhat);
  check_close("sum_dxhat_xhat", b.sums.sum_dxhat_xhat, f.sums.sum_dxhat_xhat);
  check_close("dgamma", b.sums.parameters.gamma, f.sums.parameters.gamma);
  check_close("dbeta", b.sums.parameters.beta, f.sums.parameters.beta);
  check_close("dtau", b.sums.parameters.tau, f.sums.parameters.tau);
  check_close("dv", b.sums.parameters.v, f.sums.parameters.v);
  // The paths did their work: statistics, parameter sums of the right sizes,
  // and a TLU that clips some outputs and not others.
  CHECK(b.sums.sum_dxhat.size() == d.groups());
  CHECK(b.sums.parameters.gamma.size() == (d.affine == Affine::none ? 0 : d.affine_size()));
  if (d.has_statistics() && !d.statistics_given) {
    double spread = 0;
    for (double v : b.stats.var) spread += v;
    CHECK(spread > 0);
  }
}

void check_paths(bool large) {
  std::uint64_t seed = large ? 900 : 800;
  for (const PathCase& c : path_cases(large)) {
    INFO(c.name << " [" << c.d.view.outer << ", " << c.d.view.channels << ", " << c.d.view.inner
                << "]");
    REQUIRE_NOTHROW(c.d.validate());
    const Inputs<bfloat16> in = make_inputs<bfloat16>(c.d, seed++);
    const Inputs<float> in_float = widened(in);
    const Results<bfloat16> fused = run_fused(c.d, in);
    const Results<bfloat16> phased = run_phased(c.d, in);
    check_identical(phased, fused);
    compare_to_float(c.d, phased, run_phased(c.d, in_float));
    compare_to_float(c.d, fused, run_fused(c.d, in_float));
    if (c.d.epilogue == Epilogue::tlu) {
      std::size_t clipped = 0;
      for (std::size_t i = 0; i < fused.y.size(); ++i)
        clipped += fused.y[i].bits == in.tau[(i / c.d.view.inner) % c.d.view.channels].bits;
      CHECK(clipped > fused.y.size() / 5);
      CHECK(clipped < fused.y.size() * 4 / 5);
    }
    if (large) {
      const Threads three(3);
      check_identical(run_fused(c.d, in), fused);
      check_identical(run_phased(c.d, in), fused);
    }
  }
}

// The bfloat16 nearest to v, from its definition: of the bfloat16s next to
// float(v)'s rounding, the one nearest to v (differences exact in double:
// the values are within a few bfloat16 ulps), ties to the even one.
std::uint16_t nearest_by_definition(double v) {
  const std::uint16_t center = bfloat16(float(v)).bits;
  std::uint16_t best = center;
  double best_distance = std::abs(double(float(bfloat16::from_bits(center))) - v);
  for (int step : {-1, 1}) {
    const std::uint16_t b = std::uint16_t(center + step);
    if ((b & 0x7f80) == 0x7f80 && (b & 0x7f) != 0) continue;  // not a number
    if ((center & 0x7fff) == 0 && step == -1) continue;       // below zero: the other sign
    const double distance = std::abs(double(float(bfloat16::from_bits(b))) - v);
    if (distance < best_distance || (distance == best_distance && (b & 1) == 0)) {
      best = b;
      best_distance = distance;
    }
  }
  return best;
}

}  // namespace

TEST_CASE("engine bfloat16: every path matches float on the same values, rounded once") {
  check_paths(false);
}

TEST_CASE("engine bfloat16: the same at sizes split across threads, phased == fused") {
  check_paths(true);
}

TEST_CASE("engine bfloat16: a double result is rounded to bfloat16 once (bfloat16_nearest)") {
  using engine_bfloat16_test::bfloat16_nearest;
  std::mt19937_64 rng(31);
  std::uniform_int_distribution<std::uint32_t> bits16(0, 0xffff);
  std::size_t checked = 0, twice_differs = 0;
  for (int i = 0; i < 200000; ++i) {
    // A finite bfloat16 b and the tie above it (exact in double), and doubles
    // on it, next to it on both sides, and at random between b and the next.
    std::uint16_t b = std::uint16_t(bits16(rng));
    if ((b & 0x7f80) == 0x7f80) continue;
    const double low = double(float(bfloat16::from_bits(b)));
    const double high = double(float(bfloat16::from_bits(std::uint16_t(b + 1))));
    if (!std::isfinite(high)) continue;
    const double tie = (low + high) / 2;
    const double tiny = std::abs(tie) * 0x1p-40 + 0x1p-1074 * 4;
    std::uniform_real_distribution<double> between(std::min(low, high), std::max(low, high));
    for (double v : {tie, std::nextafter(tie, 0.0), std::nextafter(tie, 2 * tie), tie - tiny,
                     tie + tiny, low, between(rng)}) {
      CAPTURE(v);
      CHECK(bfloat16_nearest(v).bits == nearest_by_definition(v));
      twice_differs += bfloat16(float(v)).bits != nearest_by_definition(v);
      ++checked;
    }
  }
  CHECK(checked > 1000000);
  // Rounding to float first would be wrong on many of these (the cases next to a tie).
  CHECK(twice_differs > checked / 20);
  // Zeros, infinities, overflow, the smallest values and NaN.
  CHECK(bfloat16_nearest(0.0).bits == 0x0000);
  CHECK(bfloat16_nearest(-0.0).bits == 0x8000);
  CHECK(bfloat16_nearest(1e-300).bits == 0x0000);
  CHECK(bfloat16_nearest(-1e-300).bits == 0x8000);
  CHECK(bfloat16_nearest(std::numeric_limits<double>::infinity()).bits == 0x7f80);
  CHECK(bfloat16_nearest(-std::numeric_limits<double>::infinity()).bits == 0xff80);
  CHECK(bfloat16_nearest(1e300).bits == 0x7f80);
  CHECK(bfloat16_nearest(double(std::numeric_limits<float>::max())).bits == 0x7f80);
  // The largest bfloat16 (0x7f7f) and its tie with 2^128, just below and on it.
  const double largest = double(float(bfloat16::from_bits(0x7f7f)));
  const double overflow_tie = largest + 0x1p119;
  CHECK(bfloat16_nearest(std::nextafter(overflow_tie, 0.0)).bits == 0x7f7f);
  CHECK(bfloat16_nearest(overflow_tie).bits == 0x7f80);
  // The smallest bfloat16 subnormal 2^-133, its half (a tie, to even: 0) and beyond.
  CHECK(bfloat16_nearest(0x1p-133).bits == 0x0001);
  CHECK(bfloat16_nearest(0x1p-134).bits == 0x0000);
  CHECK(bfloat16_nearest(0x1p-134 + 0x1p-160).bits == 0x0001);
  CHECK(std::isnan(float(bfloat16_nearest(std::numeric_limits<double>::quiet_NaN()))));
}

TEST_CASE("engine bfloat16: outputs the kernels compute in double are rounded once") {
  // apply_stats on columns of at most 256 rows computes y = (x - mean) * rstd
  // * gamma + beta in double. With mean 0, gamma 1 and no beta, y = x * rstd,
  // exact in double; rstd just above or below 1 + 2^-8 (the tie between 1 and
  // 1 + 2^-7) puts y just off a bfloat16 tie, on which y's float lies: rounding
  // to float and then to bfloat16 would give x * 1 for both sides.
  NormDescription d;
  d.view = {64, 4, 1};
  d.pooling = Pooling::per_channel;
  d.affine = Affine::per_channel;
  std::vector<bfloat16> x(d.view.size()), gamma(d.view.channels, bfloat16(1.0f)), y(d.view.size());
  // +-2^e (y off a tie but for channel 3), and +-1.5 * 2^e (y not near one).
  for (std::size_t i = 0; i < x.size(); ++i)
    x[i] = bfloat16(float(i % 2 ? 1 : -1) * std::ldexp(i % 3 == 2 ? 1.5f : 1.0f, int(i % 9) - 4));
  GroupStats stats;
  stats.resize(d.groups());
  stats.count = double(d.group_size());
  const double above = 1 + 0x1p-8 + 0x1p-40, below = 1 + 0x1p-8 - 0x1p-40;
  stats.rstd = {above, below, above, 1.0};
  apply_stats(x.data(), d, stats, NormParameters<bfloat16>{gamma.data()}, y.data());
  std::size_t off_tie = 0;
  for (std::size_t i = 0; i < x.size(); ++i) {
    const double exact = double(float(x[i])) * stats.rstd[i % d.view.channels];
    CAPTURE(exact);
    CHECK(y[i].bits == nearest_by_definition(exact));
    off_tie += bfloat16(float(exact)).bits != y[i].bits;
  }
  CHECK(off_tie > x.size() / 4);  // the double rounding would have been wrong there
}
