// A cell's trained weights in its folder (src/experiment/saved_weights.cpp):
// a run saves them, they load back into the same model to the bit for every
// kind of norm, `normlab probe --model-from` of a saved cell gives the probe
// of the model as trained (the same records as re-training it), and a
// corrupt or mismatched weight file is a one-line error naming the file.
#include <doctest/doctest.h>

#include <filesystem>
#include <string>
#include <vector>

#include "analysis_fixtures.hpp"
#include "experiment/saved_weights.hpp"
#include "normlab/normlab.hpp"
#include "test_helpers.hpp"

using namespace normlab;
using nlohmann::json;
using normlab::test::check_cli_failure;
using normlab::test::check_mentions;
using normlab::test::error_of;
using normlab::test::read_file;
using normlab::test::run_cli;
using normlab::test::ScratchDir;
using normlab::test::tiny_run_config;
using normlab::test::write_bytes;
using normlab::test::write_config;
namespace fs = std::filesystem;

namespace {

std::vector<json> probe(const json& config, const ProbeSource& source) {
  return run_probe(parse_config(config), source, [](const std::string&) {});
}

// A trained-looking model: a few SGD steps move every parameter and running
// statistic away from its initial value.
Model<float> trained_model(const ExperimentConfig& config, const Cell& cell) {
  Model<float> model = build_model<float>(config.model, cell.norm, config.activation_layout);
  model.initialize(5);
  Sgd<float> sgd(model.parameters(), 0.9, 5e-4);
  const Dataset data = make_synthetic(4, 10, 2);
  for (int step = 0; step < 3; ++step) {
    xt::xarray<float> dlogits;
    softmax_cross_entropy(model.forward(data.images, Mode::train), data.labels, dlogits);
    sgd.zero_grad();
    model.backward(dlogits);
    sgd.step(0.05);
  }
  return model;
}

ExperimentConfig resnet_config(const std::string& layout) {
  json c = tiny_run_config("unused");
  c["model"] = "resnet8_w4";
  c["activation_layout"] = layout;
  return parse_config(c);
}

Cell cell_with(const json& norm) {
  Cell cell;
  cell.norm = norm;
  cell.batch_size = 4;
  return cell;
}

// The records without the field that says where the weights came from.
std::vector<json> without_weights_source(std::vector<json> records) {
  for (json& r : records) r.erase("weights");
  return records;
}

}  // namespace

TEST_CASE("saved weights: every kind of norm loads back to the same model, to the bit") {
  ScratchDir dir;
  for (const std::string layout : {"nchw", "nhwc"})
    for (const json& norm :
         {json{{"type", "batch"}}, json{{"type", "group"}}, json{{"type", "weight"}},
          json{{"type", "none"}}, json{{"type", "batch_renorm"}}, json{{"type", "frn"}},
          json{{"type", "evonorm_s0"}}, json{{"type", "layer"}}}) {
      INFO(layout << " " << norm.dump());
      const ExperimentConfig config = resnet_config(layout);
      const Cell cell = cell_with(norm);
      Model<float> model = trained_model(config, cell);
      save_cell_weights(dir.path(), config, cell, model);
      Model<float> loaded = build_model<float>(config.model, norm, config.activation_layout);
      load_cell_weights(dir.path(), config, cell, loaded);
      const Dataset data = make_synthetic(6, 10, 9);
      const xt::xarray<float> want = model.forward(data.images, Mode::eval);
      CHECK(loaded.forward(data.images, Mode::eval) == want);  // running statistics included
      const xt::xarray<float> want_train = model.forward(data.images, Mode::train);
      CHECK(loaded.forward(data.images, Mode::train) == want_train);  // Batch Renorm's step count
    }
}

TEST_CASE("saved weights: the probe of a saved cell is the probe of the model as trained") {
  ScratchDir dir;
  const std::string run_dir = dir / "run";
  json config = tiny_run_config(run_dir);
  config["model"] = "resnet8_w4";
  config["dataset"]["train_size"] = 128;
  config["dataset"]["test_size"] = 64;
  config["norms"] = {"batch", "group"};
  config["batch_sizes"] = {8};
  config["probe"]["batches"] = 4;
  run_experiment(parse_config(config), {run_dir, false});
  const std::string cell = "batch/B8/seed0";
  REQUIRE(has_cell_weights(run_dir, cell));
  REQUIRE(fs::exists(cell_folder(run_dir, cell) / "weights.json"));
  CHECK(has_cell_weights(run_dir, "group/B8/seed0"));  // every cell keeps its weights

  const std::vector<json> saved = probe(config, {run_dir, cell});
  // The norms at the model's own layer positions: the stem's and 2 per block (the
  // projection shortcuts' norms sit inside their residual_add layers and are not probed).
  REQUIRE(saved.size() == 7);
  for (const json& r : saved) {
    CHECK(r["weights"] == "saved");
    CHECK(r["retrained_test_error"] == r["run_test_error"]);  // the same model, to the bit
  }
  // Without the saved weights the probe re-trains the cell (deterministic):
  // the model right after training, so the same probe to the bit.
  fs::remove_all(cell_folder(run_dir, cell));
  const std::vector<json> retrained = probe(config, {run_dir, cell});
  for (const json& r : retrained) CHECK(r["weights"] == "retrained");
  CHECK(without_weights_source(saved) == without_weights_source(retrained));
}

TEST_CASE("saved weights: a corrupt or mismatched weight file is an error naming it") {
  ScratchDir dir;
  const ExperimentConfig config = resnet_config("nchw");
  const Cell cell = cell_with({{"type", "batch"}});
  Model<float> model = trained_model(config, cell);
  const fs::path folder = cell_folder(dir.path(), cell.id());
  // The error of loading the cell's weights into a fresh model, for the run `run`.
  auto load_error_for = [&](const ExperimentConfig& run) {
    Model<float> fresh = build_model<float>(config.model, cell.norm);
    const std::string message =
        error_of<std::runtime_error>([&] { load_cell_weights(dir.path(), run, cell, fresh); });
    CHECK(message.find('\n') == std::string::npos);  // one line
    return message;
  };
  auto load_error = [&] { return load_error_for(config); };
  auto fresh_save = [&] { save_cell_weights(dir.path(), config, cell, model); };

  fresh_save();
  const std::string first = (folder / "weight_000.npy").string();
  const std::string bytes = read_file(first);
  write_bytes(first, bytes.substr(0, bytes.size() / 2));  // cut short
  check_mentions(load_error(), {first});

  fresh_save();
  write_bytes(first, "not an npy file at all");
  check_mentions(load_error(), {first});

  fresh_save();  // another tensor's file in its place: the shape differs
  write_bytes(first, read_file((folder / "weight_001.npy").string()));
  check_mentions(load_error(), {first, "shape (4,)", "(4, 1, 3, 3)"});

  fresh_save();
  fs::remove(folder / "weight_003.npy");
  check_mentions(load_error(), {(folder / "weight_003.npy").string()});

  const std::string index = (folder / "weights.json").string();
  fresh_save();
  write_bytes(index, "{\"format\": ");
  check_mentions(load_error(), {index, "not valid JSON"});

  fresh_save();
  json other = json::parse(read_file(index));
  other["norm_spec"] = {{"type", "group"}};
  write_bytes(index, other.dump());
  check_mentions(load_error(), {index, "norm_spec", "group", "delete"});

  fresh_save();
  other = json::parse(read_file(index));
  other["tensors"].erase(other["tensors"].size() - 1);
  write_bytes(index, other.dump());
  check_mentions(load_error(), {index, "tensors", "the model has"});

  fresh_save();
  other = json::parse(read_file(index));
  other["tensors"][0]["file"] = "../../elsewhere.npy";
  write_bytes(index, other.dump());
  check_mentions(load_error(), {index, "tensor 0"});

  fresh_save();  // a run of another model
  json c = tiny_run_config("unused");
  c["model"] = "resnet14_w4";
  check_mentions(load_error_for(parse_config(c)),
                 {index, "\"model\"", "resnet8_w4", "resnet14_w4"});
}

TEST_CASE("saved weights: probe --model-from with a damaged file fails in one line naming it") {
  ScratchDir dir;
  json config = tiny_run_config(dir / "run");
  config["batch_sizes"] = {32};
  config["norms"] = {"batch"};
  write_config(dir / "tiny.json", config);
  REQUIRE(run_cli(dir, {"run", dir / "tiny.json"}).status == 0);
  const fs::path weight = cell_folder(dir / "run", "batch/B32/seed0") / "weight_002.npy";
  REQUIRE(fs::exists(weight));
  write_bytes(weight.string(), read_file(weight.string()).substr(0, 100));
  const std::string out = dir / "probe-out";
  check_cli_failure(run_cli(dir, {"probe", "--model-from", dir / "run", "--cell", "batch/B32/seed0",
                                  "--out", out}),
                    "probe", {weight.string()});
  CHECK_FALSE(fs::exists(out));  // no partial output
}
