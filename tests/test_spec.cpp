// Every error a user can cause, with the message checked, and the spec's
// defaults and to_json round trip.
#include <doctest/doctest.h>

#include <algorithm>
#include <filesystem>
#include <string>
#include <vector>
#include <xtensor/xarray.hpp>
#include <xtensor/xbuilder.hpp>

#include "normlab/normlab.hpp"
#include "test_helpers.hpp"

using namespace normlab;
using normlab::test::check_mentions;
using normlab::test::error_of;
using json = nlohmann::json;

namespace {

// The std::invalid_argument message of make_norm<double>(spec, channels).
std::string spec_error(const json& spec, std::size_t channels = 0) {
  return error_of<std::invalid_argument>([&] { make_norm<double>(spec, channels); });
}

// The std::invalid_argument message of a forward of an input of this shape.
std::string forward_error(const json& spec, const std::vector<std::size_t>& shape,
                          Mode mode = Mode::train, std::size_t channels = 0) {
  auto norm = make_norm<double>(spec, channels);
  const xt::xarray<double> x = xt::ones<double>(shape);
  return error_of<std::invalid_argument>([&] { norm->forward(x, mode); });
}

}  // namespace

TEST_CASE("spec: unknown type, missing type, type not a string, spec not an object") {
  std::string every_type;  // the registry's names, as the message lists them
  for (const std::string& type : norm_types())
    every_type += (every_type.empty() ? "" : ", ") + type;
  check_mentions(spec_error({{"type", "batchnorm"}}), {"unknown type 'batchnorm'", every_type});
  check_mentions(spec_error({{"eps", 1e-5}}), {"missing key 'type'", "batch"});
  check_mentions(spec_error({{"type", 3}}), {"type: expected a string, got an integer"});
  check_mentions(spec_error(json::array({"batch"})), {"expected an object", "got a list"});
  check_mentions(spec_error("batch"), {"expected an object", "got a string"});
}

TEST_CASE("spec: unknown keys are named, with the allowed ones") {
  check_mentions(spec_error({{"type", "batch"}, {"groups", 2}}),
                 {"unknown key 'groups'", "type batch",
                  "allowed: eps, momentum, affine, track_running_stats"});
  check_mentions(spec_error({{"type", "group"}, {"num_groups", 2}}),
                 {"unknown key 'num_groups'", "groups"});
  check_mentions(spec_error({{"type", "rms"}, {"momentum", 0.1}}), {"unknown key 'momentum'"});
  check_mentions(spec_error({{"type", "weight"}, {"eps", 0.1}}), {"unknown key 'eps'"});
  check_mentions(spec_error({{"type", "instance"}, {"channel_affine", true}}),
                 {"unknown key 'channel_affine'"});
}

TEST_CASE("spec: wrongly typed values name the key, what is expected and what was given") {
  struct Case {
    json spec;
    std::string phrase;
  };
  const std::vector<Case> cases = {
      {{{"type", "batch"}, {"eps", "small"}}, "eps: expected a number, got a string"},
      {{{"type", "layer"}, {"eps", nullptr}}, "eps: expected a number, got null"},
      {{{"type", "batch"}, {"momentum", "0.1"}},
       "momentum: expected a number or null, got a string"},
      {{{"type", "batch"}, {"affine", 1}}, "affine: expected true or false, got an integer"},
      {{{"type", "instance"}, {"track_running_stats", "yes"}},
       "track_running_stats: expected true or false, got a string"},
      {{{"type", "group"}, {"groups", 0}}, "groups: expected a positive integer, got 0"},
      {{{"type", "group"}, {"groups", 2.5}}, "groups: expected a positive integer, got a number"},
      {{{"type", "group"}, {"groups", -2}}, "groups: expected a positive integer, got -2"},
      {{{"type", "layer"}, {"normalized_shape", 5}},
       "normalized_shape: expected a non-empty list of positive integers or null, got an integer"},
      {{{"type", "layer"}, {"normalized_shape", json::array()}},
       "normalized_shape: expected a non-empty list of positive integers or null, got a list"},
      {{{"type", "rms"}, {"normalized_shape", {3, 0}}},
       "normalized_shape: expected a non-empty list of positive integers or null, got a list"},
      {{{"type", "layer"}, {"channel_affine", "true"}},
       "channel_affine: expected true or false, got a string"},
      {{{"type", "weight"}, {"dim", 0.5}}, "dim: expected an integer, got a number"},
      {{{"type", "rms"}, {"eps", json::object()}}, "eps: expected a number or null, got an object"},
  };
  for (const Case& c : cases) {
    CAPTURE(c.spec.dump());
    check_mentions(spec_error(c.spec), {c.phrase});
  }
}

TEST_CASE("spec: values out of range") {
  for (double momentum : {-0.1, 1.5}) {
    CAPTURE(momentum);
    check_mentions(spec_error({{"type", "batch"}, {"momentum", momentum}}),
                   {"momentum: expected a number in [0, 1] or null"});
  }
  check_mentions(spec_error({{"type", "instance"}, {"momentum", 2}}), {"momentum", "[0, 1]"});
  // The ends of the range are fine.
  CHECK_NOTHROW(make_norm<double>({{"type", "batch"}, {"momentum", 0.0}}, 3));
  CHECK_NOTHROW(make_norm<double>({{"type", "batch"}, {"momentum", 1.0}}, 3));
  check_mentions(spec_error({{"type", "layer"}, {"eps", -1e-5}}), {"eps: expected a number >= 0"});
  check_mentions(
      spec_error({{"type", "layer"}, {"channel_affine", true}, {"normalized_shape", {4}}}),
      {"channel_affine", "normalized_shape"});
}

TEST_CASE("spec: a normalized_shape too large to allocate is refused before allocating") {
  // 1e11 parameters (found by fuzz_norm_spec), and a product that wraps 2^64.
  for (const json& shape : {json{100000, 1000000}, json{1ULL << 32, 1ULL << 32, 2}}) {
    CAPTURE(shape.dump());
    for (const char* type : {"layer", "rms"})
      check_mentions(spec_error({{"type", type}, {"normalized_shape", shape}}),
                     {"normalized_shape", "16777216 elements", "channel_affine"});
  }
  CHECK_NOTHROW(
      make_norm<double>({{"type", "layer"}, {"normalized_shape", {1 << 12, 1 << 12}}}, 0));
}

TEST_CASE("group norm: C % G != 0 names C and G") {
  const json spec = {{"type", "group"}, {"groups", 4}};
  check_mentions(spec_error(spec, 6), {"6 channels", "4 groups", "C % G"});
  // Channels taken from the first input: the same error from forward.
  check_mentions(forward_error(spec, {2, 6, 3}), {"6 channels", "4 groups"});
  check_mentions(forward_error({{"type", "group"}, {"groups", 3}}, {2, 4}),
                 {"4 channels", "3 groups"});
}

TEST_CASE("batch norm: training needs more than one value per channel") {
  const json spec = {{"type", "batch"}};
  for (const std::vector<std::size_t>& shape :
       std::vector<std::vector<std::size_t>>{{1, 3}, {1, 3, 1}, {1, 3, 1, 1}}) {
    check_mentions(forward_error(spec, shape),
                   {"batch norm", "more than one value per channel", "(1, 3"});
  }
  // Eval uses the running statistics: one value is fine.
  auto norm = make_norm<double>(spec, 3);
  CHECK_NOTHROW(norm->forward(xt::ones<double>({1, 3}), Mode::eval));
  CHECK_NOTHROW(norm->forward(xt::ones<double>({1, 3, 2}), Mode::train));
}

TEST_CASE("instance norm: training needs a spatial size above 1") {
  const json spec = {{"type", "instance"}};
  check_mentions(forward_error(spec, {2, 3, 1}),
                 {"instance norm", "more than one spatial element", "(2, 3, 1)"});
  check_mentions(forward_error(spec, {4, 3}), {"more than one spatial element", "(4, 3)"});
}

TEST_CASE("shape errors: rank, channels, layer norm's trailing shape") {
  check_mentions(forward_error({{"type", "batch"}}, {5}), {"batch norm", "(N, C, ...)", "(5,)"});
  check_mentions(forward_error({{"type", "instance"}}, {2, 4, 5}, Mode::train, 3),
                 {"3 channels", "(2, 4, 5)"});
  check_mentions(forward_error({{"type", "layer"}, {"normalized_shape", {4}}}, {2, 5}),
                 {"trailing shape (4,)", "(2, 5)"});
  check_mentions(forward_error({{"type", "rms"}, {"normalized_shape", {3, 4}}}, {2, 4, 3}),
                 {"trailing shape (3, 4)", "(2, 4, 3)"});
  check_mentions(
      forward_error({{"type", "layer"}, {"channel_affine", true}}, {2, 4, 5}, Mode::train, 3),
      {"3 channels", "(2, 4, 5)"});

  // The default normalized_shape is fixed by the first input.
  auto layer = make_norm<double>({{"type", "layer"}}, 0);
  layer->forward(xt::ones<double>({2, 3, 5}), Mode::train);
  check_mentions(error_of<std::invalid_argument>([&] {
                   layer->forward(xt::ones<double>({2, 3, 4}), Mode::train);
                 }),
                 {"trailing shape (3, 5)", "(2, 3, 4)"});
  check_mentions(forward_error({{"type", "layer"}}, {6}), {"(N, ...)", "(6,)"});
}

TEST_CASE("weight norm: dim out of range, slices that do not match") {
  check_mentions(forward_error({{"type", "weight"}, {"dim", 2}}, {3, 4}),
                 {"dim 2 is out of range", "(3, 4)"});
  check_mentions(forward_error({{"type", "weight"}, {"dim", -3}}, {3, 4}),
                 {"dim -3 is out of range", "(3, 4)"});
  check_mentions(forward_error({{"type", "weight"}, {"dim", 1}}, {4, 5}, Mode::train, 3),
                 {"3 slices", "(4, 5)", "dim 1"});
  CHECK_NOTHROW(make_norm<double>({{"type", "weight"}, {"dim", -2}}, 0)
                    ->forward(xt::ones<double>({3, 4}), Mode::train));
}

TEST_CASE("set, parameter and state: wrong shape and unknown names") {
  auto batch = make_norm<double>({{"type", "batch"}}, 3);
  check_mentions(
      error_of<std::invalid_argument>([&] { batch->set("gamma", xt::ones<double>({4})); }),
      {"gamma has shape (4,)", "batch norm needs (3,)"});
  check_mentions(error_of<std::invalid_argument>([&] {
                   batch->set("running_var", xt::ones<double>({3, 1}));
                 }),
                 {"running_var has shape (3, 1)", "(3,)"});
  check_mentions(
      error_of<std::invalid_argument>([&] { batch->set("alpha", xt::ones<double>({3})); }),
      {"no parameter or state 'alpha'", "beta gamma running_mean running_var"});
  check_mentions(error_of<std::invalid_argument>([&] { batch->parameter("g"); }),
                 {"batch norm has no parameter 'g'"});
  check_mentions(error_of<std::invalid_argument>([&] { batch->state("num_batches"); }),
                 {"no running state 'num_batches'"});

  // Before the shape is known there is nothing to set yet.
  auto layer = make_norm<double>({{"type", "layer"}}, 0);
  check_mentions(
      error_of<std::invalid_argument>([&] { layer->set("gamma", xt::ones<double>({3})); }),
      {"no parameter or state 'gamma'", "none"});
  check_mentions(error_of<std::invalid_argument>([&] { layer->parameter("gamma"); }),
                 {"no parameter 'gamma'", "call prepare or forward"});
}

TEST_CASE("backward before forward, backward with the wrong dy shape") {
  auto norm = make_norm<double>({{"type", "group"}, {"groups", 1}}, 3);
  check_mentions(error_of<std::logic_error>([&] {
                   norm->backward(xt::ones<double>({2, 3}));
                 }),
                 {"group norm", "backward called before any forward"});
  norm->forward(xt::xarray<double>{{0.0, 1.0, 2.0}, {3.0, 5.0, 8.0}}, Mode::train);
  check_mentions(error_of<std::invalid_argument>([&] {
                   norm->backward(xt::ones<double>({2, 4}));
                 }),
                 {"gradient has shape (2, 4)", "last forward input had shape (2, 3)"});
  check_mentions(error_of<std::invalid_argument>([&] { norm->backward(xt::ones<double>({6})); }),
                 {"gradient has shape (6,)"});
}

TEST_CASE("backward after a forward that failed is refused, not read against the old input") {
  auto norm = make_norm<double>({{"type", "group"}, {"groups", 1}}, 3);
  norm->forward(xt::xarray<double>{{0.0, 1.0, 2.0}, {3.0, 5.0, 8.0}}, Mode::train);
  // The failed forward has a smaller input than the good one before it.
  CHECK_THROWS_AS(norm->forward(xt::ones<double>({1, 2}), Mode::train), std::invalid_argument);
  for (const auto& dy :
       {xt::xarray<double>(xt::ones<double>({1, 2})), xt::xarray<double>(xt::ones<double>({2, 3}))})
    check_mentions(error_of<std::logic_error>([&] { norm->backward(dy); }),
                   {"group norm", "after one that failed"});
}

TEST_CASE("mode names") {
  CHECK(parse_mode("train") == Mode::train);
  CHECK(parse_mode("eval") == Mode::eval);
  check_mentions(error_of<std::invalid_argument>([] { parse_mode("test"); }),
                 {"mode 'test'", "train or eval"});
}

// Each listed key resolves to PyTorch's default (a type may gain other keys).
TEST_CASE("to_json resolves PyTorch's defaults") {
  const std::vector<std::pair<std::string, json>> defaults = {
      {"batch",
       {{"eps", 1e-5}, {"momentum", 0.1}, {"affine", true}, {"track_running_stats", true}}},
      {"instance",
       {{"eps", 1e-5}, {"momentum", 0.1}, {"affine", false}, {"track_running_stats", false}}},
      {"group", {{"eps", 1e-5}, {"affine", true}, {"groups", 4}}},
      {"layer",
       {{"eps", 1e-5}, {"affine", true}, {"normalized_shape", nullptr}, {"channel_affine", false}}},
      {"rms", {{"eps", nullptr}, {"affine", true}, {"normalized_shape", nullptr}}},
      {"weight", {{"dim", 0}}},
  };
  for (const auto& entry : defaults) {
    const std::string& type = entry.first;  // not a structured binding: CAPTURE is a lambda
    const json& expected = entry.second;
    CAPTURE(type);
    const json resolved = make_norm<double>({{"type", type}}, 0)->to_json();
    CHECK(resolved.at("type") == type);
    for (const auto& item : expected.items()) {
      const std::string key = item.key();
      CAPTURE(key);
      CHECK(resolved.value(key, json("missing")) == item.value());
    }
    CHECK(make_norm<float>({{"type", type}}, 0)->to_json() == resolved);
  }
}

TEST_CASE("to_json round trip: make_norm(norm->to_json()) gives the same spec") {
  const std::vector<json> specs = {
      {{"type", "batch"}},
      {{"type", "batch"}, {"momentum", nullptr}, {"eps", 1e-3}, {"affine", false}},
      {{"type", "layer"}},
      {{"type", "layer"}, {"normalized_shape", {3, 4}}},
      {{"type", "layer"}, {"channel_affine", true}},
      {{"type", "instance"}, {"affine", true}, {"track_running_stats", true}},
      {{"type", "group"}, {"groups", 2}},
      {{"type", "weight"}, {"dim", -1}},
      {{"type", "rms"}, {"eps", 1e-6}},
  };
  for (const json& spec : specs) {
    CAPTURE(spec.dump());
    auto norm = make_norm<double>(spec, 4);
    const json resolved = norm->to_json();
    for (const auto& [key, value] : spec.items()) CHECK(resolved.at(key) == value);
    CHECK(make_norm<double>(resolved, 4)->to_json() == resolved);
    CHECK(make_norm<float>(resolved, 4)->to_json() == resolved);
  }
  // A layer norm whose normalized_shape came from its first input keeps it.
  auto layer = make_norm<double>({{"type", "layer"}}, 0);
  layer->forward(xt::ones<double>({2, 3, 5}), Mode::train);
  CHECK(layer->to_json().at("normalized_shape") == json{3, 5});
  auto rebuilt = make_norm<double>(layer->to_json(), 0);
  CHECK(rebuilt->to_json() == layer->to_json());
  CHECK(rebuilt->parameter("gamma").value.shape() == layer->parameter("gamma").value.shape());
}

// Each src/norms/*.cpp but the framework's registers one type (docs/engine.md).
TEST_CASE("norm_types lists one type per norm source file") {
  std::size_t files = 0;
  for (const auto& entry : std::filesystem::directory_iterator(NORMLAB_SOURCE_DIR "/src/norms")) {
    const std::string name = entry.path().filename().string();
    if (entry.path().extension() == ".cpp" && name != "norm.cpp" && name != "registry.cpp") ++files;
  }
  const std::vector<std::string> types = norm_types();
  CHECK(files > 0);
  CHECK(types.size() == files);
  for (const std::string t : {"none", "batch", "layer", "weight"})
    CHECK_MESSAGE(std::count(types.begin(), types.end(), t) == 1, t);
}
