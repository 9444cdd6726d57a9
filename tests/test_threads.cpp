// The engine's fast paths: threads do not change results, the float forward
// stays accurate for data with a large mean, and kernels of every instruction
// set agree (ctest runs this file again with NORMLAB_MAX_ISA=baseline).
#include <doctest/doctest.h>

#include <cmath>
#include <random>
#include <string>
#include <vector>
#include <xtensor/xarray.hpp>

#include "normlab/normlab.hpp"
#include "test_helpers.hpp"

using namespace normlab;
using normlab::test::random_normal;
using normlab::test::random_uniform;
using normlab::test::Threads;

namespace {

struct Case {
  nlohmann::json spec;
  std::vector<std::size_t> shape;
};

// Shapes above the engine's threshold for threads, one per traversal: strided
// groups (BN), column groups (BN on [N, C]), contiguous groups, LayerNorm's
// per-element parameters with small and with large rows, virtual batches.
std::vector<Case> large_cases() {
  // 2^19 elements: well above the engine's threshold for waking threads (2^17).
  return {
      {{{"type", "batch"}}, {8, 16, 64, 64}},
      {{{"type", "batch"}}, {8192, 64}},
      {{{"type", "ghost"}, {"virtual_batch_size", 4}}, {32, 16, 32, 32}},
      {{{"type", "batch_renorm"}}, {8, 16, 64, 64}},
      {{{"type", "instance"}, {"affine", true}, {"track_running_stats", true}}, {8, 16, 64, 64}},
      {{{"type", "group"}, {"groups", 4}}, {8, 16, 64, 64}},
      {{{"type", "group"}, {"groups", 8}}, {8192, 64}},
      {{{"type", "layer"}, {"normalized_shape", {512}}}, {1024, 512}},
      {{{"type", "layer"}, {"normalized_shape", {16, 64, 64}}}, {8, 16, 64, 64}},
      {{{"type", "rms"}, {"normalized_shape", {512}}}, {1024, 512}},
      {{{"type", "weight"}}, {1024, 64, 3, 3}},
      // Channels last: columns per channel, per sample and group of
      // channels, and the pointwise columns.
      {{{"type", "batch"}, {"layout", "nhwc"}}, {8, 32, 32, 64}},
      {{{"type", "group"}, {"groups", 4}, {"layout", "nhwc"}}, {8, 32, 32, 64}},
      {{{"type", "frn"}, {"layout", "nhwc"}}, {8, 32, 32, 64}},
      {{{"type", "evonorm_s0"}, {"groups", 8}, {"layout", "nhwc"}}, {4, 32, 32, 64}},
      // The pointwise rows: runs of one element in groups of channels, and in
      // groups of one (DyT); more rows than the chunks of parameter sums.
      {{{"type", "evonorm_s0"}, {"groups", 8}}, {4096, 128}},
      {{{"type", "dyt"}}, {4096, 128}}};
}

// Everything a forward and backward produce, in train and then eval mode.
template <class T>
std::vector<xt::xarray<T>> run_case(const Case& c, unsigned threads) {
  const Threads use(threads);
  std::mt19937_64 rng(7);
  const xt::xarray<T> x = random_normal<T>(rng, c.shape, 0.5, 2.0);
  const xt::xarray<T> dy = random_normal<T>(rng, c.shape);
  auto norm = make_norm<T>(c.spec, 0);
  norm->prepare(c.shape);
  for (const std::string& name : norm->parameter_names()) {
    const auto& value = norm->parameter(name).value;
    norm->set(name, random_uniform<T>(rng, value.shape(), 0.5, 1.5));
  }
  std::vector<xt::xarray<T>> out;
  for (Mode mode : {Mode::train, Mode::eval}) {
    norm->zero_grad();
    out.push_back(norm->forward(x, mode));
    out.push_back(norm->backward(dy));
    for (const std::string& name : norm->parameter_names())
      out.push_back(norm->parameter(name).grad);
    for (const std::string& name : norm->state_names()) out.push_back(norm->state(name));
  }
  return out;
}

}  // namespace

TEST_CASE("threads: results are bit-identical with 1 or 2 or 3 threads on every traversal") {
  for (const Case& c : large_cases()) {
    INFO(c.spec.dump());
    const auto one = run_case<float>(c, 1);
    for (unsigned threads : {2u, 3u}) {
      const auto many = run_case<float>(c, threads);
      REQUIRE(many.size() == one.size());
      for (std::size_t k = 0; k < one.size(); ++k) {
        INFO("output " << k << ", " << threads << " threads");
        CHECK(many[k] == one[k]);
      }
    }
  }
}

TEST_CASE("threads: set_num_threads(0) means one per hardware thread") {
  const Threads all(0);
  CHECK(num_threads() >= 1);
  const Threads one(1);
  CHECK(num_threads() == 1);
}

TEST_CASE("threads: float results agree with double ones on every traversal") {
  // Float data, float arithmetic in the elementwise steps: within a few float
  // ulps of the same computation in double.
  for (const Case& c : large_cases()) {
    INFO(c.spec.dump());
    const auto single = run_case<float>(c, 2);
    const auto reference = run_case<double>(c, 1);
    REQUIRE(single.size() == reference.size());
    for (std::size_t k = 0; k < single.size(); ++k) {
      INFO("output " << k);
      double scale = 0, worst = 0;
      for (std::size_t i = 0; i < reference[k].size(); ++i) {
        scale = std::max(scale, std::abs(reference[k].flat(i)));
        worst = std::max(worst, std::abs(double(single[k].flat(i)) - reference[k].flat(i)));
      }
      // Inputs are rounded to float in both runs' shared seed only up to the
      // draw, so compare against the float rounding of the largest value.
      CHECK(worst <= 2e-6 * std::max(scale, 1.0));
    }
  }
}

TEST_CASE("threads: the float forward keeps large means exact (split mean)") {
  // x = 1000 + N(0, 1) in float: y must match the double computation on the
  // same float inputs to a few ulps of y, not to ulps of 1000.
  std::mt19937_64 rng(3);
  const xt::xarray<float> x = random_normal<float>(rng, std::vector<std::size_t>{64, 4096}, 1000.0);
  const xt::xarray<double> x64 = xt::cast<double>(x);
  for (const char* type : {"layer", "batch"}) {
    INFO(type);
    const nlohmann::json spec = std::string(type) == "layer"
                                    ? nlohmann::json{{"type", type}, {"normalized_shape", {4096}}}
                                    : nlohmann::json{{"type", type}};
    auto single = make_norm<float>(spec, 0);
    auto dual = make_norm<double>(spec, 0);
    const xt::xarray<float> y = single->forward(x, Mode::train);
    const xt::xarray<double> y64 = dual->forward(x64, Mode::train);
    double worst_ulps = 0;
    for (std::size_t i = 0; i < y.size(); ++i) {
      const double ulp =
          std::nextafter(std::abs(float(y64.flat(i))), INFINITY) - std::abs(float(y64.flat(i)));
      worst_ulps = std::max(worst_ulps, std::abs(double(y.flat(i)) - y64.flat(i)) / ulp);
    }
    CHECK(worst_ulps <= 4.0);
  }
}

TEST_CASE("threads: kernels in use are named") {
  const std::string isa = engine_isa();
  CHECK((isa == "baseline" || isa == "avx2" || isa == "avx512"));
  if (const char* limit = std::getenv("NORMLAB_MAX_ISA")) {
    if (std::string(limit) == "baseline") CHECK(isa == "baseline");
  }
}
