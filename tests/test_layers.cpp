// The training stack in double: every layer's backward and whole tiny models
// against central finite differences, SGD against PyTorch's update, and the
// errors build_model gives.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <functional>
#include <iomanip>
#include <numeric>
#include <random>
#include <string>
#include <tuple>
#include <vector>
#include <xtensor/xarray.hpp>

#include "normlab/model.hpp"
#include "normlab/normlab.hpp"
#include "shapes.hpp"
#include "test_helpers.hpp"

using namespace normlab;
using normlab::test::central_difference;
using normlab::test::check_mentions;
using normlab::test::error_of;
using normlab::test::random_normal;

namespace {

using Array = xt::xarray<double>;
using Loss = std::function<double()>;

// Central differences with h = 1e-6 are accurate to ~1e-10 here; the absolute
// floor covers entries whose gradient is (nearly) zero, where relative error
// means nothing and the loss's rounding (~1e-16 * |terms| / h) dominates.
constexpr double kStep = 1e-6;
constexpr double kRelTol = 1e-6;
constexpr double kAbsTol = 1e-8;

std::vector<std::size_t> shape_of(const Array& a) {
  return {a.shape().begin(), a.shape().end()};
}

std::vector<std::size_t> all_entries(const Array& a) {
  std::vector<std::size_t> entries(a.size());
  std::iota(entries.begin(), entries.end(), std::size_t(0));
  return entries;
}

// Checks analytic[i] == d loss / d values[i] for the given flat entries, with
// one check per tensor that names the worst entry.
void check_gradient(const std::string& what, Array& values, const Array& analytic, const Loss& loss,
                    const std::vector<std::size_t>& entries) {
  REQUIRE_MESSAGE(values.shape() == analytic.shape(), what << ": gradient shape differs");
  std::size_t failures = 0, worst_at = 0;
  double worst = -1, worst_analytic = 0, worst_numeric = 0;
  for (std::size_t i : entries) {
    const double numeric = central_difference(loss, values.data()[i], kStep);
    const double a = analytic.data()[i];
    const double excess =
        std::abs(a - numeric) / (kRelTol * std::max(std::abs(a), std::abs(numeric)) + kAbsTol);
    if (excess > 1) ++failures;
    if (excess > worst)
      std::tie(worst, worst_at, worst_analytic, worst_numeric) =
          std::make_tuple(excess, i, a, numeric);
  }
  CHECK_MESSAGE(failures == 0, std::setprecision(12)
                                   << what << ": " << failures << " of " << entries.size()
                                   << " entries disagree; worst [" << worst_at << "] analytic "
                                   << worst_analytic << " vs numeric " << worst_numeric);
}

double dot(const Array& a, const Array& b) {
  return std::inner_product(a.begin(), a.end(), b.begin(), 0.0);
}

// FD-checks dx and every parameter gradient of `layer` at x for the loss
// sum(layer(x) * probe), probe random. Also checks that a second backward
// gives the same dx and adds the same parameter gradients again.
void check_layer(Layer<double>& layer, Array x, std::mt19937_64& rng, Mode mode = Mode::train) {
  INFO("layer " << layer.name() << " on input " << shape_text(x.shape()));
  // The first forward also sets a weight norm's g from v.
  const Array probe = random_normal<double>(rng, shape_of(layer.forward(x, mode)));
  const Loss loss = [&] { return dot(layer.forward(x, mode), probe); };

  std::vector<ParameterRef<double>> params = layer.parameters();
  for (auto& p : params) p.grad->fill(0.0);
  layer.forward(x, mode);
  const Array dx = layer.backward(probe);
  std::vector<Array> grads;
  for (auto& p : params) grads.push_back(*p.grad);

  layer.forward(x, mode);
  CHECK(xt::allclose(layer.backward(probe), dx, 1e-14, 1e-14));
  for (std::size_t k = 0; k < params.size(); ++k) {
    INFO("parameter " << params[k].name << " accumulates");
    CHECK(xt::allclose(*params[k].grad, 2.0 * grads[k], 1e-14, 1e-14));
  }

  check_gradient("dx", x, dx, loss, all_entries(x));
  for (std::size_t k = 0; k < params.size(); ++k)
    check_gradient("d" + params[k].name, *params[k].value, grads[k], loss,
                   all_entries(*params[k].value));
}

// Values of the given shape with |v| in [0.1, 2]: no ReLU kink within reach of h.
Array away_from_zero(std::mt19937_64& rng, const std::vector<std::size_t>& shape) {
  Array x = normlab::test::random_uniform<double>(rng, shape, 0.1, 2.0);
  std::bernoulli_distribution negative(0.5);
  for (double& v : x)
    if (negative(rng)) v = -v;
  return x;
}

// Distinct values 0.01 apart in random order: no max-pool ties within reach of h.
Array distinct_values(std::mt19937_64& rng, const std::vector<std::size_t>& shape) {
  Array x = Array::from_shape(shape);
  for (std::size_t i = 0; i < x.size(); ++i) x.data()[i] = 0.01 * double(i) - 1.0;
  std::shuffle(x.begin(), x.end(), rng);
  return x;
}

}  // namespace

TEST_CASE("conv2d backward matches finite differences: dx, dweight/dv, dg, dbias") {
  struct Case {
    std::size_t in, out, kernel, stride, padding;
    bool bias, weight_norm;
    std::size_t height, width;
  };
  const Case cases[] = {
      {3, 4, 3, 1, 1, true, false, 5, 6},  {2, 3, 3, 2, 0, false, false, 7, 7},
      {3, 2, 1, 1, 0, true, true, 4, 3},   {2, 5, 3, 2, 1, true, true, 6, 5},
      {1, 2, 1, 2, 1, false, false, 5, 4}, {4, 3, 3, 1, 0, false, true, 5, 5},
      {2, 3, 3, 1, 1, true, true, 3, 3},
  };
  std::mt19937_64 rng(11);
  for (const Case& c : cases) {
    INFO("stride " << c.stride << ", padding " << c.padding << ", bias " << c.bias
                   << ", weight_norm " << c.weight_norm);
    auto conv =
        make_conv2d<double>(c.in, c.out, c.kernel, c.stride, c.padding, c.bias, c.weight_norm);
    conv->initialize(rng);
    // Non-zero biases so that dbias is checked at a generic point.
    for (auto& p : conv->parameters())
      if (p.name == "bias") *p.value = random_normal<double>(rng, shape_of(*p.value));
    check_layer(*conv, random_normal<double>(rng, {2, c.in, c.height, c.width}), rng);
  }
}

TEST_CASE("conv2d forward equals the direct seven-loop convolution") {
  struct Case {
    std::size_t in, out, kernel, stride, padding, height, width, batch;
  };
  const Case cases[] = {{3, 4, 3, 1, 1, 5, 6, 3}, {2, 3, 3, 2, 0, 7, 7, 2},
                        {2, 5, 3, 2, 1, 6, 5, 4}, {1, 2, 1, 2, 1, 5, 4, 2},
                        {2, 2, 5, 1, 2, 4, 7, 1}, {1, 3, 3, 3, 2, 8, 8, 2}};
  std::mt19937_64 rng(5);
  for (const Case& c : cases) {
    INFO("kernel " << c.kernel << ", stride " << c.stride << ", padding " << c.padding);
    auto conv = make_conv2d<double>(c.in, c.out, c.kernel, c.stride, c.padding, true, false);
    conv->initialize(rng);
    Array weight, bias;
    for (auto& p : conv->parameters()) {
      if (p.name == "bias") *p.value = random_normal<double>(rng, shape_of(*p.value));
      (p.name == "bias" ? bias : weight) = *p.value;
    }
    const Array x = random_normal<double>(rng, {c.batch, c.in, c.height, c.width});
    const Array y = conv->forward(x, Mode::train);
    const std::size_t oh_count = (c.height + 2 * c.padding - c.kernel) / c.stride + 1;
    const std::size_t ow_count = (c.width + 2 * c.padding - c.kernel) / c.stride + 1;
    REQUIRE(y.shape() == std::vector<std::size_t>{c.batch, c.out, oh_count, ow_count});
    for (std::size_t n = 0; n < c.batch; ++n)
      for (std::size_t o = 0; o < c.out; ++o)
        for (std::size_t oh = 0; oh < oh_count; ++oh)
          for (std::size_t ow = 0; ow < ow_count; ++ow) {
            double sum = bias(o);
            for (std::size_t ci = 0; ci < c.in; ++ci)
              for (std::size_t i = 0; i < c.kernel; ++i)
                for (std::size_t j = 0; j < c.kernel; ++j) {
                  const long h = long(oh * c.stride + i) - long(c.padding);
                  const long w = long(ow * c.stride + j) - long(c.padding);
                  if (h >= 0 && h < long(c.height) && w >= 0 && w < long(c.width))
                    sum += weight(o, ci, i, j) * x(n, ci, std::size_t(h), std::size_t(w));
                }
            CHECK(y(n, o, oh, ow) == doctest::Approx(sum).epsilon(1e-12));
          }
  }
}

// Built without oneDNN only the im2col backend exists: the test is reported as skipped.
TEST_CASE("conv2d backends agree in float32: oneDNN and im2col give the same y, dx and grads" *
          doctest::skip(!normlab::onednn_available())) {
  struct Case {
    std::size_t in, out, kernel, stride, padding, height, width, batch;
    bool bias, weight_norm;
  };
  const Case cases[] = {{1, 16, 3, 1, 1, 28, 28, 4, false, false},
                        {16, 32, 3, 1, 1, 14, 14, 3, true, false},
                        {3, 5, 3, 2, 1, 9, 7, 2, true, true},
                        {2, 3, 1, 1, 0, 5, 5, 2, false, true}};
  const auto make = [](const char* backend, const Case& c) {
    setenv("NORMLAB_CONV", backend, 1);
    auto layer =
        make_conv2d<float>(c.in, c.out, c.kernel, c.stride, c.padding, c.bias, c.weight_norm);
    unsetenv("NORMLAB_CONV");
    return layer;
  };
  for (const Case& c : cases) {
    INFO("conv " << c.in << "->" << c.out << " k" << c.kernel << " s" << c.stride << " p"
                 << c.padding << " bias " << c.bias << " weight_norm " << c.weight_norm);
    auto onednn = make("onednn", c);
    auto im2col = make("im2col", c);
    std::mt19937_64 rng(3), same(3);
    onednn->initialize(rng);
    im2col->initialize(same);
    std::mt19937_64 data(9);
    const xt::xarray<float> x = random_normal<float>(data, {c.batch, c.in, c.height, c.width});
    for (int pass = 0; pass < 2; ++pass) {  // the second pass reuses the cached primitives
      const xt::xarray<float> y1 = onednn->forward(x, Mode::train);
      const xt::xarray<float> y2 = im2col->forward(x, Mode::train);
      REQUIRE(y1.shape() == y2.shape());
      CHECK(xt::allclose(y1, y2, 1e-4, 1e-5));
      const xt::xarray<float> dy = random_normal<float>(data, shape_of(y1));
      if (pass == 0) {
        const xt::xarray<float> dx1 = onednn->backward(dy);
        const xt::xarray<float> dx2 = im2col->backward(dy);
        CHECK(xt::allclose(dx1, dx2, 1e-4, 1e-5));
      } else {  // as a model's first layer: no dx, the same parameter gradients
        onednn->backward_parameters_only(dy);
        im2col->backward_parameters_only(dy);
      }
      const auto p1 = onednn->parameters(), p2 = im2col->parameters();
      REQUIRE(p1.size() == p2.size());
      for (std::size_t k = 0; k < p1.size(); ++k) {
        INFO("d" << p1[k].name << " (accumulated over " << pass + 1 << " backward calls)");
        CHECK(xt::allclose(*p1[k].grad, *p2[k].grad, 1e-4, 1e-4));
      }
    }
  }
}

TEST_CASE("NORMLAB_CONV: an unknown backend is refused naming the variable") {
  setenv("NORMLAB_CONV", "winograd", 1);
  CHECK_THROWS_WITH_AS(make_conv2d<float>(1, 2, 3, 1, 1, true, false),
                       doctest::Contains("NORMLAB_CONV=winograd: use im2col or onednn"),
                       std::invalid_argument);
  unsetenv("NORMLAB_CONV");
}

TEST_CASE("conv2d and linear list their parameters by name") {
  auto names = [](Layer<double>& layer) {
    std::vector<std::string> out;
    for (auto& p : layer.parameters()) out.push_back(p.name);
    return out;
  };
  using Names = std::vector<std::string>;
  CHECK(names(*make_conv2d<double>(2, 3, 3, 1, 1, true, false)) == Names{"weight", "bias"});
  CHECK(names(*make_conv2d<double>(2, 3, 3, 1, 1, false, true)) == Names{"v", "g"});
  CHECK(names(*make_linear<double>(4, 2, true, true)) == Names{"v", "g", "bias"});
  CHECK(names(*make_linear<double>(4, 2, false, false)) == Names{"weight"});
}

TEST_CASE("linear backward matches finite differences, with and without bias and weight norm") {
  std::mt19937_64 rng(12);
  for (bool bias : {false, true})
    for (bool weight_norm : {false, true}) {
      auto linear = make_linear<double>(5, 3, bias, weight_norm);
      linear->initialize(rng);
      for (auto& p : linear->parameters())
        if (p.name == "bias") *p.value = random_normal<double>(rng, shape_of(*p.value));
      check_layer(*linear, random_normal<double>(rng, {4, 5}), rng);
    }
}

TEST_CASE("relu, max_pool2d, global_avg_pool and flatten backward match finite differences") {
  std::mt19937_64 rng(13);
  SUBCASE("relu") {
    check_layer(*make_relu<double>(), away_from_zero(rng, {2, 3, 4}), rng);
  }
  SUBCASE("max_pool2d, sizes divisible and not") {
    check_layer(*make_max_pool2d<double>(2), distinct_values(rng, {2, 3, 4, 6}), rng);
    check_layer(*make_max_pool2d<double>(2), distinct_values(rng, {1, 2, 5, 7}), rng);
    check_layer(*make_max_pool2d<double>(3), distinct_values(rng, {2, 1, 6, 3}), rng);
  }
  SUBCASE("global_avg_pool") {
    check_layer(*make_global_avg_pool<double>(), random_normal<double>(rng, {2, 3, 3, 5}), rng);
  }
  SUBCASE("flatten") {
    check_layer(*make_flatten<double>(), random_normal<double>(rng, {3, 2, 2, 3}), rng);
  }
}

TEST_CASE("norm layer backward matches finite differences (train and eval)") {
  std::mt19937_64 rng(14);
  const std::vector<std::size_t> shape = {3, 4, 3, 2};
  auto check_norm = [&](const nlohmann::json& spec, Mode mode) {
    auto layer = make_norm_layer<double>(make_norm<double>(spec, 4));
    layer->norm()->prepare(shape);
    // Generic gamma and beta instead of ones and zeros.
    for (auto& p : layer->parameters()) *p.value = random_normal<double>(rng, shape_of(*p.value));
    check_layer(*layer, random_normal<double>(rng, shape, 0.5, 2.0), rng, mode);
  };
  SUBCASE("group norm, 2 groups") {
    check_norm({{"type", "group"}, {"groups", 2}}, Mode::train);
  }
  SUBCASE("batch norm, train") {
    check_norm({{"type", "batch"}}, Mode::train);
  }
  SUBCASE("batch norm, eval with given running statistics") {
    auto layer = make_norm_layer<double>(make_norm<double>({{"type", "batch"}}, 4));
    layer->norm()->prepare(shape);
    layer->norm()->set("running_mean", random_normal<double>(rng, {4}));
    layer->norm()->set("running_var", normlab::test::random_uniform<double>(rng, {4}, 0.5, 2.0));
    for (auto& p : layer->parameters()) *p.value = random_normal<double>(rng, shape_of(*p.value));
    check_layer(*layer, random_normal<double>(rng, shape), rng, Mode::eval);
  }
  SUBCASE("layer norm with channel_affine") {
    check_norm({{"type", "layer"}, {"channel_affine", true}}, Mode::train);
  }
}

TEST_CASE("softmax_cross_entropy: loss value and dlogits by finite differences") {
  std::mt19937_64 rng(15);
  Array logits = random_normal<double>(rng, {4, 5}, 0.0, 3.0);
  const std::vector<std::uint8_t> labels = {0, 3, 4, 3};
  Array dlogits, scratch;
  const double loss = softmax_cross_entropy(logits, labels, dlogits);

  double expected = 0;  // mean of log(sum(exp(row))) - row[label]
  for (std::size_t s = 0; s < 4; ++s) {
    double sum = 0;
    for (std::size_t k = 0; k < 5; ++k) sum += std::exp(logits(s, k));
    expected += (std::log(sum) - logits(s, labels[s])) / 4;
  }
  CHECK(loss == doctest::Approx(expected).epsilon(1e-14));
  check_gradient(
      "dlogits", logits, dlogits, [&] { return softmax_cross_entropy(logits, labels, scratch); },
      all_entries(logits));

  // Large logits: the max is removed before exp, so nothing overflows.
  Array big = {{1000.0, 0.0}, {0.0, -1000.0}};
  CHECK(softmax_cross_entropy(big, {1, 0}, dlogits) == doctest::Approx(500.0));
  CHECK(dlogits(0, 0) == doctest::Approx(0.5));
  CHECK(dlogits(0, 1) == doctest::Approx(-0.5));

  check_mentions(error_of<std::invalid_argument>([&] {
                   softmax_cross_entropy(logits, {0, 1}, dlogits);
                 }),
                 {"softmax_cross_entropy", "2 labels", "4 rows"});
}

namespace {

// FD-checks dLoss/dparam of a whole model in train mode on two random entries
// of every parameter tensor; loss = softmax cross-entropy of random labels.
void check_model(const std::string& architecture, const nlohmann::json& norm,
                 const std::vector<std::size_t>& input_shape) {
  INFO(architecture << " with norm " << norm.dump());
  std::mt19937_64 rng(16);
  Model<double> model = build_model<double>(architecture, norm);
  model.initialize(17);
  Array x = random_normal<double>(rng, input_shape);
  std::vector<std::uint8_t> labels(input_shape[0]);
  std::uniform_int_distribution<int> label(0, 9);
  for (auto& l : labels) l = std::uint8_t(label(rng));

  Array dlogits, scratch;
  const Loss loss = [&] {
    return softmax_cross_entropy(model.forward(x, Mode::train), labels, scratch);
  };
  loss();  // a weight norm's g starts from v on the first forward
  model.zero_grad();
  softmax_cross_entropy(model.forward(x, Mode::train), labels, dlogits);
  model.backward(dlogits);

  for (auto& p : model.parameters()) {
    const Array analytic = *p.grad;
    std::uniform_int_distribution<std::size_t> entry(0, p.value->size() - 1);
    check_gradient(p.name, *p.value, analytic, loss, {entry(rng), entry(rng)});
  }
}

}  // namespace

namespace {

// check_model for every registered norm the model takes, on a batch of
// `batch` images (more when virtual batches need them). Norms whose train
// forward reads state that train forwards move (train_uses_state) are not one
// function of the batch, which finite differences need; they and norms this
// build cannot make are named as skipped.
void check_every_norm(const std::string& architecture, std::vector<std::size_t> input_shape) {
  const bool spatial = model_is_convolutional(architecture);
  std::size_t checked = 0;
  for (const NormInfo& info : registered_norms()) {
    const std::string type = info.type;
    const NormTraits& t = info.traits;
    if (t.needs_spatial && !spatial) continue;  // the model refuses it (build_model's tests)
    std::string skipped = why_unavailable(t);
    if (t.train_uses_state) skipped = "its train forward reads state earlier ones moved";
    if (!skipped.empty()) {
      MESSAGE(architecture, ": skipped ", type, ": ", skipped);
      continue;
    }
    std::vector<std::size_t> shape = input_shape;
    shape[0] = std::max(shape[0], t.virtual_batch_size);
    check_model(architecture, {{"type", type}}, shape);
    ++checked;
  }
  CHECK(checked > 0);
}

}  // namespace

TEST_CASE("cnn3 gradients match finite differences for every norm") {
  check_every_norm("cnn3", {2, 1, 8, 8});
}

TEST_CASE("mlp2 gradients match finite differences for every norm") {
  check_every_norm("mlp2", {3, 1, 28, 28});
}

TEST_CASE("Model::zero_grad clears every gradient, and parameters are named by layer") {
  Model<double> model = build_model<double>("cnn3", {{"type", "batch"}});
  model.initialize(1);
  std::mt19937_64 rng(18);
  Array dlogits;
  softmax_cross_entropy(model.forward(random_normal<double>(rng, {2, 1, 8, 8}), Mode::train),
                        {1, 2}, dlogits);
  model.backward(dlogits);
  const auto params = model.parameters();
  REQUIRE(!params.empty());
  CHECK(params.front().name == "conv3x3(1->16).weight");
  CHECK(params.back().name == "linear(64->10).bias");
  CHECK(std::any_of(params.begin(), params.end(),
                    [](const auto& p) { return xt::any(xt::not_equal(*p.grad, 0.0)); }));
  model.zero_grad();
  for (const auto& p : params) CHECK_MESSAGE(xt::all(xt::equal(*p.grad, 0.0)), p.name);
  CHECK(model.norms().size() == 3);
}

// PyTorch 1.13 (torch.optim.SGD, lr 0.1 then 0.05, momentum 0.9,
// weight_decay 0.01) gives the same two values.
TEST_CASE("Sgd: two steps follow PyTorch's momentum and weight decay") {
  Array value = {1.0, -2.0}, grad = {0.5, 0.25};
  Sgd<double> sgd({{"p", &value, &grad}}, 0.9, 0.01);

  // d = g + wd * p = [0.51, 0.23]; first buf = d; p -= 0.1 * buf.
  sgd.step(0.1);
  CHECK(value(0) == doctest::Approx(0.949).epsilon(1e-14));
  CHECK(value(1) == doctest::Approx(-2.023).epsilon(1e-14));

  // d = [-1 + 0.00949, 2 - 0.02023]; buf = 0.9 * [0.51, 0.23] + d = [-0.53151, 2.18677];
  // p -= 0.05 * buf.
  grad = {-1.0, 2.0};
  sgd.step(0.05);
  CHECK(value(0) == doctest::Approx(0.9755755).epsilon(1e-14));
  CHECK(value(1) == doctest::Approx(-2.1323385).epsilon(1e-14));

  sgd.zero_grad();
  CHECK(grad(0) == 0.0);
  CHECK(grad(1) == 0.0);
}

TEST_CASE("build_model errors name the model, the norm and the key") {
  using E = std::invalid_argument;
  const nlohmann::json none = {{"type", "none"}};
  check_mentions(error_of<E>([&] { build_model<double>("resnet", none); }),
                 {"unknown model 'resnet'", "cnn3", "mlp2"});
  check_mentions(error_of<E>([&] {
                   build_model<double>("mlp2", {{"type", "instance"}});
                 }),
                 {"instance", "mlp2", "cnn3"});
  check_mentions(error_of<E>([&] {
                   build_model<double>("cnn3", {{"type", "batch"}, {"foo", 1}});
                 }),
                 {"unknown key 'foo'", "batch", "momentum"});
  check_mentions(error_of<E>([&] {
                   build_model<double>("cnn3", {{"type", "bogus"}});
                 }),
                 {"unknown type 'bogus'", "group"});
  check_mentions(error_of<E>([&] {
                   build_model<double>("cnn3", {{"type", "none"}, {"eps", 1}});
                 }),
                 {"unknown key 'eps'", "none"});
  check_mentions(error_of<E>([&] { build_model<double>("cnn3", "batch"); }), {"type"});
  CHECK(model_names() == std::vector<std::string>{"cnn3", "mlp2", "resnet8", "resnet20"});
}
