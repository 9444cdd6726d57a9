// Helpers shared by the test files: seeded random arrays, exception messages,
// central differences, scratch directories and running the built CLI.
#pragma once

#include <doctest/doctest.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstddef>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iterator>
#include <map>
#include <random>
#include <string>
#include <vector>
#include <xtensor/xarray.hpp>

#include "normlab/norm.hpp"
#include "normlab/threads.hpp"

#include <sys/wait.h>
#include <unistd.h>

namespace normlab::test {

// Normal(mean, stddev) values of the given shape from rng.
template <class T, class Shape = std::vector<std::size_t>>
xt::xarray<T> random_normal(std::mt19937_64& rng, const Shape& shape, double mean = 0.0,
                            double stddev = 1.0) {
  std::normal_distribution<double> normal(mean, stddev);
  xt::xarray<T> x = xt::xarray<T>::from_shape(shape);
  for (T& v : x) v = T(normal(rng));
  return x;
}

// Uniform [low, high) values: positive scales and variances.
template <class T, class Shape = std::vector<std::size_t>>
xt::xarray<T> random_uniform(std::mt19937_64& rng, const Shape& shape, double low, double high) {
  std::uniform_real_distribution<double> uniform(low, high);
  xt::xarray<T> x = xt::xarray<T>::from_shape(shape);
  for (T& v : x) v = T(uniform(rng));
  return x;
}

// The message of the exception of type E that f throws; a failed check (and
// "") when it throws nothing or something else.
template <class E, class F>
std::string error_of(F&& f) {
  try {
    f();
  } catch (const E& e) {
    return e.what();
  } catch (const std::exception& e) {
    FAIL_CHECK("threw an exception of another type: " << e.what());
    return "";
  }
  FAIL_CHECK("did not throw");
  return "";
}

// Checks that `message` contains every phrase.
inline void check_mentions(const std::string& message, const std::vector<std::string>& phrases) {
  for (const std::string& phrase : phrases) {
    INFO("message: " << message);
    CHECK_MESSAGE(message.find(phrase) != std::string::npos, "missing phrase: " << phrase);
  }
}

// d loss / d entry by central differences with step h; `loss` reads `entry`,
// which is left as it was.
inline double central_difference(const std::function<double()>& loss, double& entry, double h) {
  const double saved = entry;
  entry = saved + h;
  const double up = loss();
  entry = saved - h;
  const double down = loss();
  entry = saved;
  return (up - down) / (2 * h);
}

// Compares `analytic` with central differences (step h) of `loss` in each
// entry of `values` (which the loss reads); every entry is restored. The
// error of an entry is relative to max(1, |analytic|, |numeric|).
template <class Array>
void check_against_differences(const std::string& what, const Array& analytic, Array& values,
                               const std::function<double()>& loss, double h, double tolerance) {
  REQUIRE(analytic.shape() == values.shape());
  double worst = 0;
  std::size_t worst_at = 0;
  for (std::size_t i = 0; i < values.size(); ++i) {
    const double numeric = central_difference(loss, values.data()[i], h);
    const double a = analytic.data()[i];
    const double error = std::abs(a - numeric) / std::max({1.0, std::abs(a), std::abs(numeric)});
    if (error > worst) worst = error, worst_at = i;
  }
  CHECK_MESSAGE(worst < tolerance,
                what << ": worst relative error " << worst << " at flat index " << worst_at);
}

// What `normlab apply` computes, run in the library: prepare, set the
// parameters and state, forward, then (with dy) backward and the parameter
// gradients, and the running state after a train forward; named as apply
// names its files.
template <class T>
std::map<std::string, xt::xarray<T>> apply_in_library(
    const nlohmann::json& spec, const xt::xarray<T>& x, const xt::xarray<T>* dy, Mode mode,
    const std::map<std::string, xt::xarray<T>>& set) {
  auto norm = make_norm<T>(spec, 0);
  norm->prepare(std::vector<std::size_t>(x.shape().begin(), x.shape().end()));
  for (const auto& [name, value] : set) norm->set(name, value);
  std::map<std::string, xt::xarray<T>> outputs;
  outputs["y"] = norm->forward(x, mode);
  if (dy) {
    outputs["dx"] = norm->backward(*dy);
    for (const std::string& name : norm->parameter_names())
      outputs["d" + name] = norm->parameter(name).grad;
  }
  if (mode == Mode::train)
    for (const std::string& name : norm->state_names()) outputs[name] = norm->state(name);
  return outputs;
}

// Writes `bytes` to `path` as they are.
inline void write_bytes(const std::string& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary);
  out.write(bytes.data(), std::streamsize(bytes.size()));
  REQUIRE(out.good());
}

// A fresh directory under the system temp dir, removed with everything in it
// when the object goes away.
class ScratchDir {
 public:
  ScratchDir() {
    static std::atomic<int> counter{0};
    path_ = std::filesystem::temp_directory_path() /
            ("normlab-test-" + std::to_string(::getpid()) + "-" + std::to_string(counter++));
    std::filesystem::remove_all(path_);
    std::filesystem::create_directories(path_);
  }
  ~ScratchDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  ScratchDir(const ScratchDir&) = delete;
  ScratchDir& operator=(const ScratchDir&) = delete;

  const std::filesystem::path& path() const { return path_; }
  std::string operator/(const std::string& name) const { return (path_ / name).string(); }

 private:
  std::filesystem::path path_;
};

// The exit status (-1 if it did not exit) and output of one run of the CLI.
struct CliResult {
  int status = -1;
  std::string out, err;
};

inline std::string shell_quote(const std::string& arg) {
  std::string quoted = "'";
  for (char c : arg) quoted += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return quoted + "'";
}

// The whole file as its bytes ("" if it cannot be read).
inline std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

// Runs `normlab ARGS` (the built NORMLAB_CLI), capturing stdout and stderr in
// files of `dir`. `shell_prefix` runs first in the same shell (e.g. "ulimit -f 1; exec").
inline CliResult run_cli(const ScratchDir& dir, const std::vector<std::string>& args,
                         const std::string& shell_prefix = "") {
  std::string command = shell_prefix + (shell_prefix.empty() ? "" : " ") + shell_quote(NORMLAB_CLI);
  for (const std::string& arg : args) command += " " + shell_quote(arg);
  command += " >" + shell_quote(dir / "stdout.txt") + " 2>" + shell_quote(dir / "stderr.txt");
  const int raw = std::system(command.c_str());
  CliResult result;
  result.status = raw != -1 && WIFEXITED(raw) ? WEXITSTATUS(raw) : -1;
  result.out = read_file(dir / "stdout.txt");
  result.err = read_file(dir / "stderr.txt");
  return result;
}

// Restores the thread count when it goes away.
class Threads {
 public:
  explicit Threads(unsigned n) : saved_(num_threads()) { set_num_threads(n); }
  ~Threads() { set_num_threads(saved_); }
  Threads(const Threads&) = delete;
  Threads& operator=(const Threads&) = delete;

 private:
  unsigned saved_;
};

}  // namespace normlab::test
