// Hostile inputs, second round (issue 21), each through the CLI where a user
// meets it: text that reaches a generated gnuplot script, links planted in
// output folders, records of another config or recorded twice, derived files
// left behind by a fault, unbounded or non-UTF-8 input, unmeasured metrics,
// meaningless numbers, data and options the model cannot take, and figures
// cut short.
#include <doctest/doctest.h>

#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <sstream>
#include <string>
#include <vector>

#include "analysis_fixtures.hpp"
#include "normlab/experiment.hpp"
#include "test_helpers.hpp"

using nlohmann::json;
using normlab::test::check_clean_failure;
using normlab::test::check_mentions;
using normlab::test::CliResult;
using normlab::test::kTinyConfig;
using normlab::test::read_file;
using normlab::test::run_cli;
using normlab::test::ScratchDir;
using normlab::test::write_bytes;
namespace fs = std::filesystem;

namespace {

// Failed with `status` (1; 2 for a usage error) and one line "normlab
// COMMAND: ..." naming every phrase, with no library text and nothing on stdout.
void check_refused(const CliResult& result, const std::string& command,
                   const std::vector<std::string>& phrases, int status = 1) {
  check_clean_failure(result, command, phrases, status);
}

std::vector<std::string> lines_of(const std::string& text) {
  std::vector<std::string> lines;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  return lines;
}

std::string joined(const std::vector<std::string>& lines) {
  std::string text;
  for (const std::string& line : lines) text += line + "\n";
  return text;
}

// A finished run of kTinyConfig (with `sets`), its records as lines.
struct Finished {
  ScratchDir dir;
  std::string config = dir / "tiny.json", run = dir / "run", results = run + "/results.jsonl";
  std::vector<std::string> lines;
  explicit Finished(const std::vector<std::string>& sets = {}, std::size_t cells = 4) {
    write_bytes(config, kTinyConfig);
    std::vector<std::string> args = {"run", config, "--out", run};
    for (const std::string& set : sets) args.insert(args.end(), {"--set", set});
    const CliResult result = run_cli(dir, args);
    REQUIRE_MESSAGE(result.status == 0, result.err);
    lines = lines_of(read_file(results));
    REQUIRE(lines.size() == cells);
  }
};

// An IDX image file of `count` zero images of rows x cols, and a label file.
void write_idx(const std::string& folder, const std::string& prefix, std::size_t count,
               std::size_t rows, std::size_t cols, const std::vector<unsigned char>& labels) {
  fs::create_directories(folder);
  const auto be32 = [](std::size_t v) {
    std::string b(4, '\0');
    for (int i = 0; i < 4; ++i) b[std::size_t(i)] = char((v >> (8 * (3 - i))) & 0xff);
    return b;
  };
  write_bytes(
      folder + "/" + prefix + "-images-idx3-ubyte",
      be32(2051) + be32(count) + be32(rows) + be32(cols) + std::string(count * rows * cols, '\0'));
  write_bytes(folder + "/" + prefix + "-labels-idx1-ubyte",
              be32(2049) + be32(count) + std::string(labels.begin(), labels.end()));
}

}  // namespace

// ---------------------------------------------------------------------------
// 1. Text in generated gnuplot scripts is data

TEST_CASE("hardening2 report: a hostile config name never runs as gnuplot code") {
  const ScratchDir dir;
  const std::string marker = dir / "pwned";
  // A newline then a shell line, gnuplot's system(), a backquoted command,
  // quotes of both kinds and a trailing backslash.
  const std::string name = "evil\n!touch " + marker + "1\nsystem(\"touch " + marker +
                           "2\")\n`touch " + marker + "3` ' \" @x \\";
  write_bytes(dir / "tiny.json", kTinyConfig);
  const CliResult run = run_cli(dir, {"run", dir / "tiny.json", "--out", dir / "run", "--set",
                                      "name=" + json(name).dump(), "--set", "batch_sizes=[16]"});
  REQUIRE_MESSAGE(run.status == 0, run.err);
  const CliResult report = run_cli(dir, {"report", dir / "run", "--out", dir / "report"});
  REQUIRE_MESSAGE(report.status == 0, report.err);
  for (const char* n : {"1", "2", "3"}) CHECK_FALSE(fs::exists(marker + n));
  // Every script line that mentions the name is one line, the name single-quoted.
  std::size_t scripts = 0;
  for (const auto& entry : fs::directory_iterator(dir / "report")) {
    if (entry.path().extension() != ".gp" && entry.path().extension() != ".dat") continue;
    scripts += entry.path().extension() == ".gp";
    for (const std::string& line : lines_of(read_file(entry.path().string()))) {
      INFO(entry.path() << ": " << line);
      CHECK(line.rfind("!", 0) == std::string::npos);
      CHECK(line.rfind("system(", 0) == std::string::npos);
      CHECK(line.rfind("`touch", 0) == std::string::npos);
      if (line.find("evil ") != std::string::npos)  // the title (file names are slugs)
        CHECK(line.find("evil !touch") != std::string::npos);
    }
  }
  CHECK(scripts == 2);
  CHECK(fs::exists(dir / "report/report.html"));
}

// ---------------------------------------------------------------------------
// 2. No writing through planted links

TEST_CASE(
    "hardening2 links: run refuses a planted lock or output link and writes nothing "
    "through it") {
  const ScratchDir dir;
  write_bytes(dir / "tiny.json", kTinyConfig);
  const std::string out = dir / "out", victim = dir / "victim.txt";
  write_bytes(victim, "precious\n");
  fs::create_directories(out);

  fs::create_symlink(victim, out + "/.normlab.lock");
  check_refused(run_cli(dir, {"run", dir / "tiny.json", "--out", out}), "run",
                {out + "/.normlab.lock", "is a symbolic link", "remove it"});
  CHECK(read_file(victim) == "precious\n");
  fs::remove(out + "/.normlab.lock");

  // The old temporary names are not used: links there are left alone.
  for (const char* name : {"config.json.tmp", "results.csv.tmp", "table.md.tmp"})
    fs::create_symlink(victim, out + "/" + name);
  const CliResult ok = run_cli(dir, {"run", dir / "tiny.json", "--out", out});
  CHECK_MESSAGE(ok.status == 0, ok.err);
  CHECK(read_file(victim) == "precious\n");

  // A link in place of an output file is named, and its target left alone.
  for (const char* name : {"results.jsonl", "config.json", "results.csv"}) {
    INFO(name);
    const std::string link = out + "/" + name;
    fs::rename(link, dir / "saved");
    fs::create_symlink(victim, link);
    const CliResult planted = run_cli(dir, {"run", dir / "tiny.json", "--out", out});
    CHECK(planted.status == 1);
    check_mentions(planted.err, {link, "is a symbolic link"});
    CHECK(read_file(victim) == "precious\n");
    fs::remove(link);
    fs::rename(dir / "saved", link);
  }
}

TEST_CASE("hardening2 links: report and probe refuse a link planted in their output folder") {
  Finished f;
  const std::string victim = f.dir / "victim.txt";
  write_bytes(victim, "precious\n");
  const std::string report = f.dir / "report";
  fs::create_directories(report);
  fs::create_symlink(victim, report + "/report.html");
  check_refused(run_cli(f.dir, {"report", f.run, "--out", report}), "report",
                {report + "/report.html", "is a symbolic link", "left unchanged"});
  CHECK(read_file(victim) == "precious\n");
  CHECK(fs::is_symlink(report + "/report.html"));

  const std::string probe = f.dir / "probe";
  fs::create_directories(probe);
  fs::create_symlink(victim, probe + "/probe.jsonl");
  const CliResult refused =  // after its progress lines
      run_cli(f.dir, {"probe", f.config, "--out", probe, "--set", "probe.batches=2"});
  CHECK(refused.status == 1);
  check_mentions(refused.err,
                 {"normlab probe: " + probe + "/probe.jsonl", "is a symbolic link", "unchanged"});
  CHECK(read_file(victim) == "precious\n");
}

// ---------------------------------------------------------------------------
// 3. Records cannot lie

TEST_CASE("hardening2 records: each record carries its cell's config digest") {
  Finished f;
  for (const std::string& line : f.lines) {
    const json record = json::parse(line);
    REQUIRE(record.contains("config_digest"));
    CHECK(record["config_digest"].get<std::string>().size() == 16);
  }
  // Cells differ, so their digests do.
  CHECK(json::parse(f.lines[0])["config_digest"] != json::parse(f.lines[1])["config_digest"]);
}

TEST_CASE(
    "hardening2 records: resume and report refuse a duplicate cell and another config's "
    "record, naming file and line") {
  Finished f;
  Finished other_lr({"optimizer.lr=0.06"});
  Finished other_norms({"norms=[\"batch\",\"layer\"]"});
  const std::string layer_line =
      *std::find_if(other_norms.lines.begin(), other_norms.lines.end(),
                    [](const std::string& l) { return json::parse(l)["norm"] == "layer"; });
  struct Case {
    std::vector<std::string> lines;
    std::vector<std::string> phrases;
  };
  const std::vector<Case> cases = {
      {{f.lines[0], f.lines[1], f.lines[2], f.lines[3], f.lines[1]},
       {f.results + ": line 5", "already recorded at line 2"}},
      {{f.lines[0], other_lr.lines[1], f.lines[2], f.lines[3]},
       {f.results + ": line 2", "trained with another config", "config digest"}},
      {{f.lines[0], f.lines[1], layer_line},
       {f.results + ": line 3", "is not a cell of this folder's config"}},
  };
  const std::string saved = read_file(f.results);
  for (const Case& c : cases) {
    INFO(c.phrases[1]);
    write_bytes(f.results, joined(c.lines));
    check_refused(run_cli(f.dir, {"report", f.run, "--out", f.dir / "report"}), "report",
                  c.phrases);
    const CliResult resume = run_cli(f.dir, {"run", f.config, "--out", f.run});
    CHECK(resume.status == 1);
    check_mentions(resume.err, c.phrases);
    CHECK(read_file(f.results) == joined(c.lines));  // never rewritten without the line
  }
  write_bytes(f.results, saved);
  const CliResult fine = run_cli(f.dir, {"report", f.run, "--out", f.dir / "report"});
  CHECK_MESSAGE(fine.status == 0, fine.err);
}

// ---------------------------------------------------------------------------
// 5. Derived files follow the log

TEST_CASE("hardening2 run: results.csv and table.md come back when nothing is left to train") {
  Finished f;
  const std::string csv = read_file(f.run + "/results.csv"), table = read_file(f.run + "/table.md");
  REQUIRE_FALSE(csv.empty());
  fs::remove(f.run + "/results.csv");
  write_bytes(f.run + "/table.md", "stale\n");
  const CliResult resume = run_cli(f.dir, {"run", f.config, "--out", f.run});
  REQUIRE_MESSAGE(resume.status == 0, resume.err);
  CHECK(resume.err.find("0 to run") != std::string::npos);
  CHECK(read_file(f.run + "/results.csv") == csv);
  CHECK(read_file(f.run + "/table.md") == table);
}

// ---------------------------------------------------------------------------
// 7. Bounds before allocation; no library text

TEST_CASE(
    "hardening2 bounds: endless, huge, directory and non-UTF-8 inputs are refused in one "
    "line") {
  const ScratchDir dir;
  write_bytes(dir / "tiny.json", kTinyConfig);
  check_refused(run_cli(dir, {"validate", "/dev/zero"}), "validate",
                {"/dev/zero", "larger than 16777216 bytes", "config file"});
  check_refused(run_cli(dir, {"validate", dir.path().string()}), "validate",
                {dir.path().string(), "is a directory, not a config file"});
  // A grid of 2 x 2 x 30000 = 120000 cells.
  json big = json::parse(kTinyConfig);
  for (int s = 1; s < 30000; ++s) big["seeds"].push_back(s);
  write_bytes(dir / "big.json", big.dump());
  check_refused(run_cli(dir, {"validate", dir / "big.json"}), "validate",
                {"the grid has 120000 cells", "more than the limit of 100000"});
  // Non-UTF-8 bytes in a --set key or value.
  check_refused(run_cli(dir, {"validate", dir / "tiny.json", "--set", "name=caf\xe9"}), "validate",
                {"--set 'name=caf?'", "not valid UTF-8", "byte 0xe9 at offset 8"});
  check_refused(run_cli(dir, {"validate", dir / "tiny.json", "--set", "dataset.p\xffth=x"}),
                "validate", {"not valid UTF-8", "byte 0xff"});
  // A norm spec whose type is a number, with --layout.
  check_refused(run_cli(dir, {"apply", "--norm", R"({"type": 3})", "--layout", "nhwc", "--input",
                              dir / "x.npy", "--out", dir / "out"}),
                "apply", {"type"}, /*status=*/2);
  // A record line without end (16 MiB of zero bytes and more).
  {
    Finished f;
    write_bytes(f.results, f.lines[0] + "\n" + std::string((16u << 20) + 10, '\0'));
    check_refused(run_cli(f.dir, {"report", f.run, "--out", f.dir / "report"}), "report",
                  {f.results + ": line 2", "longer than 16777216 bytes"});
  }
  // A synthetic set beyond this machine's memory, refused before it is made.
  const double memory = double(::sysconf(_SC_PHYS_PAGES)) * double(::sysconf(_SC_PAGESIZE));
  if (memory < 2.0 * 20e6 * 784 * 4)
    check_refused(
        run_cli(dir, {"validate", dir / "tiny.json", "--set", "dataset.train_size=10000000",
                      "--set", "dataset.test_size=10000000"}),
        "validate",
        {"dataset: 10000000 train and 10000000 test images of 28x28 needs about",
         "more than this machine's memory", "smaller train_size"});
}

// ---------------------------------------------------------------------------
// 8. Unmeasured metrics are null

TEST_CASE(
    "hardening2 records: accuracy with batch statistics is null when no full test batch "
    "was evaluated") {
  Finished f({"dataset.test_size=8", "batch_sizes=[16]"}, 2);
  for (const std::string& line : f.lines) {
    const json record = json::parse(line);
    INFO(record["cell"]);
    CHECK(record["test_accuracy_batch_stats"].is_null());
    CHECK(record["test_accuracy"].is_number());
  }
  // The CSV leaves it empty.
  const auto fields = [](const std::string& row) {
    std::vector<std::string> out;
    std::istringstream in(row);
    for (std::string field; std::getline(in, field, ',');) out.push_back(field);
    return out;
  };
  const std::vector<std::string> rows = lines_of(read_file(f.run + "/results.csv"));
  REQUIRE(rows.size() == 3);
  const std::vector<std::string> header = fields(rows[0]);
  const std::size_t column = std::size_t(
      std::find(header.begin(), header.end(), "test_error_batch_stats_percent") - header.begin());
  REQUIRE(column < header.size());
  for (std::size_t i = 1; i < rows.size(); ++i) CHECK(fields(rows[i]).at(column).empty());
}

// ---------------------------------------------------------------------------
// 9. Numbers without meaning

TEST_CASE(
    "hardening2 config: a negative schedule factor and other meaningless numbers are "
    "refused") {
  const ScratchDir dir;
  write_bytes(dir / "tiny.json", kTinyConfig);
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"optimizer.schedule.factor=-1", "optimizer.schedule.factor: expected a positive number"},
      {"optimizer.schedule.factor=0", "optimizer.schedule.factor: expected a positive number"},
      {"optimizer.schedule.drop_epochs=[1,1]", "optimizer.schedule.drop_epochs: lists 1 twice"},
      {"optimizer.lr=1e308", "the learning rate at batch size 16"},
  };
  for (const auto& [set, phrase] : cases)
    for (const char* command : {"validate", "run"}) {
      const std::string shown = set;  // a copy: INFO captures, and clang cannot capture bindings
      INFO(command << " " << shown);
      std::vector<std::string> args = {command, dir / "tiny.json", "--set", set};
      if (command == std::string("run")) args.insert(args.end(), {"--out", dir / "out"});
      check_refused(run_cli(dir, args), command, {phrase});
      CHECK_FALSE(fs::exists(dir / "out"));
    }
}

// ---------------------------------------------------------------------------
// 4. Data and options checked against the model

TEST_CASE(
    "hardening2 validate: labels beyond the outputs, ignored options and shape errors are "
    "refused as run refuses them") {
  const ScratchDir dir;
  write_bytes(dir / "tiny.json", kTinyConfig);
  std::vector<unsigned char> labels20(40);
  for (std::size_t i = 0; i < labels20.size(); ++i) labels20[i] = (unsigned char)(i % 20);
  write_idx(dir / "labels20", "train", 40, 28, 28, labels20);
  write_idx(dir / "labels20", "t10k", 40, 28, 28, labels20);
  std::vector<unsigned char> labels10(40);
  for (std::size_t i = 0; i < labels10.size(); ++i) labels10[i] = (unsigned char)(i % 10);
  write_idx(dir / "images32", "train", 40, 32, 32, labels10);
  write_idx(dir / "images32", "t10k", 40, 32, 32, labels10);
  const auto idx = [&](const std::string& folder) {
    return "dataset=" + json{{"type", "mnist"}, {"path", dir / folder}}.dump();
  };
  const std::vector<std::pair<std::vector<std::string>, std::vector<std::string>>> cases = {
      {{"dataset.classes=20"}, {"dataset.classes: 20 classes, but mlp2 has 10 outputs"}},
      {{idx("labels20")}, {"dataset: labels up to 19, but mlp2 has 10 outputs"}},
      {{R"(norms=[{"type":"weight","dim":1}])"},
       {"norms[0]", "\"dim\": 1 cannot be honoured", "drop \"dim\""}},
      {{R"(norms=[{"type":"layer","normalized_shape":[100]}])"},
       {"norms[0]", "trailing shape (100,)", "28x28 images"}},
      {{idx("images32")}, {"norms[0]", "32x32 images"}},
  };
  for (const auto& [sets, phrases] : cases)
    for (const char* command : {"validate", "run"}) {
      const std::string shown = sets[0];  // a copy: INFO captures, and bindings cannot be
      INFO(command << " " << shown);
      std::vector<std::string> args = {command, dir / "tiny.json", "--set", "batch_sizes=[16]"};
      for (const std::string& set : sets) args.insert(args.end(), {"--set", set});
      if (command == std::string("run")) args.insert(args.end(), {"--out", dir / "out"});
      check_refused(run_cli(dir, args), command, phrases);
      CHECK_FALSE(fs::exists(dir / "out"));
    }
  // WeightNorm as the model builds it is accepted.
  const CliResult dim0 = run_cli(
      dir, {"validate", dir / "tiny.json", "--set", R"(norms=[{"type":"weight","dim":0}])"});
  CHECK_MESSAGE(dim0.status == 0, dim0.err);
}

// ---------------------------------------------------------------------------
// 6. Figures verified before the report is committed

TEST_CASE("hardening2 report: a figure cut short under gnuplot's exit 0 keeps the old report") {
  Finished f;
  const std::string gnuplot = f.dir / "cut-gnuplot";
  // Runs the real gnuplot, then cuts its PNG (or its SVG) short and exits 0.
  for (const char* cut : {"png", "svg"}) {
    INFO(cut);
    write_bytes(gnuplot, std::string("#!/bin/sh\ngnuplot \"$1\" || exit $?\nfor f in *.") + cut +
                             "; do head -c 100 \"$f\" > \"$f.part\" && mv \"$f.part\" \"$f\"; "
                             "done\nexit 0\n");
    fs::permissions(gnuplot, fs::perms::owner_all);
    const std::string report = f.dir / "report";
    fs::create_directories(report);
    write_bytes(report + "/report.md", "old report\n");
    check_refused(run_cli(f.dir, {"report", f.run, "--out", report, "--gnuplot", gnuplot}),
                  "report", {std::string("file is incomplete (100 bytes"), "left unchanged", cut});
    CHECK(read_file(report + "/report.md") == "old report\n");
  }
}
