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

TEST_CASE("seed statistics: Student's t quantiles, mean, standard deviation, 95% interval") {
  CHECK(t_quantile_975(1) == doctest::Approx(12.706));
  CHECK(t_quantile_975(2) == doctest::Approx(4.303));
  CHECK(t_quantile_975(30) == doctest::Approx(2.042));
  CHECK(t_quantile_975(31) == doctest::Approx(2.0395).epsilon(1e-3));  // the expansion takes over
  CHECK(t_quantile_975(1000) == doctest::Approx(1.9623).epsilon(1e-3));
  CHECK(std::isnan(t_quantile_975(0)));

  const SeedSummary s = summarize({1.0, 2.0, 3.0});
  CHECK(s.n == 3);
  CHECK(s.mean == doctest::Approx(2.0));
  CHECK(s.stddev == doctest::Approx(1.0));
  CHECK(s.ci95 == doctest::Approx(4.303 / std::sqrt(3.0)));
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
  CHECK(grid.at("batch", 2).text("%.2f") == "42.00 ± 4.97");
  CHECK(grid.at("group", 2).text("%.2f") == "31.50 ± 19.06 (1 diverged)");
  CHECK(grid.most_seeds() == 3);
  CHECK(grid.stddev_markdown("%.2f").find("| batch | 2.00 |") != std::string::npos);
  // group - batch on seeds 0 and 2: -10 and -11.
  const std::string paired = grid.paired_markdown("batch", "%.2f");
  CHECK(paired.find("| group | -10.50 ± 6.35 (n=2) |") != std::string::npos);
  CHECK(paired.find("| batch |") == std::string::npos);
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
  CHECK(md.find("95% confidence interval over seeds") != std::string::npos);
  CHECK(md.find("Standard deviation of the test error over seeds") != std::string::npos);
  CHECK(md.find("Paired difference in test error (points) against group") != std::string::npos);
  CHECK(md.find("(n=3)") != std::string::npos);
  const std::string gp = read_file(out + "/tiny_test_error.gp");
  CHECK(gp.find("using 1:2:3 with yerrorlines") != std::string::npos);

  const auto bad = run_cli(dir, {"report", run, "--out", out, "--baseline", "weight"});
  CHECK(bad.status == 1);
  CHECK(bad.err.find("--baseline weight: not a norm of the run (its rows: batch, group)") !=
        std::string::npos);
}
