// normlab report: figures drawn by gnuplot (SVG and PNG), tables and
// report.html from a tiny run and its probes; without gnuplot the tables and
// scripts are still written with the install hint; the loss curve the runner
// records; and the command's errors.
#include <doctest/doctest.h>

#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include "analysis_fixtures.hpp"
#include "normlab/normlab.hpp"
#include "test_helpers.hpp"

using namespace normlab;
using nlohmann::json;
using normlab::test::check_cli_failure;
using normlab::test::CliResult;
using normlab::test::read_file;
using normlab::test::run_cli;
using normlab::test::ScratchDir;
using normlab::test::tiny_run_config;
using normlab::test::write_config;
namespace fs = std::filesystem;

namespace {

// A finished tiny run with a probe inside it (run/probe) and one beside it (other_probe).
struct TinyRun {
  ScratchDir dir;
  std::string run = dir / "run";
  TinyRun() {
    run_experiment(parse_config(tiny_run_config(run)), {run, false});
    write_config(dir / "tiny.json", tiny_run_config(run));
    for (const std::string& out : {run + "/probe", dir / "other_probe"})
      REQUIRE(run_cli(dir, {"probe", dir / "tiny.json", "--out", out, "--set", "probe.batches=5"})
                  .status == 0);
  }
  std::vector<json> records() const {
    std::vector<json> out;
    std::istringstream in(read_file(run + "/results.jsonl"));
    for (std::string line; std::getline(in, line);) out.push_back(json::parse(line));
    return out;
  }
};

// Sets PATH for the lifetime of the object (the CLI is started through /bin/sh by absolute path).
class ScopedPath {
 public:
  explicit ScopedPath(const std::string& path)
      : saved_(std::getenv("PATH") ? std::getenv("PATH") : "") {
    ::setenv("PATH", path.c_str(), 1);
  }
  ~ScopedPath() { ::setenv("PATH", saved_.c_str(), 1); }

 private:
  std::string saved_;
};

bool has_gnuplot() {
  return std::system("command -v gnuplot >/dev/null 2>&1") == 0;
}

// The rows of the block "# TITLE" of a gnuplot .dat file: x -> y.
std::map<double, double> data_block(const std::string& dat, const std::string& title) {
  std::map<double, double> rows;
  std::istringstream in(dat);
  bool inside = false;
  for (std::string line; std::getline(in, line);) {
    if (line.rfind("# ", 0) == 0)
      inside = line == "# " + title;
    else if (inside && !line.empty()) {
      std::istringstream row(line);
      double x, y;
      row >> x >> y;
      rows[x] = y;
    }
  }
  return rows;
}

const std::vector<std::string> kFigures = {"tiny_test_error",
                                           "tiny_train_loss",
                                           "tiny_probe_batch_stats",
                                           "tiny_probe_gap",
                                           "tiny_other_probe_batch_stats",
                                           "tiny_other_probe_gap"};

}  // namespace

TEST_CASE("report: gnuplot figures, tables and report.html from a run and its probes") {
  if (!has_gnuplot()) {
    MESSAGE("gnuplot not on PATH: figure checks skipped (apt-get install gnuplot-nox)");
    return;
  }
  TinyRun tiny;
  const std::string out = tiny.dir / "report";
  const CliResult r =
      run_cli(tiny.dir, {"report", tiny.run, tiny.dir / "other_probe", "--out", out});
  INFO("stderr: " << r.err);
  REQUIRE(r.status == 0);
  CHECK(r.err.empty());
  for (const std::string& figure : kFigures) {
    CAPTURE(figure);
    const std::string base = out + "/" + figure;
    CHECK(r.out.find(base + ".png") != std::string::npos);
    CHECK(read_file(base + ".png").rfind("\x89PNG", 0) == 0);
    CHECK(read_file(base + ".svg").find("<svg") != std::string::npos);
    CHECK(read_file(base + ".gp").find("set logscale") != std::string::npos);
    CHECK(!read_file(base + ".dat").empty());
    CHECK(!fs::exists(base + ".log"));  // kept only when gnuplot fails
  }
  // The plotted numbers are the runs': BatchNorm's test error in percent at each B.
  const std::map<double, double> batch =
      data_block(read_file(out + "/tiny_test_error.dat"), "batch");
  REQUIRE(batch.size() == 2);
  for (const json& record : tiny.records())
    if (record["norm"] == "batch")
      CHECK(batch.at(record["batch_size"].get<double>()) ==
            doctest::Approx(100 * record["test_error"].get<double>()));
  // The test-error figure has a log2 x axis with the config's batch sizes as ticks.
  CHECK(read_file(out + "/tiny_test_error.gp").find("set logscale x 2") != std::string::npos);
  CHECK(read_file(out + "/tiny_test_error.gp").find("set xtics (8, 32)") != std::string::npos);

  const std::string html = read_file(out + "/report.html");
  // Figures inline (the page alone shows them), a contents list, numbers unwrapped.
  CHECK(html.find("<img") == std::string::npos);
  CHECK(html.find("<svg") != std::string::npos);
  CHECK(html.find("<a href=\"tiny_test_error.svg\">SVG</a>") != std::string::npos);
  CHECK(html.find("<nav>") != std::string::npos);
  CHECK(html.find("white-space:nowrap") != std::string::npos);
  CHECK(html.find("<th class=\"num\">B=32</th>") != std::string::npos);
  CHECK(html.find("linear(784-&gt;256)") != std::string::npos);  // the probe table, escaped
  CHECK(html.find("gnuplot-nox") == std::string::npos);
  const std::string md = read_file(out + "/report.md");
  CHECK(md.find("![") != std::string::npos);
  CHECK(md.find("| batch | 1 (after linear(784->256)) | 32 |") != std::string::npos);
}

TEST_CASE("report: compact legends, short norm labels, padded ranges, a law line on the data") {
  ScratchDir dir;
  const std::string run = dir / "run";
  json config = tiny_run_config(run);
  config["norms"] = {"batch", {{"type", "ghost"}, {"virtual_batch_size", 4}}};
  run_experiment(parse_config(config), {run, false});
  write_config(dir / "tiny.json", config);
  REQUIRE(run_cli(dir,
                  {"probe", dir / "tiny.json", "--out", run + "/probe", "--set", "probe.batches=5"})
              .status == 0);
  const std::string out = dir / "report";
  const CliResult r = run_cli(dir, {"report", run, "--out", out});  // draws if gnuplot is there
  INFO("stderr: " << r.err);
  REQUIRE(r.status == 0);
  for (const std::string figure :
       {"tiny_test_error", "tiny_train_loss", "tiny_probe_batch_stats", "tiny_probe_gap"}) {
    CAPTURE(figure);
    const std::string gp = read_file(out + "/" + figure + ".gp");
    // Keys below the panels, which keep the canvas's width.
    CHECK(gp.find("set key outside bottom center horizontal") != std::string::npos);
    CHECK(gp.find("set key outside right") == std::string::npos);
    CHECK(gp.find("ghost V=4") != std::string::npos);
    CHECK(gp.find("title \"ghost(virtual_batch_size") == std::string::npos);
  }
  // The table keeps the full label.
  CHECK(read_file(out + "/report.md").find("| ghost(virtual_batch_size=4) |") != std::string::npos);
  // A linear y axis is padded, so no point sits on the frame.
  CHECK(read_file(out + "/tiny_test_error.gp").find("set offsets 0, 0, graph 0.04, graph 0.04") !=
        std::string::npos);

  // The reference line is c/sqrt(B), c the geometric mean over series of
  // error x sqrt(n) at each series' largest B: it passes among the data.
  std::map<std::string, std::pair<std::size_t, double>> last;  // series -> (B, ratio)
  std::istringstream probe_lines(read_file(run + "/probe/probe.jsonl"));
  for (std::string line; std::getline(probe_lines, line);) {
    const json rec = json::parse(line);
    auto& l = last[rec["norm"].get<std::string>() + rec["layer"].dump()];
    if (rec["batch_size"].get<std::size_t>() >= l.first)
      l = {rec["batch_size"].get<std::size_t>(), rec["mean_error_ratio"].get<double>()};
  }
  REQUIRE(last.size() == 4);
  double log_sum = 0;
  for (const auto& [series, l] : last) log_sum += std::log(l.second);
  const double c = std::exp(log_sum / 4);
  const std::string gp = read_file(out + "/tiny_probe_batch_stats.gp");
  const auto at = gp.find("/sqrt(x) with lines");
  REQUIRE(at != std::string::npos);
  const auto start = gp.rfind(' ', at) + 1;
  CHECK(std::stod(gp.substr(start, at - start)) == doctest::Approx(c).epsilon(1e-6));
  CHECK(gp.find("∝ 1/√B") != std::string::npos);
}

TEST_CASE("report: without gnuplot the tables and scripts are written with the install hint") {
  TinyRun tiny;
  const std::string out = tiny.dir / "report";
  CliResult r;
  {
    ScopedPath no_gnuplot("/nonexistent");
    r = run_cli(tiny.dir, {"report", tiny.run, "--out", out});
  }
  INFO("stderr: " << r.err);
  REQUIRE(r.status == 0);
  CHECK(r.err.find("apt-get install gnuplot-nox") != std::string::npos);
  const std::string html = read_file(out + "/report.html");
  CHECK(html.find("apt-get install gnuplot-nox") != std::string::npos);
  CHECK(html.find("<table>") != std::string::npos);
  CHECK(html.find("<img") == std::string::npos);
  CHECK(read_file(out + "/report.md").find("| batch |") != std::string::npos);
  for (const std::string figure : {"tiny_test_error", "tiny_probe_gap"}) {
    CAPTURE(figure);
    CHECK(fs::exists(out + "/" + figure + ".gp"));
    CHECK(fs::exists(out + "/" + figure + ".dat"));
    CHECK(!fs::exists(out + "/" + figure + ".png"));
  }
}

TEST_CASE("report: run records carry a loss curve of a few points per epoch") {
  TinyRun tiny;
  for (const json& record : tiny.records()) {
    CAPTURE(record["cell"]);
    const json& curve = record["loss_curve"];
    const std::size_t steps = record["steps_per_epoch"].get<std::size_t>();  // 32 or 8: window 1
    REQUIRE(curve["loss"].size() == steps);
    REQUIRE(curve["epoch"].size() == steps);
    CHECK(curve["epoch"].back().get<double>() == doctest::Approx(1.0));
    double sum = 0;
    for (const json& v : curve["loss"]) sum += v.get<double>();
    CHECK(sum / double(steps) == doctest::Approx(record["train_loss"][0].get<double>()));
  }
}

TEST_CASE("report CLI: errors name the problem") {
  ScratchDir dir;
  fs::create_directories(dir / "empty");
  check_cli_failure(run_cli(dir, {"report"}), "report", {"missing DIR"});
  check_cli_failure(run_cli(dir, {"report", dir / "nowhere"}), "report", {"nowhere: not a folder"});
  check_cli_failure(run_cli(dir, {"report", dir / "empty"}), "report",
                    {"neither a run folder", "probe folder"});
  TinyRun tiny;
  check_cli_failure(run_cli(tiny.dir, {"report", tiny.run, "--gnuplot", "/nonexistent/gnuplot"}),
                    "report", {"--gnuplot /nonexistent/gnuplot: not an executable program"});
  check_cli_failure(run_cli(tiny.dir, {"report", tiny.run, "--gnuplot", "/bin/false"}), "report",
                    {"gnuplot failed (exit 1)"});
}
