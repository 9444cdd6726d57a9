// `normlab apply` end to end: real .npy files through the built binary,
// compared with the library called directly; every failure exits non-zero
// with one line on stderr and writes nothing.
#include <doctest/doctest.h>

#include <algorithm>
#include <filesystem>
#include <map>
#include <set>
#include <string>
#include <vector>
#include <xtensor/xarray.hpp>
#include <xtensor/xmanipulation.hpp>
#include <xtensor/xmath.hpp>

#include "normlab/normlab.hpp"
#include "test_helpers.hpp"

using namespace normlab;
using normlab::test::check_mentions;
using normlab::test::CliResult;
using normlab::test::random_normal;
using normlab::test::random_uniform;
using normlab::test::read_file;
using normlab::test::run_cli;
using normlab::test::ScratchDir;
using normlab::test::write_bytes;
namespace fs = std::filesystem;

namespace {

// Runs `normlab apply ARGS`.
CliResult run_apply(const ScratchDir& dir, std::vector<std::string> args) {
  args.insert(args.begin(), "apply");
  return run_cli(dir, args);
}

std::set<std::string> files_in(const std::string& dir) {
  std::set<std::string> names;
  for (const auto& entry : fs::directory_iterator(dir))
    names.insert(entry.path().filename().string());
  return names;
}

template <class T>
void check_close(const std::string& what, const xt::xarray<T>& a, const xt::xarray<T>& b) {
  INFO(what);
  REQUIRE(a.shape() == b.shape());
  const double tolerance = sizeof(T) == 4 ? 1e-6 : 1e-13;
  CHECK_MESSAGE(xt::allclose(a, b, tolerance, tolerance),
                "max |difference| " << xt::amax(xt::abs(a - b))());
}

// What the library computes for one apply call.
template <class T>
std::map<std::string, xt::xarray<T>> library_outputs(
    const nlohmann::json& spec, const xt::xarray<T>& x, const xt::xarray<T>* dy, Mode mode,
    const std::map<std::string, xt::xarray<T>>& set) {
  return normlab::test::apply_in_library(spec, x, dy, mode, set);
}

// Runs apply on x (and dy, and --param files) saved as T, then checks that
// DIR holds exactly the library's outputs, of dtype T.
template <class T>
void check_apply(const nlohmann::json& spec, const std::vector<std::size_t>& shape, bool with_grad,
                 Mode mode, const std::map<std::string, xt::xarray<T>>& params) {
  INFO(spec.dump() << " in " << to_string(mode));
  const ScratchDir dir;
  std::mt19937_64 rng(21);
  const xt::xarray<T> x = random_normal<T>(rng, shape, 0.5, 2.0);
  const xt::xarray<T> dy = random_normal<T>(rng, shape);
  save_npy<T>(dir / "x.npy", x);
  std::vector<std::string> args = {"--norm", spec.dump(),     "--input", dir / "x.npy",
                                   "--mode", to_string(mode), "--out",   dir / "out"};
  if (with_grad) {
    save_npy<T>(dir / "dy.npy", dy);
    args.insert(args.end(), {"--grad", dir / "dy.npy"});
  }
  for (const auto& [name, value] : params) {
    save_npy<T>(dir / (name + ".npy"), value);
    args.insert(args.end(), {"--param", name + "=" + (dir / (name + ".npy"))});
  }
  const CliResult result = run_apply(dir, args);
  REQUIRE_MESSAGE(result.status == 0, result.err);
  CHECK(result.err.empty());
  check_mentions(result.out, {"wrote", "y.npy"});

  const auto expected = library_outputs<T>(spec, x, with_grad ? &dy : nullptr, mode, params);
  std::set<std::string> expected_files;
  for (const auto& entry : expected) expected_files.insert(entry.first + ".npy");
  CHECK(files_in(dir / "out") == expected_files);  // and no staging folder left behind
  const DType dtype = sizeof(T) == 4 ? DType::float32 : DType::float64;
  for (const auto& [name, value] : expected) {
    const std::string path = dir / ("out/" + name + ".npy");
    REQUIRE(fs::exists(path));
    CHECK(npy_dtype(path) == dtype);
    check_close(name, load_npy<T>(path), value);
  }
}

}  // namespace

TEST_CASE("apply: group norm with --grad and --param gamma matches the library") {
  std::mt19937_64 rng(3);
  check_apply<float>({{"type", "group"}, {"groups", 3}}, {4, 6, 3, 3}, true, Mode::train,
                     {{"gamma", random_uniform<float>(rng, {6}, 0.5, 1.5)}});
}

TEST_CASE("apply: batch norm train writes the updated running statistics") {
  check_apply<float>({{"type", "batch"}, {"momentum", 0.2}}, {5, 3, 2, 3}, true, Mode::train, {});
  check_apply<float>({{"type", "instance"}, {"track_running_stats", true}}, {2, 3, 5}, false,
                     Mode::train, {});
}

TEST_CASE("apply: eval with running statistics given by --param") {
  std::mt19937_64 rng(4);
  check_apply<float>({{"type", "batch"}}, {3, 4, 5}, true, Mode::eval,
                     {{"running_mean", random_normal<float>(rng, {4})},
                      {"running_var", random_uniform<float>(rng, {4}, 0.5, 2.0)},
                      {"gamma", random_uniform<float>(rng, {4}, 0.5, 1.5)},
                      {"beta", random_normal<float>(rng, {4})}});
}

TEST_CASE("apply: float64 input gives float64 outputs") {
  std::mt19937_64 rng(5);
  check_apply<double>({{"type", "layer"}, {"channel_affine", true}}, {2, 3, 4}, true, Mode::train,
                      {{"beta", random_normal<double>(rng, {3})}});
  check_apply<double>({{"type", "batch"}}, {4, 3}, true, Mode::train, {});
  check_apply<double>({{"type", "weight"}, {"dim", 1}}, {3, 5}, true, Mode::train, {});
  check_apply<double>({{"type", "rms"}}, {2, 7}, true, Mode::eval, {});
}

TEST_CASE("apply: a float32 --param file is accepted for a float64 input") {
  const ScratchDir dir;
  const xt::xarray<double> x = {{1.0, 2.0}, {3.0, 5.0}, {-1.0, 0.5}};
  save_npy<double>(dir / "x.npy", x);
  save_npy<float>(dir / "gamma.npy", xt::xarray<float>{2.0f, 0.5f});
  const CliResult result =
      run_apply(dir, {"--norm", R"({"type":"batch"})", "--input", dir / "x.npy", "--param",
                      "gamma=" + (dir / "gamma.npy"), "--out", dir / "out"});
  REQUIRE_MESSAGE(result.status == 0, result.err);
  CHECK(npy_dtype(dir / "out/y.npy") == DType::float64);
  auto norm = make_norm<double>({{"type", "batch"}}, 2);
  norm->set("gamma", xt::xarray<double>{2.0, 0.5});
  check_close("y", load_npy<double>(dir / "out/y.npy"), norm->forward(x, Mode::train));
}

TEST_CASE("apply: every failure exits 1 with one line on stderr and leaves nothing") {
  const ScratchDir inputs;
  std::mt19937_64 rng(6);
  save_npy<float>(inputs / "x.npy", random_normal<float>(rng, {4, 6, 3}));
  save_npy<float>(inputs / "dy.npy", random_normal<float>(rng, {4, 6, 3}));
  save_npy<float>(inputs / "dy_wrong.npy", random_normal<float>(rng, {4, 6, 2}));
  save_npy<float>(inputs / "gamma.npy", xt::ones<float>({6}));
  save_npy<float>(inputs / "gamma5.npy", xt::ones<float>({5}));
  save_npy<float>(inputs / "one.npy", random_normal<float>(rng, {1, 6}));
  std::string noise(200, '\0');
  for (char& c : noise) c = char(rng() & 0xff);
  noise[0] = 'x';
  write_bytes(inputs / "noise.npy", noise);
  const std::string x = inputs / "x.npy";
  const std::string batch = R"({"type":"batch"})";

  struct Failure {
    const char* what;
    std::vector<std::string> args;  // all but --out
    std::vector<std::string> phrases;
  };
  const std::vector<Failure> failures = {
      {"missing input file",
       {"--norm", batch, "--input", inputs / "nothere.npy"},
       {"nothere.npy", "cannot open file"}},
      {"input not an npy", {"--norm", batch, "--input", inputs / "noise.npy"}, {"not a .npy file"}},
      {"unknown norm type",
       {"--norm", R"({"type":"batchnorm"})", "--input", x},
       {"unknown type 'batchnorm'"}},
      {"unknown key",
       {"--norm", R"({"type":"batch","groups":2})", "--input", x},
       {"unknown key 'groups'"}},
      {"wrong value type",
       {"--norm", R"({"type":"batch","eps":"small"})", "--input", x},
       {"eps: expected a number, got a string"}},
      {"bad JSON", {"--norm", R"({"type":)", "--input", x}, {"--norm", "not valid JSON"}},
      {"group C % G", {"--norm", R"({"type":"group","groups":4})", "--input", x}, {"4 groups"}},
      {"param of the wrong shape",
       {"--norm", batch, "--input", x, "--param", "gamma=" + (inputs / "gamma5.npy")},
       {"gamma has shape (5,)", "(6,)"}},
      {"unknown param name",
       {"--norm", batch, "--input", x, "--param", "alpha=" + (inputs / "gamma.npy")},
       {"no parameter or state 'alpha'"}},
      {"param without a file",
       {"--norm", batch, "--input", x, "--param", "gamma"},
       {"--param 'gamma'", "NAME=FILE.npy"}},
      {"param file missing",
       {"--norm", batch, "--input", x, "--param", "gamma=" + (inputs / "g.npy")},
       {"g.npy", "cannot open file"}},
      {"grad of the wrong shape",
       {"--norm", batch, "--input", x, "--grad", inputs / "dy_wrong.npy"},
       {"gradient has shape (4, 6, 2)", "(4, 6, 3)"}},
      {"bad mode",
       {"--norm", batch, "--input", x, "--grad", inputs / "dy.npy", "--mode", "test"},
       {"mode 'test'"}},
      {"batch norm training on one sample",
       {"--norm", batch, "--input", inputs / "one.npy"},
       {"more than one value per channel"}},
      {"missing --norm", {"--input", x}, {"'--norm' is required"}},
  };

  // Half the cases with an --out that does not exist (it must not appear), half
  // with an existing empty one (it must stay empty): one process each keeps it fast.
  for (std::size_t i = 0; i < failures.size(); ++i) {
    const Failure& f = failures[i];
    const bool existing = i % 2 == 1;
    INFO(f.what << (existing ? " (existing --out)" : ""));
    const ScratchDir run;
    const std::string out = run / "out";
    if (existing) fs::create_directory(out);
    std::vector<std::string> args = f.args;
    args.insert(args.end(), {"--out", out});
    const CliResult result = run_apply(run, args);
    // Mistakes in the command line exit 2, failures on the files 1.
    const std::set<std::string> usage = {
        "unknown norm type",    "unknown key", "wrong value type", "bad JSON",
        "param without a file", "bad mode",    "missing --norm"};
    CHECK(result.status == (usage.count(f.what) ? 2 : 1));
    CHECK(std::count(result.err.begin(), result.err.end(), '\n') == 1);
    CHECK(result.err.back() == '\n');
    CHECK(result.err.rfind("normlab apply: ", 0) == 0);
    check_mentions(result.err, f.phrases);
    CHECK(result.out.empty());
    if (existing)
      CHECK(files_in(out).empty());
    else
      CHECK_FALSE(fs::exists(out));
  }

  // --out naming a file: the file is left as it was.
  const ScratchDir run;
  write_bytes(run / "taken", "keep");
  const CliResult result = run_apply(run, {"--norm", batch, "--input", x, "--out", run / "taken"});
  CHECK(result.status == 1);
  CHECK(std::count(result.err.begin(), result.err.end(), '\n') == 1);
  check_mentions(result.err, {"normlab apply: ", "taken", "not a directory"});
  CHECK(read_file(run / "taken") == "keep");
}

TEST_CASE("apply: --layout nhwc reads and writes channels-last files, as the permuted nchw run") {
  const ScratchDir dir;
  std::mt19937_64 rng(5);
  const xt::xarray<float> x = random_normal<float>(rng, {2, 6, 3, 4}, 0.5, 2.0);  // (N, C, H, W)
  const xt::xarray<float> dy = random_normal<float>(rng, {2, 6, 3, 4});
  const std::vector<std::size_t> to_last = {0, 2, 3, 1}, to_first = {0, 3, 1, 2};
  save_npy<float>(dir / "x.npy", x);
  save_npy<float>(dir / "dy.npy", dy);
  save_npy<float>(dir / "x_nhwc.npy", xt::xarray<float>(xt::transpose(x, to_last)));
  save_npy<float>(dir / "dy_nhwc.npy", xt::xarray<float>(xt::transpose(dy, to_last)));
  for (const char* spec : {R"({"type":"group","groups":3})", R"({"type":"batch"})",
                           R"({"type":"frn"})", R"({"type":"layer","channel_affine":true})"}) {
    INFO(spec);
    fs::remove_all(dir / "first");
    fs::remove_all(dir / "last");
    REQUIRE(run_apply(dir, {"--norm", spec, "--input", dir / "x.npy", "--grad", dir / "dy.npy",
                            "--out", dir / "first"})
                .status == 0);
    const CliResult last =
        run_apply(dir, {"--norm", spec, "--layout", "nhwc", "--input", dir / "x_nhwc.npy", "--grad",
                        dir / "dy_nhwc.npy", "--out", dir / "last"});
    REQUIRE_MESSAGE(last.status == 0, last.err);
    CHECK(files_in(dir / "first") == files_in(dir / "last"));
    for (const std::string& file : files_in(dir / "first")) {
      xt::xarray<float> got = load_npy<float>(dir / ("last/" + file));
      if (file == "y.npy" || file == "dx.npy") {
        CHECK(got.shape() == std::vector<std::size_t>{2, 3, 4, 6});  // written channels last
        got = xt::transpose(got, to_first);
      }
      check_close(file, got, load_npy<float>(dir / ("first/" + file)));
    }
  }
}

TEST_CASE("apply: --layout errors name the problem and leave nothing") {
  const ScratchDir dir;
  std::mt19937_64 rng(6);
  save_npy<float>(dir / "x.npy", random_normal<float>(rng, {2, 3, 3, 4}));
  const std::vector<std::pair<std::vector<std::string>, std::vector<std::string>>> cases = {
      {{"--norm", R"({"type":"batch"})", "--layout", "nwhc"}, {"layout 'nwhc'", "nchw", "nhwc"}},
      {{"--norm", R"({"type":"weight"})", "--layout", "nhwc"}, {"--layout", "weight norm"}},
      {{"--norm", R"({"type":"layer"})", "--layout", "nhwc"}, {"nhwc", "channel_affine"}},
      {{"--norm", R"({"type":"batch","layout":"nchw"})", "--layout", "nhwc"},
       {"--layout nhwc", "contradicts"}},
      // 4 channels last, but gamma has 3.
      {{"--norm", R"({"type":"group","groups":2})", "--layout", "nhwc", "--param",
        "gamma=" + (dir / "gamma3.npy")},
       {"gamma", "(3,)", "(4,)"}},
  };
  // The options contradicting each other are usage errors (2); a norm
  // refusing the layout, a parameter file not fitting, failures (1).
  const int statuses[] = {2, 2, 1, 2, 1};
  save_npy<float>(dir / "gamma3.npy", xt::ones<float>({3}));
  for (std::size_t i = 0; i < cases.size(); ++i) {
    const auto& [extra, phrases] = cases[i];
    std::vector<std::string> args = {"--input", dir / "x.npy", "--out", dir / "out"};
    args.insert(args.end(), extra.begin(), extra.end());
    const CliResult result = run_apply(dir, args);
    const std::string err = result.err;
    CAPTURE(err);
    CHECK(result.status == statuses[i]);
    CHECK(std::count(err.begin(), err.end(), '\n') == 1);
    check_mentions(err, phrases);
    CHECK_FALSE(fs::exists(dir / "out"));
  }
}

namespace {

// The low 16 bits of every float of a file --dtype bfloat16 wrote: all zero.
bool holds_bfloat16(const xt::xarray<float>& a) {
  for (float v : a)
    if (bfloat16_rounding::float_bits(v) & 0xffffu) return false;
  return true;
}

xt::xarray<bfloat16> narrowed(const xt::xarray<float>& a) {
  xt::xarray<bfloat16> out = xt::xarray<bfloat16>::from_shape(a.shape());
  to_bfloat16(a.data(), out.data(), a.size());
  return out;
}

}  // namespace

TEST_CASE(
    "apply --dtype bfloat16: float32 files rounded, outputs are Norm<bfloat16>'s, bit for bit") {
  std::mt19937_64 rng(41);
  const std::vector<std::pair<nlohmann::json, std::vector<std::size_t>>> cases = {
      {{{"type", "batch"}, {"momentum", 0.2}}, {5, 3, 2, 3}},
      {{{"type", "group"}, {"groups", 3}}, {4, 6, 3, 3}},
      {{{"type", "batch_renorm"}, {"warmup_steps", 0}}, {4, 3, 5}},
      {{{"type", "layer"}}, {3, 7}},
      {{{"type", "mabn"}}, {4, 3, 2, 2}},
  };
  for (const auto& one_case : cases) {
    // Named, not a structured binding: clang 14 cannot capture one in INFO.
    const nlohmann::json& spec = one_case.first;
    const std::vector<std::size_t>& shape = one_case.second;
    INFO(spec.dump());
    const ScratchDir dir;
    // Inputs with most values between bfloat16s, so the rounding shows.
    const xt::xarray<float> x = random_normal<float>(rng, shape, 0.5, 2.0);
    const xt::xarray<float> dy = random_normal<float>(rng, shape);
    const xt::xarray<float> gamma = random_uniform<float>(rng, {shape[1]}, 0.5, 1.5);
    save_npy<float>(dir / "x.npy", x);
    save_npy<float>(dir / "dy.npy", dy);
    save_npy<float>(dir / "gamma.npy", gamma);
    const bool elementwise = spec["type"] == "layer";  // its gamma has the shape (7,)
    std::vector<std::string> args = {"--norm", spec.dump(),    "--input", dir / "x.npy",
                                     "--grad", dir / "dy.npy", "--dtype", "bfloat16",
                                     "--out",  dir / "out"};
    if (!elementwise) args.insert(args.end(), {"--param", "gamma=" + (dir / "gamma.npy")});
    const CliResult result = run_apply(dir, args);
    REQUIRE_MESSAGE(result.status == 0, result.err);
    CHECK(result.err.empty());

    std::map<std::string, xt::xarray<bfloat16>> set;
    if (!elementwise) set["gamma"] = narrowed(gamma);
    const xt::xarray<bfloat16> dy_half = narrowed(dy);
    const auto expected =
        normlab::test::apply_in_library<bfloat16>(spec, narrowed(x), &dy_half, Mode::train, set);
    std::set<std::string> expected_files;
    for (const auto& entry : expected) expected_files.insert(entry.first + ".npy");
    CHECK(files_in(dir / "out") == expected_files);
    CHECK(expected.size() >= 4);  // y, dx, dgamma, dbeta, and state where the norm has it
    for (const auto& output : expected) {
      const std::string& name = output.first;
      const auto& value = output.second;
      INFO(name);
      const std::string path = dir / ("out/" + name + ".npy");
      REQUIRE(npy_dtype(path) == DType::float32);
      const xt::xarray<float> got = load_npy<float>(path);
      CHECK(holds_bfloat16(got));
      REQUIRE(got.shape() == value.shape());
      std::size_t different = 0;
      for (std::size_t i = 0; i < got.size(); ++i)
        if (narrowed(xt::xarray<float>{got.flat(i)})(0).bits != value.flat(i).bits) ++different;
      CHECK(different == 0);
    }
  }
}

TEST_CASE("apply --dtype: float64 files refused for bfloat16, a bad name, and float64 computing") {
  const ScratchDir inputs;
  std::mt19937_64 rng(43);
  save_npy<float>(inputs / "x.npy", random_normal<float>(rng, {4, 3, 5}));
  save_npy<double>(inputs / "x64.npy", random_normal<double>(rng, {4, 3, 5}));
  save_npy<double>(inputs / "dy64.npy", random_normal<double>(rng, {4, 3, 5}));
  save_npy<double>(inputs / "gamma64.npy", xt::ones<double>({3}));
  const std::string batch = R"({"type":"batch"})";
  const struct {
    std::vector<std::string> args;
    int status;
    std::vector<std::string> phrases;
  } failures[] = {
      {{"--input", inputs / "x64.npy", "--dtype", "bfloat16"},
       1,
       {"x64.npy is float64", "--dtype bfloat16 reads float32", "astype(np.float32)"}},
      {{"--input", inputs / "x.npy", "--grad", inputs / "dy64.npy", "--dtype", "bfloat16"},
       1,
       {"dy64.npy is float64"}},
      {{"--input", inputs / "x.npy", "--param", "gamma=" + (inputs / "gamma64.npy"), "--dtype",
        "bfloat16"},
       1,
       {"gamma64.npy is float64"}},
      {{"--input", inputs / "x.npy", "--dtype", "half"}, 2, {"--dtype 'half'", "bfloat16"}},
  };
  for (const auto& f : failures) {
    const ScratchDir run;
    std::vector<std::string> args = {"--norm", batch, "--out", run / "out"};
    args.insert(args.end(), f.args.begin(), f.args.end());
    const CliResult result = run_apply(run, args);
    INFO(result.err);
    CHECK(result.status == f.status);
    CHECK(std::count(result.err.begin(), result.err.end(), '\n') == 1);
    check_mentions(result.err, f.phrases);
    CHECK(result.out.empty());
    CHECK_FALSE(fs::exists(run / "out"));
  }

  // --dtype float64 on a float32 input: the float64 norm on the converted values.
  const ScratchDir run;
  const CliResult result = run_apply(run, {"--norm", batch, "--input", inputs / "x.npy", "--dtype",
                                           "float64", "--out", run / "out"});
  REQUIRE_MESSAGE(result.status == 0, result.err);
  REQUIRE(npy_dtype(run / "out/y.npy") == DType::float64);
  const xt::xarray<double> x = load_npy<float>(inputs / "x.npy");
  check_close("y", load_npy<double>(run / "out/y.npy"),
              make_norm<double>({{"type", "batch"}}, 0)->forward(x, Mode::train));
}
