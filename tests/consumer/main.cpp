// GroupNorm through the installed library: forward, backward, and a check of both.
#include <iostream>

#include <normlab/normlab.hpp>
#include <xtensor/xbuilder.hpp>
#include <xtensor/xio.hpp>
#include <xtensor/xmath.hpp>

int main() {
  // 4 channels in 2 groups; input shape (batch 2, channels 4, length 3).
  auto norm = normlab::make_norm<double>({{"type", "group"}, {"groups", 2}}, 4);
  xt::xarray<double> x = xt::arange<double>(24.0);
  x.reshape({2, 4, 3});

  xt::xarray<double> y = norm->forward(x, normlab::Mode::train);
  xt::xarray<double> dx = norm->backward(xt::ones<double>(x.shape()));
  const auto& dbeta = norm->parameter("beta").grad;
  std::cout << "y =\n" << y << "\ndbeta = " << dbeta << "\n";

  // Every (sample, group) block of y has mean 0 and variance 1; a constant dy
  // moves y without depending on x, so dx is 0; dbeta sums dy over batch and length.
  xt::xarray<double> blocks = y;
  blocks.reshape({4, 6});
  const bool ok = xt::allclose(xt::mean(blocks, {1}), 0.0) &&
                  xt::allclose(xt::variance(blocks, {1}), 1.0) && xt::allclose(dx, 0.0) &&
                  xt::allclose(dbeta, 6.0);
  std::cout << (ok ? "ok" : "WRONG") << "\n";
  return ok ? 0 : 1;
}
