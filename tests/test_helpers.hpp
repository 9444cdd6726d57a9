// Helpers shared by the test files: seeded random arrays, exception messages,
// and scratch directories.
#pragma once

#include <doctest/doctest.h>

#include <atomic>
#include <cstddef>
#include <filesystem>
#include <fstream>
#include <random>
#include <string>
#include <vector>
#include <xtensor/xarray.hpp>

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

}  // namespace normlab::test
