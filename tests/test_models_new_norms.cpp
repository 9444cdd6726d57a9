// FRN and EvoNorm-S0 in the models: cnn3 builds and trains a step with
// either (tau and v are learned parameters); mlp2 refuses FRN, which needs
// spatial positions, naming it, and takes EvoNorm-S0 with min(groups, C).
// Synthetic data, a batch of 4: fast.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <map>
#include <string>
#include <vector>
#include <xtensor/xarray.hpp>
#include <xtensor/xmath.hpp>
#include <xtensor/xview.hpp>

#include "normlab/experiment.hpp"
#include "normlab/model.hpp"
#include "normlab/normlab.hpp"
#include "test_helpers.hpp"

using namespace normlab;
using nlohmann::json;
using normlab::test::check_mentions;
using normlab::test::error_of;

namespace {

// A tiny valid config; only the model and norms vary.
json tiny_config(const std::string& model, const json& norms) {
  return {
      {"name", "tiny"},
      {"dataset",
       {{"type", "synthetic"}, {"train_size", 64}, {"test_size", 32}, {"classes", 4}, {"seed", 5}}},
      {"model", model},
      {"norms", norms},
      {"batch_sizes", {8}},
      {"seeds", {0}},
      {"epochs", 1}};
}

bool finite(const xt::xarray<float>& a) {
  return std::all_of(a.begin(), a.end(), [](float v) { return std::isfinite(v); });
}

// The parameters of `model` whose name ends with `suffix`.
std::vector<ParameterRef<float>> named(Model<float>& model, const std::string& suffix) {
  std::vector<ParameterRef<float>> out;
  for (const auto& p : model.parameters())
    if (p.name.size() >= suffix.size() &&
        p.name.compare(p.name.size() - suffix.size(), suffix.size(), suffix) == 0)
      out.push_back(p);
  return out;
}

struct Step {
  std::vector<json> specs;  // of the model's norms
  // Per norm layer, the gradient and the values before and after the step of
  // each parameter the check named.
  std::map<std::string, std::vector<xt::xarray<float>>> grad, before, after;
};

// Builds `architecture` with `norm`, runs one SGD step on a batch of synthetic
// images and checks: every norm layer lists each of `learned` (e.g. tau, v),
// the loss is finite before and after and changes, every gradient is finite,
// and the eval forward is finite too.
Step train_one_step(const std::string& architecture, const json& norm,
                    const std::vector<std::string>& learned, std::size_t expected_norms) {
  INFO(architecture << " with " << norm.dump());
  Model<float> model = build_model<float>(architecture, norm);
  model.initialize(3);
  // The activation norms (MABN also brings weight centering to the layers in front).
  std::vector<Norm<float>*> norms;
  for (Norm<float>* n : model.norms())
    if (n->type() == norm.at("type")) norms.push_back(n);
  REQUIRE(norms.size() == expected_norms);

  const Dataset data = make_synthetic(4, 10, 11);
  const xt::xarray<float> x = data.images;
  REQUIRE(x.shape() == std::vector<std::size_t>{4, 1, 28, 28});

  Step step;
  const std::string layer = norm.at("type").get<std::string>() + "_norm.";
  for (const std::string& name : learned) {
    CHECK_MESSAGE(named(model, layer + name).size() == expected_norms, layer << name);
    for (const auto& p : named(model, layer + name)) step.before[name].push_back(*p.value);
  }

  xt::xarray<float> dlogits;
  model.zero_grad();
  const double loss = softmax_cross_entropy(model.forward(x, Mode::train), data.labels, dlogits);
  CHECK(std::isfinite(loss));
  CHECK(loss > 0);
  model.backward(dlogits);
  for (const auto& p : model.parameters()) CHECK_MESSAGE(finite(*p.grad), p.name);
  for (const std::string& name : learned)
    for (const auto& p : named(model, layer + name)) step.grad[name].push_back(*p.grad);

  Sgd<float> sgd(model.parameters(), 0.9, 5e-4);
  sgd.step(0.05);
  for (const std::string& name : learned)
    for (const auto& p : named(model, layer + name)) {
      CHECK_MESSAGE(finite(*p.value), p.name);
      step.after[name].push_back(*p.value);
    }
  const double after = softmax_cross_entropy(model.forward(x, Mode::train), data.labels, dlogits);
  CHECK(std::isfinite(after));
  CHECK(after != loss);
  CHECK(finite(model.forward(x, Mode::eval)));

  for (Norm<float>* n : norms) step.specs.push_back(n->to_json());
  return step;
}

// Each norm layer's `name` got a nonzero gradient and moved.
void check_learns(const Step& step, const std::string& name) {
  REQUIRE(step.grad.count(name));
  for (std::size_t i = 0; i < step.grad.at(name).size(); ++i) {
    INFO(name << " of norm layer " << i);
    CHECK(xt::any(xt::not_equal(step.grad.at(name)[i], 0.0f)));
    CHECK_FALSE(step.after.at(name)[i] == step.before.at(name)[i]);
  }
}

}  // namespace

TEST_CASE("models: cnn3 with frn trains a step, with tau among its parameters") {
  const Step step = train_one_step("cnn3", {{"type", "frn"}}, {"gamma", "beta", "tau"}, 3);
  check_learns(step, "gamma");
  check_learns(step, "beta");
  for (const xt::xarray<float>& tau : step.before.at("tau")) CHECK(tau.size() > 0);
  for (const json& spec : step.specs) {
    CHECK(spec.at("type") == "frn");
    CHECK(spec.at("tlu") == true);
  }
  // Without the TLU there is no tau, and cnn3 trains all the same.
  Model<float> model = build_model<float>("cnn3", {{"type", "frn"}, {"tlu", false}});
  for (const auto& p : model.parameters())
    CHECK_MESSAGE(p.name.find(".tau") == std::string::npos, p.name);
  CHECK(model.summary().find("frn_norm") != std::string::npos);
}

TEST_CASE("models: cnn3 with evonorm_s0 trains a step and learns v, groups min(32, C)") {
  const Step step = train_one_step("cnn3", {{"type", "evonorm_s0"}}, {"gamma", "beta", "v"}, 3);
  check_learns(step, "gamma");
  check_learns(step, "v");
  REQUIRE(step.specs.size() == 3);
  // Channels 16, 32, 64.
  CHECK(step.specs[0].at("groups") == 16);
  CHECK(step.specs[1].at("groups") == 32);
  CHECK(step.specs[2].at("groups") == 32);
  // An explicit smaller count stays as given.
  Model<float> model = build_model<float>("cnn3", {{"type", "evonorm_s0"}, {"groups", 8}});
  for (Norm<float>* n : model.norms()) CHECK(n->to_json().at("groups") == 8);
}

TEST_CASE("models: mlp2 takes evonorm_s0 (on (N, C)) and trains a step") {
  const Step step = train_one_step("mlp2", {{"type", "evonorm_s0"}}, {"gamma", "beta", "v"}, 2);
  check_learns(step, "gamma");
  check_learns(step, "v");
  for (const json& spec : step.specs) CHECK(spec.at("groups") == 32);  // 256 channels
  CHECK_NOTHROW(parse_config(tiny_config("mlp2", json::array({"evonorm_s0"}))));
  CHECK_NOTHROW(parse_config(
      tiny_config("mlp2", json::array({json{{"type", "evonorm_s0"}, {"groups", 4}}}))));
}

TEST_CASE("models: mlp2 refuses frn with an error naming the norm, cnn3 takes it") {
  check_mentions(error_of<std::invalid_argument>([] {
                   build_model<float>("mlp2", {{"type", "frn"}});
                 }),
                 {"frn", "mlp2", "cnn3"});
  check_mentions(error_of<std::invalid_argument>([] {
                   build_model<double>("mlp2", {{"type", "frn"}, {"tlu", false}});
                 }),
                 {"frn", "mlp2"});

  // Through the config the message starts with the norm's JSON path.
  const std::string first = error_of<std::invalid_argument>(
      [] { parse_config(tiny_config("mlp2", json::array({"frn"}))); });
  CHECK_MESSAGE(first.rfind("norms[0]:", 0) == 0, first);
  check_mentions(first, {"frn", "mlp2"});
  const std::string second = error_of<std::invalid_argument>([] {
    parse_config(tiny_config("mlp2", json::array({"batch", json{{"type", "frn"}, {"eps", 1e-3}}})));
  });
  CHECK_MESSAGE(second.rfind("norms[1]:", 0) == 0, second);
  check_mentions(second, {"frn"});

  CHECK_NOTHROW(parse_config(tiny_config("cnn3", json::array({"frn", "evonorm_s0"}))));
  const ExperimentConfig config = parse_config(tiny_config("cnn3", json::array({"frn"})));
  CHECK(config.resolved.at("norms") == json::parse(R"([{"type": "frn"}])"));
}

// FRN's TLU and EvoNorm-S0 are their own activation: the model adds no ReLU
// after them (a ReLU after the TLU would block tau's gradient where it clips,
// and tau, starting at 0, would never move).
TEST_CASE("models: cnn3 with frn learns tau (its TLU is not cancelled by the ReLU after it)") {
  const Step step = train_one_step("cnn3", {{"type", "frn"}}, {"tau"}, 3);
  check_learns(step, "tau");
}

// The small-batch remedies of issue 22 in both models: every learned tensor moves.
TEST_CASE(
    "models: dyt, switchable, mabn, frozen batch and cross_iteration_batch train a step in cnn3 "
    "and mlp2") {
  for (const char* architecture : {"cnn3", "mlp2"}) {
    const std::size_t norms = std::string(architecture) == "cnn3" ? 3 : 2;
    const Step dyt = train_one_step(architecture, {{"type", "dyt"}}, {"alpha", "gamma"}, norms);
    check_learns(dyt, "alpha");
    check_learns(dyt, "gamma");
    const Step sn = train_one_step(architecture, {{"type", "switchable"}},
                                   {"mean_weight", "var_weight", "gamma"}, norms);
    check_learns(sn, "mean_weight");
    check_learns(sn, "var_weight");
    const Step mabn = train_one_step(architecture, {{"type", "mabn"}}, {"gamma", "beta"}, norms);
    check_learns(mabn, "gamma");
    check_learns(mabn, "beta");
    const Step frozen =
        train_one_step(architecture, {{"type", "batch"}, {"frozen", true}}, {"gamma"}, norms);
    check_learns(frozen, "gamma");
    const Step cibn =
        train_one_step(architecture, {{"type", "cross_iteration_batch"}}, {"gamma", "beta"}, norms);
    check_learns(cibn, "gamma");
    check_learns(cibn, "beta");
  }
  CHECK_NOTHROW(parse_config(
      tiny_config("mlp2", json::array({"dyt", "switchable", "mabn", "cross_iteration_batch",
                                       json{{"type", "batch"}, {"frozen", true}}}))));
}
