// The command line's conventions (issue 24): help per command, exit codes,
// validate's output, one norm syntax, the progress line on a terminal and
// off one, Ctrl-C, the smallest -np, the bench's probe, completion and man page.
#include <doctest/doctest.h>

#include <algorithm>
#include <filesystem>
#include <string>
#include <vector>

#include "analysis_fixtures.hpp"
#include "engine/engine_isa.hpp"  // last_level_cache_bytes
#include "experiment/progress_printer.hpp"
#include "normlab/normlab.hpp"
#include "test_helpers.hpp"

using namespace normlab;
using nlohmann::json;
using normlab::test::check_mentions;
using normlab::test::CliResult;
using normlab::test::read_file;
using normlab::test::run_cli;
using normlab::test::ScratchDir;
using normlab::test::shell_quote;
using normlab::test::tiny_config;
using normlab::test::write_bytes;
namespace fs = std::filesystem;

namespace {

std::string write_config(const ScratchDir& dir, const std::string& name, const json& config) {
  const std::string path = dir / name;
  write_bytes(path, config.dump(2));
  return path;
}

std::size_t lines_in(const std::string& text) {
  return std::size_t(std::count(text.begin(), text.end(), '\n'));
}

// A usage error: exit 2, one line on stderr naming the phrases, nothing on stdout.
void check_usage_error(const CliResult& r, const std::vector<std::string>& phrases) {
  INFO("stderr: " << r.err);
  CHECK(r.status == 2);
  CHECK(lines_in(r.err) == 1);
  CHECK(r.out.empty());
  check_mentions(r.err, phrases);
}

}  // namespace

TEST_CASE("cli: normlab help CMD prints that command's help, as CMD --help does") {
  const ScratchDir dir;
  const CliResult help_run = run_cli(dir, {"help", "run"});
  CHECK(help_run.status == 0);
  CHECK(help_run.out.rfind("usage: normlab run CONFIG", 0) == 0);
  CHECK(help_run.out == run_cli(dir, {"run", "--help"}).out);
  // Named placeholders, never Boost's "arg"; complete synopses.
  for (const char* command : {"run", "validate", "probe", "report", "apply", "demo", "bench"}) {
    const CliResult r = run_cli(dir, {"help", command});
    INFO(command << ": " << r.out);
    CHECK(r.status == 0);
    CHECK(r.out.find(" arg ") == std::string::npos);
    CHECK(r.out.find("usage: normlab " + std::string(command)) == 0);
  }
  check_mentions(run_cli(dir, {"help", "report"}).out, {"[--baseline NORM ...]", "--out OUT"});
  check_mentions(run_cli(dir, {"help", "bench"}).out, {"[--probe-mb MIB]"});
  check_mentions(run_cli(dir, {"help", "demo"}).out, {"mean 0 and standard deviation 1"});
  check_usage_error(run_cli(dir, {"help", "bogus"}), {"unknown command 'bogus'"});
  // The general help names `help COMMAND` and the exit codes.
  check_mentions(run_cli(dir, {"help"}).out, {"normlab help COMMAND", "2 for a"});
}

TEST_CASE("cli: every usage error exits 2, a failing command 1") {
  const ScratchDir dir;
  check_usage_error(run_cli(dir, {"bogus"}), {"unknown command"});
  check_usage_error(run_cli(dir, {"run"}), {"missing CONFIG", "normlab help run"});
  check_usage_error(run_cli(dir, {"run", "a.json", "b.json"}), {"too many arguments"});
  check_usage_error(run_cli(dir, {"validate", "--no-such-option"}), {"--no-such-option"});
  check_usage_error(run_cli(dir, {"bench", "--threads", "-1"}), {"--threads"});
  check_usage_error(run_cli(dir, {"demo", "--seed", "x"}), {"--seed"});
  check_usage_error(run_cli(dir, {"apply", "--input", "x.npy"}), {"'--norm' is required"});
  check_usage_error(run_cli(dir, {"apply", "--norm", "batch", "--mode", "test", "--input", "x.npy",
                                  "--out", dir / "o"}),
                    {"--mode", "test"});
  check_usage_error(run_cli(dir, {"list", "things"}), {"unknown topic"});
  check_usage_error(run_cli(dir, {"report"}), {"missing DIR"});
  // Not usage errors: a config that does not exist, an invalid one.
  const CliResult missing = run_cli(dir, {"validate", dir / "nothere.json"});
  CHECK(missing.status == 1);
  CHECK(lines_in(missing.err) == 1);
}

TEST_CASE("cli: validate prints the resolved JSON alone on stdout, for one or several files") {
  const ScratchDir dir;
  const std::string a = write_config(dir, "a.json", tiny_config());
  json other = tiny_config();
  other["batch_sizes"] = {8};
  const std::string b = write_config(dir, "b.json", other);

  const CliResult one = run_cli(dir, {"validate", a});
  REQUIRE(one.status == 0);
  const json resolved = json::parse(one.out);  // throws when stdout is not JSON alone
  CHECK(resolved == parse_config(tiny_config()).resolved);
  check_mentions(one.err, {"a.json: valid, 4 cells"});

  const CliResult both = run_cli(dir, {"validate", a, b});
  REQUIRE(both.status == 0);
  const json by_path = json::parse(both.out);
  REQUIRE(by_path.is_object());
  CHECK(by_path.size() == 2);
  CHECK(by_path.at(a) == resolved);
  CHECK(by_path.at(b)["batch_sizes"] == json{8});
  check_mentions(both.err, {"a.json: valid, 4 cells", "b.json: valid, 2 cells"});

  // One bad file among several: every file is checked, stdout stays empty.
  const std::string bad = write_config(dir, "bad.json", json{{"model", "mlp2"}});
  const CliResult mixed = run_cli(dir, {"validate", a, bad, b});
  CHECK(mixed.status == 1);
  CHECK(mixed.out.empty());
  check_mentions(mixed.err, {"a.json: valid", "bad.json", "b.json: valid", "1 of 3 configs"});
}

TEST_CASE("cli: one norm syntax: bare names in apply --norm, bench --norm and --set lists") {
  const ScratchDir dir;
  const xt::xarray<float> x = {{1.0f, 2.5f, -3.0f, 4.0f, 0.5f, 7.0f},
                               {2.0f, -1.0f, 0.0f, 3.5f, 6.0f, -2.0f},
                               {0.1f, 0.2f, 0.3f, 0.4f, 0.5f, 0.6f},
                               {9.0f, -9.0f, 4.0f, -4.0f, 1.0f, -1.0f}};
  save_npy<float>(dir / "x.npy", x);
  const CliResult bare =
      run_cli(dir, {"apply", "--norm", "layer", "--input", dir / "x.npy", "--out", dir / "bare"});
  INFO(bare.err);
  REQUIRE(bare.status == 0);
  const CliResult spec = run_cli(dir, {"apply", "--norm", R"({"type":"layer"})", "--input",
                                       dir / "x.npy", "--out", dir / "spec"});
  REQUIRE(spec.status == 0);
  CHECK(read_file(dir / "bare/y.npy") == read_file(dir / "spec/y.npy"));
  check_usage_error(
      run_cli(dir, {"apply", "--norm", "layr", "--input", dir / "x.npy", "--out", dir / "o"}),
      {"--norm 'layr' is not a norm"});
  check_usage_error(run_cli(dir, {"apply", "--norm", R"({"type":"batch","groups":2})", "--input",
                                  dir / "x.npy", "--out", dir / "o"}),
                    {"--norm", "groups"});

  const std::string config = write_config(dir, "c.json", tiny_config());
  const CliResult set = run_cli(dir, {"validate", config, "--set", "norms=[batch, group, none]"});
  INFO(set.err);
  REQUIRE(set.status == 0);
  CHECK(json::parse(set.out)["norms"].size() == 3);
}

TEST_CASE("progress: a line cut to the terminal's width keeps its end; the ETA weighs steps") {
  const std::string id = "ghost(virtual_batch_size=4,momentum=0.1)/B8/seed0";
  const std::string line = "cell 3/48 " + id + "  epoch 1/3  step 150/7500  loss 0.6543  ";
  const std::string fitted = fit_to_width(line, id, 80, "ETA 3m30s");
  CHECK(fitted.size() == 79);
  CHECK(fitted.rfind("cell 3/48 ghost(", 0) == 0);
  CHECK(fitted.find("loss 0.6543  ETA 3m30s") != std::string::npos);  // the id gave way
  const std::string narrow = fit_to_width(line, id, 40, "ETA 3m30s");
  CHECK(narrow.size() == 39);  // the line's end gave way too, never the ETA
  CHECK(narrow.substr(30) == "ETA 3m30s");
  CHECK(fit_to_width("short  ", id, 80, "ETA --") == "short  ETA --");

  // A B=64 cell of 100 steps took 10 s; a B=2 cell has done 1000 of 3200
  // steps in 2 s: what is left is priced at each B's own cost per step.
  EtaEstimator eta({{64, 1, 100}, {2, 1, 3200}, {2, 1, 3200}, {8, 1, 800}}, 1);
  CHECK(eta.seconds_left() < 0);  // nothing measured
  eta.update(0, 50, 5);
  eta.finish(0, 10);
  eta.update(1, 1000, 2);
  // B=2: 0.002 s/step for 2200 + 3200 steps; B=8 not measured: per image from
  // B=2 (the nearer in ratio), 0.008 s/step for 800 steps.
  CHECK(eta.seconds_left() == doctest::Approx(0.002 * 5400 + 0.008 * 800));
}

TEST_CASE("progress: a terminal gets one line redrawn within its width, a file plain lines") {
  const ScratchDir dir;
  const std::string config = write_config(dir, "c.json", tiny_config());
  // script(1) runs normlab on a pseudo-terminal of no set size: COLUMNS gives the width.
  const std::string command = "cd " + shell_quote(dir.path().string()) + " && script -qec " +
                              shell_quote("COLUMNS=50 " + shell_quote(NORMLAB_CLI) + " run " +
                                          shell_quote(config) + " --out tty") +
                              " /dev/null > typescript.txt 2>&1";
  REQUIRE(std::system(command.c_str()) == 0);
  const std::string typescript = read_file(dir / "typescript.txt");
  std::size_t redraws = 0;
  for (std::size_t at = typescript.find("\r\033[K"); at != std::string::npos;
       at = typescript.find("\r\033[K", at + 1)) {
    const std::size_t start = at + 4, end = typescript.find_first_of("\r\n", start);
    const std::string drawn = typescript.substr(start, end - start);
    if (drawn.find("epoch") == std::string::npos) continue;
    INFO("drawn: " << drawn);
    CHECK(drawn.size() <= 49);
    ++redraws;
  }
  CHECK(redraws >= 4);  // at least each cell's last step

  const CliResult plain = run_cli(dir, {"run", config, "--out", dir / "file"});
  REQUIRE(plain.status == 0);
  CHECK(plain.err.find('\r') == std::string::npos);
  CHECK(plain.err.find('\033') == std::string::npos);
  check_mentions(plain.err, {"epoch 1/1  step 64/64", "cell 4/4 none/B4/seed0 done"});
}

TEST_CASE("cli: Ctrl-C keeps the finished cells, says how to resume and exits 130") {
  const ScratchDir dir;
  json config = tiny_config();
  config["dataset"]["train_size"] = 8192;
  config["batch_sizes"] = {4};
  config["seeds"] = {0, 1, 2, 3, 4, 5};
  const std::string path = write_config(dir, "c.json", config);
  // In the background (set -m: a job that SIGINT reaches), interrupted once
  // its first cell is done.
  const std::string script =
      "set -m; cd " + shell_quote(dir.path().string()) + " || exit 1; " + shell_quote(NORMLAB_CLI) +
      " run c.json --out out > out.txt 2> err.txt & pid=$!; "
      "for i in $(seq 1200); do grep -q ' done: ' err.txt 2>/dev/null && break; sleep 0.05; done; "
      "kill -INT $pid; wait $pid; echo $? > status.txt";
  REQUIRE(std::system(("sh -c " + shell_quote(script)).c_str()) == 0);
  const std::string err = read_file(dir / "err.txt");
  INFO("stderr: " << err);
  CHECK(read_file(dir / "status.txt") == "130\n");
  const std::size_t kept = lines_in(read_file(dir / "out/results.jsonl"));
  CHECK(kept >= 1);
  CHECK(kept < 12);
  check_mentions(err, {std::to_string(kept) + (kept == 1 ? " cell kept" : " cells kept"),
                       "run `normlab run c.json --out out` again to resume"});
  // The last line ends the progress line: it starts a line of its own.
  CHECK(err.find("\nnormlab run: interrupted") != std::string::npos);
  // Resuming runs only what is left.
  const CliResult again = run_cli(dir, {"run", path, "--out", dir / "out"});
  CHECK(again.status == 0);
  check_mentions(again.err, {std::to_string(kept) + " finished before"});
}

// Without MPI, ranks_per_cell is refused: the test is reported as skipped.
TEST_CASE("cli: a config that needs more ranks names the smallest -np that works" *
          doctest::skip(!built_with_mpi())) {
  const ScratchDir dir;
  json config = tiny_config();
  config["distributed"] = {{"ranks_per_cell", {1, 2, 4}}};
  const CliResult r =
      run_cli(dir, {"run", write_config(dir, "c.json", config), "--out", dir / "o"});
  CHECK(r.status == 1);
  check_mentions(r.err, {"mpirun -np 4"});
  config["distributed"] = {{"ranks_per_cell", {1, 2, 3}}};
  check_mentions(run_cli(dir, {"run", write_config(dir, "c.json", config), "--out", dir / "o"}).err,
                 {"mpirun -np 6"});
}

TEST_CASE("bench: shapes are checked before the bandwidth probe, sized from the cache") {
  const ScratchDir dir;
  // 3 channels do not split into 2 groups: refused before any array exists.
  const CliResult refused = run_cli(dir, {"bench", "--norm", R"({"type":"group","groups":2})",
                                          "--shape", "2,3,4,4", "--repeats", "1"});
  CHECK(refused.status == 2);
  CHECK(refused.out.empty());  // no header: the probe did not run
  check_mentions(refused.err, {"skipped", "no norm accepted"});

  const CliResult r = run_cli(
      dir, {"bench", "--norm", "layer", "--shape", "8,16", "--repeats", "1", "--seconds", "1"});
  REQUIRE(r.status == 0);
  const std::size_t mib = std::size_t(1) << 20;
  std::size_t expected = std::clamp<std::size_t>(4 * last_level_cache_bytes(), 32 * mib, 512 * mib);
  expected = (expected + mib - 1) / mib;
  check_mentions(r.out, {"3 arrays of " + std::to_string(expected) + " MiB"});
}

TEST_CASE("cli: the bash completion offers commands and each command's options") {
  const ScratchDir dir;
  // Loads the script into bash as bash-completion would and completes
  // "normlab re" and "normlab report --b".
  const std::string script = "source " + shell_quote(NORMLAB_COMPLETION) + "; " + "COMP_WORDS=(" +
                             shell_quote(NORMLAB_CLI) +
                             " re); COMP_CWORD=1; _normlab; echo \"${COMPREPLY[*]}\"; " +
                             "COMP_WORDS=(" + shell_quote(NORMLAB_CLI) +
                             " report --b); COMP_CWORD=2; _normlab; echo \"${COMPREPLY[*]}\"; " +
                             "COMP_WORDS=(" + shell_quote(NORMLAB_CLI) +
                             " apply --norm gr); COMP_CWORD=3; _normlab; echo \"${COMPREPLY[*]}\"";
  const std::string command =
      "bash -c " + shell_quote(script) + " > " + shell_quote(dir / "out.txt");
  REQUIRE(std::system(command.c_str()) == 0);
  CHECK(read_file(dir / "out.txt") == "report\n--baseline\ngroup\n");
}

#ifdef NORMLAB_MAN_PAGE
TEST_CASE("cli: the man page documents every command") {
  const std::string page = read_file(NORMLAB_MAN_PAGE);
  check_mentions(page, {".TH NORMLAB", "normlab help COMMAND", "usage: normlab validate CONFIG",
                        "\\-\\-baseline", "\\-\\-probe\\-mb"});
}
#endif
