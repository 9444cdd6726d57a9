// normlab against PyTorch 1.13: the golden vectors in tests/golden (written by
// tests/golden/make_golden.py, whose docstring describes the files). For every
// case: y, dx, each parameter gradient and the running state after all forwards.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <fstream>
#include <iomanip>
#include <map>
#include <set>
#include <sstream>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <vector>
#include <xtensor/xarray.hpp>
#include <xtensor/xmanipulation.hpp>

#include "normlab/normlab.hpp"

using namespace normlab;

namespace {

const std::string kGoldenDir = NORMLAB_GOLDEN_DIR;

const nlohmann::json& manifest() {
  static const nlohmann::json cases = [] {
    std::ifstream in(kGoldenDir + "/cases.json");
    if (!in) throw std::runtime_error(kGoldenDir + "/cases.json: cannot open");
    return nlohmann::json::parse(in).at("cases");
  }();
  return cases;
}

// Agreement asked of normlab. The golden outputs are PyTorch's float64 results
// rounded to the case's dtype; float32 state is also rounded between steps.
template <class T>
constexpr double tolerance() {
  return sizeof(T) == 4 ? 1e-5 : 1e-10;
}

// bfloat16 cases (make_golden.py's BFLOAT16_CASES): their inputs are bfloat16
// values in float32 files, their expected outputs the float64 computation from
// exactly those values, unrounded. normlab's Norm<bfloat16> must be at least
// as accurate as PyTorch's own bfloat16 modules on the same inputs: per
// output, its scaled error must be at most the larger of PyTorch bfloat16's
// (torch_bfloat16_error in cases.json) and what rounding the result to
// bfloat16 costs. Rounding a value w once to bfloat16 moves it by at most
// 2^-8 |w| (the unit roundoff, 8 significant bits), which the scaled error
// |got - w| / (|w| + max|w|) counts as at most 2^-9. So:
//  - a case computed from its inputs alone (one forward and backward, eval
//    with running statistics given as inputs): 2^-9 for the output's own
//    rounding, plus 1e-5 (the float32 cases' tolerance) for the float
//    arithmetic before it;
//  - a case whose state is carried from step to step in bfloat16 (train steps
//    before the measured forward, sequences): 2^-8, the other 2^-9 for what
//    the rounded state (running statistics, MABN's buffers) moves later
//    outputs by. (PyTorch's bfloat16 modules round their state the same way.)
// Where normlab's output is the reference rounded once, no bfloat16 output is
// closer to it, so PyTorch's error is the larger but for ties of float
// arithmetic; outputs one ulp off fail (156 of them, tried by hand).
constexpr double kBfloat16OneRounding = 0x1p-9 + 1e-5;
constexpr double kBfloat16WithState = 0x1p-8;

template <class T>
constexpr bool is_bfloat16 = std::is_same_v<T, bfloat16>;
// What a case's expected outputs are stored as: its dtype, or float64 for
// bfloat16 cases.
template <class T>
using Expected = std::conditional_t<is_bfloat16<T>, double, T>;

// The largest errors of a norm type's bfloat16 cases: normlab's, PyTorch's,
// and normlab's over the bound it is held to.
struct Bfloat16Errors {
  double normlab = 0, torch = 0, of_bound = 0;
};

// All digits, so that a failure shows how far apart the values are.
std::string exact(double v) {
  std::ostringstream text;
  text << std::setprecision(17) << v;
  return text.str();
}

// Scale-aware error of one array: |got - want| / (|want| + max|want|), so an
// element is judged relative to itself and to the size of its array (entries
// that cancel to near zero are not held to a relative bound they cannot meet).
template <class T, class W>
double compare(const std::string& what, const xt::xarray<T>& got, const xt::xarray<W>& want,
               double tolerance) {
  INFO(what);
  REQUIRE(got.shape() == want.shape());
  double scale = 0;
  for (W w : want) scale = std::max(scale, std::abs(double(w)));
  scale = std::max(scale, 1e-30);
  double worst = 0;
  std::size_t worst_at = 0;
  for (std::size_t i = 0; i < want.size(); ++i) {
    const double w = double(want.flat(i));
    const double error = std::abs(double(got.flat(i)) - w) / (std::abs(w) + scale);
    if (!(error <= worst)) {  // also catches NaN
      worst = std::isnan(error) ? HUGE_VAL : error;
      worst_at = i;
    }
  }
  INFO("worst at flat index ", worst_at, ": normlab ", exact(double(got.flat(worst_at))),
       ", PyTorch ", exact(double(want.flat(worst_at))), ", array max ", exact(scale), ", allowed ",
       exact(tolerance));
  CHECK(worst <= tolerance);
  return worst;
}

// (N, C, S...) -> (N, S..., C) and back: a golden case's tensors as a
// channels-last (nhwc) norm takes them. PyTorch's channels_last tensors hold
// the same values in this order.
template <class T>
xt::xarray<T> to_channels_last(const xt::xarray<T>& a) {
  std::vector<std::size_t> order = {0};
  for (std::size_t d = 2; d < a.dimension(); ++d) order.push_back(d);
  order.push_back(1);
  return xt::transpose(a, order);
}
template <class T>
xt::xarray<T> to_channels_first(const xt::xarray<T>& a) {
  std::vector<std::size_t> order = {0, a.dimension() - 1};
  for (std::size_t d = 1; d + 1 < a.dimension(); ++d) order.push_back(d);
  return xt::transpose(a, order);
}

// The layer in front of a Cross-Iteration BN case (tests/golden/make_golden.py's
// preceding_output): x = w u per position, u (N, K, S...) channels first, w (C, K).
// Its weight gradient is written here, independently of normlab's layers.
template <class T>
class GoldenPrecedingLayer final : public PrecedingLayer<T> {
 public:
  explicit GoldenPrecedingLayer(Layout layout) : layout_(layout) {}
  void set(const xt::xarray<T>& u, const xt::xarray<T>& w) {
    u_ = u;
    w_ = w;
  }
  const xt::xarray<T>& last_weight() const override { return w_; }
  // dw[c, k] = sum over n and positions s of dy[n, c, s] u[n, k, s].
  void weight_gradient(const xt::xarray<T>& dy, xt::xarray<T>& dw) override {
    const xt::xarray<T> g =
        layout_ == Layout::nhwc && dy.dimension() >= 3 ? to_channels_first(dy) : dy;
    const std::size_t N = g.shape(0), C = g.shape(1), K = u_.shape(1), S = g.size() / (N * C);
    dw = xt::zeros<T>({C, K});
    for (std::size_t n = 0; n < N; ++n)
      for (std::size_t c = 0; c < C; ++c)
        for (std::size_t k = 0; k < K; ++k)
          for (std::size_t p = 0; p < S; ++p)
            dw(c, k) += g.data()[(n * C + c) * S + p] * u_.data()[(n * K + k) * S + p];
  }

 private:
  Layout layout_;
  xt::xarray<T> u_, w_;
};

// Runs one case, in the layout given (nhwc: the case's spec with "layout":
// "nhwc", its inputs permuted to channels last and its outputs back); returns
// its largest scaled error. A bfloat16 case also adds its errors to `errors`.
template <class T>
double check_case(const nlohmann::json& c, Layout layout = Layout::nchw,
                  Bfloat16Errors* errors = nullptr) {
  const std::string name = c.at("name").get<std::string>();
  const std::string dir = kGoldenDir + "/" + name + "/";
  const std::set<std::string> files = c.at("files").get<std::set<std::string>>();
  std::set<std::string> used;
  auto path = [&](const std::string& file) {
    INFO("golden file ", file, " of ", name);
    REQUIRE(files.count(file) == 1);
    used.insert(file);
    return dir + file + ".npy";
  };
  // An input: a bfloat16 case's are bfloat16 values in float32 files.
  auto load = [&](const std::string& file) -> xt::xarray<T> {
    if constexpr (is_bfloat16<T>) {
      const xt::xarray<float> wide = load_npy<float>(path(file));
      xt::xarray<bfloat16> values = xt::xarray<bfloat16>::from_shape(wide.shape());
      to_bfloat16(wide.data(), values.data(), wide.size());
      for (std::size_t i = 0; i < wide.size(); ++i) {
        INFO(file, " holds a value that is not a bfloat16 at flat index ", i);
        REQUIRE(float(values.flat(i)) == wide.flat(i));
      }
      return values;
    } else {
      return load_npy<T>(path(file));
    }
  };
  // An expected output, compared with what normlab gave.
  auto compare = [&](const std::string& what, const xt::xarray<T>& got, const std::string& file) {
    const xt::xarray<Expected<T>> want = load_npy<Expected<T>>(path(file));
    if constexpr (!is_bfloat16<T>) {
      return ::compare(what, got, want, tolerance<T>());
    } else {
      const double torch = c.at("torch_bfloat16_error").at(file).get<double>();
      const bool carries_state = c.contains("sequence") || c.at("train_steps").get<int>() > 0;
      const double bound =
          std::max(torch, carries_state ? kBfloat16WithState : kBfloat16OneRounding);
      const double error =
          ::compare(what + " (PyTorch bfloat16's error " + exact(torch) + ")", got, want, bound);
      if (errors) {
        errors->normlab = std::max(errors->normlab, error);
        errors->torch = std::max(errors->torch, torch);
        errors->of_bound = std::max(errors->of_bound, error / bound);
      }
      return error;
    }
  };

  const bool last = layout == Layout::nhwc;
  nlohmann::json spec = c.at("spec");
  if (last) spec["layout"] = "nhwc";
  auto norm = make_norm<T>(spec, 0);
  auto input = [&](const std::string& file) {
    return last ? to_channels_last(load(file)) : load(file);
  };
  auto output = [&](const xt::xarray<T>& a) { return last ? to_channels_first(a) : a; };
  const xt::xarray<T> x = input(c.contains("sequence") ? "x_s0" : "x");
  norm->prepare(std::vector<std::size_t>(x.shape().begin(), x.shape().end()));
  // Parameters PyTorch was given (WeightNorm's g may be absent: it starts as ||v||).
  for (const auto& p : norm->parameter_names())
    if (files.count(p)) norm->set(p, load(p));
  for (const auto& s : norm->state_names()) norm->set(s, load(s));

  double worst = 0;
  if (c.contains("sequence")) {  // consecutive steps, state carried, each checked
    const auto modes = c.at("sequence").get<std::vector<std::string>>();
    const bool has_preceding = files.count("weight_s0") == 1;
    // (No bfloat16 case has a layer in front: make_golden.py computes its x.)
    struct NoLayer {
      explicit NoLayer(Layout) {}
    };
    std::conditional_t<is_bfloat16<T>, NoLayer, GoldenPrecedingLayer<T>> preceding(layout);
    if constexpr (!is_bfloat16<T>) {
      if (has_preceding) norm->connect_preceding_layer(&preceding);
    } else {
      REQUIRE_FALSE(has_preceding);
    }
    for (std::size_t i = 0; i < modes.size(); ++i) {
      const std::string s = "_s" + std::to_string(i);
      INFO("step ", i, " in ", modes[i]);
      if constexpr (!is_bfloat16<T>)
        if (has_preceding) preceding.set(load("u" + s), load("weight" + s));
      norm->zero_grad();
      const xt::xarray<T> y = output(norm->forward(input("x" + s), parse_mode(modes[i])));
      const xt::xarray<T> dx = output(norm->backward(input("dy" + s)));
      worst = std::max({worst, compare("y" + s, y, "y" + s), compare("dx" + s, dx, "dx" + s)});
      for (const auto& p : norm->parameter_names())
        worst = std::max(worst, compare("d" + p + s, norm->parameter(p).grad, "d" + p + s));
      for (const auto& st : norm->state_names())
        worst = std::max(worst, compare(st + " after step" + s, norm->state(st), st + "_out" + s));
    }
  }
  const int steps = c.at("train_steps").get<int>();
  for (int i = 0; i < steps; ++i) norm->forward(input("x" + std::to_string(i)), Mode::train);
  if (!c.contains("sequence")) {
    const xt::xarray<T> y = output(norm->forward(x, parse_mode(c.at("mode").get<std::string>())));
    const xt::xarray<T> dx = output(norm->backward(input("dy")));
    worst = std::max({worst, compare("y", y, "y"), compare("dx", dx, "dx")});
    for (const auto& p : norm->parameter_names())
      worst = std::max(worst, compare("d" + p, norm->parameter(p).grad, "d" + p));
    for (const auto& s : norm->state_names())
      worst = std::max(worst, compare(s + " after the forwards", norm->state(s), s + "_out"));
  }

  // Every golden array was used: none names a parameter or state normlab lacks.
  for (const auto& file : files) {
    INFO("golden file ", file, " of ", name, " was not checked");
    CHECK(used.count(file) == 1);
  }
  return worst;
}

// Runs a case in its dtype.
double check_case_in_its_dtype(const nlohmann::json& c, Layout layout, Bfloat16Errors& errors) {
  const std::string dtype = c.at("dtype").get<std::string>();
  if (dtype == "float32") return check_case<float>(c, layout);
  if (dtype == "bfloat16") return check_case<bfloat16>(c, layout, &errors);
  REQUIRE(dtype == "float64");
  return check_case<double>(c, layout);
}

// Checks every case of one norm type, in every dtype. A registered type
// without cases fails: its reference belongs in tests/golden/make_golden.py.
void check_type(const std::string& type) {
  std::map<std::string, double> worst;  // by dtype
  Bfloat16Errors bfloat16_errors;
  std::size_t expected = 0, checked = 0;
  for (const auto& c : manifest()) {
    if (c.at("spec").at("type") != type) continue;
    ++expected;
    const std::string dtype = c.at("dtype").get<std::string>();
    INFO("golden case ", c.at("name").get<std::string>(), " spec ", c.at("spec").dump());
    const double error = check_case_in_its_dtype(c, Layout::nchw, bfloat16_errors);
    worst[dtype] = std::max(worst[dtype], error);
    ++checked;
  }
  if (expected == 0) {
    FAIL_CHECK("norm '", type,
               "' is registered but has no golden case: add its PyTorch reference and cases to "
               "tests/golden/make_golden.py (torch_module, cases()) and run it");
    return;
  }
  CHECK(checked == expected);
  CHECK(worst.count("float32") == 1);
  CHECK(worst.count("float64") == 1);
  CHECK_MESSAGE(worst.count("bfloat16") == 1, "norm '", type,
                "' has no bfloat16 golden case: add one to BFLOAT16_CASES in "
                "tests/golden/make_golden.py and run it");
  MESSAGE(type, " norm: ", checked, " golden cases; largest scaled error float32 ",
          worst["float32"], ", float64 ", worst["float64"], ", bfloat16 ", bfloat16_errors.normlab,
          " (PyTorch's bfloat16 ", bfloat16_errors.torch, "; at most ", bfloat16_errors.of_bound,
          " of the bound)");
}

// Whether a case can run channels last: its spec's traits say so (LayerNorm
// and RMSNorm with channel_affine only; weights have no layout), and its
// input has dimensions to permute ((N, C) is the same in both layouts).
bool has_channels_last_form(const nlohmann::json& c) {
  return c.at("shape").size() >= 3 && norm_traits(c.at("spec")).channels_last;
}

// Why this build cannot run a case's norm ("" when it can).
std::string why_case_unavailable(const nlohmann::json& c) {
  return why_unavailable(norm_traits(c.at("spec")));
}

}  // namespace

TEST_CASE("golden: channels-last (nhwc) inputs match PyTorch on the permuted tensors") {
  std::map<std::string, std::size_t> cases_by_type;
  std::map<std::string, double> worst;  // by dtype
  Bfloat16Errors bfloat16_errors;
  for (const auto& c : manifest()) {
    if (!has_channels_last_form(c) || !why_case_unavailable(c).empty()) continue;
    INFO("golden case ", c.at("name").get<std::string>(), " spec ", c.at("spec").dump(),
         " in nhwc");
    const std::string dtype = c.at("dtype").get<std::string>();
    const double error = check_case_in_its_dtype(c, Layout::nhwc, bfloat16_errors);
    worst[dtype] = std::max(worst[dtype], error);
    ++cases_by_type[c.at("spec").at("type").get<std::string>()];
  }
  // Every norm with a channels-last form where a model's conv layer uses it
  // (LayerNorm there has channel_affine) has golden cases run in nhwc.
  std::size_t expected_types = 0;
  for (const NormInfo& info : registered_norms()) {
    const std::string type = info.type;
    CAPTURE(type);
    const NormTraits at_conv = norm_traits(layer_spec({{"type", type}}, 8, /*spatial=*/true));
    if (!at_conv.channels_last) continue;
    const std::string unavailable = why_unavailable(at_conv);
    if (!unavailable.empty()) {
      MESSAGE("skipped ", type, " in nhwc: ", unavailable);
      continue;
    }
    ++expected_types;
    CHECK_MESSAGE(cases_by_type[type] > 0, "no golden case of a channels-last form of ", type,
                  " with 3 or more dimensions: add one to tests/golden/make_golden.py");
  }
  CHECK(expected_types > 0);
  CHECK(cases_by_type.size() == expected_types);
  MESSAGE("channels last: ", cases_by_type.size(), " norm types; largest scaled error float32 ",
          worst["float32"], ", float64 ", worst["float64"], ", bfloat16 ", worst["bfloat16"],
          " (at most ", bfloat16_errors.of_bound, " of the bound)");
}

TEST_CASE("golden: every registered norm matches its PyTorch 1.13 reference") {
  REQUIRE_FALSE(registered_norms().empty());
  for (const NormInfo& info : registered_norms()) {
    const std::string type = info.type;
    CAPTURE(type);
    const std::string unavailable = why_unavailable(info.traits);
    if (!unavailable.empty()) {  // sync_batch without MPI: refused, and the test says so
      MESSAGE("skipped ", type, ": ", unavailable, " (checked that it is refused)");
      CHECK_THROWS_AS(make_norm<double>({{"type", type}}, 3), std::invalid_argument);
      continue;
    }
    check_type(type);
  }
}

TEST_CASE("golden manifest lists cases of every norm type and nothing else") {
  REQUIRE(manifest().is_array());
  REQUIRE(!manifest().empty());
  const std::vector<std::string> types = norm_types();
  std::set<std::string> seen;
  for (const auto& c : manifest()) {
    const std::string type = c.at("spec").at("type").get<std::string>();
    INFO("golden case ", c.at("name").get<std::string>());
    CHECK(std::find(types.begin(), types.end(), type) != types.end());
    seen.insert(type);
  }
  CHECK(seen.size() == types.size());
}
