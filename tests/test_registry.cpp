// The norm registry (every registered type's default spec, to_json round
// trips, traits, layer_spec, parameter names) and `normlab list norms`, which
// must show exactly what the registry says.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <set>
#include <sstream>
#include <string>
#include <vector>
#include <xtensor/xarray.hpp>
#include <xtensor/xbuilder.hpp>
#include <xtensor/xmath.hpp>
#include <xtensor/xview.hpp>

#include "normlab/normlab.hpp"
#include "normlab/registry.hpp"
#include "test_helpers.hpp"

using namespace normlab;
using nlohmann::json;
using normlab::test::check_mentions;
using normlab::test::CliResult;
using normlab::test::error_of;
using normlab::test::run_cli;
using normlab::test::ScratchDir;

namespace {

using Names = std::set<std::string>;

bool in(const Names& names, const std::string& name) {
  return names.count(name) != 0;
}

Names as_set(const std::vector<std::string>& names) {
  return Names(names.begin(), names.end());
}

// The spec's option keys (all but "type").
Names option_keys(const json& spec) {
  Names keys;
  for (const auto& [key, value] : spec.items())
    if (key != "type") keys.insert(key);
  return keys;
}

// Specs with non-default options, one or more per type.
std::vector<json> varied_specs() {
  return {
      {{"type", "batch"}, {"momentum", nullptr}, {"affine", false}},
      {{"type", "batch_renorm"}, {"rmax", 2.0}, {"dmax", 1.0}, {"warmup_steps", 0}},
      {{"type", "evonorm_s0"}, {"groups", 8}, {"eps", 1e-3}},
      {{"type", "frn"}, {"tlu", false}, {"eps", 1e-4}},
      {{"type", "frn"}, {"tlu", true}},
      {{"type", "ghost"}, {"virtual_batch_size", 2}, {"track_running_stats", false}},
      {{"type", "group"}, {"groups", 2}, {"affine", false}},
      {{"type", "instance"}, {"affine", true}, {"track_running_stats", true}},
      {{"type", "layer"}, {"channel_affine", true}},
      {{"type", "layer"}, {"normalized_shape", {3, 3}}},
      {{"type", "rms"}, {"eps", 1e-6}, {"affine", false}},
      {{"type", "weight"}, {"dim", 1}},
  };
}

// The lines of `text` from the one that starts with "TYPE: " to the next
// line that does not start with a space.
std::string section_of(const std::string& text, const std::string& type) {
  std::istringstream in(text);
  std::string section;
  bool inside = false;
  for (std::string line; std::getline(in, line);) {
    if (!line.empty() && line[0] != ' ') inside = line.rfind(type + ": ", 0) == 0;
    if (inside) section += line + "\n";
  }
  return section;
}

// Whether this build can make the norm; says so when it cannot (sync_batch
// without MPI), so that a skipped norm shows in the test output.
bool available(const NormInfo& info) {
  const std::string reason = why_unavailable(info.traits);
  if (!reason.empty()) MESSAGE("skipped ", info.type, ": ", reason);
  return reason.empty();
}

// y for x in `mode` from a fresh norm of `spec`.
xt::xarray<double> output_of(const json& spec, const xt::xarray<double>& x, Mode mode) {
  return make_norm<double>(spec, 0)->forward(x, mode);
}

// (N, C, H, W) values with a different mean and spread per element, seeded.
xt::xarray<double> varied_input(std::vector<std::size_t> shape, double seed) {
  xt::xarray<double> x = xt::zeros<double>(shape);
  for (std::size_t i = 0; i < x.size(); ++i)
    x.flat(i) = std::sin(1.7 * double(i) + seed) * (1 + double(i % 7)) + 0.3 * double(i % 5);
  return x;
}

}  // namespace

TEST_CASE("registry: norm_types, registered_norms and norm_info agree") {
  const std::vector<std::string> types = norm_types();
  REQUIRE(types.size() == registered_norms().size());
  CHECK(std::is_sorted(types.begin(), types.end()));
  CHECK(as_set(types).size() == types.size());
  for (const std::string t : {"frn", "evonorm_s0", "batch", "ghost", "batch_renorm"})
    CHECK_MESSAGE(in(as_set(types), t), t);
  for (std::size_t i = 0; i < types.size(); ++i) {
    CAPTURE(types[i]);
    CHECK(registered_norms()[i].type == types[i]);
    CHECK(norm_info(types[i]).type == types[i]);
    CHECK_FALSE(norm_info(types[i]).summary.empty());
  }
}

TEST_CASE("registry: norm_info of an unknown name throws listing every registered name") {
  for (const std::string name : {"bogus", "", "FRN", "evonorm"}) {
    CAPTURE(name);
    const std::string message = error_of<std::invalid_argument>([&] { norm_info(name); });
    check_mentions(message, {"unknown type '" + name + "'"});
    check_mentions(message, norm_types());
  }
  // resolve_spec, norm_traits and layer_spec say the same.
  for (const std::string& message : {error_of<std::invalid_argument>([] {
                                       resolve_spec({{"type", "bogus"}});
                                     }),
                                     error_of<std::invalid_argument>([] {
                                       norm_traits({{"type", "bogus"}});
                                     }),
                                     error_of<std::invalid_argument>([] {
                                       layer_spec({{"type", "bogus"}}, 8, true);
                                     })}) {
    check_mentions(message, {"unknown type 'bogus'"});
    check_mentions(message, norm_types());
  }
}

TEST_CASE("registry: every norm resolves its default spec, and make_norm(to_json()) round-trips") {
  for (const NormInfo& info : registered_norms()) {
    CAPTURE(info.type);
    if (!available(info)) continue;
    const json resolved = resolve_spec({{"type", info.type}});
    REQUIRE(resolved.is_object());
    CHECK(resolved.at("type") == info.type);
    // Every option is present, with the default the registry lists.
    Names listed;
    for (const NormOption& o : info.options) {
      CAPTURE(o.key);
      if (!o.resolved_at_default) {  // a later key: absent at its default
        CHECK_FALSE(resolved.contains(o.key));
        continue;
      }
      listed.insert(o.key);
      REQUIRE(resolved.contains(o.key));
      CHECK(resolved.at(o.key) == o.default_value);
      CHECK_FALSE(o.kind.empty());
      CHECK_FALSE(o.help.empty());
    }
    CHECK(option_keys(resolved) == listed);
    // Resolving is idempotent, and make_norm builds what it says.
    CHECK(resolve_spec(resolved) == resolved);
    for (std::size_t channels : {std::size_t(0), std::size_t(32)}) {
      CAPTURE(channels);
      const json from_double = make_norm<double>({{"type", info.type}}, channels)->to_json();
      const json from_float = make_norm<float>({{"type", info.type}}, channels)->to_json();
      CHECK(from_double == resolved);
      CHECK(from_float == resolved);
      CHECK(make_norm<double>(from_double, channels)->to_json() == resolved);
      CHECK(make_norm<float>(from_float, channels)->to_json() == resolved);
      CHECK(make_norm<float>(from_double, channels)->to_json() == resolved);
    }
  }
}

TEST_CASE("registry: non-default specs round-trip for float and double") {
  for (const json& spec : varied_specs()) {
    CAPTURE(spec.dump());
    const json resolved = resolve_spec(spec);
    for (const auto& [key, value] : spec.items()) CHECK(resolved.at(key) == value);
    CHECK(option_keys(resolved) == option_keys(resolve_spec({{"type", spec.at("type")}})));
    auto d = make_norm<double>(spec, 16);
    auto f = make_norm<float>(spec, 16);
    CHECK(d->to_json() == resolved);
    CHECK(f->to_json() == resolved);
    CHECK(make_norm<double>(d->to_json(), 16)->to_json() == resolved);
    CHECK(make_norm<float>(f->to_json(), 16)->to_json() == resolved);
  }
}

// Each trait is checked against what the norm does, so a new norm's
// declared traits are checked without a list of names here.
TEST_CASE("registry: norm_traits with default options match what each norm does") {
  const std::vector<std::size_t> shape = {4, 32, 3, 3};
  const xt::xarray<double> x = varied_input(shape, 0.0);
  // x with samples 1..3 replaced: sample 0's output changes only with batch statistics.
  xt::xarray<double> other = varied_input(shape, 1.0);
  xt::view(other, 0) = xt::view(x, 0);
  std::size_t counted = 0;
  for (const NormInfo& info : registered_norms()) {
    const std::string type = info.type;
    CAPTURE(type);
    const json spec = {{"type", type}};
    const NormTraits t = norm_traits(spec);
    // NormInfo's traits are the ones of the default options.
    const NormTraits& listed = info.traits;
    CHECK(listed.batch_statistics == t.batch_statistics);
    CHECK(listed.needs_spatial == t.needs_spatial);
    CHECK(listed.running_state == t.running_state);
    CHECK(listed.train_uses_state == t.train_uses_state);
    CHECK(listed.reparameterizes_weight == t.reparameterizes_weight);
    CHECK(listed.includes_activation == t.includes_activation);
    CHECK(listed.preceding_weight == t.preceding_weight);
    CHECK(listed.virtual_batch_size == t.virtual_batch_size);
    CHECK(listed.channels_last == t.channels_last);
    CHECK(listed.torch_peer == t.torch_peer);
    CHECK(listed.needs_mpi == t.needs_mpi);
    CHECK(listed.identity == t.identity);
    CHECK(listed.parameters == t.parameters);
    CHECK(listed.state == t.state);
    CHECK(t.running_state == !t.state.empty());
    if (!t.preceding_weight.empty())
      CHECK(norm_traits({{"type", t.preceding_weight}}).reparameterizes_weight);
    // channels_last: the spec takes "layout": "nhwc" exactly when the trait says so
    // (at a conv layer too, where LayerNorm and RMSNorm take channel_affine).
    for (const json& form : {spec, layer_spec(spec, shape[1], /*spatial=*/true)}) {
      json nhwc = form;
      nhwc["layout"] = "nhwc";
      bool accepted = true;
      try {
        resolve_spec(nhwc);
      } catch (const std::invalid_argument&) {
        accepted = false;
      }
      const std::string form_text = form.dump();
      CAPTURE(form_text);
      CHECK(accepted == norm_traits(form).channels_last);
    }
    if (t.reparameterizes_weight) {  // the rest is about activations
      CHECK_FALSE(t.batch_statistics);
      CHECK_FALSE(t.channels_last);
      continue;
    }
    if (!available(info)) continue;
    ++counted;
    const xt::xarray<double> y = output_of(spec, x, Mode::train);
    // batch_statistics: sample 0's train output depends on the other samples.
    const bool depends_on_batch =
        !xt::allclose(xt::view(y, 0), xt::view(output_of(spec, other, Mode::train), 0));
    CHECK(depends_on_batch == t.batch_statistics);
    // train_uses_state: a norm whose train output for the same batch changes after a few
    // train forwards must declare it (Batch Renorm's warm-up may hide it that early).
    auto norm = make_norm<double>(spec, 0);
    const xt::xarray<double> first = norm->forward(x, Mode::train);
    for (double seed : {3.0, 4.0, 5.0}) norm->forward(varied_input(shape, seed), Mode::train);
    if (xt::any(xt::not_equal(norm->forward(x, Mode::train), first))) CHECK(t.train_uses_state);
    // identity: y is x, bit for bit.
    CHECK(bool(xt::all(xt::equal(y, x))) == t.identity);
    // needs_spatial: an (N, C) input is refused.
    bool flat_accepted = true;
    try {
      output_of(spec, varied_input({4, 32}, 2.0), Mode::train);
    } catch (const std::invalid_argument&) {
      flat_accepted = false;
    }
    CHECK(flat_accepted == !t.needs_spatial);
  }
  CHECK(counted > 0);
  CHECK(norm_traits({{"type", "ghost"}}).virtual_batch_size > 0);
  CHECK(as_set(norm_traits({{"type", "frn"}}).parameters) == Names{"gamma", "beta", "tau"});
  CHECK(as_set(norm_traits({{"type", "evonorm_s0"}}).parameters) == Names{"gamma", "beta", "v"});
}

TEST_CASE("registry: norm_traits follow the options") {
  for (std::size_t v : {1u, 2u, 8u, 32u}) {
    CAPTURE(v);
    CHECK(norm_traits({{"type", "ghost"}, {"virtual_batch_size", v}}).virtual_batch_size == v);
  }
  CHECK(as_set(norm_traits({{"type", "frn"}, {"tlu", false}}).parameters) ==
        Names{"gamma", "beta"});
  const NormTraits tracked = norm_traits({{"type", "instance"}, {"track_running_stats", true}});
  CHECK(tracked.running_state);
  CHECK(as_set(tracked.state) == Names{"running_mean", "running_var"});
  CHECK_FALSE(tracked.batch_statistics);
  const NormTraits untracked = norm_traits({{"type", "batch"}, {"track_running_stats", false}});
  CHECK_FALSE(untracked.running_state);
  CHECK(untracked.state.empty());
  CHECK(untracked.batch_statistics);
  CHECK(norm_traits({{"type", "batch"}, {"affine", false}}).parameters.empty());
  CHECK(as_set(norm_traits({{"type", "rms"}}).parameters) == Names{"gamma"});
  // Bad options are refused by norm_traits too, naming the key.
  check_mentions(error_of<std::invalid_argument>([] {
                   norm_traits({{"type", "evonorm_s0"}, {"groups", 0}});
                 }),
                 {"groups"});
  check_mentions(error_of<std::invalid_argument>([] {
                   norm_traits({{"type", "frn"}, {"tau", 1.0}});
                 }),
                 {"unknown key 'tau'"});
}

TEST_CASE("registry: parameter and state names of the built norm are the traits' (as sets)") {
  std::vector<json> specs;
  for (const NormInfo& info : registered_norms())
    if (available(info)) specs.push_back({{"type", info.type}});
  for (const json& spec : varied_specs()) specs.push_back(spec);
  const std::vector<std::size_t> shape = {4, 32, 3, 3};
  for (const json& spec : specs) {
    CAPTURE(spec.dump());
    const NormTraits t = norm_traits(spec);
    for (std::size_t channels : {std::size_t(0), std::size_t(32)}) {
      if (spec.value("normalized_shape", json()).is_array() || spec.at("type") == "weight")
        if (channels) continue;  // channels mean something else to these
      CAPTURE(channels);
      auto norm = make_norm<double>(spec, channels);
      norm->prepare(shape);
      CHECK(as_set(norm->parameter_names()) == as_set(t.parameters));
      CHECK(as_set(norm->state_names()) == as_set(t.state));
      if (spec.size() == 1) {  // the default options: what NormInfo lists
        const NormInfo& info = norm_info(spec.at("type").get<std::string>());
        CHECK(as_set(norm->parameter_names()) == as_set(info.traits.parameters));
        CHECK(as_set(norm->state_names()) == as_set(info.traits.state));
      }
    }
    // And a forward works on that input (ghost: N a multiple of V).
    xt::xarray<double> x = xt::arange<double>(4 * 32 * 9) * 0.01;
    x.reshape(shape);
    auto norm = make_norm<double>(spec, 0);
    CHECK_NOTHROW(norm->forward(x, Mode::train));
  }
}

TEST_CASE("registry: layer_spec adapts groups to min(groups, C) and row norms to the layer") {
  for (const std::string type : {"group", "evonorm_s0"}) {
    CAPTURE(type);
    for (bool spatial : {true, false}) {
      CAPTURE(spatial);
      const json big = {{"type", type}, {"groups", 32}};
      CHECK(layer_spec(big, 16, spatial).at("groups") == 16);
      CHECK(layer_spec(big, 32, spatial).at("groups") == 32);
      CHECK(layer_spec(big, 64, spatial).at("groups") == 32);
      CHECK(layer_spec(big, 1, spatial).at("groups") == 1);
      CHECK(layer_spec({{"type", type}, {"groups", 4}}, 256, spatial).at("groups") == 4);
      // The rest of the spec is the resolved spec.
      json expected = resolve_spec(big);
      expected["groups"] = 16;
      CHECK(layer_spec(big, 16, spatial) == expected);
    }
    CHECK(layer_spec({{"type", type}}, 2, true).at("groups") ==
          std::min<std::size_t>(2, resolve_spec({{"type", type}}).at("groups").get<std::size_t>()));
  }
  for (const std::string type : {"layer", "rms"}) {
    CAPTURE(type);
    const json spatial = layer_spec({{"type", type}}, 16, true);
    CHECK(spatial.at("channel_affine") == true);
    CHECK(spatial.at("normalized_shape").is_null());
    const json flat = layer_spec({{"type", type}}, 256, false);
    CHECK(flat.at("channel_affine") == false);
    CHECK(flat.at("normalized_shape") == json{256});
    // The adapted spec builds a norm with per-channel parameters.
    auto norm = make_norm<double>(spatial, 16);
    norm->prepare({2, 16, 3, 3});
    CHECK(norm->parameter("gamma").value.shape() == std::vector<std::size_t>{16});
  }
  // Norms with nothing to adapt come back resolved.
  for (const std::string type : {"batch", "batch_renorm", "instance", "frn", "weight"}) {
    CAPTURE(type);
    CHECK(layer_spec({{"type", type}}, 16, true) == resolve_spec({{"type", type}}));
  }
  CHECK(layer_spec({{"type", "ghost"}}, 16, false) == resolve_spec({{"type", "ghost"}}));
  CHECK(layer_spec({{"type", "evonorm_s0"}}, 256, false) == resolve_spec({{"type", "evonorm_s0"}}));
  // Where a norm cannot work the error says why.
  check_mentions(error_of<std::invalid_argument>([] {
                   layer_spec({{"type", "ghost"}, {"virtual_batch_size", 1}}, 16, false);
                 }),
                 {"virtual_batch_size 1"});
}

TEST_CASE("registry: layer_spec refuses frn at a layer without spatial positions") {
  const std::string message = error_of<std::invalid_argument>([] {
    layer_spec({{"type", "frn"}}, 256, /*spatial=*/false);
  });
  check_mentions(message, {"frn"});
}

TEST_CASE("list norms: the text names every type and every option with its default") {
  const ScratchDir dir;
  const CliResult result = run_cli(dir, {"list", "norms"});
  REQUIRE_MESSAGE(result.status == 0, result.err);
  CHECK(result.err.empty());
  for (const NormInfo& info : registered_norms()) {
    CAPTURE(info.type);
    const std::string section = section_of(result.out, info.type);
    REQUIRE_FALSE(section.empty());
    CHECK(section.rfind(info.type + ": " + info.summary + "\n", 0) == 0);
    const json resolved = resolve_spec({{"type", info.type}});
    for (const auto& [key, value] : resolved.items()) {
      if (key == "type") continue;
      check_mentions(section, {"\n    " + key + " = " + value.dump() + "  ("});
    }
    for (const std::string& p : info.traits.parameters) check_mentions(section, {p});
    if (info.options.empty()) check_mentions(section, {"(no options)"});
  }
  check_mentions(result.out, {"tau", "needs spatial dims"});
}

TEST_CASE("list norms --json: one entry per type, options and defaults as resolve_spec gives") {
  const ScratchDir dir;
  const CliResult result = run_cli(dir, {"list", "norms", "--json"});
  REQUIRE_MESSAGE(result.status == 0, result.err);
  CHECK(result.err.empty());
  const json list = json::parse(result.out, nullptr, /*allow_exceptions=*/false);
  REQUIRE_FALSE(list.is_discarded());
  REQUIRE(list.is_array());
  const std::vector<std::string> types = norm_types();
  REQUIRE(list.size() == types.size());
  for (std::size_t i = 0; i < types.size(); ++i) {
    const json& entry = list[i];
    CAPTURE(types[i]);
    CHECK(entry.at("type") == types[i]);
    CHECK(entry.at("summary") == norm_info(types[i]).summary);
    json defaults = {{"type", types[i]}};
    for (const json& option : entry.at("options")) {
      CHECK(option.at("kind").is_string());
      CHECK(option.at("help").is_string());
      if (option.at("resolved_at_default").get<bool>())
        defaults[option.at("key").get<std::string>()] = option.at("default");
    }
    CHECK(defaults == resolve_spec({{"type", types[i]}}));
    CHECK(entry.at("options").size() == norm_info(types[i]).options.size());
    const NormTraits t = norm_traits({{"type", types[i]}});
    CHECK(entry.at("parameters") == json(t.parameters));
    CHECK(entry.at("state") == json(t.state));
    const json& traits = entry.at("traits");
    CHECK(traits.at("batch_statistics") == t.batch_statistics);
    CHECK(traits.at("needs_spatial") == t.needs_spatial);
    CHECK(traits.at("running_state") == t.running_state);
    CHECK(traits.at("train_uses_state") == t.train_uses_state);
    CHECK(traits.at("reparameterizes_weight") == t.reparameterizes_weight);
    CHECK(traits.at("virtual_batch_size") == t.virtual_batch_size);
    CHECK(traits.at("includes_activation") == t.includes_activation);
    CHECK(traits.at("preceding_weight") == t.preceding_weight);
    CHECK(traits.at("channels_last") == t.channels_last);
    CHECK(traits.at("torch_peer") == t.torch_peer);
    CHECK(traits.at("needs_mpi") == t.needs_mpi);
    CHECK(traits.at("identity") == t.identity);
  }
}

TEST_CASE("list: an unknown topic exits non-zero with one line on stderr") {
  const ScratchDir dir;
  const CliResult result = run_cli(dir, {"list", "bogus"});
  CHECK(result.status != 0);
  CHECK(result.out.empty());
  CHECK(std::count(result.err.begin(), result.err.end(), '\n') == 1);
  CHECK(result.err.back() == '\n');
  check_mentions(result.err, {"normlab list", "bogus"});

  // `list` alone names every type.
  const CliResult plain = run_cli(dir, {"list"});
  REQUIRE(plain.status == 0);
  check_mentions(plain.out, norm_types());
}
