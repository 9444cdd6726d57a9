// `normlab apply` round trips for FRN and EvoNorm-S0 through the built CLI:
// --param tau / --param v are taken, dtau.npy / dv.npy are written, and every
// output equals (bit for bit) what the library computes in-process on the same
// inputs; eval works and, like train, writes no running state.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <map>
#include <set>
#include <string>
#include <vector>
#include <xtensor/xarray.hpp>
#include <xtensor/xmath.hpp>

#include "normlab/normlab.hpp"
#include "test_helpers.hpp"

using namespace normlab;
using normlab::test::check_mentions;
using normlab::test::CliResult;
using normlab::test::random_normal;
using normlab::test::random_uniform;
using normlab::test::run_cli;
using normlab::test::ScratchDir;
namespace fs = std::filesystem;

namespace {

template <class T>
using Arrays = std::map<std::string, xt::xarray<T>>;

std::set<std::string> files_in(const std::string& dir) {
  std::set<std::string> names;
  for (const auto& entry : fs::directory_iterator(dir))
    names.insert(entry.path().filename().string());
  return names;
}

template <class T>
bool bit_identical(const xt::xarray<T>& a, const xt::xarray<T>& b) {
  return a.shape() == b.shape() && std::memcmp(a.data(), b.data(), a.size() * sizeof(T)) == 0;
}

// The library in-process, as apply documents it (with dy).
template <class T>
Arrays<T> library_outputs(const nlohmann::json& spec, const xt::xarray<T>& x,
                          const xt::xarray<T>& dy, Mode mode, const Arrays<T>& params) {
  return normlab::test::apply_in_library(spec, x, &dy, mode, params);
}

// Runs `normlab apply` with --grad and every --param on x, dy saved as T and
// returns what it wrote, after checking that it wrote exactly
// `expected_files` (as T) and that each equals the library's output.
template <class T>
Arrays<T> check_apply(const nlohmann::json& spec, const xt::xarray<T>& x, const xt::xarray<T>& dy,
                      Mode mode, const Arrays<T>& params,
                      const std::set<std::string>& expected_files) {
  INFO(spec.dump() << " in " << to_string(mode) << ", float" << 8 * sizeof(T));
  const ScratchDir dir;
  save_npy<T>(dir / "x.npy", x);
  save_npy<T>(dir / "dy.npy", dy);
  std::vector<std::string> args = {"apply",         "--norm", spec.dump(),    "--input",
                                   dir / "x.npy",   "--grad", dir / "dy.npy", "--mode",
                                   to_string(mode), "--out",  dir / "out"};
  for (const auto& [name, value] : params) {
    save_npy<T>(dir / (name + ".npy"), value);
    args.insert(args.end(), {"--param", name + "=" + (dir / (name + ".npy"))});
  }
  const CliResult result = run_cli(dir, args);
  REQUIRE_MESSAGE(result.status == 0, result.err);
  CHECK(result.err.empty());
  check_mentions(result.out, {"wrote", "y.npy", "dx.npy"});

  REQUIRE(files_in(dir / "out") == expected_files);
  const Arrays<T> expected = library_outputs<T>(spec, x, dy, mode, params);
  CHECK(expected.size() == expected_files.size());
  const DType dtype = sizeof(T) == 4 ? DType::float32 : DType::float64;
  Arrays<T> written;
  for (const auto& entry : expected) {
    const std::string& name = entry.first;  // not a binding: INFO and CHECK_MESSAGE capture it
    const auto& value = entry.second;
    INFO(name);
    const std::string path = dir / ("out/" + name + ".npy");
    REQUIRE(fs::exists(path));
    CHECK(npy_dtype(path) == dtype);
    written[name] = load_npy<T>(path);
    CHECK_MESSAGE(bit_identical(written[name], value),
                  "max |difference| " << double(xt::amax(xt::abs(written[name] - value))()));
  }
  return written;
}

const std::set<std::string> kFrnFiles = {"y.npy", "dx.npy", "dgamma.npy", "dbeta.npy", "dtau.npy"};
const std::set<std::string> kEvoFiles = {"y.npy", "dx.npy", "dgamma.npy", "dbeta.npy", "dv.npy"};

// FRN inputs where tau clips some outputs of every channel: beta 0, gamma 1,
// so the pre-TLU outputs straddle 0, and tau per channel around 0.
template <class T>
void check_frn(const std::vector<std::size_t>& shape, Mode mode, std::uint64_t seed) {
  std::mt19937_64 rng(seed);
  const std::size_t channels = shape[1];
  const xt::xarray<T> x = random_normal<T>(rng, shape);
  const xt::xarray<T> dy = random_normal<T>(rng, shape);
  const Arrays<T> params = {{"tau", random_uniform<T>(rng, {channels}, -0.3, 0.3)},
                            {"gamma", random_uniform<T>(rng, {channels}, 0.5, 1.5)}};
  const Arrays<T> out = check_apply<T>({{"type", "frn"}}, x, dy, mode, params, kFrnFiles);
  REQUIRE(out.count("dtau"));

  // Independently of the library's backward: dtau[c] sums dy where the output
  // was clipped to tau[c] (y == tau exactly there), and each channel has some.
  const xt::xarray<T>& y = out.at("y");
  const xt::xarray<T>& tau = params.at("tau");
  const std::size_t inner = x.size() / (shape[0] * channels);
  std::vector<double> dtau(channels, 0.0);
  std::vector<std::size_t> clipped(channels, 0);
  for (std::size_t i = 0; i < y.size(); ++i) {
    const std::size_t c = (i / inner) % channels;
    if (y.data()[i] == tau(c)) dtau[c] += double(dy.data()[i]), ++clipped[c];
    CHECK(y.data()[i] >= tau(c));
  }
  const double tolerance = sizeof(T) == 4 ? 1e-5 : 1e-12;
  for (std::size_t c = 0; c < channels; ++c) {
    CAPTURE(c);
    CHECK(clipped[c] > 0);
    CHECK(clipped[c] < y.size() / channels);
    CHECK(double(out.at("dtau")(c)) == doctest::Approx(dtau[c]).epsilon(tolerance));
  }
}

template <class T>
void check_evonorm(const std::vector<std::size_t>& shape, int groups, Mode mode,
                   std::uint64_t seed) {
  std::mt19937_64 rng(seed);
  const std::size_t channels = shape[1];
  const xt::xarray<T> x = random_normal<T>(rng, shape, 0.3, 1.5);
  const xt::xarray<T> dy = random_normal<T>(rng, shape);
  const Arrays<T> params = {{"v", random_normal<T>(rng, {channels})},
                            {"beta", random_normal<T>(rng, {channels})}};
  const Arrays<T> out =
      check_apply<T>({{"type", "evonorm_s0"}, {"groups", groups}}, x, dy, mode, params, kEvoFiles);
  REQUIRE(out.count("dv"));
  CHECK(out.at("dv").shape() == std::vector<std::size_t>{channels});
  CHECK(xt::any(xt::not_equal(out.at("dv"), T(0))));
  // The given v is used: the default v = 1 gives another y.
  auto default_v = make_norm<T>({{"type", "evonorm_s0"}, {"groups", groups}}, channels);
  default_v->set("beta", params.at("beta"));
  CHECK_FALSE(bit_identical(default_v->forward(x, mode), out.at("y")));
}

}  // namespace

TEST_CASE(
    "apply: frn with --param tau writes dtau.npy equal to the library's, float32 and float64") {
  check_frn<float>({2, 3, 4, 4}, Mode::train, 31);
  check_frn<double>({3, 2, 6}, Mode::train, 32);
}

TEST_CASE("apply: frn in eval mode gives train's outputs and writes no running state") {
  check_frn<float>({2, 3, 4, 4}, Mode::eval, 31);
  check_frn<double>({2, 4, 3, 3}, Mode::eval, 33);

  // The same inputs in train and eval: the same files, the same bytes.
  const ScratchDir dir;
  std::mt19937_64 rng(34);
  save_npy<float>(dir / "x.npy", random_normal<float>(rng, {2, 3, 3, 3}));
  std::map<std::string, std::string> y;
  for (const char* mode : {"train", "eval"}) {
    const std::string out = dir / (std::string("out_") + mode);
    const CliResult result = run_cli(dir, {"apply", "--norm", R"({"type":"frn"})", "--input",
                                           dir / "x.npy", "--mode", mode, "--out", out});
    REQUIRE_MESSAGE(result.status == 0, result.err);
    CHECK(files_in(out) == std::set<std::string>{"y.npy"});
    y[mode] = normlab::test::read_file(out + "/y.npy");
  }
  CHECK(y["train"] == y["eval"]);
}

TEST_CASE("apply: evonorm_s0 with --param v writes dv.npy equal to the library's") {
  check_evonorm<double>({2, 4, 3, 3}, 2, Mode::train, 41);
  check_evonorm<float>({3, 6, 5}, 3, Mode::train, 42);
  check_evonorm<float>({5, 6}, 2, Mode::train, 43);  // (N, C) works too
}

TEST_CASE("apply: evonorm_s0 in eval mode works and writes no running state") {
  check_evonorm<float>({2, 4, 3, 3}, 4, Mode::eval, 44);
  check_evonorm<double>({4, 6}, 1, Mode::eval, 45);
}

TEST_CASE("apply: frn and evonorm_s0 errors exit 1 with one line naming the problem") {
  const ScratchDir dir;
  std::mt19937_64 rng(46);
  save_npy<float>(dir / "x2d.npy", random_normal<float>(rng, {4, 6}));
  save_npy<float>(dir / "x.npy", random_normal<float>(rng, {2, 6, 3}));
  save_npy<float>(dir / "tau.npy", xt::zeros<float>({6}));
  save_npy<float>(dir / "v4.npy", xt::ones<float>({4}));
  struct Failure {
    const char* what;
    std::vector<std::string> args;
    std::vector<std::string> phrases;
  };
  const std::vector<Failure> failures = {
      {"frn on (N, C)",
       {"--norm", R"({"type":"frn"})", "--input", dir / "x2d.npy"},
       {"frn norm", "more than one spatial element", "(4, 6)"}},
      {"tau without the TLU",
       {"--norm", R"({"type":"frn","tlu":false})", "--input", dir / "x.npy", "--param",
        "tau=" + (dir / "tau.npy")},
       {"no parameter or state 'tau'"}},
      {"v of the wrong shape",
       {"--norm", R"({"type":"evonorm_s0","groups":2})", "--input", dir / "x.npy", "--param",
        "v=" + (dir / "v4.npy")},
       {"v has shape (4,)", "(6,)"}},
      {"C % G",
       {"--norm", R"({"type":"evonorm_s0"})", "--input", dir / "x.npy"},
       {"evonorm_s0", "6 channels", "32 groups"}},
  };
  for (const Failure& f : failures) {
    INFO(f.what);
    const ScratchDir run;
    std::vector<std::string> args = {"apply"};
    args.insert(args.end(), f.args.begin(), f.args.end());
    args.insert(args.end(), {"--out", run / "out"});
    const CliResult result = run_cli(run, args);
    CHECK(result.status == 1);
    CHECK(std::count(result.err.begin(), result.err.end(), '\n') == 1);
    CHECK(result.err.rfind("normlab apply: ", 0) == 0);
    check_mentions(result.err, f.phrases);
    CHECK_FALSE(fs::exists(run / "out"));
  }
}
