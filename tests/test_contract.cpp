// The library contract of a Norm (docs/errors.md): no forward in place, an
// owning forward that copies x, and one thread at a time per object (checked
// in builds without NDEBUG).
#include <doctest/doctest.h>

#include <atomic>
#include <chrono>
#include <stdexcept>
#include <thread>
#include <xtensor/xbuilder.hpp>

#include "normlab/normlab.hpp"
#include "test_helpers.hpp"

using namespace normlab;
using normlab::test::check_mentions;
using normlab::test::error_of;

TEST_CASE("contract: forward in place is refused, the owning forward copies x") {
  auto norm = make_norm<double>({{"type", "batch"}}, 3);
  xt::xarray<double> x = xt::arange<double>(12.0);
  x.reshape({4, 3});
  check_mentions(error_of<std::invalid_argument>([&] { norm->forward(x, Mode::train, x); }),
                 {"batch norm", "in place", "another array"});
  // The owning forward keeps its own copy: x may change before backward.
  auto reference = make_norm<double>({{"type", "batch"}}, 3);
  const xt::xarray<double> x_copy = x;
  const xt::xarray<double> y = norm->forward(x, Mode::train);
  (void)reference->forward(x_copy, Mode::train);
  x.fill(100.0);
  xt::xarray<double> dy = xt::arange<double>(12.0) * 0.1 - 0.3;
  dy.reshape({4, 3});
  CHECK(norm->backward(dy) == reference->backward(dy));
  CHECK(y.shape() == x.shape());
}

TEST_CASE("contract: NaN or infinite eps and momentum are refused") {
  for (const char* key : {"eps", "momentum"})
    for (double bad :
         {std::numeric_limits<double>::infinity(), -std::numeric_limits<double>::infinity()}) {
      CAPTURE(key);
      CHECK_THROWS_AS(make_norm<float>({{"type", "batch"}, {key, bad}}, 2), std::invalid_argument);
    }
  // A NaN cannot be written in JSON; nlohmann stores it as a number all the same.
  CHECK_THROWS_AS(make_norm<float>({{"type", "batch"}, {"eps", std::nan("")}}, 2),
                  std::invalid_argument);
}

namespace {
// A norm whose describe() waits until told to go on, so that a second thread
// can try to enter it meanwhile.
class SlowNorm : public Norm<double> {
 public:
  SlowNorm() : Norm<double>("slow") {}
  std::atomic<bool> inside{false}, release{false};

 protected:
  NormDescription describe(const std::vector<std::size_t>& shape, Mode) const override {
    auto* self = const_cast<SlowNorm*>(this);
    self->inside = true;
    while (!self->release) std::this_thread::sleep_for(std::chrono::milliseconds(1));
    NormDescription d;
    d.view = {shape[0], 1, shape[1]};
    return d;
  }
};
}  // namespace

TEST_CASE("contract: a second thread inside one Norm is caught in builds without NDEBUG") {
  SlowNorm norm;
  const xt::xarray<double> x = xt::arange<double>(6.0).reshape({2, 3});
  std::thread first([&] {
    xt::xarray<double> y;
    norm.forward(x, Mode::train, y);
  });
  while (!norm.inside) std::this_thread::sleep_for(std::chrono::milliseconds(1));
#ifndef NDEBUG
  xt::xarray<double> y2;
  check_mentions(error_of<std::logic_error>([&] { norm.forward(x, Mode::train, y2); }),
                 {"slow norm", "two threads", "not thread-safe"});
#endif
  norm.release = true;
  first.join();
  // One thread after the other is fine.
  xt::xarray<double> y3;
  CHECK_NOTHROW(norm.forward(x, Mode::train, y3));
}
