// cnn3 with channels-last activations (activation_layout "nhwc"): built from
// the same seed, it gives the logits, loss and parameter gradients of the
// channels-first model, in float64 and in float32 on both convolution
// backends; its layers agree with their channels-first forms on permuted
// tensors; it trains; and the config, bench and model errors name the key and
// the fix. The default config resolves as before (no new key).
#include <doctest/doctest.h>

#include <cmath>
#include <cstdlib>
#include <map>
#include <string>
#include <vector>
#include <xtensor/xarray.hpp>
#include <xtensor/xmanipulation.hpp>
#include <xtensor/xmath.hpp>

#include "normlab/normlab.hpp"
#include "test_helpers.hpp"

using namespace normlab;
using nlohmann::json;
using normlab::test::check_mentions;
using normlab::test::error_of;
using normlab::test::random_normal;
using normlab::test::run_cli;
using normlab::test::ScratchDir;

namespace {

// The norms whose models are compared: activation norms of every kind, a
// weight norm and none.
const std::vector<json>& compared_norms() {
  static const std::vector<json> norms = {
      {{"type", "none"}},         {{"type", "weight"}},
      {{"type", "batch"}},        {{"type", "group"}},
      {{"type", "frn"}},          {{"type", "evonorm_s0"}},
      {{"type", "instance"}},     {{"type", "layer"}},
      {{"type", "batch_renorm"}}, {{"type", "ghost"}, {"virtual_batch_size", 2}}};
  return norms;
}

// What one training step of a model computes.
template <class T>
struct StepResult {
  xt::xarray<T> logits, eval_logits;
  double loss = 0;
  std::map<std::string, xt::xarray<T>> grads;  // by parameter name
};

template <class T>
StepResult<T> train_step(const json& norm, Layout layout, const xt::xarray<T>& images,
                         const std::vector<std::uint8_t>& labels) {
  Model<T> model = build_model<T>("cnn3", norm, layout);
  model.initialize(7);
  StepResult<T> result;
  result.logits = model.forward(images, Mode::train);
  xt::xarray<T> dlogits;
  result.loss = softmax_cross_entropy(result.logits, labels, dlogits);
  model.zero_grad();
  model.backward(dlogits);
  for (const auto& p : model.parameters()) result.grads[p.name] = *p.grad;
  result.eval_logits = model.forward(images, Mode::eval);  // running statistics where kept
  return result;
}

// The channels-last step against the channels-first one, within rtol/atol.
template <class T>
void check_same_step(const json& norm, double rtol, double atol) {
  INFO("cnn3 with " << norm.dump());
  const Dataset data = make_synthetic(4, 10, 3);
  const xt::xarray<T> images = xt::cast<T>(data.images);
  const StepResult<T> first = train_step<T>(norm, Layout::nchw, images, data.labels);
  const StepResult<T> last = train_step<T>(norm, Layout::nhwc, images, data.labels);
  REQUIRE(last.logits.shape() == first.logits.shape());
  CHECK(xt::allclose(last.logits, first.logits, rtol, atol));
  CHECK(xt::allclose(last.eval_logits, first.eval_logits, rtol, atol));
  CHECK(std::abs(last.loss - first.loss) <= atol + rtol * std::abs(first.loss));
  REQUIRE(last.grads.size() == first.grads.size());
  for (const auto& entry : first.grads) {  // no structured binding: INFO captures it (clang)
    const std::string& name = entry.first;
    const auto& grad = entry.second;
    INFO("d" << name);
    REQUIRE(last.grads.count(name) == 1);
    const xt::xarray<T>& other = last.grads.at(name);
    REQUIRE(other.shape() == grad.shape());  // weights stay (C_out, C_in, k, k)
    CHECK(xt::allclose(other, grad, rtol, atol));
    CHECK(xt::amax(xt::abs(grad))() > 0);  // a real gradient, not two zeros
  }
}

// Sets NORMLAB_CONV for the scope (layers pick their backend when made).
class ConvBackendScope {
 public:
  explicit ConvBackendScope(const char* backend) { setenv("NORMLAB_CONV", backend, 1); }
  ~ConvBackendScope() { unsetenv("NORMLAB_CONV"); }
};

// (N, C, H, W) -> (N, H, W, C)
template <class T>
xt::xarray<T> to_nhwc(const xt::xarray<T>& x) {
  return xt::transpose(x, {0, 2, 3, 1});
}

json tiny_cnn_config() {
  return {{"name", "tiny_nhwc"},
          {"dataset",
           {{"type", "synthetic"},
            {"train_size", 256},
            {"test_size", 64},
            {"classes", 4},
            {"seed", 7}}},
          {"model", "cnn3"},
          {"activation_layout", "nhwc"},
          {"norms", {"batch"}},
          {"batch_sizes", {16}},
          {"seeds", {0}},
          {"epochs", 2}};
}

std::string config_error(const json& config) {
  return error_of<std::invalid_argument>([&] { parse_config(config); });
}

}  // namespace

TEST_CASE("channels last: cnn3 in nhwc gives the nchw logits, loss and gradients (float64)") {
  // float64 runs im2col in both layouts; only the order of the sums differs.
  for (const json& norm : compared_norms()) check_same_step<double>(norm, 1e-10, 1e-12);
}

TEST_CASE("channels last: cnn3 in nhwc gives the nchw logits, loss and gradients (float32)") {
  // float32 differs by the rounding of sums in another order, grown through
  // three normalized blocks: measured within 1e-4 relative and 1e-5 absolute
  // (float64: 1e-12 and 1e-14); the bounds leave a margin.
  std::vector<const char*> backends = {"im2col"};
  if (onednn_available())
    backends.push_back("onednn");
  else
    MESSAGE("skipped the onednn backend: this build has no oneDNN");
  for (const char* backend : backends) {
    INFO("NORMLAB_CONV=" << backend);
    ConvBackendScope scope(backend);
    for (const json& norm : compared_norms()) check_same_step<float>(norm, 2e-4, 2e-5);
  }
}

TEST_CASE("channels last: conv2d, max_pool2d and global_avg_pool equal their nchw forms") {
  std::mt19937_64 rng(5);
  struct ConvCase {
    std::size_t in, out, kernel, stride, padding, height, width;
    bool bias, weight_norm;
  };
  // Strides, paddings and kernel sizes cnn3 does not use, odd sizes, bias and weight norm.
  for (const ConvCase& c :
       {ConvCase{3, 5, 3, 2, 1, 9, 7, true, true}, ConvCase{2, 3, 1, 1, 0, 5, 5, false, true},
        ConvCase{4, 6, 3, 1, 0, 6, 8, true, false}}) {
    INFO("conv " << c.in << "->" << c.out << " k" << c.kernel << " s" << c.stride << " p"
                 << c.padding);
    auto first = make_conv2d<double>(c.in, c.out, c.kernel, c.stride, c.padding, c.bias,
                                     c.weight_norm, Layout::nchw);
    auto last = make_conv2d<double>(c.in, c.out, c.kernel, c.stride, c.padding, c.bias,
                                    c.weight_norm, Layout::nhwc);
    std::mt19937_64 init(1), same(1);
    first->initialize(init);
    last->initialize(same);
    const xt::xarray<double> x = random_normal<double>(rng, {2, c.in, c.height, c.width});
    const xt::xarray<double> y = first->forward(x, Mode::train);
    CHECK(xt::allclose(last->forward(to_nhwc(x), Mode::train), to_nhwc(y), 1e-12, 1e-12));
    const xt::xarray<double> dy = random_normal<double>(rng, y.shape());
    const xt::xarray<double> dx = first->backward(dy);
    CHECK(xt::allclose(last->backward(to_nhwc(dy)), to_nhwc(dx), 1e-12, 1e-12));
    const auto p1 = first->parameters(), p2 = last->parameters();
    REQUIRE(p1.size() == p2.size());
    for (std::size_t k = 0; k < p1.size(); ++k)
      CHECK(xt::allclose(*p2[k].grad, *p1[k].grad, 1e-12, 1e-12));
  }

  for (std::size_t k : {2, 3}) {  // 7 rows: the last one is dropped, as in nchw
    INFO("maxpool" << k);
    auto first = make_max_pool2d<double>(k, Layout::nchw);
    auto last = make_max_pool2d<double>(k, Layout::nhwc);
    xt::xarray<double> x = random_normal<double>(rng, {2, 5, 7, 9});
    x(0, 1, 0, 0) = x(0, 1, 0, 1);  // a tie: the first of the window wins in both
    const xt::xarray<double> y = first->forward(x, Mode::train);
    CHECK(last->forward(to_nhwc(x), Mode::train) == to_nhwc(y));
    const xt::xarray<double> dy = random_normal<double>(rng, y.shape());
    CHECK(last->backward(to_nhwc(dy)) == to_nhwc(first->backward(dy)));
  }

  auto first = make_global_avg_pool<double>(Layout::nchw);
  auto last = make_global_avg_pool<double>(Layout::nhwc);
  const xt::xarray<double> x = random_normal<double>(rng, {3, 4, 5, 6});
  CHECK(last->forward(to_nhwc(x), Mode::train) == first->forward(x, Mode::train));
  const xt::xarray<double> dy = random_normal<double>(rng, {3, 4});
  CHECK(last->backward(dy) == to_nhwc(first->backward(dy)));
}

TEST_CASE("channels last: the model starts with the reorder and takes the dataset's images") {
  Model<float> model = build_model<float>("cnn3", {{"type", "group"}}, Layout::nhwc);
  CHECK(model.summary().rfind("to_channels_last -> conv3x3(1->16) -> group_norm", 0) == 0);
  for (Norm<float>* norm : model.norms()) CHECK(norm->layout() == Layout::nhwc);
  model.initialize(0);
  const Dataset data = make_synthetic(2, 10, 0);
  CHECK(model.forward(data.images, Mode::eval).shape() == std::vector<std::size_t>{2, 10});
  // The reorder is a real permutation (C > 1), undone by its backward.
  auto reorder = make_channels_last<double>();
  std::mt19937_64 rng(2);
  const xt::xarray<double> x = random_normal<double>(rng, {2, 3, 4, 5});
  CHECK(reorder->forward(x, Mode::train) == to_nhwc(x));
  CHECK(reorder->backward(to_nhwc(x)) == x);
  CHECK_THROWS_AS(reorder->forward(xt::xarray<double>::from_shape({2, 3}), Mode::train),
                  std::invalid_argument);
  // The nchw model is as before: no reorder, nchw norms.
  Model<float> plain = build_model<float>("cnn3", {{"type", "group"}});
  CHECK(plain.summary().rfind("conv3x3(1->16) -> group_norm", 0) == 0);
  for (Norm<float>* norm : plain.norms()) CHECK(norm->layout() == Layout::nchw);
}

TEST_CASE("channels last: a short cnn3 run in nhwc trains (finite, decreasing loss)") {
  const ExperimentConfig c = parse_config(tiny_cnn_config());
  REQUIRE(c.activation_layout == Layout::nhwc);
  const auto [train, test] = load_datasets(c.dataset);
  const json r = train_cell(c, grid_cells(c)[0], train, test, nullptr);
  CHECK(r["diverged"] == false);
  REQUIRE(r["train_loss"].size() == 2);
  const double first = r["train_loss"][0].get<double>(), second = r["train_loss"][1].get<double>();
  CHECK(std::isfinite(first));
  CHECK(std::isfinite(second));
  CHECK(second < first);
  // The same cell channels first: the same training up to rounding.
  json config = tiny_cnn_config();
  config.erase("activation_layout");
  const ExperimentConfig plain = parse_config(config);
  const json p = train_cell(plain, grid_cells(plain)[0], train, test, nullptr);
  MESSAGE("train loss nhwc " << r["train_loss"].dump() << ", nchw " << p["train_loss"].dump());
  for (std::size_t epoch = 0; epoch < 2; ++epoch)
    CHECK(r["train_loss"][epoch].get<double>() ==
          doctest::Approx(p["train_loss"][epoch].get<double>()).epsilon(1e-3));
}

TEST_CASE("channels last: the probe reads an nhwc model's channels as the nchw one's") {
  json config = tiny_cnn_config();
  config["batch_sizes"] = {8};
  config["probe"] = {{"batches", 3}};
  const std::vector<json> last = run_probe(parse_config(config), {}, [](const std::string&) {});
  config.erase("activation_layout");
  const std::vector<json> first = run_probe(parse_config(config), {}, [](const std::string&) {});
  REQUIRE(last.size() == 3);  // one per batch norm layer
  REQUIRE(first.size() == last.size());
  for (std::size_t i = 0; i < first.size(); ++i) {
    INFO("layer " << first[i]["layer"]);
    CHECK(last[i]["channels"] == first[i]["channels"]);
    CHECK(last[i]["values_per_channel"] == first[i]["values_per_channel"]);
    for (const char* key : {"mean_error", "var_error", "gap_population"})
      CHECK(last[i][key].get<double>() ==
            doctest::Approx(first[i][key].get<double>()).epsilon(1e-4));
  }
}

TEST_CASE("channels last: config key, resolved config and errors") {
  json config = tiny_cnn_config();
  config.erase("activation_layout");
  const ExperimentConfig plain = parse_config(config);
  CHECK(plain.activation_layout == Layout::nchw);
  // At its default the key is not written: folders started before it still resume.
  CHECK_FALSE(plain.resolved.contains("activation_layout"));
  config["activation_layout"] = "nchw";
  CHECK(parse_config(config).resolved == plain.resolved);

  const ExperimentConfig last = parse_config(tiny_cnn_config());
  CHECK(last.resolved["activation_layout"] == "nhwc");
  CHECK(parse_config(last.resolved).resolved == last.resolved);

  config["activation_layout"] = "channels_last";
  check_mentions(config_error(config),
                 {"activation_layout", "\"nchw\"", "\"nhwc\"", "channels_last"});
  config["activation_layout"] = 1;
  check_mentions(config_error(config), {"activation_layout", "string"});
  config["activation_layout"] = "nhwc";
  config["model"] = "mlp2";
  check_mentions(config_error(config), {"activation_layout", "mlp2", "cnn3", "\"nchw\""});
  // A norm spec's own layout is the model's to set.
  config["model"] = "cnn3";
  config["norms"] = {{{"type", "group"}, {"layout", "nchw"}}};
  check_mentions(config_error(config), {"norms[0]", "group", "layout", "drop"});
}

TEST_CASE("channels last: build_model errors name the model, the norm and the fix") {
  using E = std::invalid_argument;
  check_mentions(error_of<E>([] {
                   build_model<float>("mlp2", {{"type", "batch"}}, Layout::nhwc);
                 }),
                 {"mlp2", "nchw", "cnn3"});
  check_mentions(error_of<E>([] {
                   build_model<float>("cnn3", {{"type", "batch"}, {"layout", "nhwc"}});
                 }),
                 {"batch", "layout", "nchw", "drop"});
  // Every built-in activation norm has a channels-last form in cnn3
  // (LayerNorm and RMSNorm take channel_affine there); a layout in the spec
  // that agrees with the model is accepted.
  for (const NormInfo& info : registered_norms()) {
    if (info.traits.reparameterizes_weight || info.type == "sync_batch") continue;
    INFO(info.type);
    CHECK_NOTHROW(build_model<float>("cnn3", {{"type", info.type}}, Layout::nhwc));
  }
  CHECK_NOTHROW(build_model<float>("cnn3", {{"type", "frn"}, {"layout", "nhwc"}}, Layout::nhwc));
}

TEST_CASE("channels last: bench --model --layout, and its errors") {
  ScratchDir dir;
  const auto ok = run_cli(dir, {"bench", "--model", "cnn3", "--norm", "frn", "--layout", "nhwc",
                                "--batch", "4", "--steps", "1", "--json"});
  INFO("stderr: " << ok.err);
  REQUIRE(ok.status == 0);
  const json report = json::parse(ok.out);
  CHECK(report["layout"] == "nhwc");
  CHECK(report["layers"][0]["layer"] == "to_channels_last");
  CHECK(report["step_seconds"].get<double>() > 0);

  const auto bad = run_cli(dir, {"bench", "--model", "cnn3", "--layout", "nwhc"});
  CHECK(bad.status != 0);
  check_mentions(bad.err, {"--layout", "nwhc", "nchw", "nhwc"});
  const auto mlp = run_cli(dir, {"bench", "--model", "mlp2", "--layout", "nhwc"});
  CHECK(mlp.status != 0);
  check_mentions(mlp.err, {"mlp2", "cnn3"});
  const auto alone = run_cli(dir, {"bench", "--layout", "nhwc"});
  CHECK(alone.status != 0);
  check_mentions(alone.err, {"--layout", "--model"});
}
