// Cross-Iteration BatchNorm beyond its golden sequences: what the window
// pools, checked from first principles (a fixed weight pools the batches
// exactly; a moved weight compensates the mean exactly and the mean square to
// first order), its finite differences inside a full window, burn-in and
// running statistics against BatchNorm's, the weight gradient the conv and
// linear layers give it, and the models connecting it.
#include <doctest/doctest.h>

#include <cmath>
#include <string>
#include <vector>
#include <xtensor/xarray.hpp>
#include <xtensor/xmath.hpp>
#include <xtensor/xview.hpp>

#include "normlab/normlab.hpp"
#include "test_helpers.hpp"

using namespace normlab;
using nlohmann::json;
using normlab::test::check_mentions;
using normlab::test::error_of;
using normlab::test::random_normal;

namespace {
using Array = xt::xarray<double>;
constexpr double kEps = 1e-5;

// A bias-free linear layer (K -> C) with its weight set, the layer in front.
struct Front {
  std::unique_ptr<Layer<double>> layer;
  Front(const Array& weight)
      : layer(make_linear<double>(weight.shape(1), weight.shape(0), false, false)) {
    set(weight);
  }
  void set(const Array& weight) { *layer->parameters().at(0).value = weight; }
  Array forward(const Array& u) { return layer->forward(u, Mode::train); }
  PrecedingLayer<double>* preceding() { return dynamic_cast<PrecedingLayer<double>*>(layer.get()); }
};

std::unique_ptr<Norm<double>> make_cibn(json spec, Front& front) {
  spec["type"] = "cross_iteration_batch";
  auto norm = make_norm<double>(spec, front.layer->parameters().at(0).value->shape(0));
  norm->connect_preceding_layer(front.preceding());
  return norm;
}

// u w^T: (N, K) x (C, K) -> (N, C), what the linear layer computes.
Array times_transpose(const Array& u, const Array& w) {
  Array x = xt::zeros<double>({u.shape(0), w.shape(0)});
  for (std::size_t n = 0; n < u.shape(0); ++n)
    for (std::size_t c = 0; c < w.shape(0); ++c)
      for (std::size_t k = 0; k < w.shape(1); ++k) x(n, c) += u(n, k) * w(c, k);
  return x;
}

// Per channel (column) of an (N, C) array: mean and mean square.
Array column_mean(const Array& a) {
  return xt::mean(a, {0});
}
Array column_mean_square(const Array& a) {
  return xt::mean(a * a, {0});
}

// (x - mean) / sqrt(var + eps), per column.
Array normalized(const Array& x, const Array& mean, const Array& var) {
  return (x - mean) / xt::sqrt(var + kEps);
}

void check_close(const std::string& what, const Array& got, const Array& want, double tol) {
  INFO(what);
  REQUIRE(got.shape() == want.shape());
  CHECK(xt::amax(xt::abs(got - want))() <= tol);
}
}  // namespace

TEST_CASE(
    "cross_iteration_batch: with the weight in front fixed, a window of 2 is BatchNorm over both "
    "batches") {
  std::mt19937_64 rng(5);
  const Array w = random_normal<double>(rng, {2, 3});
  Front front(w);
  auto norm = make_cibn({{"window", 2}}, front);
  const Array u0 = random_normal<double>(rng, {4, 3}, 1.0, 2.0),
              u1 = random_normal<double>(rng, {4, 3}, -1.0, 1.5);
  const Array x0 = front.forward(u0);
  const Array y0 = norm->forward(x0, Mode::train);
  check_close("step 1: the batch alone", y0, normalized(x0, column_mean(x0), xt::variance(x0, {0})),
              1e-12);
  const Array x1 = front.forward(u1);
  const Array both = xt::concatenate(xt::xtuple(x0, x1), 0);
  check_close("step 2: both batches", norm->forward(x1, Mode::train),
              normalized(x1, column_mean(both), xt::variance(both, {0})), 1e-12);
}

TEST_CASE(
    "cross_iteration_batch: a moved weight compensates the mean exactly and the mean square to "
    "first order") {
  std::mt19937_64 rng(6);
  const Array w0 = random_normal<double>(rng, {3, 4});
  const Array delta = 0.3 * random_normal<double>(rng, {3, 4});
  Front front(w0);
  auto norm = make_cibn({{"window", 2}}, front);
  const Array u0 = random_normal<double>(rng, {5, 4}, 0.5, 1.0),
              u1 = random_normal<double>(rng, {5, 4}, 0.0, 2.0);
  norm->forward(front.forward(u0), Mode::train);
  const Array w1 = w0 + delta;
  front.set(w1);
  const Array x1 = front.forward(u1);
  const Array y1 = norm->forward(x1, Mode::train);

  // The mean is linear in the weight: its first-order compensation is the old
  // batch's mean under the new weight. The mean square is quadratic: its
  // compensation misses mean((delta u0)^2).
  const Array moved = times_transpose(u0, w1);
  const Array old_mean = column_mean(moved);
  const Array old_mean_square =
      column_mean_square(moved) - column_mean_square(times_transpose(u0, delta));
  const Array mean = (old_mean + column_mean(x1)) / 2;
  const Array var = (old_mean_square + column_mean_square(x1)) / 2 - mean * mean;
  REQUIRE(xt::all(var > 0));
  check_close("step 2", y1, normalized(x1, mean, var), 1e-12);
  // Uncompensated, the window would hold the old batch's own statistics.
  const Array stale = times_transpose(u0, w0);
  const Array stale_mean = (column_mean(stale) + column_mean(x1)) / 2;
  CHECK(xt::amax(xt::abs(mean - stale_mean))() > 0.05);
}

// Inside a full window the earlier steps are constants: the backward is the
// gradient of the step's forward in x. Every evaluation replays the same
// steps on a fresh norm and layer, so each sees the same window.
TEST_CASE("gradcheck: cross_iteration_batch in a full window, the weight in front moving") {
  std::mt19937_64 rng(8);
  const std::size_t steps = 4, N = 3, K = 2, C = 3;
  std::vector<Array> inputs, weights;
  Array w = random_normal<double>(rng, {C, K});
  for (std::size_t t = 0; t < steps; ++t) {
    inputs.push_back(random_normal<double>(rng, {N, K}, 1.0, 1.5));
    weights.push_back(w);
    w = w + 0.1 * random_normal<double>(rng, {C, K});
  }
  Array gamma = 1.0 + 0.3 * random_normal<double>(rng, {C});
  const Array r = random_normal<double>(rng, {N, C});
  Array x = times_transpose(inputs.back(), weights.back());
  std::unique_ptr<Front> front;
  std::unique_ptr<Norm<double>> norm;
  const auto loss = [&] {
    front = std::make_unique<Front>(weights[0]);
    norm = make_cibn({{"window", 3}}, *front);
    norm->set("gamma", gamma);
    for (std::size_t t = 0; t + 1 < steps; ++t) {
      front->set(weights[t]);
      norm->forward(front->forward(inputs[t]), Mode::train);
    }
    front->set(weights.back());
    front->forward(inputs.back());  // the layer's input, which the window records
    return double(xt::sum(norm->forward(x, Mode::train) * r)());
  };
  loss();
  norm->zero_grad();
  const Array dx = norm->backward(r);
  const Array dgamma = norm->parameter("gamma").grad;
  check_close("dbeta", norm->parameter("beta").grad, xt::sum(r, {0}), 1e-12);
  normlab::test::check_against_differences("dx", dx, x, loss, 1e-6, 1e-6);
  normlab::test::check_against_differences("dgamma", dgamma, gamma, loss, 1e-6, 1e-6);
}

TEST_CASE(
    "cross_iteration_batch: burn-in steps are BatchNorm; running statistics and eval are "
    "BatchNorm's") {
  std::mt19937_64 rng(9);
  Front front(random_normal<double>(rng, {2, 3}));
  auto cibn = make_cibn({{"window", 3}, {"burn_in", 2}, {"momentum", 0.3}}, front);
  auto batch = make_norm<double>({{"type", "batch"}, {"momentum", 0.3}}, 2);
  for (int step = 1; step <= 4; ++step) {
    CAPTURE(step);
    const Array x = front.forward(random_normal<double>(rng, {4, 3}, 0.5, 2.0));
    const Array y = cibn->forward(x, Mode::train), plain = batch->forward(x, Mode::train);
    // Steps 1, 2 burn in; step 3 starts the window (nothing recorded before it).
    if (step <= 3)
      check_close("BatchNorm's output", y, plain, 1e-12);
    else
      CHECK(xt::amax(xt::abs(y - plain))() > 1e-3);
    CHECK(cibn->state("num_batches_tracked")(0) == step);
    check_close("running_mean", cibn->state("running_mean"), batch->state("running_mean"), 1e-12);
    check_close("running_var", cibn->state("running_var"), batch->state("running_var"), 1e-12);
  }
  const Array x = random_normal<double>(rng, {4, 2});
  check_close("eval", cibn->forward(x, Mode::eval), batch->forward(x, Mode::eval), 1e-12);
  CHECK(cibn->state("num_batches_tracked")(0) == 4);
}

TEST_CASE("cross_iteration_batch: refuses a layer in front of another width, and bad options") {
  std::mt19937_64 rng(10);
  Front front(random_normal<double>(rng, {3, 2}));
  auto norm = make_norm<double>({{"type", "cross_iteration_batch"}}, 4);
  norm->connect_preceding_layer(front.preceding());
  front.forward(random_normal<double>(rng, {2, 2}));
  check_mentions(error_of<std::invalid_argument>([&] {
                   norm->forward(random_normal<double>(rng, {2, 4}), Mode::train);
                 }),
                 {"cross_iteration_batch", "(3, 2)", "4 channels"});
  check_mentions(error_of<std::invalid_argument>([] {
                   make_norm<double>({{"type", "cross_iteration_batch"}, {"window", 0}}, 2);
                 }),
                 {"window", "positive"});
  check_mentions(error_of<std::invalid_argument>([] {
                   make_norm<double>({{"type", "cross_iteration_batch"}, {"burn_in", -1}}, 2);
                 }),
                 {"burn_in", ">= 0"});
  CHECK(norm_traits({{"type", "cross_iteration_batch"}}).reads_preceding_layer);
  CHECK_FALSE(norm_traits({{"type", "batch"}}).reads_preceding_layer);
}

// What Cross-Iteration BN asks of the layer in front: the weight gradient for
// a given dy, equal to what backward accumulates, leaving the accumulated
// gradients alone; in every conv form (im2col, channels last, oneDNN) and linear.
template <class T>
void check_weight_gradient(std::unique_ptr<Layer<T>> layer, const std::vector<std::size_t>& shape) {
  std::mt19937_64 rng(12);
  layer->initialize(rng);
  const xt::xarray<T> x = random_normal<T>(rng, shape);
  const xt::xarray<T> y = layer->forward(x, Mode::train);
  const xt::xarray<T> dy = random_normal<T>(rng, y.shape());
  for (auto& p : layer->parameters()) p.grad->fill(T(0.5));
  auto* front = dynamic_cast<PrecedingLayer<T>*>(layer.get());
  REQUIRE(front != nullptr);
  xt::xarray<T> dw;
  front->weight_gradient(dy, dw);
  for (auto& p : layer->parameters()) {
    INFO(p.name, " untouched");
    CHECK(xt::all(xt::equal(*p.grad, T(0.5))));
  }
  CHECK(&front->last_weight() == layer->parameters().at(0).value);
  layer->backward(dy);
  const xt::xarray<T> accumulated = *layer->parameters().at(0).grad - T(0.5);
  REQUIRE(dw.shape() == accumulated.shape());
  CHECK(xt::allclose(dw, accumulated, 1e-4, 1e-5));
  CHECK(xt::amax(xt::abs(dw))() > 0);
}

TEST_CASE(
    "weight_gradient of conv and linear layers: backward's weight gradient, nothing accumulated") {
  check_weight_gradient<double>(make_linear<double>(5, 3, true, false), {4, 5});
  check_weight_gradient<double>(make_conv2d<double>(2, 3, 3, 1, 1, true, false), {2, 2, 5, 5});
  check_weight_gradient<double>(make_conv2d<double>(2, 3, 3, 2, 1, false, false, Layout::nhwc),
                                {2, 5, 5, 2});
  check_weight_gradient<float>(make_conv2d<float>(2, 3, 3, 1, 1, true, false), {2, 2, 6, 6});
  check_weight_gradient<float>(make_conv2d<float>(2, 3, 3, 1, 1, false, false, Layout::nhwc),
                               {2, 6, 6, 2});
}

TEST_CASE("models connect cross_iteration_batch to the conv or linear layer in front") {
  for (const char* architecture : {"mlp2", "cnn3", "resnet8"}) {
    for (const Layout layout : {Layout::nchw, Layout::nhwc}) {
      if (layout == Layout::nhwc && std::string(architecture) == "mlp2") continue;
      CAPTURE(architecture);
      CAPTURE(to_string(layout));
      Model<float> model =
          build_model<float>(architecture, {{"type", "cross_iteration_batch"}}, layout);
      model.initialize(3);
      std::mt19937_64 rng(4);
      const xt::xarray<float> images = random_normal<float>(rng, {2, 1, 28, 28});
      for (int step = 0; step < 2; ++step) model.forward(images, Mode::train);
      std::size_t connected = 0;
      for (Norm<float>* norm : model.norms()) {
        if (norm->type() != "cross_iteration_batch") continue;
        REQUIRE(norm->preceding_layer() != nullptr);
        CHECK(norm->preceding_layer()->last_weight().shape(0) ==
              norm->parameter("gamma").value.size());
        ++connected;
      }
      CHECK(connected >= 2);
    }
  }
}
