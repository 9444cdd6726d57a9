// `normlab bench` smoke test (CI keeps it to about a second): it measures a
// tiny case, prints a table row or a JSON line with every field, and exits 0;
// a bad option exits 2 with one line on stderr.
#include <doctest/doctest.h>

#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <vector>

#include "test_helpers.hpp"

using normlab::test::check_mentions;
using normlab::test::CliResult;
using normlab::test::run_cli;
using normlab::test::ScratchDir;

namespace {

// Tiny input, small probe arrays and a budget: the test is about the plumbing.
const std::vector<std::string> kQuick = {"bench",     "--norm",    "layer",      "batch",
                                         "--shape",   "4,8,16,16", "--seconds",  "0.5",
                                         "--repeats", "3",         "--probe-mb", "16"};

std::vector<std::string> with(std::vector<std::string> args, const std::vector<std::string>& more) {
  args.insert(args.end(), more.begin(), more.end());
  return args;
}

}  // namespace

TEST_CASE("normlab bench prints the bandwidth and one row per case") {
  ScratchDir dir;
  const CliResult r = run_cli(dir, kQuick);
  INFO("stdout: " << r.out << "\nstderr: " << r.err);
  REQUIRE(r.status == 0);
  check_mentions(
      r.out, {"bandwidth: copy", "triad", "fwd ms", "bwd ms", "\nlayer ", "\nbatch ", "4x8x16x16"});
}

namespace {

// The JSON lines of kQuick in `dtype`, checked: one per case with the
// timings, traffic and bandwidth. The minimum-traffic model: LN reads x and
// writes y, BN reads x once more; backward 3 and 5 passes, of 4*8*16*16
// values of `value_bytes` each.
std::vector<nlohmann::json> json_rows(const ScratchDir& dir, const std::string& dtype,
                                      double value_bytes) {
  const CliResult r = run_cli(dir, with(kQuick, {"--json", "--dtype", dtype}));
  INFO("stdout: " << r.out << "\nstderr: " << r.err);
  REQUIRE(r.status == 0);
  std::istringstream lines(r.out);
  std::string line;
  std::vector<nlohmann::json> rows;
  while (std::getline(lines, line)) rows.push_back(nlohmann::json::parse(line));
  REQUIRE(rows.size() == 2);
  const double tensor = 4 * 8 * 16 * 16 * value_bytes;
  for (const nlohmann::json& row : rows) {
    CHECK(row.at("dtype") == dtype);
    CHECK(row.at("shape") == nlohmann::json({4, 8, 16, 16}));
    CHECK(row.at("threads") == 1);
    CHECK(row.at("bandwidth_gbs").get<double>() > 0);
    CHECK(row.at("input_to_cache").get<double>() * row.at("last_level_cache_bytes").get<double>() ==
          doctest::Approx(tensor));
    for (const char* phase : {"forward", "forward_eval", "backward"}) {
      CHECK(row.at(std::string(phase) + "_ms").get<double>() > 0);
      CHECK(row.at(std::string(phase) + "_gbs").get<double>() > 0);
      CHECK(row.contains(std::string(phase) + "_pct"));
      CHECK(row.at(std::string(phase) + "_allocs_per_call").get<double>() == 0);
    }
  }
  CHECK(rows[0].at("norm") == "layer");
  CHECK(rows[0].at("forward_bytes") == 2 * tensor);
  CHECK(rows[0].at("backward_bytes") == 3 * tensor);
  CHECK(rows[1].at("norm") == "batch");
  CHECK(rows[1].at("forward_bytes") == 3 * tensor);
  CHECK(rows[1].at("forward_eval_bytes") == 2 * tensor);
  CHECK(rows[1].at("backward_bytes") == 5 * tensor);
  return rows;
}

}  // namespace

TEST_CASE("normlab bench --json: one line per case with the timings, traffic and bandwidth") {
  ScratchDir dir;
  json_rows(dir, "float64", 8);
}

TEST_CASE("normlab bench --dtype bfloat16: times the bfloat16 norms, 2 bytes a value") {
  ScratchDir dir;
  json_rows(dir, "bfloat16", 2);
  const CliResult table = run_cli(dir, with(kQuick, {"--dtype", "bfloat16"}));
  REQUIRE(table.status == 0);
  check_mentions(table.out, {"bfloat16, --threads 1", "\nlayer ", "\nbatch "});
}

TEST_CASE("normlab bench: a bad option is one line on stderr and exit 2") {
  ScratchDir dir;
  for (const auto& [args, phrase] : std::vector<std::pair<std::vector<std::string>, std::string>>{
           {{"bench", "--shape", "4,x"}, "--shape '4,x'"},
           {{"bench", "--norm", "bogus"}, "--norm 'bogus'"},
           {{"bench", "--dtype", "half", "--probe-mb", "1", "--norm", "rms"}, "--dtype 'half'"}}) {
    const CliResult r = run_cli(dir, args);
    INFO("stderr: " << r.err);
    CHECK(r.status == 2);
    CHECK(r.out.empty());
    check_mentions(r.err, {"normlab bench: ", phrase});
  }
}

// The default cases time every norm beyond the cache too (issue 23): with the
// last-level cache as the bench reads it, those inputs are at least four times
// its size and marked as streaming from memory; the small batch is marked as
// cache-resident.
TEST_CASE("normlab bench: a norm's default cases include shapes beyond the cache, marked so") {
  ScratchDir dir;
  const CliResult r = run_cli(dir, {"bench", "--norm", "layer", "--json", "--seconds", "1",
                                    "--repeats", "1", "--probe-mb", "1"});
  INFO("stdout: " << r.out << "\nstderr: " << r.err);
  REQUIRE(r.status == 0);
  std::istringstream lines(r.out);
  std::string line;
  std::size_t beyond = 0, resident = 0;
  while (std::getline(lines, line)) {
    const nlohmann::json row = nlohmann::json::parse(line);
    std::size_t bytes = 4;
    for (std::size_t d : row.at("shape").get<std::vector<std::size_t>>()) bytes *= d;
    const std::size_t cache = row.at("last_level_cache_bytes").get<std::size_t>();
    REQUIRE(cache > 0);
    CAPTURE(row.at("shape").dump());
    CHECK(row.at("cache_resident").get<bool>() == (2 * bytes <= cache));
    if (bytes >= 4 * cache) ++beyond;
    if (row.at("cache_resident").get<bool>()) ++resident;
  }
  CHECK(beyond == 2);    // (N, 64, 56, 56) and (rows, 1024)
  CHECK(resident >= 1);  // (2, 64, 56, 56)
}
