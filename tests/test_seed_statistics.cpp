// Seed statistics (src/experiment/seed_statistics) and how the report and
// table.md show them: mean ± 95% CI, standard deviation, paired differences
// against a baseline, diverged seeds counted apart, error bars.
#include <doctest/doctest.h>

#include <cmath>
#include <string>
#include <vector>

#include "analysis_fixtures.hpp"
#include "experiment/results_store.hpp"
#include "experiment/seed_statistics.hpp"
#include "normlab/normlab.hpp"
#include "test_helpers.hpp"

using namespace normlab;
using nlohmann::json;
using normlab::test::read_file;
using normlab::test::run_cli;
using normlab::test::ScratchDir;
using normlab::test::tiny_run_config;

// The values tests/test_seed_stats.py checks scripts/seed_stats.py against.
json seed_statistics_golden() {
  return json::parse(read_file(std::string(NORMLAB_GOLDEN_DIR) + "/seed_statistics.json"));
}

TEST_CASE("seed statistics: exact Student's t quantiles and p-values, as seed_stats.py has them") {
  // The textbook values, to more digits than tables give.
  CHECK(t_quantile_975(1) == doctest::Approx(12.7062047361747).epsilon(1e-13));
  CHECK(t_quantile_975(2) == doctest::Approx(4.30265272974946).epsilon(1e-13));
  CHECK(t_quantile_975(30) == doctest::Approx(2.04227245630124).epsilon(1e-13));
  CHECK(std::isnan(t_quantile_975(0)));
  CHECK(std::isnan(t_quantile(1.0, 3)));
  const json golden = seed_statistics_golden();
  REQUIRE(golden["quantiles"].size() > 50);
  for (const json& row : golden["quantiles"]) {
    CAPTURE(row.dump());
    CHECK(t_quantile(row[0].get<double>(), row[1].get<double>()) ==
          doctest::Approx(row[2].get<double>()).epsilon(1e-12));
  }
  REQUIRE(golden["two_sided_p"].size() > 20);
  for (const json& row : golden["two_sided_p"]) {
    CAPTURE(row.dump());
    CHECK(t_two_sided_p(row[0].get<double>(), row[1].get<double>()) ==
          doctest::Approx(row[2].get<double>()).epsilon(1e-12));
  }
  CHECK(t_two_sided_p(-2.0, 4) == t_two_sided_p(2.0, 4));
}

TEST_CASE("seed statistics: Holm's adjustment and the failure rule, as seed_stats.py has them") {
  const json golden = seed_statistics_golden();
  REQUIRE(golden["holm"].size() >= 3);
  for (const json& c : golden["holm"]) {
    std::vector<double> p;
    for (const json& v : c["p"]) p.push_back(v.is_null() ? NAN : v.get<double>());
    const std::vector<double> adjusted = holm_adjusted(p);
    REQUIRE(adjusted.size() == p.size());
    for (std::size_t i = 0; i < p.size(); ++i) {
      CAPTURE(c.dump());
      if (c["adjusted"][i].is_null())
        CHECK(std::isnan(adjusted[i]));
      else
        CHECK(adjusted[i] == doctest::Approx(c["adjusted"][i].get<double>()).epsilon(1e-12));
    }
  }
  REQUIRE(golden["outcomes"].size() >= 5);
  for (const json& row : golden["outcomes"]) {
    CAPTURE(row.dump());
    const double error = row[1].is_null() ? NAN : row[1].get<double>();
    CHECK(outcome_name(run_outcome(row[0].get<bool>(), error, row[2].get<std::size_t>())) ==
          row[3].get<std::string>());
  }
  // Old records carry no "classes": their config's synthetic dataset says, else ten.
  CHECK(record_classes(json{{"config", {{"dataset", {{"type", "synthetic"}, {"classes", 3}}}}}}) ==
        3);
  CHECK(record_classes(json{{"classes", 4}}) == 4);
  CHECK(record_classes(json::object()) == 10);
}

TEST_CASE("seed statistics: mean, standard deviation, 95% interval, p-value") {
  const SeedSummary s = summarize({1.0, 2.0, 3.0});
  CHECK(s.n == 3);
  CHECK(s.mean == doctest::Approx(2.0));
  CHECK(s.stddev == doctest::Approx(1.0));
  CHECK(s.ci95 == doctest::Approx(4.30265272974946 / std::sqrt(3.0)));
  CHECK(s.p_value == doctest::Approx(t_two_sided_p(2.0 / (1.0 / std::sqrt(3.0)), 2)));
  const SeedSummary one = summarize({5.0});
  CHECK(one.mean == 5.0);
  CHECK(std::isnan(one.stddev));
  CHECK(std::isnan(one.ci95));
  CHECK(std::isnan(summarize({}).mean));

  // Pairs only the seeds both have, in the first list's order.
  CHECK(paired_differences({10, 20, 30}, {0, 1, 2}, {1, 3}, {2, 0}) == std::vector<double>{7, 29});
}

TEST_CASE("seed statistics: grid cells show mean ± CI and count diverged seeds apart") {
  ResultGrid grid;
  grid.norms = {"batch", "group"};
  grid.batch_sizes = {2};
  grid.cells[{"batch", 2}] = {{40.0, 42.0, 44.0}, {0, 1, 2}, 0, false};
  grid.cells[{"group", 2}] = {{30.0, 33.0}, {0, 2}, 1, false};  // seed 1 diverged
  CHECK(grid.at("batch", 2).text("%.2f") == "42.00 ± 4.97 (n=3)");
  CHECK(grid.at("group", 2).text("%.2f") == "31.50 ± 19.06 (n=2; 1 diverged)");
  CHECK(grid.most_seeds() == 3);
  CHECK(grid.stddev_markdown("%.2f").find("| batch | 2.00 |") != std::string::npos);
  // group - batch on seeds 0 and 2: -10 and -11; one comparison, so Holm leaves p as it is.
  const std::string paired = grid.paired_markdown("batch", "%.2f");
  char expected[96];
  std::snprintf(expected, sizeof expected, "| group | -10.50 ± 6.35 (n=2, p=%.3f) |",
                t_two_sided_p(10.5 / 0.5, 1));
  CHECK(paired.find(expected) != std::string::npos);
  CHECK(paired.find("| batch |") == std::string::npos);
  CHECK(grid.paired_family_size("batch") == 1);

  // Failed runs (near chance) are counted like diverged ones, never averaged in.
  GridCell failing{{12.0}, {0}, 1, false, 2};
  CHECK(failing.text("%.2f") == "12.00 (n=1; 1 diverged, 2 failed)");
  GridCell lost{{}, {}, 0, false, 3};
  CHECK(lost.text("%.2f") == "3 failed");
  CHECK_FALSE(lost.empty());
}

TEST_CASE("seed statistics: Holm's adjustment over a paired table of several comparisons") {
  ResultGrid grid;
  grid.norms = {"batch", "group", "layer"};
  grid.batch_sizes = {2, 8};
  grid.cells[{"batch", 2}] = {{40, 41, 42}, {0, 1, 2}, 0, false};
  grid.cells[{"batch", 8}] = {{30, 31, 32}, {0, 1, 2}, 0, false};
  grid.cells[{"group", 2}] = {{35, 36.5, 37}, {0, 1, 2}, 0, false};
  grid.cells[{"group", 8}] = {{30.2, 31.4, 31.9}, {0, 1, 2}, 0, false};
  grid.cells[{"layer", 2}] = {{39, 41.5, 43}, {0, 1, 2}, 0, false};
  grid.cells[{"layer", 8}] = {{33}, {0}, 0, false};  // one seed: not in the family
  REQUIRE(grid.paired_family_size("batch") == 3);
  std::vector<double> raw;
  for (const auto& [norm, b] :
       std::vector<std::pair<std::string, std::size_t>>{{"group", 2}, {"group", 8}, {"layer", 2}})
    raw.push_back(
        summarize(paired_differences(grid.at(norm, b).values, grid.at(norm, b).seeds,
                                     grid.at("batch", b).values, grid.at("batch", b).seeds))
            .p_value);
  const std::vector<double> adjusted = holm_adjusted(raw);
  const std::string paired = grid.paired_markdown("batch", "%.2f");
  for (double p : adjusted) {
    char shown[32];
    std::snprintf(shown, sizeof shown, p < 0.001 ? "p<0.001" : "p=%.3f", p);
    CHECK(paired.find(shown) != std::string::npos);
  }
  CHECK(adjusted[0] > raw[0]);  // the smallest p is multiplied by 3
  CHECK(paired.find("+3.00 (n=1)") != std::string::npos);
}

TEST_CASE("seed statistics: a run at chance is counted as failed in table.md") {
  json diverged = {
      {"cell", "a"}, {"index", 0},       {"norm", "none"},        {"batch_size", 4},
      {"seed", 0},   {"diverged", true}, {"test_error", nullptr}, {"train_loss", json::array()}};
  json at_chance = diverged;
  at_chance["seed"] = 1;
  at_chance["diverged"] = false;
  at_chance["test_error"] = 0.9;
  json learned = at_chance;
  learned["seed"] = 2;
  learned["test_error"] = 0.2;
  const json config = {{"batch_sizes", {4}}, {"norms", {{{"type", "none"}}}}};
  const std::string table = error_table(config, {diverged, at_chance, learned});
  CHECK(table.find("| none | 20.00 (n=1; 1 diverged, 1 failed) |") != std::string::npos);
}

TEST_CASE("report: a run with three seeds has CI tables, a paired table and error bars") {
  ScratchDir dir;
  const std::string run = dir / "run";
  json config = tiny_run_config(run);
  config["norms"] = {"batch", "group"};
  config["batch_sizes"] = {16};
  config["seeds"] = {0, 1, 2};
  run_experiment(parse_config(config), {run, false});
  CHECK(read_file(run + "/table.md").find(" ± ") != std::string::npos);

  const std::string out = dir / "report";
  const auto r = run_cli(dir, {"report", run, "--out", out, "--baseline", "group"});
  INFO("stderr: " << r.err);
  REQUIRE(r.status == 0);
  const std::string md = read_file(out + "/report.md");
  CHECK(md.find("95% confidence interval over the n seeds that succeeded") != std::string::npos);
  CHECK(md.find("failed (test error at or above chance minus 5 points") != std::string::npos);
  CHECK(md.find("Holm-adjusted over the table's 1 comparisons") != std::string::npos);
  CHECK(md.find("Standard deviation of the test error over seeds") != std::string::npos);
  CHECK(md.find("Paired difference in test error (points) against group") != std::string::npos);
  CHECK(md.find("(n=3)") != std::string::npos);
  const std::string gp = read_file(out + "/tiny_test_error.gp");
  CHECK(gp.find("using 1:2:3 with yerrorlines") != std::string::npos);

  // Two baselines: a paired table against each.
  REQUIRE(run_cli(dir, {"report", run, "--out", out, "--baseline", "group", "--baseline", "batch"})
              .status == 0);
  const std::string both = read_file(out + "/report.md");
  CHECK(both.find("Paired difference in test error (points) against group") != std::string::npos);
  CHECK(both.find("Paired difference in test error (points) against batch") != std::string::npos);

  const auto bad = run_cli(dir, {"report", run, "--out", out, "--baseline", "weight"});
  CHECK(bad.status == 1);
  CHECK(bad.err.find("--baseline weight: not a norm of the run (its rows: batch, group)") !=
        std::string::npos);
}
