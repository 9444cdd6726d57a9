// The pointwise kernels' e^x and tanh (src/engine/pointwise.hpp), written to
// vectorize: against the C library's, in units of the result's last place.
#include <doctest/doctest.h>

#include <cmath>
#include <cstdint>
#include <limits>
#include <random>
#include <vector>

#define NORMLAB_ENGINE_NAMESPACE engine_pointwise_math_test
#include "engine/pointwise.hpp"
#undef NORMLAB_ENGINE_NAMESPACE

namespace {

namespace math = normlab::engine_pointwise_math_test;

// |got - want| in ulps of want (of the smallest normal for subnormal want).
double ulps(double got, double want) {
  const double unit =
      std::ldexp(1.0, std::max(std::ilogb(want), std::numeric_limits<double>::min_exponent - 1) -
                          std::numeric_limits<double>::digits + 1);
  return std::abs(got - want) / unit;
}

// Arguments from -limit to limit: a uniform grid, random values, and values
// near 0 over many decades (where tanh's naive form would cancel).
std::vector<double> arguments(double limit) {
  std::vector<double> xs;
  for (int i = -20000; i <= 20000; ++i) xs.push_back(limit * i / 20000.0);
  std::mt19937_64 rng(11);
  std::uniform_real_distribution<double> uniform(-limit, limit);
  for (int i = 0; i < 100000; ++i) xs.push_back(uniform(rng));
  for (int e = -300; e <= 0; ++e)
    for (double m : {1.0, 1.2345, 1.9999})
      for (double sign : {1.0, -1.0}) xs.push_back(sign * m * std::pow(10.0, e));
  return xs;
}

}  // namespace

TEST_CASE("pointwise math: e^x within 2 ulp on [-708, 708]") {
  double worst = 0;
  for (double x : arguments(708.0)) {
    const double u = ulps(math::exp_vectorizable(x), std::exp(x));
    if (u > worst) worst = u;
    if (u > 2) FAIL_CHECK("e^" << x << " is " << math::exp_vectorizable(x) << ", " << u << " ulp");
  }
  MESSAGE("worst e^x error: " << worst << " ulp");
  CHECK(worst > 0);  // the comparison saw differences at all: not a copy of std::exp
}

TEST_CASE("pointwise math: tanh within 4 ulp everywhere, near 0 included") {
  double worst = 0;
  for (double z : arguments(30.0)) {
    const double u = ulps(math::tanh_vectorizable(z), std::tanh(z));
    if (u > worst) worst = u;
    if (u > 4)
      FAIL_CHECK("tanh(" << z << ") is " << math::tanh_vectorizable(z) << ", " << u << " ulp");
  }
  MESSAGE("worst tanh error: " << worst << " ulp");
  // Edge values: signed zeros, saturation, infinities and NaN.
  CHECK(std::signbit(math::tanh_vectorizable(-0.0)));
  CHECK(math::tanh_vectorizable(0.0) == 0.0);
  CHECK(math::tanh_vectorizable(1e-310) == 1e-310);
  CHECK(math::tanh_vectorizable(25.0) == 1.0);
  CHECK(math::tanh_vectorizable(-std::numeric_limits<double>::infinity()) == -1.0);
  CHECK(std::isnan(math::tanh_vectorizable(std::numeric_limits<double>::quiet_NaN())));
}
