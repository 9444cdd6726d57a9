// Hostile inputs, class by class, through the CLI where a user meets them:
// damaged .npy files, failing output writes, deeply nested or out-of-range
// JSON, damaged result records and out-of-range command-line numbers. Every
// failure is one line on stderr naming the file, key or option, a non-zero
// exit, no signal and no partial output.
#include <doctest/doctest.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <limits>
#include <set>
#include <sstream>
#include <string>
#include <tuple>
#include <vector>
#include <xtensor/xarray.hpp>

#include "analysis_fixtures.hpp"
#include "experiment/folder_lock.hpp"
#include "normlab/experiment.hpp"
#include "normlab/normlab.hpp"
#include "test_helpers.hpp"

using namespace normlab;
using nlohmann::json;
using normlab::test::check_clean_failure;
using normlab::test::check_mentions;
using normlab::test::CliResult;
using normlab::test::error_of;
using normlab::test::kTinyConfig;
using normlab::test::read_file;
using normlab::test::run_cli;
using normlab::test::ScratchDir;
using normlab::test::write_bytes;
namespace fs = std::filesystem;

namespace {

// An .npy file by hand: magic, version, the header length as given (or the
// dict's), the dict and then `data`.
std::string npy_bytes(const std::string& dict, const std::string& data, int major = 1,
                      std::int64_t header_length = -1) {
  const std::size_t prefix = major == 1 ? 10 : 12;
  std::string header = dict;
  header.append((64 - (prefix + header.size() + 1) % 64) % 64, ' ');
  header += '\n';
  const std::uint64_t length = header_length < 0 ? header.size() : std::uint64_t(header_length);
  std::string bytes = "\x93NUMPY";
  bytes += char(major);
  bytes += '\0';
  for (std::size_t i = 0; i < (major == 1 ? 2u : 4u); ++i)
    bytes += char((length >> (8 * i)) & 0xff);
  return bytes + header + data;
}

std::string f4_dict(const std::string& shape) {
  return "{'descr': '<f4', 'fortran_order': False, 'shape': " + shape + ", }";
}

std::string load_error(const std::string& path) {
  return error_of<std::runtime_error>([&] { load_npy<float>(path); });
}

std::set<std::string> files_in(const std::string& dir) {
  std::set<std::string> names;
  for (const auto& entry : fs::directory_iterator(dir))
    names.insert(entry.path().filename().string());
  return names;
}

}  // namespace

// ---------------------------------------------------------------------------
// 1. The .npy reader and writer

TEST_CASE("hardening npy: a header length beyond the file is refused before it is allocated") {
  const ScratchDir dir;
  // 4 GiB and 64 KiB claimed by files of a few bytes: an error at once, not an allocation.
  write_bytes(dir / "v2.npy", npy_bytes(f4_dict("(2,)"), std::string(8, '\0'), 2, 0xffffffff));
  check_mentions(load_error(dir / "v2.npy"), {"v2.npy", "truncated .npy header", "4294967295"});
  write_bytes(dir / "v1.npy", npy_bytes(f4_dict("(2,)"), std::string(8, '\0'), 1, 0xffff));
  check_mentions(load_error(dir / "v1.npy"), {"v1.npy", "truncated .npy header", "65535"});
  check_mentions(error_of<std::runtime_error>([&] { npy_dtype(dir / "v2.npy"); }),
                 {"truncated .npy header"});
  // A header that is really there but absurdly long (1 MiB of padding).
  write_bytes(dir / "long.npy",
              npy_bytes(f4_dict("(1,)") + std::string(1 << 20, ' '), std::string(4, '\0'), 2));
  check_mentions(load_error(dir / "long.npy"), {"long.npy", "header of", "bytes"});
}

TEST_CASE("hardening npy: shape arithmetic overflow and malformed shapes name the file") {
  const ScratchDir dir;
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"(4294967296, 4294967296, 16)", "more values than fit in 64 bits"},
      {"(2305843009213693952, 4)", "more bytes than fit in 64 bits"},  // 2^61 * 4 * 4 bytes
      // Found by tests/fuzz/fuzz_npy: no values, but strides beyond 63 bits.
      {"(0, 243032819420727, 8004211)", "other than 0 multiply to more than fits in 63 bits"},
      {"(99999999999999999999999,)", "does not fit in 64 bits"},
      {"(-1, 3)", "non-negative integers"},
      {"(x, 3)", "non-negative integers"},
      {"(3 4)", "separated by commas"},
      {"(3,,4)", "non-negative integers"},
      {"(3, 4", "no closing parenthesis"},
      {"[3, 4]", "expected a tuple"},
  };
  for (const auto& [shape, phrase] : cases) {
    const std::string shape_text = shape;  // a copy: INFO cannot capture a binding
    INFO("shape " << shape_text);
    write_bytes(dir / "x.npy", npy_bytes(f4_dict(shape), std::string(16, '\0')));
    check_mentions(load_error(dir / "x.npy"), {"x.npy", phrase});
  }
  std::string many = "(";
  for (int i = 0; i < 65; ++i) many += "1, ";
  write_bytes(dir / "dims.npy", npy_bytes(f4_dict(many + ")"), std::string(4, '\0')));
  check_mentions(load_error(dir / "dims.npy"), {"dims.npy", "more than 64 dimensions"});
  write_bytes(
      dir / "order.npy",
      npy_bytes("{'descr': '<f4', 'fortran_order': Maybe, 'shape': (1,), }", std::string(4, '\0')));
  check_mentions(load_error(dir / "order.npy"), {"order.npy", "fortran_order"});
  write_bytes(dir / "descr.npy",
              npy_bytes("{'descr': '<f4, 'fortran_order': False, 'shape': (1,), }", ""));
  // The unterminated descr swallows the rest: still an error naming the file.
  CHECK(load_error(dir / "descr.npy").find("descr.npy") != std::string::npos);
}

TEST_CASE("hardening npy: the file size must match the shape, checked before allocating") {
  const ScratchDir dir;
  // 10^10 float32 promised by a file with none: refused at once.
  write_bytes(dir / "big.npy", npy_bytes(f4_dict("(100000, 100000)"), ""));
  check_mentions(load_error(dir / "big.npy"), {"big.npy", "truncated", "10000000000 values",
                                               "40000000000 bytes", "has 0 bytes"});
  write_bytes(dir / "short.npy", npy_bytes(f4_dict("(2, 3)"), std::string(20, '\0')));
  check_mentions(load_error(dir / "short.npy"), {"short.npy", "truncated", "6 values"});
  write_bytes(dir / "long.npy", npy_bytes(f4_dict("(2, 3)"), std::string(28, '\0')));
  check_mentions(load_error(dir / "long.npy"), {"long.npy", "4 bytes after the data"});
  check_mentions(load_error(dir.path().string()), {"is a directory"});
}

TEST_CASE("hardening npy: zero-size dimensions load, and apply refuses them with one line") {
  const ScratchDir dir;
  // Policy: a zero-size array is a valid .npy (numpy writes it) and loads as
  // such; `normlab apply` refuses it before making the norm.
  write_bytes(dir / "empty.npy", npy_bytes(f4_dict("(4, 0, 3)"), ""));
  const xt::xarray<float> x = load_npy<float>(dir / "empty.npy");
  CHECK(x.shape() == std::vector<std::size_t>{4, 0, 3});
  CHECK(x.size() == 0);
  save_npy<float>(dir / "again.npy", x);
  CHECK(load_npy<float>(dir / "again.npy").shape() == x.shape());

  for (const bool existing : {false, true}) {
    const std::string out = dir / (existing ? "existing" : "absent");
    if (existing) fs::create_directory(out);
    const CliResult result = run_cli(dir, {"apply", "--norm", R"({"type":"layer"})", "--input",
                                           dir / "empty.npy", "--out", out});
    check_clean_failure(result, "apply",
                        {"empty.npy", "shape (4, 0, 3)", "zero-size dimension (axis 1)"});
    if (existing)
      CHECK(files_in(out).empty());
    else
      CHECK_FALSE(fs::exists(out));
  }
}

TEST_CASE("hardening npy: write failures carry the system's reason and leave no file") {
  const ScratchDir dir;
  const xt::xarray<float> x = xt::xarray<float>::from_shape({64, 64});
  check_mentions(error_of<std::runtime_error>([&] { save_npy<float>(dir / "no/dir/x.npy", x); }),
                 {"no/dir/x.npy", "cannot write file", std::strerror(ENOENT)});
  // A path under a regular file.
  write_bytes(dir / "file", "");
  check_mentions(error_of<std::runtime_error>([&] { save_npy<float>(dir / "file/x.npy", x); }),
                 {"file/x.npy", std::strerror(ENOTDIR)});
  if (fs::exists("/dev/full")) {  // every write fails with ENOSPC, seen at the latest at the flush
    check_mentions(error_of<std::runtime_error>([&] { save_npy<float>("/dev/full", x); }),
                   {"/dev/full", "failed", std::strerror(ENOSPC)});
    CHECK(fs::exists("/dev/full"));  // a device is not a partial file to remove
  }
}

// ---------------------------------------------------------------------------
// 2. `normlab apply` writes all of its outputs or none

namespace {

// `normlab ARGS` with files limited to 1 KiB (ulimit -f 1): writes past
// that fail with EFBIG, as on a full disk, without filling one.
CliResult run_cli_with_file_limit(const ScratchDir& dir, const std::vector<std::string>& args) {
  return run_cli(dir, args, "ulimit -f 1; exec");
}

// A (64, 64) float32 input: y.npy is 16 KiB, the running statistics under 1 KiB.
std::string write_input(const ScratchDir& dir) {
  xt::xarray<float> x = xt::xarray<float>::from_shape({64, 64});
  for (std::size_t i = 0; i < x.size(); ++i) x.data()[i] = float(i % 7);
  save_npy<float>(dir / "x.npy", x);
  return dir / "x.npy";
}

const char* const kBatch = R"({"type":"batch"})";

}  // namespace

TEST_CASE("hardening apply: a failing write leaves a new --out absent") {
  const ScratchDir dir;
  const std::string x = write_input(dir), out = dir / "out";
  const CliResult result =
      run_cli_with_file_limit(dir, {"apply", "--norm", kBatch, "--input", x, "--out", out});
  // The message names the final path, not the staging folder.
  check_clean_failure(
      result, "apply",
      {out + "/y.npy", "write failed", std::strerror(EFBIG), "nothing was written"});
  CHECK(result.err.find(".staging") == std::string::npos);
  CHECK_FALSE(fs::exists(out));
}

TEST_CASE("hardening apply: a failing write leaves an existing --out unchanged") {
  const ScratchDir dir;
  const std::string x = write_input(dir), out = dir / "out";
  fs::create_directory(out);
  write_bytes(out + "/y.npy", "old y");
  write_bytes(out + "/notes.txt", "mine");
  const CliResult result =
      run_cli_with_file_limit(dir, {"apply", "--norm", kBatch, "--input", x, "--out", out});
  check_clean_failure(result, "apply",
                      {out + "/y.npy", std::strerror(EFBIG), out + " was left unchanged"});
  CHECK(files_in(out) == std::set<std::string>{"notes.txt", "y.npy"});  // no staging folder left
  CHECK(read_file(out + "/y.npy") == "old y");
}

TEST_CASE("hardening apply: a commit that cannot move every file puts back what it moved") {
  const ScratchDir dir;
  const std::string x = write_input(dir), out = dir / "out";
  fs::create_directory(out);
  write_bytes(out + "/running_mean.npy", "old mean");
  write_bytes(out + "/y.npy", "old y");
  fs::create_directory(out + "/running_var.npy");  // a directory where an output goes
  const CliResult result = run_cli(dir, {"apply", "--norm", kBatch, "--input", x, "--out", out});
  check_clean_failure(result, "apply",
                      {out + "/running_var.npy", "is a directory", "left unchanged"});
  CHECK(files_in(out) == std::set<std::string>{"running_mean.npy", "running_var.npy", "y.npy"});
  CHECK(read_file(out + "/running_mean.npy") == "old mean");
  CHECK(read_file(out + "/y.npy") == "old y");
  CHECK(fs::is_empty(out + "/running_var.npy"));
}

TEST_CASE("hardening apply: an --out that cannot be a folder is named with the reason") {
  const ScratchDir dir;
  const std::string x = write_input(dir);
  write_bytes(dir / "file", "keep");
  check_clean_failure(
      run_cli(dir, {"apply", "--norm", kBatch, "--input", x, "--out", dir / "file/sub"}), "apply",
      {"file/sub", "cannot create directory", std::strerror(ENOTDIR)});
  CHECK(read_file(dir / "file") == "keep");
  if (fs::exists("/dev/full"))
    check_clean_failure(
        run_cli(dir, {"apply", "--norm", kBatch, "--input", x, "--out", "/dev/full"}), "apply",
        {"/dev/full", "not a directory"});
  // And the same command with room to write succeeds.
  const CliResult good =
      run_cli(dir, {"apply", "--norm", kBatch, "--input", x, "--out", dir / "ok"});
  REQUIRE_MESSAGE(good.status == 0, good.err);
  CHECK(files_in(dir / "ok") ==
        std::set<std::string>{"running_mean.npy", "running_var.npy", "y.npy"});
}

TEST_CASE("hardening probe: a failing write leaves no probe folder") {
  const ScratchDir dir;
  write_bytes(dir / "tiny.json", kTinyConfig);
  const std::string out = dir / "probe";
  const CliResult result = run_cli_with_file_limit(
      dir, {"probe", dir / "tiny.json", "--out", out, "--set", "probe.batches=2"});
  INFO("stderr: " << result.err);
  CHECK(result.status == 1);
  // Progress notes come first; the error is the last line.
  const std::string last = result.err.substr(result.err.rfind("normlab probe: "));
  check_mentions(last, {out + "/probe.jsonl", std::strerror(EFBIG), "nothing was written"});
  CHECK(std::count(last.begin(), last.end(), '\n') == 1);
  CHECK_FALSE(fs::exists(out));
}

// ---------------------------------------------------------------------------
// 3. Deep JSON, numbers out of range, --set values

namespace {

std::string nested_lists(std::size_t depth, bool closed = true) {
  return std::string(depth, '[') + (closed ? std::string(depth, ']') : std::string());
}

}  // namespace

TEST_CASE("hardening json: parse_json accepts 64 levels and refuses 65 at their line") {
  CHECK(parse_json(nested_lists(64), "x").is_array());
  const std::string too_deep =
      error_of<std::runtime_error>([] { parse_json(nested_lists(65), "x"); });
  check_mentions(too_deep, {"x: nested deeper than 64 levels", "line 1, column 65"});
  // Lines count from the record's line in its file; strings do not nest.
  const std::string text = "{\"a\": \"[[[[\",\n \"b\": " + nested_lists(100) + "}";
  check_mentions(error_of<std::runtime_error>([&] { parse_json(text, "f.jsonl", 7); }),
                 {"f.jsonl: nested deeper than 64 levels at line 8, column 70"});
  check_mentions(error_of<std::runtime_error>([] { parse_json("[1,", "--norm", 0); }),
                 {"--norm: not valid JSON at column 4"});
  check_mentions(error_of<std::runtime_error>([] { parse_json("[1e400]", "--norm", 0); }),
                 {"--norm: a number beyond the range of a double"});
}

TEST_CASE("hardening json: 100000 nested lists in a config file fail validate with one line") {
  const ScratchDir dir;
  write_bytes(dir / "deep.json",
              "{\n  \"name\": \"deep\",\n  \"norms\": " + nested_lists(100000) + "\n}\n");
  check_clean_failure(run_cli(dir, {"validate", dir / "deep.json"}), "validate",
                      {dir / "deep.json", "nested deeper than 64 levels at line 3, column 75"});
  // A million levels (which used to overflow the stack) and an unclosed file.
  write_bytes(dir / "deeper.json", "{\"name\": " + nested_lists(1000000) + "}");
  check_clean_failure(run_cli(dir, {"validate", dir / "deeper.json"}), "validate",
                      {"deeper.json", "nested deeper than 64 levels"});
  write_bytes(dir / "open.json", nested_lists(100000, false));
  check_clean_failure(run_cli(dir, {"validate", dir / "open.json"}), "validate",
                      {"open.json", "nested deeper than 64 levels"});
  // A damaged file that is not deep: the line and column of the mistake.
  write_bytes(dir / "bad.json", "{\"name\": \"x\",\n \"epochs\": [4\n}");
  check_clean_failure(run_cli(dir, {"validate", dir / "bad.json"}), "validate",
                      {"bad.json: not valid JSON at line 3, column 1"});
}

TEST_CASE("hardening json: 100000 nested lists in --norm fail apply and bench with one line") {
  const ScratchDir dir;
  save_npy<float>(dir / "x.npy", xt::xarray<float>::from_shape({2, 3}));
  // 100000 unclosed lists: one argument stays under the kernel's 128 KiB limit.
  const std::string deep = nested_lists(100000, false);
  check_clean_failure(
      run_cli(dir, {"apply", "--norm", deep, "--input", dir / "x.npy", "--out", dir / "out"}),
      "apply", {"--norm: nested deeper than 64 levels at column 65"});
  CHECK_FALSE(fs::exists(dir / "out"));
  const std::string deep_spec = R"({"type":"batch","eps":)" + nested_lists(60000) + "}";
  check_clean_failure(
      run_cli(dir, {"apply", "--norm", deep_spec, "--input", dir / "x.npy", "--out", dir / "out"}),
      "apply", {"--norm: nested deeper than 64 levels at column 86"});
  const CliResult bench = run_cli(dir, {"bench", "--norm", "{\"type\":" + deep});
  check_clean_failure(bench, "bench", {"--norm: nested deeper than 64 levels"});
  CHECK(bench.err.size() < 400);  // the argument is not quoted in full
  check_clean_failure(run_cli(dir, {"apply", "--norm", R"({"type":"batch")", "--input",
                                    dir / "x.npy", "--out", dir / "out"}),
                      "apply", {"--norm: not valid JSON at column 16", "JSON spec such as"});
}

TEST_CASE("hardening json: deep --set values and key paths are refused naming the --set") {
  const ScratchDir dir;
  write_bytes(dir / "tiny.json", kTinyConfig);
  const std::string config = dir / "tiny.json";
  check_clean_failure(
      run_cli(dir, {"validate", config, "--set", "norms=" + nested_lists(100000, false)}),
      "validate", {"--set 'norms=[[[[", "nested deeper than 64 levels"});
  std::string path;
  for (int i = 0; i < 100; ++i) path += "a.";
  check_clean_failure(run_cli(dir, {"validate", config, "--set", path + "b=1"}), "validate",
                      {"--set 'a.a.a.", "a key path of more than 64 keys"});
  // Each part within the limit, together beyond it.
  check_clean_failure(
      run_cli(dir, {"validate", config, "--set", "dataset.x.y.z=" + nested_lists(62)}), "validate",
      {"--set 'dataset.x.y.z=", "makes the config nested deeper than 64"});
}

TEST_CASE("hardening json: a --set value is JSON, a bare word, or an error") {
  const ScratchDir dir;
  write_bytes(dir / "tiny.json", kTinyConfig);
  const std::string config = dir / "tiny.json";
  for (const std::string bad : {"norms=[4", "name={", "name=a,b", "name=\"open", "name=x:y"}) {
    INFO("--set " << bad);
    check_clean_failure(run_cli(dir, {"validate", config, "--set", bad}), "validate",
                        {"--set '" + bad + "'", "neither JSON", "nor a bare word"});
  }
  const json c = read_config_file(config, {"name=my run-2.b/c_d", "dataset.subset=random",
                                           "output=out/x", "epochs=2", "norms=[\"group\"]"});
  CHECK(c["name"] == "my run-2.b/c_d");
  CHECK(c["output"] == "out/x");
  CHECK(c["epochs"] == 2);
  CHECK(c["norms"] == json::array({"group"}));
  // 1e400 is no bare word: its overflow is an error, not the string "1e400".
  check_clean_failure(run_cli(dir, {"validate", config, "--set", "optimizer.lr=1e400"}), "validate",
                      {"--set 'optimizer.lr=1e400'", "beyond the range of a double"});
}

TEST_CASE("hardening config: integers out of range for their key name the file and key") {
  const ScratchDir dir;
  struct Case {
    std::string key, value, phrase;
  };
  const std::vector<Case> cases = {
      {"epochs", "1e300", "epochs: expected an integer, got a number (1e+300"},
      {"epochs", "-1", "epochs: expected at least 1, got -1"},
      {"epochs", "18446744073709551616", "epochs: expected an integer, got a number"},  // 2^64
      {"epochs", "18446744073709551615", "epochs: expected at most 1000000"},           // 2^64 - 1
      {"epochs", "9223372036854775808", "epochs: expected at most 1000000"},            // 2^63
      {"epochs", "2.5", "epochs: expected an integer, got a number (2.5"},
      {"workers", "100000", "workers: expected at most 4096"},
      {"batch_sizes", "[16, 18446744073709551615]",
       "batch_sizes[1]: expected an integer that fits"},
      {"batch_sizes", "[16, 4000000]", "batch_sizes: expected integers of at most 1000000"},
      {"seeds", "[-1]", "seeds: expected non-negative integers, got -1"},
      {"evaluation", R"({"batch_size": -1})", "evaluation.batch_size: expected at least 1, got -1"},
      {"evaluation", R"({"precise_bn_batches": -2})", "evaluation.precise_bn_batches"},
      {"probe", R"({"seed": -3})", "probe.seed: expected at least 0, got -3"},
      {"probe", R"({"batches": 1e9})", "probe.batches: expected an integer, got a number"},
      {"optimizer", R"({"schedule": {"drop_epochs": [-1]}})",
       "optimizer.schedule.drop_epochs[0]: expected at least 0"},
      {"optimizer", R"({"lr": 1e400})", "beyond the range of a double"},
      {"distributed", R"({"ranks_per_cell": 18446744073709551615})",
       "distributed.ranks_per_cell: expected positive integers of at most 65536"},
  };
  for (const Case& c : cases) {
    INFO(c.key << " = " << c.value);
    json config = json::parse(kTinyConfig);
    config.erase(c.key);
    std::string text = config.dump();
    // Spliced in as text: 2^64 and 1e400 must reach the parser as written.
    text.insert(1, "\"" + c.key + "\": " + c.value + ", ");
    write_bytes(dir / "config.json", text);
    check_clean_failure(run_cli(dir, {"validate", dir / "config.json"}), "validate",
                        {dir / "config.json", c.phrase});
  }
  json dataset = json::parse(kTinyConfig)["dataset"];
  for (const auto& [key, value, phrase] : std::vector<std::tuple<std::string, json, std::string>>{
           {"seed", -1, "dataset.seed: expected at least 0, got -1"},
           {"classes", 1000, "dataset.classes: expected at most 256"},
           {"train_size", -5, "dataset.train_size: expected at least -1, got -5"},
           {"test_size", 0, "dataset.test_size: synthetic data needs positive"}}) {
    const std::string key_name = key;
    INFO(key_name);
    json bad = dataset;
    bad[key] = value;
    check_clean_failure(
        run_cli(dir, {"validate", dir / "config.json", "--set", "dataset=" + bad.dump()}),
        "validate", {phrase, "config.json with its --set overrides"});
  }
  // The largest seed is a valid seed.
  json big_seed = dataset;
  big_seed["seed"] = std::numeric_limits<std::uint64_t>::max();
  write_bytes(dir / "good.json", kTinyConfig);
  const CliResult good =
      run_cli(dir, {"validate", dir / "good.json", "--set", "dataset=" + big_seed.dump()});
  CHECK_MESSAGE(good.status == 0, good.err);
}

TEST_CASE("hardening config: duplicates and an unreachable dataset fail validate and run alike") {
  const ScratchDir dir;
  write_bytes(dir / "config.json", kTinyConfig);
  const json fashion_missing = {{"type", "fashion-mnist"}, {"path", dir / "no-such-folder"}};
  // An IDX image file whose label file is missing, in a folder of its own.
  std::filesystem::create_directories(dir / "partial");
  write_bytes(dir / "partial/train-images-idx3-ubyte",
              std::string("\0\0\x08\x03\0\0\0\x01\0\0\0\x01\0\0\0\x01\x7f", 17));
  const json labels_missing = {{"type", "fashion-mnist"}, {"path", dir / "partial"}};
  struct Case {
    std::string set, phrase;
  };
  const std::vector<Case> cases = {
      {"batch_sizes=[16,4,16]", "batch_sizes: lists 16 twice"},
      {"seeds=[3,3]", "seeds: lists 3 twice"},
      {R"(norms=["batch",{"type":"batch","eps":1e-5}])", "norms[1]: the same norm as norms[0]"},
      {R"(norms=["none","layer","none"])", "norms[2]: the same norm as norms[0]"},
      {"dataset=" + fashion_missing.dump(), "no train-images-idx3-ubyte[.gz] there"},
      {"dataset=" + labels_missing.dump(), "no train-labels-idx1-ubyte[.gz] there"},
  };
  for (const Case& c : cases)
    for (const char* command : {"validate", "run"}) {
      INFO(command << " --set " << c.set);
      std::vector<std::string> args = {command, dir / "config.json", "--set", c.set};
      if (command == std::string("run")) args.insert(args.end(), {"--out", dir / "out"});
      check_clean_failure(run_cli(dir, args), command,
                          {c.phrase, "config.json with its --set overrides"});
      CHECK_FALSE(std::filesystem::exists(dir / "out"));
    }
}

// ---------------------------------------------------------------------------
// 4. Damaged records in results.jsonl and probe.jsonl

namespace {

// A finished tiny run (4 cells) made by `normlab run`, with its records as lines.
struct FinishedRun {
  ScratchDir dir;
  std::string config = dir / "tiny.json", run = dir / "run", results = run + "/results.jsonl";
  std::vector<std::string> lines;
  FinishedRun() {
    write_bytes(config, kTinyConfig);
    const CliResult result = run_cli(dir, {"run", config, "--out", run});
    REQUIRE_MESSAGE(result.status == 0, result.err);
    std::istringstream in(read_file(results));
    for (std::string line; std::getline(in, line);) lines.push_back(line);
    REQUIRE(lines.size() == 4);
  }
  // results.jsonl with line `index` (0-based) replaced.
  std::string with_line(std::size_t index, const std::string& replacement) const {
    std::string text;
    for (std::size_t i = 0; i < lines.size(); ++i)
      text += (i == index ? replacement : lines[i]) + "\n";
    return text;
  }
};

// Line 2's record with `key` set to `value` (or removed when value is discarded).
std::string damaged(const std::string& line, const std::string& pointer, const json& value) {
  json record = json::parse(line);
  const json::json_pointer p(pointer);
  if (value.is_discarded())
    record[p.parent_pointer()].erase(p.back());
  else
    record[p] = value;
  return record.dump();
}

}  // namespace

TEST_CASE(
    "hardening records: report and a resuming run name the file and line of a damaged record") {
  FinishedRun f;
  const json gone = json::value_t::discarded;
  struct Damage {
    std::string what, line, phrase;
  };
  const std::vector<Damage> damages = {
      {"missing cell", damaged(f.lines[1], "/cell", gone), "cell: missing (expected a string)"},
      {"index of the wrong type", damaged(f.lines[1], "/index", "0"),
       "index: expected an integer >= 0, got a string"},
      {"negative index", damaged(f.lines[1], "/index", -3), "index: expected an integer >= 0"},
      {"missing norm", damaged(f.lines[1], "/norm", gone), "norm: missing"},
      {"batch size of the wrong type", damaged(f.lines[1], "/batch_size", json::array()),
       "batch_size: expected a positive integer, got a list"},
      {"diverged not a boolean", damaged(f.lines[1], "/diverged", "no"),
       "diverged: expected true or false, got a string"},
      {"test error missing", damaged(f.lines[1], "/test_error", gone), "test_error: missing"},
      {"test error null without divergence", damaged(f.lines[1], "/test_error", nullptr),
       "test_error: expected a number (the cell did not diverge), got null"},
      {"train loss not numbers", damaged(f.lines[1], "/train_loss", json{"x"}),
       "train_loss: expected a list of numbers"},
      {"loss curve of unequal lengths", damaged(f.lines[1], "/loss_curve/epoch", json{1.0}),
       "loss_curve: epoch and loss differ in length"},
      {"accuracy of the wrong type", damaged(f.lines[1], "/test_accuracy_batch_stats", "high"),
       "test_accuracy_batch_stats: expected a number or null, got a string"},
      {"not an object", "[1, 2, 3]", "expected an object, got a list"},
      {"not JSON, not the last line", "{\"cell\": ", "not valid JSON at column 10"},
      {"deeply nested", "{\"cell\": " + nested_lists(100000) + "}",
       "nested deeper than 64 levels at column 73"},
  };
  for (const Damage& d : damages) {
    INFO(d.what);
    const std::string text = f.with_line(1, d.line);
    write_bytes(f.results, text);
    const CliResult report = run_cli(f.dir, {"report", f.run, "--out", f.dir / "report"});
    check_clean_failure(report, "report", {f.results + ": line 2", d.phrase, "delete that line"});
    CHECK_FALSE(fs::exists(f.dir / "report"));
    const CliResult resume = run_cli(f.dir, {"run", f.config, "--out", f.run});
    check_clean_failure(resume, "run", {f.results + ": line 2", d.phrase});
    CHECK(read_file(f.results) == text);  // left as it was, for the user to repair
  }
  // The last line cut short by a kill (no newline) is still dropped, and the cell re-run.
  write_bytes(f.results, f.with_line(3, "").substr(0, f.with_line(3, "").size() - 1) +
                             f.lines[3].substr(0, 20));
  const CliResult resume = run_cli(f.dir, {"run", f.config, "--out", f.run});
  CHECK_MESSAGE(resume.status == 0, resume.err);
  CHECK(read_file(f.results).find(f.lines[0]) == 0);
}

TEST_CASE("hardening records: a damaged config.json or probe record of a run folder is named") {
  FinishedRun f;
  const std::string config_json = f.run + "/config.json", saved = read_file(config_json);
  for (const auto& [text, phrase] : std::vector<std::pair<std::string, std::string>>{
           {"[1]", "config.json: expected an object, got a list"},
           {"{\"batch_sizes\": " + nested_lists(100000) + "}", "nested deeper than 64 levels"}}) {
    write_bytes(config_json, text);
    check_clean_failure(run_cli(f.dir, {"report", f.run, "--out", f.dir / "report"}), "report",
                        {config_json, phrase});
    check_clean_failure(run_cli(f.dir, {"run", f.config, "--out", f.run}), "run",
                        {config_json, phrase, "--fresh"});
  }
  // Valid JSON that is not the config normlab run wrote: the key at fault.
  json config = json::parse(saved);
  config["batch_sizes"] = "all";
  write_bytes(config_json, config.dump());
  check_clean_failure(run_cli(f.dir, {"report", f.run, "--out", f.dir / "report"}), "report",
                      {config_json, "batch_sizes"});
  // A hand-written config.json that leaves out keys with defaults is read resolved.
  config = json::parse(saved);
  config["evaluation"].erase("batch_stats_accuracy");  // its default: the records still belong
  config.erase("probe");
  write_bytes(config_json, config.dump());
  const CliResult defaults = run_cli(f.dir, {"report", f.run, "--out", f.dir / "defaults"});
  CHECK_MESSAGE(defaults.status == 0, defaults.err);
  write_bytes(config_json, saved);

  // A probe folder whose records lack a key the report reads.
  const CliResult probe =
      run_cli(f.dir, {"probe", f.config, "--out", f.run + "/probe", "--set", "probe.batches=2"});
  REQUIRE_MESSAGE(probe.status == 0, probe.err);
  const std::string probe_jsonl = f.run + "/probe/probe.jsonl";
  std::string lines = read_file(probe_jsonl);
  const std::string first = lines.substr(0, lines.find('\n'));
  for (const auto& [pointer, phrase] : std::vector<std::pair<std::string, std::string>>{
           {"/gap_running", "gap_running: missing"},
           {"/mean_error_std", "mean_error_std: missing"},
           {"/layer", "layer: missing"},
           {"/batches", "batches: missing"}}) {
    const std::string pointer_text = pointer;
    INFO(pointer_text);
    write_bytes(probe_jsonl, damaged(first, pointer, json::value_t::discarded) + "\n" +
                                 lines.substr(lines.find('\n') + 1));
    check_clean_failure(run_cli(f.dir, {"report", f.run, "--out", f.dir / "report"}), "report",
                        {probe_jsonl + ": line 1", phrase, "run normlab probe again"});
  }
  write_bytes(probe_jsonl, lines);
  write_bytes(f.run + "/probe/probe_config.json", R"({"config": 3})");
  check_clean_failure(run_cli(f.dir, {"report", f.run, "--out", f.dir / "report"}), "report",
                      {"probe_config.json", "config: expected the resolved config object"});
  CHECK_FALSE(fs::exists(f.dir / "report"));
}

TEST_CASE("hardening report: a failing gnuplot leaves the report folder as it was") {
  const FinishedRun finished;
  const std::string gnuplot = finished.dir / "failing-gnuplot";
  write_bytes(gnuplot, "#!/bin/sh\necho 'plot went wrong' >&2\nexit 3\n");
  fs::permissions(gnuplot, fs::perms::owner_all);
  const std::string fresh = finished.dir / "report-new";
  check_clean_failure(
      run_cli(finished.dir, {"report", finished.run, "--out", fresh, "--gnuplot", gnuplot}),
      "report", {"gnuplot failed (exit 3)", "plot went wrong", "nothing was written"});
  CHECK_FALSE(fs::exists(fresh));

  const std::string existing = finished.dir / "report-old";
  fs::create_directories(existing);
  write_bytes(existing + "/report.md", "old report\n");
  check_clean_failure(
      run_cli(finished.dir, {"report", finished.run, "--out", existing, "--gnuplot", gnuplot}),
      "report", {existing, "was left unchanged"});
  CHECK(read_file(existing + "/report.md") == "old report\n");
  std::size_t entries = 0;
  for (const auto& entry : fs::directory_iterator(existing)) entries += entry.exists();
  CHECK(entries == 1);
}

TEST_CASE("hardening records: probe --model-from names a damaged results.jsonl line") {
  FinishedRun f;
  write_bytes(f.results, f.with_line(2, damaged(f.lines[2], "/cell", 7)));
  check_clean_failure(run_cli(f.dir, {"probe", "--model-from", f.run, "--cell", "batch/B16/seed0",
                                      "--out", f.dir / "probe"}),
                      "probe", {f.results + ": line 3", "cell: expected a string, got an integer"});
  CHECK_FALSE(fs::exists(f.dir / "probe"));
}

// ---------------------------------------------------------------------------
// 5. Numeric command-line options

TEST_CASE("hardening options: negative, absurd or malformed numbers name the option") {
  const ScratchDir dir;
  struct Case {
    std::vector<std::string> args;
    std::string phrase;
  };
  // --probe-mb 1 and a tiny shape: a case that got past the checks would still be quick.
  const std::vector<Case> cases = {
      {{"--threads", "-1"}, "--threads -1: out of range, expected [1, 1024]"},  // was 2^32 - 1
      {{"--threads", "0"}, "--threads 0: out of range"},
      {{"--threads", "4294967297"}, "--threads 4294967297: out of range"},
      {{"--threads", "2x"}, "--threads '2x': expected an integer in [1, 1024]"},
      {{"--repeats", "-5"}, "--repeats -5: out of range, expected [1, 1000000]"},
      {{"--repeats", "99999999999999999999"}, "--repeats 99999999999999999999: out of range"},
      {{"--repeats", "1.5"}, "--repeats '1.5': expected an integer"},
      {{"--seconds", "-1"}, "--seconds -1: out of range, expected [0, 86400]"},
      {{"--seconds", "nan"}, "--seconds 'nan': expected a number"},
      {{"--seconds", "inf"}, "--seconds inf: out of range"},
      {{"--seconds", "1e999"}, "--seconds 1e999: out of range"},
      {{"--seconds", ""}, "--seconds '': expected a number"},
      {{"--probe-mb", "-1"}, "--probe-mb -1: out of range, expected [1, 65536]"},  // was 2^64 - 1
      {{"--probe-mb", "18446744073709551615"}, "--probe-mb 18446744073709551615: out of range"},
      {{"--probe-mb", "65537"}, "--probe-mb 65537: out of range"},
      {{"--shape", "1000000,1000000,1000000"}, "do not fit in this machine's"},
      {{"--shape", "4294967296,4294967296,16"}, "do not fit in this machine's"},
      {{"--shape", "4,-1"}, "--shape '4,-1': expected positive sizes"},
  };
  for (const Case& c : cases) {
    INFO(c.args[0] << " " << c.args[1]);
    std::vector<std::string> args = {"bench", "--norm",  "layer", "--probe-mb",
                                     "1",     "--shape", "2,3"};
    if (c.args[0] == "--shape") args.resize(5);  // the case's shape alone
    if (c.args[0] == "--probe-mb") args.erase(args.begin() + 3, args.begin() + 5);
    args.insert(args.end(), c.args.begin(), c.args.end());
    check_clean_failure(run_cli(dir, args), "bench", {c.phrase});
  }
  // Three probe arrays beyond this machine's memory (only where 192 GiB is beyond it).
  const std::size_t pages = std::size_t(::sysconf(_SC_PHYS_PAGES)),
                    page = std::size_t(::sysconf(_SC_PAGESIZE));
  if (pages * page < 3 * (std::size_t(65536) << 20))
    check_clean_failure(run_cli(dir, {"bench", "--probe-mb", "65536", "--norm", "layer"}), "bench",
                        {"--probe-mb 65536: 3 arrays of 65536 MiB do not fit"});
  check_clean_failure(run_cli(dir, {"demo", "--seed", "-1"}), "demo",
                      {"--seed -1: out of range, expected [0, 9223372036854775807]"});
  check_clean_failure(run_cli(dir, {"demo", "--seed", "x"}), "demo",
                      {"--seed 'x': expected an integer"});
  // The limits themselves are accepted.
  const CliResult edge = run_cli(dir, {"bench", "--norm", "layer", "--shape", "2,3", "--probe-mb",
                                       "1", "--repeats", "1", "--seconds", "0", "--threads", "1"});
  CHECK_MESSAGE(edge.status == 0, edge.err);
  CHECK(run_cli(dir, {"demo", "--seed", "9223372036854775807"}).status == 0);
}

// One writer per results folder: a second run fails at once, naming the
// holder; the lock dies with its holder, so the folder is usable afterwards.
TEST_CASE("hardening run: a second run on a folder in use fails at once naming the holder") {
  const ScratchDir dir;
  write_bytes(dir / "tiny.json", kTinyConfig);
  const std::string out = dir / "out";
  std::filesystem::create_directories(out);
  {
    const FolderLock held(out);  // as a run in progress holds it
    const CliResult second = run_cli(dir, {"run", dir / "tiny.json", "--out", out});
    CHECK(second.status != 0);
    check_mentions(second.err, {out, "in use by another normlab run",
                                "PID " + std::to_string(::getpid()), "another --out"});
    CHECK(std::count(second.err.begin(), second.err.end(), '\n') == 1);
    CHECK_FALSE(std::filesystem::exists(std::filesystem::path(out) / "results.jsonl"));
  }
  const CliResult after = run_cli(dir, {"run", dir / "tiny.json", "--out", out});
  CHECK_MESSAGE(after.status == 0, after.err);
  CHECK(std::filesystem::exists(std::filesystem::path(out) / "results.jsonl"));
}
