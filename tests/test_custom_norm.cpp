// The README's "Adding a norm" example, compiled and checked against the
// built-in rms norm: a new norm is a description, not a kernel.
#include <doctest/doctest.h>

#include <xtensor/xbuilder.hpp>
#include <xtensor/xrandom.hpp>

#include "normlab/normlab.hpp"

// --- README example begins ---
// RMSNorm: per sample, uncentered, over all dims but the first, one scale per feature.
template <class T>
class MyRMSNorm : public normlab::Norm<T> {
 public:
  MyRMSNorm() : normlab::Norm<T>("my_rms") {}

  void prepare(const std::vector<std::size_t>& shape) override {
    if (!this->has_parameter("gamma"))
      this->add_parameter("gamma", xt::ones<T>({this->features(shape)}));
  }

 protected:
  normlab::NormDescription describe(const std::vector<std::size_t>& shape,
                                    normlab::Mode) const override {
    normlab::NormDescription d;
    d.view = {shape[0], 1, features(shape)};  // [N, 1, features]: one row per sample
    d.pooling = normlab::Pooling::per_outer_groups;
    d.centered = false;  // mean of squares, no mean subtraction
    d.eps = 1e-6;
    d.affine = normlab::Affine::elementwise;
    return d;
  }

 private:
  static std::size_t features(const std::vector<std::size_t>& shape) {
    std::size_t n = 1;
    for (std::size_t i = 1; i < shape.size(); ++i) n *= shape[i];
    return n;
  }
};
// --- README example ends ---

TEST_CASE("a norm written outside the library matches the built-in rms norm") {
  xt::random::seed(3);
  const xt::xarray<double> x = xt::random::randn<double>({3, 4, 5}) + 0.5;
  const xt::xarray<double> dy = xt::random::randn<double>({3, 4, 5});
  const xt::xarray<double> gamma = xt::random::randn<double>({20});

  MyRMSNorm<double> mine;
  mine.prepare({3, 4, 5});
  mine.set("gamma", gamma);
  auto builtin = normlab::make_norm<double>({{"type", "rms"}, {"eps", 1e-6}}, 0);
  builtin->prepare({3, 4, 5});
  builtin->set("gamma", xt::reshape_view(gamma, {4, 5}));

  const xt::xarray<double> y1 = mine.forward(x, normlab::Mode::train);
  const xt::xarray<double> y2 = builtin->forward(x, normlab::Mode::train);
  CHECK(xt::allclose(y1, y2, 1e-14, 1e-14));
  const xt::xarray<double> dx1 = mine.backward(dy);
  const xt::xarray<double> dx2 = builtin->backward(dy);
  CHECK(xt::allclose(dx1, dx2, 1e-14, 1e-14));
  CHECK(xt::allclose(mine.parameter("gamma").grad, xt::flatten(builtin->parameter("gamma").grad),
                     1e-14, 1e-14));
}
