// Matched training budgets (epochs, steps or images), the validation split and
// the learning-rate search, through parse_config and the CLI on
// configs/tuned_quick.json: run, resume after a kill or lost lines, report.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <fstream>
#include <map>
#include <string>
#include <vector>

#include "analysis_fixtures.hpp"
#include "experiment/results_store.hpp"
#include "normlab/normlab.hpp"
#include "test_helpers.hpp"

using namespace normlab;
using nlohmann::json;
using normlab::test::read_file;
using normlab::test::run_cli;
using normlab::test::ScratchDir;
using normlab::test::tiny_run_config;
using normlab::test::write_config;

namespace {

const std::string kTunedQuick = std::string(NORMLAB_SOURCE_DIR) + "/configs/tuned_quick.json";

std::vector<std::string> lines_of(const std::string& path) {
  std::ifstream in(path);
  std::vector<std::string> lines;
  for (std::string line; std::getline(in, line);)
    if (!line.empty()) lines.push_back(line);
  return lines;
}

void write_lines(const std::string& path, const std::vector<std::string>& lines,
                 const std::string& tail = "") {
  std::string text;
  for (const std::string& line : lines) text += line + "\n";
  normlab::test::write_bytes(path, text + tail);
}

std::map<std::string, json> by_cell(const std::string& path) {
  std::map<std::string, json> records;
  for (const std::string& line : lines_of(path)) {
    const json r = json::parse(line);
    records[r["cell"].get<std::string>()] = r;
  }
  return records;
}

// The record fields that training determines (not timings or environment).
json results_of(const json& r) {
  json kept;
  for (const char* key : {"cell", "lr", "lr_multiplier", "validation_error", "test_error",
                          "train_loss", "diverged", "steps", "lr_search"})
    kept[key] = r.value(key, json());
  return kept;
}

// The id of cell `id`'s search run at `multiplier`: "batch/B4/seed0/lr_x0.5".
std::string run_id(const std::string& id, const json& multiplier) {
  char text[32];
  std::snprintf(text, sizeof text, "%.10g", multiplier.get<double>());
  return id + "/lr_x" + text;
}

std::string config_error(const json& config) {
  try {
    parse_config(config);
  } catch (const std::invalid_argument& e) {
    return e.what();
  }
  return "";
}

}  // namespace

TEST_CASE("budget: epochs, steps or images; the old \"epochs\" key resolves as before") {
  json config = tiny_run_config("unused");
  const ExperimentConfig old = parse_config(config);
  CHECK(old.budget.unit == BudgetConfig::Unit::epochs);
  CHECK(old.resolved["epochs"] == 1);
  CHECK_FALSE(old.resolved.contains("budget"));
  CHECK_FALSE(old.resolved["dataset"].contains("validation_size"));
  CHECK_FALSE(old.resolved["optimizer"].contains("lr_multipliers"));
  CHECK_FALSE(old.resolved["optimizer"]["schedule"].contains("drop_at"));

  config.erase("epochs");
  config["budget"] = {{"epochs", 1}};
  CHECK(parse_config(config).resolved == old.resolved);  // the same folder resumes either way

  config["budget"] = {{"steps", 50}};
  const ExperimentConfig steps = parse_config(config);
  CHECK(steps.budget.unit == BudgetConfig::Unit::steps);
  CHECK(steps.budget.steps(8, 32) == 50);
  CHECK(steps.resolved["budget"] == json{{"steps", 50}});
  CHECK_FALSE(steps.resolved.contains("epochs"));
  config["budget"] = {{"images", 1000}};
  CHECK(parse_config(config).budget.steps(8, 32) == 31);  // whole batches of 32
  CHECK(parse_config(config).budget.text() == "1000 images");

  config["epochs"] = 2;
  CHECK(config_error(config).find("epochs: give the budget once") != std::string::npos);
  config.erase("epochs");
  config["budget"] = {{"steps", 5}, {"images", 5}};
  CHECK(config_error(config).find("budget: expected exactly one of") != std::string::npos);
  config["budget"] = json::object();
  CHECK(config_error(config).find("budget: expected exactly one of") != std::string::npos);
  config["budget"] = {{"steps", 0}};
  CHECK(config_error(config).find("budget.steps") != std::string::npos);
  config["budget"] = {{"hours", 1}};
  CHECK_FALSE(config_error(config).empty());
}

TEST_CASE("budget: the schedule on fractions of the budget, and drop_epochs as before") {
  OptimizerConfig o;
  o.lr = 0.1;
  o.base_batch = 32;
  o.drop_fractions = {0.5, 0.75};
  CHECK(o.lr_at_step(0, 100, 10, 32) == doctest::Approx(0.1));
  CHECK(o.lr_at_step(49, 100, 10, 32) == doctest::Approx(0.1));
  CHECK(o.lr_at_step(50, 100, 10, 32) == doctest::Approx(0.01));
  CHECK(o.lr_at_step(75, 100, 10, 32) == doctest::Approx(0.001));
  CHECK(o.lr_at_step(0, 100, 10, 64) == doctest::Approx(0.2));  // linear scaling
  OptimizerConfig epochs = o;
  epochs.drop_fractions.clear();
  epochs.drop_epochs = {2};
  for (std::size_t step : {0, 19, 20, 35})
    CHECK(epochs.lr_at_step(step, 40, 10, 32) == epochs.lr_at(step / 10, 32));

  json config = tiny_run_config("unused");
  config["optimizer"]["schedule"] = {{"drop_at", {1.0}}};
  CHECK(config_error(config).find("optimizer.schedule.drop_at: expected fractions") !=
        std::string::npos);
  config["optimizer"]["schedule"] = {{"drop_at", {0.5}}, {"drop_epochs", {1}}};
  CHECK(config_error(config).find("not both") != std::string::npos);
}

TEST_CASE("validation split and lr search: config checks") {
  json config = tiny_run_config("unused");
  config["optimizer"]["lr_multipliers"] = {0.5, 1};
  CHECK(config_error(config).find("set dataset.validation_size") != std::string::npos);
  config["dataset"]["validation_size"] = 64;
  const ExperimentConfig parsed = parse_config(config);
  CHECK(parsed.resolved["dataset"]["validation_size"] == 64);
  CHECK(parsed.resolved["optimizer"]["lr_multipliers"] == json{0.5, 1});
  const std::vector<Cell> runs = search_runs(parsed, grid_cells(parsed).front());
  REQUIRE(runs.size() == 2);
  CHECK(runs[0].id() == "batch/B32/seed0/lr_x0.5");
  CHECK(runs[1].id() == "batch/B32/seed0/lr_x1");
  CHECK(grid_cells(parsed).front().id() == "batch/B32/seed0");

  config["optimizer"]["lr_multipliers"] = {1, 1};
  CHECK(config_error(config).find("lists 1 twice") != std::string::npos);
  config["optimizer"]["lr_multipliers"] = {0, 1};
  CHECK(config_error(config).find("expected positive numbers") != std::string::npos);
  config["optimizer"]["lr_multipliers"] = json::array();
  CHECK(config_error(config).find("non-empty") != std::string::npos);
  config["optimizer"].erase("lr_multipliers");
  config["dataset"]["validation_size"] = 256;
  CHECK(config_error(config).find("dataset.validation_size: expected fewer than train_size") !=
        std::string::npos);
  config["dataset"]["validation_size"] = 240;  // leaves 16 samples: B=32 cannot train
  CHECK(config_error(config).find("less validation_size 240") != std::string::npos);

  // The split: disjoint, of the asked size, fixed by its seed.
  DatasetConfig d;
  d.validation_size = 10;
  d.validation_seed = 5;
  const Dataset all = make_synthetic(50, 4, 1);
  const auto [rest, held_out] = split_validation(all, d);
  CHECK(rest.size() == 40);
  CHECK(held_out.size() == 10);
  CHECK(split_validation(all, d).second.labels == held_out.labels);
  d.validation_size = 50;
  CHECK_THROWS_AS(split_validation(all, d), std::invalid_argument);
}

TEST_CASE(
    "tuned_quick: run, the selected learning rates, resume after a kill and lost lines, "
    "report") {
  const ScratchDir dir;
  const std::string out = dir / "run";
  const auto first = run_cli(dir, {"run", kTunedQuick, "--out", out});
  INFO("stderr: " << first.err);
  REQUIRE(first.status == 0);
  const ExperimentConfig config = load_config(kTunedQuick, {});
  const std::size_t cells = config.norms.size() * config.batch_sizes.size() * config.seeds.size();
  const std::size_t multipliers = config.optimizer.lr_multipliers.size();
  REQUIRE(multipliers >= 2);
  const std::map<std::string, json> records = by_cell(out + "/results.jsonl");
  const std::map<std::string, json> searched = by_cell(out + "/search.jsonl");
  REQUIRE(records.size() == cells);
  REQUIRE(searched.size() == cells * multipliers);

  int distinct_choices = 0;
  for (const auto& [id, r] : records) {
    const std::string cell_id = id;  // a copy: INFO captures, and clang cannot capture bindings
    INFO("cell " << cell_id);
    CHECK(r["steps"] == 120);  // the same number of updates at B=32 and B=4
    CHECK(r["budget"] == "120 steps");
    REQUIRE(r["lr_search"].size() == multipliers);
    // The selected run is the search run of lowest validation error among those that succeeded.
    double best = INFINITY;
    json best_multiplier;
    for (const json& tried : r["lr_search"]) {
      const json& run = searched.at(run_id(id, tried["lr_multiplier"]));
      CHECK(run["validation_error"] == tried["validation_error"]);
      CHECK(run["test_error"] == tried["test_error"]);
      if (tried["outcome"] == "succeeded" && tried["validation_error"].get<double>() < best) {
        best = tried["validation_error"].get<double>();
        best_multiplier = tried["lr_multiplier"];
      }
    }
    if (best_multiplier.is_null()) continue;  // nothing succeeded: the cell counts as failed
    CHECK(r["lr_multiplier"] == best_multiplier);
    CHECK(r["validation_error"] == best);
    const json& chosen = searched.at(run_id(id, best_multiplier));
    CHECK(results_of(r)["test_error"] == chosen["test_error"]);
    CHECK(r["lr"].get<double>() ==
          doctest::Approx(best_multiplier.get<double>() *
                          config.optimizer.lr_at(0, r["batch_size"].get<std::size_t>())));
    distinct_choices += best_multiplier != json(1);
  }
  MESSAGE("cells that selected a multiplier other than 1: " << distinct_choices);

  // A kill: the last search run cut in half, and a cell whose search had
  // finished lost its record. The rerun trains only the cut run, selects the
  // two cells again and gives the same results.
  std::vector<std::string> search_lines = lines_of(out + "/search.jsonl");
  const std::string cut = search_lines.back();
  search_lines.pop_back();
  write_lines(out + "/search.jsonl", search_lines, cut.substr(0, cut.size() / 2));
  std::vector<std::string> result_lines = lines_of(out + "/results.jsonl");
  const json lost_a = json::parse(result_lines.front());
  const std::string cut_cell = json::parse(cut)["cell"].get<std::string>();
  result_lines.erase(std::remove_if(result_lines.begin(), result_lines.end(),
                                    [&](const std::string& line) {
                                      const std::string id = json::parse(line)["cell"];
                                      return id == lost_a["cell"] ||
                                             cut_cell.rfind(id + "/lr_x", 0) == 0;
                                    }),
                     result_lines.end());
  write_lines(out + "/results.jsonl", result_lines);
  REQUIRE(lines_of(out + "/results.jsonl").size() <= cells - 1);
  const auto resumed = run_cli(dir, {"run", kTunedQuick, "--out", out});
  INFO("stderr: " << resumed.err);
  REQUIRE(resumed.status == 0);
  const std::map<std::string, json> again = by_cell(out + "/results.jsonl");
  REQUIRE(again.size() == cells);
  for (const auto& [id, r] : records) CHECK(results_of(again.at(id)) == results_of(r));
  // Only the cut run trained again: the cell whose search had finished was
  // selected from search.jsonl (a second run of it would add lines).
  CHECK(lines_of(out + "/search.jsonl").size() == cells * multipliers);

  // Nothing left: the rerun trains nothing and changes nothing.
  const std::string before = read_file(out + "/results.jsonl");
  REQUIRE(run_cli(dir, {"run", kTunedQuick, "--out", out}).status == 0);
  CHECK(read_file(out + "/results.jsonl") == before);

  const std::string report = dir / "report";
  const auto rendered = run_cli(dir, {"report", out, "--out", report});
  INFO("stderr: " << rendered.err);
  REQUIRE(rendered.status == 0);
  const std::string md = read_file(report + "/report.md");
  CHECK(md.find("120 steps per cell") != std::string::npos);
  CHECK(md.find("the wall time of the " + std::to_string(cells * multipliers) +
                " learning-rate search runs summed") != std::string::npos);
  CHECK(md.find("Learning rate selected on the validation split") != std::string::npos);
  CHECK(md.find("Validation error (%) of the selected runs") != std::string::npos);
  CHECK(md.find("Search runs that diverged or failed") != std::string::npos);
  CHECK(md.find(" failed (of " + std::to_string(cells / config.norms.size()) + ")") !=
        std::string::npos);
  CHECK(md.find("Holm-adjusted") != std::string::npos);
  CHECK(md.find("failed (test error at or above chance minus 5 points") != std::string::npos);
  const std::string gp = read_file(report + "/tuned_quick_lr_search.gp");
  CHECK(gp.find("learning-rate multiplier") != std::string::npos);
}

TEST_CASE("budget in steps: the last epoch is cut short, the loss curve and records say so") {
  const ScratchDir dir;
  json config = tiny_run_config(dir / "run");
  config.erase("epochs");
  config["budget"] = {{"steps", 12}};  // B=32: 8 steps per epoch, then 4
  config["batch_sizes"] = {32};
  config["norms"] = {"batch"};
  const ExperimentConfig parsed = parse_config(config);
  run_experiment(parsed, {dir / "run", false});
  const json r = json::parse(lines_of(dir / "run/results.jsonl").front());
  CHECK(r["steps"] == 12);
  CHECK(r["steps_per_epoch"] == 8);
  CHECK(r["epochs"].get<double>() == doctest::Approx(1.5));
  CHECK(r["train_loss"].size() == 2);
  CHECK(r["loss_curve"]["epoch"].back().get<double>() == doctest::Approx(1.5));
  CHECK_FALSE(r.contains("validation_error"));
  // The long-format loss curve has rows of the second, cut epoch.
  CHECK(read_file(dir / "run/loss_curve.csv").find(",2,") != std::string::npos);

  // The same run in images: 12 batches of 32.
  json images = config;
  images["budget"] = {{"images", 12 * 32 + 5}};
  run_experiment(parse_config(images), {dir / "images", false});
  const json s = json::parse(lines_of(dir / "images/results.jsonl").front());
  CHECK(s["train_loss"] == r["train_loss"]);
  CHECK(s["test_error"] == r["test_error"]);
}

TEST_CASE("budget in epochs: \"budget\": {\"epochs\": N} trains exactly as \"epochs\": N") {
  const ScratchDir dir;
  json config = tiny_run_config(dir / "old");
  config["epochs"] = 2;
  config["batch_sizes"] = {8};
  config["optimizer"]["schedule"] = {{"drop_epochs", {1}}};
  run_experiment(parse_config(config), {dir / "old", false});
  config.erase("epochs");
  config["budget"] = {{"epochs", 2}};
  run_experiment(parse_config(config), {dir / "new", false});
  const std::map<std::string, json> old = by_cell(dir / "old/results.jsonl");
  const std::map<std::string, json> now = by_cell(dir / "new/results.jsonl");
  REQUIRE(old.size() == 2);
  for (const auto& [id, r] : old) {
    CHECK(now.at(id)["train_loss"] == r["train_loss"]);
    CHECK(now.at(id)["test_error"] == r["test_error"]);
    CHECK(now.at(id)["loss_curve"] == r["loss_curve"]);
  }
}
