// The norm layers alone, through normlab::core: no training, data or
// experiment code is linked. Every registered norm this build can make runs
// forward and backward.
#include <cmath>
#include <iostream>
#include <string>

#include <normlab/norm.hpp>
#include <normlab/registry.hpp>
#include <xtensor/xbuilder.hpp>

int main() {
  xt::xarray<float> x = xt::arange<float>(4 * 4 * 3 * 3);
  x.reshape({4, 4, 3, 3});
  x = xt::sin(x) + 0.5f;  // nonconstant within every group
  int checked = 0;
  int unavailable = 0;
  for (const normlab::NormInfo& info : normlab::registered_norms()) {
    const std::string why = normlab::why_unavailable(info.traits);
    if (!why.empty()) {  // sync_batch in a build without MPI: refused, with the reason
      std::cout << info.type << ": skipped, " << why << "\n";
      ++unavailable;
      continue;
    }
    // Four channels in a (4, 4, 3, 3) activation; a weight norm sees the same tensor as a weight.
    const nlohmann::json spec = normlab::layer_spec({{"type", info.type}}, 4, /*spatial=*/true);
    auto norm = normlab::make_norm<float>(spec, 4);
    const xt::xarray<float> y = norm->forward(x, normlab::Mode::train);
    const xt::xarray<float> dx = norm->backward(xt::ones<float>(x.shape()));
    bool finite = true;
    for (float v : y) finite = finite && std::isfinite(v);
    for (float v : dx) finite = finite && std::isfinite(v);
    std::cout << info.type << ": " << (finite ? "ok" : "NOT FINITE") << "\n";
    if (!finite) return 1;
    ++checked;
  }
  return checked + unavailable == int(normlab::norm_types().size()) && checked >= 10 ? 0 : 1;
}
