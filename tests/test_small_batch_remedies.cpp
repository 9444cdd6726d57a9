// The remedies of issue 22 beyond their golden and finite-difference checks:
// frozen BatchNorm keeps its running statistics and is its own eval; MABN's
// first steps are the exact gradient of its forward, and its moving averages
// start where the paper says; the specs' errors and defaults.
#include <doctest/doctest.h>

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
using normlab::test::random_uniform;

namespace {
using Array = xt::xarray<double>;

std::string spec_error(const json& spec) {
  return error_of<std::invalid_argument>([&] { make_norm<double>(spec, 3); });
}
}  // namespace

TEST_CASE(
    "frozen batch: train normalizes with the running statistics, which stay; eval is the same") {
  std::mt19937_64 rng(7);
  auto frozen = make_norm<double>({{"type", "batch"}, {"frozen", true}}, 3);
  const Array mean = random_normal<double>(rng, {3});
  const Array var = random_uniform<double>(rng, {3}, 0.5, 2.0);
  frozen->set("running_mean", mean);
  frozen->set("running_var", var);
  frozen->set("gamma", random_uniform<double>(rng, {3}, 0.5, 1.5));
  const Array x = random_normal<double>(rng, {2, 3, 4}, 1.0, 2.0);
  const Array y_train = frozen->forward(x, Mode::train);
  CHECK(frozen->state("running_mean") == mean);
  CHECK(frozen->state("running_var") == var);
  CHECK(y_train == frozen->forward(x, Mode::eval));
  // A batch of one value per channel trains: no batch statistics are needed.
  CHECK_NOTHROW(frozen->forward(random_normal<double>(rng, {1, 3}), Mode::train));
  CHECK_FALSE(norm_traits({{"type", "batch"}, {"frozen", true}}).batch_statistics);
  CHECK(norm_traits({{"type", "batch"}}).batch_statistics);
  // "frozen" is written only when true: specs from before it stay the same.
  CHECK(resolve_spec({{"type", "batch"}}).count("frozen") == 0);
  CHECK(resolve_spec({{"type", "batch"}, {"frozen", true}}).at("frozen") == true);
  check_mentions(spec_error({{"type", "batch"}, {"frozen", true}, {"track_running_stats", false}}),
                 {"frozen", "track_running_stats"});
  check_mentions(spec_error({{"type", "batch"}, {"frozen", 1}}), {"frozen", "true or false"});
}

TEST_CASE("dyt: alpha starts at alpha_init; y = gamma tanh(alpha x) + beta") {
  auto dyt = make_norm<double>({{"type", "dyt"}, {"alpha_init", 0.25}}, 2);
  CHECK(dyt->parameter("alpha").value == Array({0.25}));
  dyt->set("gamma", Array({2.0, -1.0}));
  dyt->set("beta", Array({0.5, 0.0}));
  const Array x = {{1.0, -2.0}, {4.0, 0.0}};
  const Array y = dyt->forward(x, Mode::train);
  CHECK(y(0, 0) == doctest::Approx(2 * std::tanh(0.25) + 0.5));
  CHECK(y(0, 1) == doctest::Approx(-std::tanh(-0.5)));
  CHECK(y(1, 0) == doctest::Approx(2 * std::tanh(1.0) + 0.5));
  CHECK(y(1, 1) == doctest::Approx(0.0));
  check_mentions(spec_error({{"type", "dyt"}, {"alpha_init", "big"}}), {"alpha_init", "a number"});
  check_mentions(spec_error({{"type", "dyt"}, {"eps", 1e-5}}), {"unknown key 'eps'", "dyt"});
}

// Within the first buffer_size steps MABN uses the batch's own statistics, so
// its backward is the gradient of its forward (uncentered BatchNorm); the
// differences reset the step count so that every forward is step 1.
TEST_CASE("gradcheck: mabn in its first steps is the gradient of x / sqrt(mean(x^2) + eps)") {
  std::mt19937_64 rng(11);
  for (const std::vector<std::size_t>& shape :
       {std::vector<std::size_t>{2, 3}, std::vector<std::size_t>{2, 3, 2, 2}}) {
    auto mabn = make_norm<double>({{"type", "mabn"}}, 0);
    mabn->prepare(shape);
    mabn->set("gamma", random_uniform<double>(rng, {3}, 0.5, 1.5));
    mabn->set("beta", random_normal<double>(rng, {3}));
    Array x = random_normal<double>(rng, shape, 0.5, 1.5);
    const Array r = random_normal<double>(rng, shape);
    const Array zero = xt::zeros<double>({std::size_t{1}});
    const auto loss = [&] {
      mabn->set("num_batches_tracked", zero);
      return double(xt::sum(mabn->forward(x, Mode::train) * r)());
    };
    loss();
    mabn->zero_grad();
    const Array dx = mabn->backward(r);
    const Array dgamma = mabn->parameter("gamma").grad;
    normlab::test::check_against_differences("dx", dx, x, loss, 1e-6, 1e-6);
    normlab::test::check_against_differences("dgamma", dgamma, mabn->parameter("gamma").value, loss,
                                             1e-6, 1e-6);
  }
}

TEST_CASE("mabn: the moving averages start after buffer_size steps; eval uses running_var") {
  std::mt19937_64 rng(12);
  auto mabn = make_norm<double>(
      {{"type", "mabn"}, {"buffer_size", 2}, {"warmup_steps", 0}, {"momentum", 0.5}}, 1);
  // Step 1 and 2: x / sqrt(mean(x^2) + eps) of the batch itself.
  const auto column = [](double first, double second) {  // a batch of two, one channel
    Array values = xt::zeros<double>({std::size_t{2}, std::size_t{1}});
    values(0, 0) = first;
    values(1, 0) = second;
    return values;
  };
  const Array a = column(1, 3), b = column(2, 2), c = column(0, 6);
  const double eps = 1e-5;
  CHECK(mabn->forward(a, Mode::train)(1, 0) == doctest::Approx(3 / std::sqrt(5 + eps)));
  CHECK(mabn->forward(b, Mode::train)(1, 0) == doctest::Approx(2 / std::sqrt(4 + eps)));
  // Step 3: the average of steps 2 and 3's mean squares, (4 + 18) / 2.
  CHECK(mabn->forward(c, Mode::train)(1, 0) == doctest::Approx(6 / std::sqrt(11 + eps)));
  CHECK(mabn->state("num_batches_tracked")(0) == 3);
  // running_var: 1 -> 3 -> 3.5 -> 7.25 (momentum 0.5 on each step's normalizer).
  CHECK(mabn->state("running_var")(0) == doctest::Approx(7.25));
  CHECK(mabn->forward(c, Mode::eval)(1, 0) == doctest::Approx(6 / std::sqrt(7.25 + eps)));
  CHECK(mabn->state("num_batches_tracked")(0) == 3);
  check_mentions(spec_error({{"type", "mabn"}, {"buffer_size", 0}}), {"buffer_size", "positive"});
  check_mentions(spec_error({{"type", "mabn"}, {"rmax", 0.5}}), {"rmax", ">= 1"});
  check_mentions(spec_error({{"type", "mabn"}, {"momentum", nullptr}}), {"momentum"});
}

TEST_CASE("switchable: with all weight on one statistic it is instance, layer or batch norm") {
  std::mt19937_64 rng(13);
  const Array x = random_normal<double>(rng, {3, 4, 2, 3}, 0.5, 2.0);
  const std::vector<std::pair<std::size_t, json>> kinds = {
      {0, {{"type", "instance"}}},
      {1, {{"type", "layer"}, {"channel_affine", true}}},
      {2, {{"type", "batch"}}}};
  for (const auto& [k, spec] : kinds) {
    const std::string spec_text = spec.dump();  // CAPTURE cannot capture a binding (clang)
    CAPTURE(spec_text);
    Array logits = xt::zeros<double>({std::size_t{3}});
    logits(k) = 60.0;  // softmax puts all but e^-60 of the weight on k
    auto sn = make_norm<double>({{"type", "switchable"}}, 4);
    sn->set("mean_weight", logits);
    sn->set("var_weight", logits);
    auto plain = make_norm<double>(spec, 4);
    const Array expected = plain->forward(x, Mode::train);
    const Array got = sn->forward(x, Mode::train);
    CHECK(xt::amax(xt::abs(got - expected))() < 1e-9);
  }
}

TEST_CASE("weight_centering: each output slice of w has mean zero; dv = dw - mean(dw)") {
  std::mt19937_64 rng(14);
  auto centering = make_norm<double>({{"type", "weight_centering"}}, 0);
  const Array v = random_normal<double>(rng, {4, 3, 2, 2}, 1.0, 2.0);
  const Array w = centering->forward(v, Mode::train);
  for (std::size_t o = 0; o < 4; ++o) {
    const Array row = xt::view(w, o);
    const Array original = xt::view(v, o);
    CHECK(std::abs(xt::mean(row)()) < 1e-12);
    CHECK(xt::amax(xt::abs(row - (original - xt::mean(original)())))() < 1e-12);
  }
  const Array dw = random_normal<double>(rng, {4, 3, 2, 2});
  const Array dv = centering->backward(dw);
  for (std::size_t o = 0; o < 4; ++o) {
    const Array d = xt::view(dw, o);
    CHECK(xt::amax(xt::abs(xt::view(dv, o) - (d - xt::mean(d)())))() < 1e-12);
  }
  CHECK(centering->parameter_names().empty());
}

TEST_CASE("models: mabn brings weight centering to the conv and hidden linear layers in front") {
  for (const char* architecture : {"mlp2", "cnn3"}) {
    CAPTURE(architecture);
    Model<double> model = build_model<double>(architecture, {{"type", "mabn"}});
    model.initialize(1);
    std::size_t centered = 0, mabn = 0;
    for (Norm<double>* n : model.norms()) {
      centered += n->type() == "weight_centering";
      mabn += n->type() == "mabn";
    }
    CHECK(mabn == (std::string(architecture) == "cnn3" ? 3u : 2u));
    CHECK(centered == mabn);
    // No biases in front of MABN, and the weights the layers use are centered.
    std::size_t biases = 0;
    for (const auto& p : model.parameters()) biases += p.name.find(".bias") != std::string::npos;
    CHECK(biases == 1);  // the classifier's only
    std::mt19937_64 rng(15);
    const Array x = random_normal<double>(rng, {2, 1, 28, 28});
    CHECK(xt::all(xt::isfinite(model.forward(x, Mode::train))));
  }
  // Other norms keep plain weights.
  Model<double> batch = build_model<double>("mlp2", {{"type", "batch"}});
  CHECK(batch.norms().size() == 2);
}
