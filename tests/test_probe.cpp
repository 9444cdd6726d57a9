// normlab probe: batch statistics against population statistics. The error
// of the batch mean follows the 1/sqrt(B) law (Ghost BN's, over its virtual
// batches, 1/sqrt(V)), a batch holding the whole training set measures no
// error and no train/eval gap, the rows do not depend on the order of the
// batch sizes, a trained cell (loaded, or re-trained) reproduces its run, and every user error is
// named.
#include <doctest/doctest.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <map>
#include <string>
#include <vector>

#include "analysis_fixtures.hpp"
#include "normlab/normlab.hpp"
#include "test_helpers.hpp"

using namespace normlab;
using nlohmann::json;
using normlab::test::check_cli_failure;
using normlab::test::CliResult;
using normlab::test::error_of;
using normlab::test::read_file;
using normlab::test::run_cli;
using normlab::test::ScratchDir;
using normlab::test::tiny_run_config;
using normlab::test::write_config;
namespace fs = std::filesystem;

namespace {

// A probe-only config: fresh mlp2 with BatchNorm on 1024 synthetic samples.
json law_config() {
  json c = tiny_run_config("unused");
  c["dataset"]["train_size"] = 1024;
  c["norms"] = {"batch"};
  c["batch_sizes"] = {2, 4, 8, 16, 32, 64};
  c["probe"]["batches"] = 200;
  return c;
}

std::vector<json> probe(const json& config, const ProbeSource& source = {}) {
  return run_probe(parse_config(config), source, [](const std::string&) {});
}

// layer -> batch size -> record.
std::map<int, std::map<std::size_t, json>> by_layer(const std::vector<json>& records) {
  std::map<int, std::map<std::size_t, json>> out;
  for (const json& r : records) out[r["layer"].get<int>()][r["batch_size"].get<std::size_t>()] = r;
  return out;
}

std::size_t lines_in(const std::string& text) {
  return std::size_t(std::count(text.begin(), text.end(), '\n'));
}

}  // namespace

TEST_CASE("probe: the batch-mean error of a fresh mlp2 follows 1/sqrt(B)") {
  const std::vector<json> records = probe(law_config());
  REQUIRE(records.size() == 2 * 6);  // two BatchNorm layers x six batch sizes
  const auto layers = by_layer(records);
  REQUIRE(layers.size() == 2);
  for (const auto& [layer, rows] : layers) {
    const auto layer_index = layer;  // a copy: CAPTURE cannot capture a binding
    CAPTURE(layer_index);
    const json& first = rows.begin()->second;
    CHECK(first["channels"] == 256);
    CHECK(first["population_size"] == 1024);
    CHECK(first["batches"] == 200);
    CHECK(first["source"] == "fresh");
    CHECK(first["input_from"] == (layer == 1 ? "linear(784->256)" : "linear(256->256)"));
    double previous_mean = INFINITY, previous_var = INFINITY;
    for (const auto& [b, r] : rows) {
      const auto batch = b;
      CAPTURE(batch);
      CHECK(r["values_per_channel"] == b);  // mlp2: one value per sample and channel
      CHECK(r["inv_sqrt_b"].get<double>() == doctest::Approx(1 / std::sqrt(double(b))));
      const double mean_error = r["mean_error"].get<double>(),
                   var_error = r["var_error"].get<double>();
      // Loose: each doubling of B lowers the error, and the error stays near the law.
      CHECK(mean_error < previous_mean);
      CHECK(var_error < previous_var);
      CHECK(r["mean_error_ratio"].get<double>() > 0.6);
      CHECK(r["mean_error_ratio"].get<double>() < 1.4);
      CHECK(r["mean_error_std"].get<double>() > 0);
      previous_mean = mean_error;
      previous_var = var_error;
      // A fresh model's running statistics are its initial 0 and 1: no running gap reported.
      CHECK(r["gap_running"].is_null());
      CHECK(r["gap_population"].get<double>() > 0);
    }
    CHECK(rows.at(2)["gap_population"].get<double>() >
          2 * rows.at(64)["gap_population"].get<double>());
  }
}

TEST_CASE("probe: a batch of the whole training set has the population statistics") {
  json c = tiny_run_config("unused");
  c["norms"] = {"batch"};
  c["batch_sizes"] = {256};  // = train_size
  c["probe"]["batches"] = 3;
  for (const json& r : probe(c)) {
    CAPTURE(r["layer"]);
    CHECK(r["mean_error"].get<double>() < 1e-4);
    CHECK(r["var_error"].get<double>() < 1e-4);
    // Train mode normalizes by exactly the statistics eval mode is given.
    CHECK(r["gap_population"].get<double>() < 1e-4);
  }
}

TEST_CASE("probe: Ghost BN's batch statistics are those of its virtual batches, 1/sqrt(V)") {
  json c = law_config();
  c["norms"] = {"batch", {{"type", "ghost"}, {"virtual_batch_size", 4}}};
  c["batch_sizes"] = {8, 16, 64};
  const std::vector<json> records = probe(c);
  REQUIRE(records.size() == 2 * 2 * 3);  // two norms x two layers x three batch sizes
  std::map<std::string, std::map<int, std::map<std::size_t, json>>> rows;
  for (const json& r : records)
    rows[r["norm"].get<std::string>()][r["layer"].get<int>()][r["batch_size"].get<std::size_t>()] =
        r;
  const auto& ghost = rows.at("ghost(virtual_batch_size=4)");
  const auto& batch = rows.at("batch");
  for (int layer : {1, 2})
    for (std::size_t b : {8, 16, 64}) {
      CAPTURE(layer);
      CAPTURE(b);
      const json& g = ghost.at(layer).at(b);
      const json& n = batch.at(layer).at(b);
      CHECK(g["stats_batch_size"] == 4);
      CHECK(g["values_per_channel"] == 4);  // one value per sample of a virtual batch
      CHECK(n["stats_batch_size"] == b);
      CHECK(n["values_per_channel"] == b);
      // Every virtual batch is one sample of the statistic: the error follows
      // 1/sqrt(4) whatever B is; the ratio is taken against sqrt(V).
      const double ghost_error = g["mean_error"].get<double>();
      CHECK(ghost_error > 0.6 * 0.5);
      CHECK(ghost_error < 1.4 * 0.5);
      CHECK(g["mean_error_ratio"].get<double>() == doctest::Approx(ghost_error * 2));
      CHECK(g["var_error"].get<double>() > n["var_error"].get<double>());
      CHECK(g["inv_sqrt_b"].get<double>() == doctest::Approx(1 / std::sqrt(double(b))));
    }
  for (int layer : {1, 2}) {
    CAPTURE(layer);
    // Flat in B for ghost (within 15%), while batch's error falls by sqrt(8) from B=8 to 64.
    const double g8 = ghost.at(layer).at(8)["mean_error"].get<double>(),
                 g64 = ghost.at(layer).at(64)["mean_error"].get<double>();
    CHECK(g64 == doctest::Approx(g8).epsilon(0.15));
    CHECK(g64 > 3 * batch.at(layer).at(64)["mean_error"].get<double>());
  }
}

TEST_CASE("probe: Ghost BN over the whole training set still measures its virtual batches") {
  json c = tiny_run_config("unused");  // 256 training samples
  c["norms"] = {"batch", {{"type", "ghost"}, {"virtual_batch_size", 128}}};
  c["batch_sizes"] = {256};
  c["probe"]["batches"] = 20;
  const std::vector<json> records = probe(c);
  REQUIRE(records.size() == 4);
  for (const json& r : records) {
    CAPTURE(r["norm"]);
    CAPTURE(r["layer"]);
    if (r["norm"] == "batch") {
      CHECK(r["mean_error"].get<double>() < 1e-4);
      CHECK(r["gap_population"].get<double>() < 1e-4);
      continue;
    }
    // Two halves of the population: the mean of V of N values drawn without
    // replacement strays by sqrt((N - V) / (V (N - 1))) sigma, here 0.063.
    const double expected = std::sqrt((256.0 - 128) / (128.0 * 255));
    CHECK(r["mean_error"].get<double>() > 0.7 * expected);
    CHECK(r["mean_error"].get<double>() < 1.3 * expected);
    CHECK(r["gap_population"].get<double>() > 0.01);
  }
}

TEST_CASE("probe: every batch size starts from the same state, whatever the order") {
  // A short warm-up: rmax and dmax would open up within the probe's own forwards.
  json c = law_config();
  c["norms"] = {"batch", {{"type", "batch_renorm"}, {"warmup_steps", 10}}};
  c["probe"]["batches"] = 30;
  const auto keyed = [&](const std::vector<std::size_t>& batch_sizes) {
    c["batch_sizes"] = batch_sizes;
    std::map<std::string, json> rows;
    for (const json& r : probe(c))
      rows[r["norm"].get<std::string>() + "/" + r["layer"].dump() + "/" + r["batch_size"].dump()] =
          r;
    return rows;
  };
  const std::map<std::string, json> large_first = keyed({64, 8, 2}),
                                    small_first = keyed({2, 64, 8});
  REQUIRE(large_first.size() == 2 * 2 * 3);
  REQUIRE(small_first.size() == large_first.size());
  for (const auto& [key, r] : large_first) {
    const std::string row_key = key;
    CAPTURE(row_key);
    CHECK(r == small_first.at(key));  // every field, to the bit
  }
  // A fresh Batch Renorm is at step 0 of its warm-up at every B (r = 1, d = 0):
  // its train-mode output is BatchNorm's, and so is its gap.
  for (const auto& [key, r] : large_first) {
    if (r["norm"] == "batch") continue;
    const std::string batch_key = "batch/" + r["layer"].dump() + "/" + r["batch_size"].dump();
    CAPTURE(batch_key);
    CHECK(r["gap_population"].get<double>() ==
          doctest::Approx(large_first.at(batch_key)["gap_population"].get<double>()));
  }
}

TEST_CASE("probe: a trained Batch Renorm is probed from its trained state at every B") {
  ScratchDir dir;
  const std::string run_dir = dir / "run";
  json run = tiny_run_config(run_dir);
  // Trained for 32 steps of a 100-step warm-up: the probe's train forwards
  // would move it on if they did not start from the trained state.
  run["norms"] = {{{"type", "batch_renorm"}, {"warmup_steps", 100}}};
  run_experiment(parse_config(run), {run_dir, false});
  const std::string cell = "batch_renorm(warmup_steps=100)/B8/seed0";
  json c = run;
  c["batch_sizes"] = {32, 8};
  const std::vector<json> forward = probe(c, {run_dir, cell});
  c["batch_sizes"] = {8, 32};
  const std::vector<json> reversed = probe(c, {run_dir, cell});
  REQUIRE(forward.size() == 4);
  REQUIRE(reversed.size() == 4);
  const auto a = by_layer(forward), b = by_layer(reversed);
  for (int layer : {1, 2})
    for (std::size_t bs : {8, 32}) {
      CAPTURE(layer);
      CAPTURE(bs);
      CHECK(a.at(layer).at(bs) == b.at(layer).at(bs));  // every field, to the bit
      CHECK(a.at(layer).at(bs)["gap_running"].get<double>() > 0);
    }
}

TEST_CASE("probe: cnn3 layers count every position of a channel") {
  json c = tiny_run_config("unused");
  c["model"] = "cnn3";
  c["norms"] = {"layer", "batch"};  // only the batch-statistics norm is probed
  c["dataset"]["train_size"] = 64;
  c["batch_sizes"] = {4};
  c["probe"]["batches"] = 4;
  c["evaluation"]["batch_size"] = 32;
  const std::vector<json> records = probe(c);
  REQUIRE(records.size() == 3);
  CHECK(records[0]["norm"] == "batch");
  CHECK(records[0]["input_from"] == "conv3x3(1->16)");
  CHECK(records[0]["values_per_channel"] == 4 * 28 * 28);
  CHECK(records[1]["values_per_channel"] == 4 * 14 * 14);
  CHECK(records[2]["values_per_channel"] == 4 * 7 * 7);
  CHECK(records[2]["channels"] == 64);
}

TEST_CASE("probe: a trained cell reproduces its run and has a running-statistics gap") {
  ScratchDir dir;
  const std::string run_dir = dir / "run";
  run_experiment(parse_config(tiny_run_config(run_dir)), {run_dir, false});
  const std::vector<json> records = probe(tiny_run_config(run_dir), {run_dir, "batch/B8/seed0"});
  REQUIRE(records.size() == 2 * 2);
  for (const json& r : records) {
    CHECK(r["source"] == "trained");
    CHECK(r["trained_cell"] == "batch/B8/seed0");
    CHECK(r["trained_batch_size"] == 8);
    // Training is deterministic: the same weights, so the same test error to the bit.
    CHECK(r["retrained_test_error"] == r["run_test_error"]);
    CHECK(r["gap_running"].get<double>() > 0);
    CHECK(r["gap_population"].get<double>() > 0);
  }
}

TEST_CASE("probe: user errors name the problem") {
  ScratchDir dir;
  json layer_only = tiny_run_config("unused");
  layer_only["norms"] = {"layer"};
  const std::string no_norm = error_of<std::invalid_argument>([&] { probe(layer_only); });
  normlab::test::check_mentions(no_norm, {"norms: no batch-statistics norm", "batch"});

  const std::string run_dir = dir / "run";
  run_experiment(parse_config(tiny_run_config(run_dir)), {run_dir, false});
  const json config = tiny_run_config(run_dir);
  normlab::test::check_mentions(error_of<std::invalid_argument>([&] {
                                  probe(config, {run_dir, "batch/B5/seed0"});
                                }),
                                {"--cell 'batch/B5/seed0' is not a cell of", "batch/B32/seed0"});
  normlab::test::check_mentions(error_of<std::invalid_argument>([&] {
                                  probe(config, {run_dir, "layer/B8/seed0"});
                                }),
                                {"--cell 'layer/B8/seed0' has no batch-statistics norm"});
  json other_data = config;
  other_data["dataset"]["seed"] = 4;
  normlab::test::check_mentions(error_of<std::invalid_argument>([&] {
                                  probe(other_data, {run_dir, "batch/B8/seed0"});
                                }),
                                {"the config's dataset differs from the run's"});
  // Only the first cell's record kept: the others have not finished.
  const std::string results = read_file(run_dir + "/results.jsonl");
  normlab::test::write_bytes(run_dir + "/results.jsonl", results.substr(0, results.find('\n') + 1));
  normlab::test::check_mentions(error_of<std::invalid_argument>([&] {
                                  probe(config, {run_dir, "batch/B8/seed0"});
                                }),
                                {"--cell 'batch/B8/seed0' has not finished in"});
}

TEST_CASE("probe CLI: output files, the table, and failures that leave nothing") {
  ScratchDir dir;
  write_config(dir / "tiny.json", tiny_run_config(dir / "run"));
  const std::string out = dir / "probe";
  const CliResult ok =
      run_cli(dir, {"probe", dir / "tiny.json", "--out", out, "--set", "probe.batches=5"});
  INFO("stderr: " << ok.err);
  REQUIRE(ok.status == 0);
  CHECK(ok.out.find("| batch | 1 (after linear(784->256)) | 32 |") != std::string::npos);
  CHECK(lines_in(read_file(out + "/probe.jsonl")) == 4);  // 2 layers x 2 batch sizes
  const std::string csv = read_file(out + "/probe.csv");
  CHECK(lines_in(csv) == 5);
  CHECK(csv.rfind("source,trained_cell,seed,model,norm,layer,", 0) == 0);
  const json info = json::parse(read_file(out + "/probe_config.json"));
  CHECK(info["config"]["probe"]["batches"] == 5);
  CHECK(info["model_from"].is_null());

  // Default output of a trained probe: inside the run folder.
  const std::string run_dir = dir / "run";
  REQUIRE(run_cli(dir, {"run", dir / "tiny.json"}).status == 0);
  const CliResult trained =
      run_cli(dir, {"probe", "--model-from", run_dir, "--cell", "batch/B32/seed0"});
  INFO("stderr: " << trained.err);
  CHECK(trained.status == 0);
  CHECK(trained.err.find("saved model's test error") != std::string::npos);
  CHECK(fs::exists(run_dir + "/probe-batch_B32_seed0/probe.jsonl"));

  check_cli_failure(run_cli(dir, {"probe"}), "probe", {"missing CONFIG"});
  check_cli_failure(run_cli(dir, {"probe", dir / "tiny.json", "--cell", "batch/B32/seed0"}),
                    "probe", {"--model-from and --cell go together"});
  check_cli_failure(run_cli(dir, {"probe", dir / "tiny.json", "--set", "probe.batches=0"}), "probe",
                    {"probe.batches: expected at least 1"});
  check_cli_failure(run_cli(dir, {"probe", dir / "tiny.json", "--set", "probe.colour=1"}), "probe",
                    {"probe.colour"});
  const std::string failed = dir / "failed";
  check_cli_failure(
      run_cli(dir, {"probe", dir / "tiny.json", "--out", failed, "--set", "norms=[\"layer\"]"}),
      "probe", {"no batch-statistics norm"});
  CHECK(!fs::exists(failed));
}
