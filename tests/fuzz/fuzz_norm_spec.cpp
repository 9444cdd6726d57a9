// libFuzzer target: norm specs as `normlab apply --norm` takes them, then a
// forward and backward of a small input whose shape the input's last bytes choose.
#include <cstdint>
#include <stdexcept>
#include <string>
#include <xtensor/xbuilder.hpp>

#include "normlab/experiment.hpp"
#include "normlab/norm.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  // Up to 4 trailing bytes pick a shape of sizes 1..4; the rest is the spec.
  const std::size_t dims = size >= 1 ? 1 + data[size - 1] % 4 : 2;
  std::vector<std::size_t> shape;
  for (std::size_t i = 0; i < dims && i + 1 < size; ++i)
    shape.push_back(1 + data[size - 2 - i] % 4);
  if (shape.empty()) shape = {2, 3};
  const std::string text(reinterpret_cast<const char*>(data), size > dims ? size - dims : 0);
  try {
    const nlohmann::json spec = normlab::parse_json(text, "--norm", 0);  // as apply reads it
    auto norm = normlab::make_norm<double>(spec, 0);
    xt::xarray<double> x = xt::arange<double>(double(1), double(1 + [&] {
                                                std::size_t n = 1;
                                                for (std::size_t s : shape) n *= s;
                                                return n;
                                              }()));
    x.reshape(shape);
    for (normlab::Mode mode : {normlab::Mode::train, normlab::Mode::eval}) {
      const xt::xarray<double> y = norm->forward(x, mode);
      (void)norm->backward(xt::ones<double>(shape));
      (void)y;
    }
    (void)norm->to_json();
  } catch (const std::exception&) {
  }
  return 0;
}
