// The ResNets (resnetD[_wW], src/nn/model.cpp; residual layers in
// src/nn/residual.cpp): one training step of resnet8_w4 against PyTorch on the
// same weights (tests/golden/resnet, written by make_resnet_golden.py), in both
// activation layouts and both float32 convolution backends; the shape of the
// network; every norm in it, channels first and last; gradients against
// finite differences; and the errors a model name can cause.
#include <doctest/doctest.h>

#include <cmath>
#include <cstdlib>
#include <fstream>
#include <string>
#include <vector>
#include <xtensor/xarray.hpp>
#include <xtensor/xmath.hpp>

#include "normlab/normlab.hpp"
#include "test_helpers.hpp"

using namespace normlab;
using nlohmann::json;
using normlab::test::check_mentions;
using normlab::test::error_of;

namespace {

const std::string kResnetGolden = std::string(NORMLAB_GOLDEN_DIR) + "/resnet";

json golden_cases() {
  std::ifstream in(kResnetGolden + "/cases.json");
  REQUIRE_MESSAGE(in, kResnetGolden << "/cases.json: cannot open");
  const json cases = json::parse(in).at("cases");
  REQUIRE(cases.size() == 2);  // batch and group: neither may go missing unnoticed
  return cases;
}

std::string numbered(const std::string& stem, std::size_t k) {
  return stem + (k < 10 ? "_0" : "_") + std::to_string(k) + ".npy";
}

// max |got - want| / (max |want|): the error relative to the array's scale
// (entries that cancel to near zero are not held to a relative bound).
template <class T>
double scaled_error(const xt::xarray<T>& got, const xt::xarray<double>& want) {
  REQUIRE(got.shape() == want.shape());
  double scale = 1e-30, worst = 0;
  for (double w : want) scale = std::max(scale, std::abs(w));
  for (std::size_t i = 0; i < want.size(); ++i)
    worst = std::max(worst, std::abs(double(got.data()[i]) - want.data()[i]));
  return worst / scale;
}

// Which float32 convolutions a model gets (layers choose when they are made).
class ConvBackendScope {
 public:
  explicit ConvBackendScope(const char* backend) { setenv("NORMLAB_CONV", backend, 1); }
  ~ConvBackendScope() { unsetenv("NORMLAB_CONV"); }
};

// One PyTorch-checked training step of the golden case in `dir`.
template <class T>
void check_golden_step(const json& golden, Layout layout, double tolerance) {
  const std::string dir = kResnetGolden + "/" + golden["norm"]["type"].get<std::string>();
  INFO(golden["model"].get<std::string>()
       << " with " << golden["norm"].dump() << ", " << to_string(layout) << ", "
       << (sizeof(T) == 4 ? "float32" : "float64"));
  Model<T> model = build_model<T>(golden["model"].get<std::string>(), golden["norm"], layout);
  std::vector<ParameterRef<T>> params = model.parameters();
  REQUIRE(params.size() == golden["parameters"].size());
  for (std::size_t k = 0; k < params.size(); ++k) {
    INFO(params[k].name);
    const xt::xarray<T> value = xt::cast<T>(load_npy<double>(dir + "/" + numbered("param", k)));
    REQUIRE(value.shape() == params[k].value->shape());
    *params[k].value = value;
  }
  const xt::xarray<T> x = xt::cast<T>(load_npy<double>(dir + "/x.npy"));
  const xt::xarray<double> label_values = load_npy<double>(dir + "/labels.npy");
  std::vector<std::uint8_t> labels(label_values.begin(), label_values.end());

  const xt::xarray<T> logits = model.forward(x, Mode::train);
  xt::xarray<T> dlogits;
  const double loss = softmax_cross_entropy(logits, labels, dlogits);
  model.zero_grad();
  model.backward(dlogits);

  const double want_loss = load_npy<double>(dir + "/loss.npy")();
  CHECK(std::abs(loss - want_loss) <= tolerance * std::abs(want_loss));
  CHECK(scaled_error(logits, load_npy<double>(dir + "/logits.npy")) <= tolerance);
  for (std::size_t k = 0; k < params.size(); ++k) {
    INFO("gradient " << k << ": " << params[k].name);
    const xt::xarray<double> want = load_npy<double>(dir + "/" + numbered("grad", k));
    CHECK(xt::amax(xt::abs(want))() > 0);  // a real gradient
    CHECK(scaled_error(*params[k].grad, want) <= tolerance);
  }
  const std::vector<Norm<T>*> norms = model.norms();
  const std::size_t running = golden["norms_with_running_stats"];
  REQUIRE(norms.size() == (running ? running : norms.size()));
  for (std::size_t k = 0; k < running; ++k) {
    INFO("running statistics of norm " << k);
    CHECK(scaled_error(norms[k]->state("running_mean"),
                       load_npy<double>(dir + "/" + numbered("running_mean", k))) <= tolerance);
    CHECK(scaled_error(norms[k]->state("running_var"),
                       load_npy<double>(dir + "/" + numbered("running_var", k))) <= tolerance);
  }
}

// Norms of every kind: batch statistics, per-sample statistics, a weight norm,
// norms with their own activation, and none.
const std::vector<json>& stepped_norms() {
  static const std::vector<json> norms = {
      {{"type", "none"}},         {{"type", "weight"}},
      {{"type", "batch"}},        {{"type", "group"}},
      {{"type", "frn"}},          {{"type", "evonorm_s0"}},
      {{"type", "instance"}},     {{"type", "layer"}},
      {{"type", "batch_renorm"}}, {{"type", "ghost"}, {"virtual_batch_size", 2}}};
  return norms;
}

template <class T>
struct Step {
  xt::xarray<T> logits;
  double loss = 0;
  std::vector<xt::xarray<T>> grads;  // in parameters() order
};

template <class T>
Step<T> train_step(const std::string& name, const json& norm, Layout layout, std::size_t batch) {
  const Dataset data = make_synthetic(batch, 10, 5);
  Model<T> model = build_model<T>(name, norm, layout);
  model.initialize(3);
  const xt::xarray<T> images = xt::cast<T>(data.images);  // alive until backward
  Step<T> step;
  step.logits = model.forward(images, Mode::train);
  xt::xarray<T> dlogits;
  step.loss = softmax_cross_entropy(step.logits, data.labels, dlogits);
  model.zero_grad();
  model.backward(dlogits);
  for (const auto& p : model.parameters()) step.grads.push_back(*p.grad);
  return step;
}

}  // namespace

TEST_CASE("golden: resnet8_w4's training step matches PyTorch (float64, both layouts)") {
  for (const json& golden : golden_cases())
    for (Layout layout : {Layout::nchw, Layout::nhwc})
      check_golden_step<double>(golden, layout, 1e-10);
}

TEST_CASE("resnet: resnet8_w4's training step matches PyTorch in float32 on both backends") {
  std::vector<const char*> backends = {"im2col"};
  if (onednn_available())
    backends.push_back("onednn");
  else
    MESSAGE("skipped the onednn backend: this build has no oneDNN");
  for (const char* backend : backends) {
    ConvBackendScope scope(backend);
    INFO("NORMLAB_CONV=" << backend);
    for (const json& golden : golden_cases())
      for (Layout layout : {Layout::nchw, Layout::nhwc})
        check_golden_step<float>(golden, layout, 2e-4);
  }
}

TEST_CASE("resnet: three stages of basic blocks, depth 6n + 2, widths w, 2w, 4w") {
  struct Expected {
    std::string name;
    int depth, width;
  };
  for (const Expected& expected :
       {Expected{"resnet8", 8, 16}, Expected{"resnet20", 20, 16}, Expected{"resnet14_w8", 14, 8}}) {
    const std::string& name = expected.name;
    const int depth = expected.depth, width = expected.width;
    INFO(name);
    REQUIRE(resnet_size(name).has_value());
    CHECK(resnet_size(name)->depth == std::size_t(depth));
    CHECK(resnet_size(name)->width == std::size_t(width));
    Model<float> model = build_model<float>(name, {{"type", "batch"}});
    std::size_t weighted = 0, projections = 0, joins = 0;
    for (const auto& p : model.parameters()) {
      const bool shortcut = p.name.find("shortcut.") != std::string::npos;
      const bool weight = p.name.size() > 7 && p.name.compare(p.name.size() - 7, 7, ".weight") == 0;
      if (weight && shortcut) ++projections;
      if (weight && !shortcut) ++weighted;
    }
    for (std::size_t i = 0; i < model.size(); ++i)
      joins += model.layer(i).name().rfind("residual_add", 0) == 0;
    CHECK(weighted == std::size_t(depth));  // stem, 2 convs per block, the classifier
    CHECK(projections == 2);                // entering stages 2 and 3
    CHECK(joins == std::size_t(depth - 2) / 2);
    // A norm after every convolution, projections included.
    CHECK(model.norms().size() == std::size_t(depth - 1 + 2));
    const std::string summary = model.summary();
    const std::string w = std::to_string(width), w2 = std::to_string(2 * width),
                      w4 = std::to_string(4 * width);
    check_mentions(summary, {"conv3x3(1->" + w + ")", "residual_add(identity)",
                             "residual_add(conv1x1(" + w + "->" + w2 + ") -> batch_norm)",
                             "residual_add(conv1x1(" + w2 + "->" + w4 + ") -> batch_norm)",
                             "global_avg_pool", "linear(" + w4 + "->10)"});
    model.initialize(0);
    const Dataset data = make_synthetic(2, 10, 0);
    CHECK(model.forward(data.images, Mode::eval).shape() == std::vector<std::size_t>{2, 10});
  }
}

TEST_CASE("resnet: every norm trains a step, channels first and last alike (float64)") {
  for (const json& norm : stepped_norms()) {
    INFO("resnet8_w4 with " << norm.dump());
    const Step<double> first = train_step<double>("resnet8_w4", norm, Layout::nchw, 4);
    const Step<double> last = train_step<double>("resnet8_w4", norm, Layout::nhwc, 4);
    REQUIRE(std::isfinite(first.loss));
    CHECK(xt::allclose(last.logits, first.logits, 1e-10, 1e-12));
    CHECK(std::abs(last.loss - first.loss) <= 1e-10 * std::abs(first.loss));
    REQUIRE(last.grads.size() == first.grads.size());
    for (std::size_t k = 0; k < first.grads.size(); ++k) {
      INFO("gradient " << k);
      CHECK(xt::allclose(last.grads[k], first.grads[k], 1e-9, 1e-12));
    }
  }
  // Every registered norm builds into a ResNet (the registry adapts each spec).
  for (const NormInfo& info : registered_norms()) {
    INFO(info.type);
    const std::string unavailable = why_unavailable(info.traits);
    if (!unavailable.empty()) {  // sync_batch without MPI
      MESSAGE("skipped ", info.type, ": ", unavailable);
      continue;
    }
    CHECK_NOTHROW(build_model<float>("resnet8", {{"type", info.type}}));
  }
}

TEST_CASE("gradcheck: resnet8_w4 parameter gradients against finite differences") {
  // A weight norm, none and a per-sample norm: deterministic train-mode forwards.
  for (const json& norm :
       {json{{"type", "none"}}, json{{"type", "weight"}}, json{{"type", "group"}}}) {
    INFO(norm.dump());
    const Dataset data = make_synthetic(3, 10, 1);
    std::mt19937_64 rng(4);
    Model<double> model = build_model<double>("resnet8_w4", norm);
    model.initialize(11);
    // Nonzero biases: with the zero initial ones, a conv over the images' constant
    // background gives exactly 0 before its ReLU, a kink where differences fail.
    for (auto& p : model.parameters())
      if (p.name.size() > 5 && p.name.compare(p.name.size() - 5, 5, ".bias") == 0)
        *p.value = normlab::test::random_normal<double>(rng, p.value->shape(), 0.0, 0.1);
    // Noise on the images' constant background: else every background pixel of
    // a channel has the same value before each ReLU of stage 1, and a shared value
    // near a kink moves hundreds of them at once.
    const xt::xarray<double> x =
        xt::cast<double>(data.images) +
        normlab::test::random_normal<double>(rng, data.images.shape(), 0.0, 0.1);
    xt::xarray<double> dlogits;
    model.zero_grad();
    model.backward(
        (softmax_cross_entropy(model.forward(x, Mode::train), data.labels, dlogits), dlogits));
    auto loss = [&] {
      xt::xarray<double> unused;
      return softmax_cross_entropy(model.forward(x, Mode::train), data.labels, unused);
    };
    for (auto& p : model.parameters()) {
      INFO(p.name);
      // First and last entries of every parameter, shortcut and classifier included.
      // A small step: a bias moves every pre-activation of its channel (thousands of
      // ReLU inputs), and a step of 1e-5 sometimes carries one across its kink.
      for (std::size_t i : {std::size_t(0), p.value->size() - 1}) {
        const double numeric = normlab::test::central_difference(loss, p.value->data()[i], 1e-7);
        const double analytic = p.grad->data()[i];
        CHECK(std::abs(numeric - analytic) <= 1e-6 + 1e-4 * std::abs(numeric));
      }
    }
  }
}

TEST_CASE("resnet: a model name that is not a ResNet says what is") {
  check_mentions(error_of<std::invalid_argument>([] {
                   build_model<float>("resnet9", {{"type", "batch"}});
                 }),
                 {"resnet9", "6n + 2", "8, 14, 20"});
  check_mentions(error_of<std::invalid_argument>([] { resnet_size("resnet8_wide"); }),
                 {"resnet8_wide", "resnetD_wW"});
  check_mentions(error_of<std::invalid_argument>([] { resnet_size("resnet08"); }), {"resnet08"});
  check_mentions(error_of<std::invalid_argument>([] {
                   build_model<float>("resnext", {{"type", "batch"}});
                 }),
                 {"resnext", "resnet8", "resnet20", "cnn3"});
  check_mentions(error_of<std::invalid_argument>([] { resnet_size("resnet8_w5000"); }),
                 {"resnet8_w5000", "width at most 256"});
  check_mentions(error_of<std::invalid_argument>([] { resnet_size("resnet1202"); }),
                 {"resnet1202", "depth at most 110"});
  CHECK_FALSE(resnet_size("cnn3").has_value());
  CHECK(model_is_convolutional("resnet8"));
  CHECK_FALSE(model_is_convolutional("mlp2"));
}
