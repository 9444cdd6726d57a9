// Norm<bfloat16> for every registered norm, iterated from the registry: x, y,
// dy, dx, the parameters, their gradients and the running state are bfloat16,
// the arithmetic inside float or double. Each norm runs next to Norm<float>
// holding exactly the same values (inputs, parameters, and after every step
// the bfloat16 norm's state), over train, train and eval steps with backward:
// every output of the bfloat16 norm must be the float norm's output rounded to
// bfloat16 (round to nearest even), within one bfloat16 ulp, or 1e-5 of the
// array's largest value where the float result is a cancellation; and equal to
// it bit for bit but for at most 2% of the elements (plus one), which a
// truncating or double rounding would not meet. The float norm computes in
// float where the bfloat16 one does, so the two differ only by the order of
// float sums (the engine cuts bfloat16 data into other blocks), which moves a
// result across a bfloat16 rounding boundary only when it lies next to one.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <random>
#include <string>
#include <vector>
#include <xtensor/xarray.hpp>
#include <xtensor/xmanipulation.hpp>

#include "normlab/normlab.hpp"

using namespace normlab;
using nlohmann::json;

namespace {

using Shape = std::vector<std::size_t>;

xt::xarray<float> widened(const xt::xarray<bfloat16>& a) {
  xt::xarray<float> out = xt::xarray<float>::from_shape(a.shape());
  to_float(a.data(), out.data(), a.size());
  return out;
}

// Values drawn from `draw`, rounded to bfloat16.
template <class S, class Draw>
xt::xarray<bfloat16> drawn(const S& shape, Draw&& draw) {
  xt::xarray<bfloat16> a = xt::xarray<bfloat16>::from_shape(shape);
  for (bfloat16& v : a) v = nearest<bfloat16>(draw());
  return a;
}

// The distance between adjacent bfloat16 values at |r| (r a bfloat16 value).
double bfloat16_ulp(double r) {
  const double magnitude = std::max(std::abs(r), 0x1p-126);
  return std::ldexp(1.0, std::ilogb(magnitude) - 7);
}

// got (bfloat16) against want (float) rounded to bfloat16: see the top.
void check_rounded(const std::string& what, const xt::xarray<bfloat16>& got,
                   const xt::xarray<float>& want) {
  INFO(what);
  REQUIRE(got.shape() == want.shape());
  double scale = 0;
  for (float w : want) scale = std::max(scale, std::abs(double(w)));
  std::size_t differing = 0, beyond = 0, worst_at = 0;
  double worst = 0;
  for (std::size_t i = 0; i < want.size(); ++i) {
    const float rounded = round_to_bfloat16(want.flat(i));
    const double g = double(got.flat(i));
    if (g == double(rounded) || (std::isnan(g) && std::isnan(rounded))) continue;
    ++differing;
    const double off = std::abs(g - double(rounded));
    const double allowed = std::max(bfloat16_ulp(rounded), 1e-5 * scale);
    if (!(off <= allowed)) ++beyond;
    if (!(off / allowed <= worst)) worst = off / allowed, worst_at = i;
  }
  INFO("worst at flat index ", worst_at, ": bfloat16 ", double(got.flat(worst_at)), ", float ",
       double(want.flat(worst_at)), " (", worst, " of the allowed distance)");
  CHECK(beyond == 0);
  CHECK(differing <= 1 + want.size() / 50);
}

// What one step gives: y, dx, the parameter gradients and the state.
template <class T>
std::vector<std::pair<std::string, xt::xarray<T>>> step(Norm<T>& norm, const xt::xarray<T>& x,
                                                        const xt::xarray<T>& dy, Mode mode) {
  std::vector<std::pair<std::string, xt::xarray<T>>> out;
  norm.zero_grad();
  out.emplace_back("y", norm.forward(x, mode));
  out.emplace_back("dx", norm.backward(dy));
  for (const std::string& p : norm.parameter_names())
    out.emplace_back("d" + p, norm.parameter(p).grad);
  for (const std::string& s : norm.state_names()) out.emplace_back(s, norm.state(s));
  return out;
}

// Runs spec on inputs of `shape` in bfloat16 and in float (see the top);
// returns how many outputs were compared.
std::size_t check_norm(json spec, const Shape& shape, std::mt19937_64& rng) {
  // eps null (RMSNorm) is the data type's machine epsilon, which differs
  // between the two (tested below): both get bfloat16's.
  spec = resolve_spec(spec);
  if (spec.contains("eps") && spec["eps"].is_null()) spec["eps"] = 0x1p-7;
  INFO("spec ", spec.dump(), " on ", shape.size(), "-d input of ", shape[0], " x ", shape[1]);
  auto half = make_norm<bfloat16>(spec, 0);
  auto single = make_norm<float>(spec, 0);
  half->prepare(shape);
  single->prepare(shape);
  REQUIRE(half->parameter_names() == single->parameter_names());
  REQUIRE(half->state_names() == single->state_names());
  std::normal_distribution<double> normal(0.0, 1.0);
  std::uniform_real_distribution<double> uniform(0.5, 1.5);
  // Parameters: scales near 1, shifts and thresholds around 0; running
  // statistics as a trained norm has them. The float norm gets the same values.
  for (const std::string& p : half->parameter_names()) {
    const bool shift = p == "beta" || p == "tau";
    const xt::xarray<bfloat16> value = drawn(
        half->parameter(p).value.shape(), [&] { return shift ? 0.5 * normal(rng) : uniform(rng); });
    half->set(p, value);
    single->set(p, widened(value));
  }
  for (const std::string& s : half->state_names()) {
    if (s != "running_mean" && s != "running_var") continue;
    const xt::xarray<bfloat16> value = drawn(half->state(s).shape(), [&] {
      return s == "running_var" ? 2 * uniform(rng) : normal(rng);
    });
    half->set(s, value);
    single->set(s, widened(value));
  }

  std::size_t compared = 0;
  for (const Mode mode : {Mode::train, Mode::train, Mode::eval}) {
    INFO("step ", compared / 4, " in ", std::string(to_string(mode)));
    const xt::xarray<bfloat16> x = drawn(shape, [&] { return 1.5 + 2.0 * normal(rng); });
    const xt::xarray<bfloat16> dy = drawn(shape, [&] { return 0.3 + normal(rng); });
    const auto got = step<bfloat16>(*half, x, dy, mode);
    const auto want = step<float>(*single, widened(x), widened(dy), mode);
    REQUIRE(got.size() == want.size());
    for (std::size_t i = 0; i < got.size(); ++i) {
      REQUIRE(got[i].first == want[i].first);
      check_rounded(got[i].first, got[i].second, want[i].second);
    }
    // The next step starts from the same state in both (the float norm's own
    // would differ by the bfloat16 rounding of the state).
    for (const std::string& s : half->state_names()) single->set(s, widened(half->state(s)));
    compared += 4;
  }
  return compared;
}

}  // namespace

TEST_CASE("norm bfloat16: every registered norm is its float computation rounded to bfloat16") {
  std::mt19937_64 rng(23);
  std::size_t types = 0;
  for (const NormInfo& info : registered_norms()) {
    const std::string type = info.type;
    CAPTURE(type);
    const std::string unavailable = why_unavailable(info.traits);
    if (!unavailable.empty()) {
      MESSAGE("skipped ", type, ": ", unavailable, " (checked that it is refused)");
      CHECK_THROWS_AS(make_norm<bfloat16>({{"type", type}}, 3), std::invalid_argument);
      continue;
    }
    ++types;
    const json spec = {{"type", type}};
    if (info.traits.reparameterizes_weight) {  // a conv weight (out, in, kh, kw)
      check_norm(spec, {6, 4, 3, 3}, rng);
      continue;
    }
    // Enough samples for every virtual batch to have two.
    const std::size_t n = std::max<std::size_t>(4, 2 * info.traits.virtual_batch_size);
    const std::size_t channels = 8;
    // As a model's layers use it after a convolution, channels first and last ...
    const json conv = layer_spec(spec, channels, /*spatial=*/true);
    check_norm(conv, {n, channels, 3, 5}, rng);
    if (norm_traits(conv).channels_last) {
      json nhwc = conv;
      nhwc["layout"] = "nhwc";
      check_norm(nhwc, {n, 3, 5, channels}, rng);
    }
    // ... and after a linear layer, where it takes (N, C).
    if (!info.traits.needs_spatial) check_norm(layer_spec(spec, channels, false), {n, 8}, rng);
  }
  CHECK(types + 1 >= registered_norms().size());  // at most sync_batch skipped
}

TEST_CASE("norm bfloat16: options that change the computation, against float") {
  std::mt19937_64 rng(29);
  for (const json& spec : std::vector<json>{
           {{"type", "group"}, {"groups", 2}},
           {{"type", "layer"}},  // normalized_shape (C, H, W): elementwise gamma and beta
           {{"type", "batch"}, {"momentum", nullptr}},
           {{"type", "batch_renorm"}, {"warmup_steps", 2}, {"rmax", 1.5}, {"dmax", 0.5}},
           {{"type", "mabn"}, {"buffer_size", 2}, {"warmup_steps", 0}, {"renorm_start", 1}},
           {{"type", "cross_iteration_batch"}, {"window", 2}},
           {{"type", "frn"}, {"tlu", false}},
           {{"type", "evonorm_s0"}, {"groups", 2}},
           {{"type", "weight"}, {"dim", 1}},
       })
    check_norm(spec, spec["type"] == "weight" ? Shape{6, 4, 3, 3} : Shape{4, 8, 3, 5}, rng);
}

TEST_CASE("norm bfloat16: RMSNorm's eps null is bfloat16's machine epsilon, 2^-7") {
  // torch.finfo(torch.bfloat16).eps: with x = 0 everywhere but one element, y
  // there is x / sqrt(x^2 / n + eps), which shows eps.
  auto norm = make_norm<bfloat16>({{"type", "rms"}, {"eps", nullptr}, {"affine", false}}, 0);
  xt::xarray<bfloat16> x = xt::xarray<bfloat16>::from_shape({1, 4});
  for (bfloat16& v : x) v = bfloat16(0.0f);
  x(0, 0) = bfloat16(0.25f);
  const xt::xarray<bfloat16> y = norm->forward(x, Mode::train);
  const double expected = 0.25 / std::sqrt(0.25 * 0.25 / 4 + 0x1p-7);
  CHECK(double(y(0, 0)) == doctest::Approx(expected).epsilon(0x1p-8));
  CHECK(double(std::numeric_limits<bfloat16>::epsilon()) == 0x1p-7);
}

TEST_CASE("norm bfloat16: num_batches_tracked counts past 256, which bfloat16 cannot hold") {
  // Batch Renorm's warm-up reads the count: a bfloat16 count would stop at 256
  // (256 + 1 rounds back to 256), and rmax and dmax would never open further.
  // The count is exact; the state shows it rounded to bfloat16.
  const json spec = {{"type", "batch_renorm"}, {"warmup_steps", 600}};
  auto half = make_norm<bfloat16>(spec, 2);
  auto single = make_norm<float>(spec, 2);
  std::mt19937_64 rng(31);
  std::normal_distribution<double> normal(0.0, 1.0);
  xt::xarray<bfloat16> x = drawn(Shape{4, 2}, [&] { return normal(rng); });
  for (int i = 0; i < 299; ++i) {
    half->forward(x, Mode::train);
    single->forward(widened(x), Mode::train);
  }
  CHECK(double(half->state("num_batches_tracked")(0)) == 300.0);  // 299 rounded (ties to even)
  // The 300th forward: both see count 299, so rmax 1 + 2 * 299/600 and dmax
  // 5 * 299/600, which clip r and d for x far from the running statistics.
  x = drawn(Shape{4, 2}, [&] { return 3.0 + 4.0 * normal(rng); });
  for (const std::string& s : half->state_names()) single->set(s, widened(half->state(s)));
  // set() gave the float norm the rounded count 300: give it back its own 299.
  single->set("num_batches_tracked", xt::xarray<float>{299.0f});
  check_rounded("y after 299 forwards", half->forward(x, Mode::train),
                single->forward(widened(x), Mode::train));
  // A count set from outside is taken as it is.
  half->set("num_batches_tracked", xt::xarray<bfloat16>{bfloat16(4.0f)});
  half->forward(x, Mode::train);
  CHECK(double(half->state("num_batches_tracked")(0)) == 5.0);
}
